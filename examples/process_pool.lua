-- Python's ProcessPoolExecutor tutorial, first example, in Lua: a pool of
-- three worker processes runs one task twice; the pool is shut down by hand.
-- Run from the repository root: lua5.4 examples/process_pool.lua
package.cpath = "./?.so;" .. package.cpath
local ppe = require "ppe"

-- Lua has no getpid: a process reads its own pid from /proc.
local function getpid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*n")
  f:close()
  return pid
end

-- Runs in a worker: the function is sent by value, with its upvalue
-- 'getpid', and its print goes to our stdout.
local function task()
  local pid = getpid()
  print("Executing our Task on Process " .. pid)
  return pid
end

local function main()
  local executor = ppe.executor { max_workers = 3 }
  local task1 = executor:submit(task)
  local task2 = executor:submit(task)
  -- result() waits for each task and returns what it returned.
  print("Task 1 ran on process " .. task1:result())
  print("Task 2 ran on process " .. task2:result())
  -- Waits for pending work and reaps the workers; the garbage collector
  -- would do it too, but later.
  executor:shutdown()
end

main()
