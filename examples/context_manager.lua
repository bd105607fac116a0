-- Python's ProcessPoolExecutor tutorial, second example, in Lua: the
-- 'with' block becomes a to-be-closed variable, which shuts the pool down
-- (waiting for its work) when it goes out of scope, even on an error.
-- Lua 5.4 only: to-be-closed variables came with 5.4. On 5.1, 5.2, 5.3
-- and LuaJIT, call executor:close() (see examples/process_pool.lua).
-- Run from the repository root: lua5.4 examples/context_manager.lua
package.cpath = "./?.so;" .. package.cpath
local ppe = require "ppe"

-- Runs in a worker; Lua has no getpid, so it reads its pid from /proc.
local function task()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  print("Executing our Task on Process " .. pid)
  return pid
end

local function main()
  local executor <close> = ppe.executor { max_workers = 3 }
  local task1 = executor:submit(task)
  local task2 = executor:submit(task)
  print("Task 1 ran on process " .. task1:result())
  print("Task 2 ran on process " .. task2:result())
end  -- <close>: executor:close(), i.e. shutdown{wait = true}

main()
