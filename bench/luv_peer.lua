-- bench/luv_peer.lua - luv's thread pool (uv.new_work, uv.queue_work)
-- doing the work bench/executor.lua gives ppe, as a peer in the same run.
-- Run with UV_THREADPOOL_SIZE=2, to match ppe's two workers. Prints one
-- number.
--
--   luv_peer.lua rtt N         us per queue+result of a trivial task
--   luv_peer.lua many N        tasks/s for N trivial tasks queued at once
--   luv_peer.lua cpu N SECS    s for N tasks of SECS of CPU each (one
--                              thread's)
local uv = require "luv"

local what, a, b = arg[1], tonumber(arg[2]), tonumber(arg[3])

local function now() return uv.hrtime() * 1e-9 end

-- Each work runs in one of the pool's threads, in a Lua state of that
-- thread's own, into which luv loads the function from its bytecode.
local done = 0
local trivial = uv.new_work(function(x) return x end,
                            function() done = done + 1 end)
-- os.clock is the process's CPU time, which two threads spinning advance
-- twice as fast: a task is a count of the loop bench/executor.lua's tasks
-- spin, that count taken here, in one thread, for SECS.
local function count(secs)
  local t, x = os.clock(), 0
  while os.clock() - t < secs do x = x + 1 end
  return x
end
local spin = uv.new_work(function(n)
  local t, x = os.clock(), 0
  while x < n and os.clock() - t >= 0 do x = x + 1 end
  return x
end, function() done = done + 1 end)

-- Queues 'n' works of 'work', the i-th with argument 'x' or i, and runs
-- the loop until every one has come back.
local function batch(work, n, x)
  done = 0
  for i = 1, n do assert(uv.queue_work(work, x or i)) end
  while done < n do uv.run("once") end
end

-- Both threads and their states up, as ppe's and Python's pools are
-- before their figures.
batch(trivial, 20)

if what == "rtt" then
  local t0 = now()
  for i = 1, a do batch(trivial, 1, i) end
  print((now() - t0) / a * 1e6)
elseif what == "many" then
  local t0 = now()
  batch(trivial, a)
  print(a / (now() - t0))
elseif what == "cpu" then
  local n = count(b)
  local t0 = now()
  batch(spin, a, n)
  print(now() - t0)
else
  io.stderr:write("usage: luv_peer.lua rtt N | many N | cpu N SECS\n")
  os.exit(2)
end
