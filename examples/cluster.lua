-- Python's ProcessPoolExecutor tutorial's task, on an executor whose
-- workers are partly forked here and partly started through a launcher:
-- by default 'env' (this machine, over the same pipe ssh would give), or
-- the launcher given as arguments, such as: ssh -o BatchMode=yes node1
-- Run from the repository root: lua5.4 examples/cluster.lua [launcher...]
package.cpath = "./?.so;" .. package.cpath
local ppe = require "ppe"

-- Lua has no getpid: a process reads its own pid from /proc.
local function getpid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*n")
  f:close()
  return pid
end

-- Runs in a worker, here or there, for a quarter of a second of CPU; its
-- print comes back to our stdout.
local function task(n)
  local t = os.clock()
  while os.clock() - t < 0.25 do end
  local pid = getpid()
  print(("Executing task %d on process %d"):format(n, pid))
  return pid, ppe.worker_id()
end

local launcher = { ... }
if #launcher == 0 then
  -- The far side finds ppe where this side does.
  local cwd = assert(os.getenv("PWD"))
  launcher = { "env", "LUA_CPATH=" .. cwd .. "/?.so;;" }
end
-- (Over ssh the far side needs ppe installed; see README, Across machines.)

local ex = ppe.executor {
  workers = {
    { n = 2 },
    { n = 2, launcher = launcher, name = "far" },
  },
}
local futures = {}
for n = 1, 8 do futures[n] = ex:submit(task, n) end
for n, f in ipairs(futures) do
  local ok, pid, id = pcall(f.result, f, 60)
  if ok then
    print(("Task %d ran on process %d (worker %d)"):format(n, pid, id))
  else
    print(("Task %d failed: %s"):format(n, tostring(pid)))
  end
end
for _, g in ipairs(ex:stats().groups) do
  print(("group %s: %d workers, %d tasks completed"):format(
    g.name, g.workers, g.completed))
end
ex:close()
