-- bench/executor.lua - ppe's executor beside its floors and peers,
-- measured in the same run: the floors in C of bench/floors.c (a raw
-- socketpair between two processes, a fork that makes a Lua state, memcpy),
-- Python's ProcessPoolExecutor (fork context, same worker count), luv's
-- thread pool (bench/luv_peer.lua, two threads) and sequential Lua. Each
-- figure runs REPS times, alternating ppe and the others; min/median/max
-- are printed and the ratio of the medians is checked against the target:
-- a ratio, never an absolute figure, as machines differ several times over
-- in what a fork or a fresh page costs.
package.cpath = "./?.so;" .. package.cpath
package.path = "./?.lua;" .. package.path
local ppe = require "ppe"
local B = require "bench.lib"

local PY = B.PY
local FLOORS = "bench/floors"
local LUV = "UV_THREADPOOL_SIZE=2 " .. B.LUA .. " bench/luv_peer.lua"
local now, run, figure, ratio = B.now, B.run, B.figure, B.ratio
local has_uv = B.has_uv
local trivial = B.trivial

-- What kind of machine this is: first-touching memory costs 5-10x a copy
-- into warm memory on some, 1.5-2x on others, and every figure that makes
-- new pages (start-up, big messages) moves with it.
local MIB64 = 64 * 1024 * 1024
figure("memcpy 64 MiB (the machine)", "GB/s", "higher", {
  { "warm", function() return run(FLOORS .. " warm " .. MIB64 .. " 10") end },
  { "fresh", function() return run(FLOORS .. " fresh " .. MIB64 .. " 5") end },
}, function(m)
  return nil, string.format("fresh/warm %.2f", m.fresh / m.warm)
end, "no target: what a fresh page costs here")

local ex = ppe.executor { max_workers = 2 }
ex:submit(trivial, 1):result()
ex:submit(trivial, 1):result()

figure("executor start to first result", "ms", "lower", {
  { "ppe", function()
      local n, total = 40, 0  -- many starts: the clock may tick in 10 ms
      for _ = 1, n do
        local t0 = now()
        local e = ppe.executor { max_workers = 2 }
        e:submit(trivial, 1):result()
        total = total + (now() - t0)
        e:close()
      end
      return total * 1e3 / n
    end },
  -- A fork whose child makes a Lua state and ends: what a worker's start
  -- cannot do without.
  { "floor", function() return run(FLOORS .. " state 40") end },
  { "python", function() return run(PY .. " bench/peer.py start") end },
}, function(m)
  local r = m.ppe / m.floor
  return r <= 1.5, string.format("ppe/floor %.2fx, python/ppe %.1fx", r,
                                 m.python / m.ppe)
end, "<= 1.5x fork + new state + close")

-- The same from a process's first executor, which forks the process's
-- zygote (later executors share it): each start in a new process.
local LUA = B.LUA
local FIRST = [[
package.cpath = "./?.so;" .. package.cpath
local ppe = require "ppe"
local uv = require "luv"
local t0 = uv.hrtime()
local e = ppe.executor { max_workers = 2 }
e:submit(function(x) return x end, 1):result()
io.write((uv.hrtime() - t0) * 1e-6, "\n")
e:close()
]]
if has_uv then
  figure("first executor of a process, to first result", "ms", "lower", {
    { "ppe", function()
        local n, total = 20, 0
        for _ = 1, n do
          total = total + run(("%s -e '%s'"):format(LUA, FIRST))
        end
        return total / n
      end },
    { "python", function() return run(PY .. " bench/peer.py start") end },
  }, function(m)
    return nil, string.format("python/ppe %.1fx", m.python / m.ppe)
  end, "no target: the figure above is for any later executor")
end

local private_kib, selfpid = B.private_kib, B.selfpid

figure("private RSS of an idle worker", "KiB", "lower", {
  { "ppe", function()
      local pids, worst = {}, 0
      for _ = 1, 8 do pids[ex:submit(selfpid):result()] = true end
      os.execute("sleep 0.2")
      for pid in pairs(pids) do
        worst = math.max(worst, private_kib(pid) or 0)
      end
      return worst
    end },
  -- A forked child holding a fresh Lua state, waiting.
  { "floor", function() return run(FLOORS .. " idle") end },
  { "python", function() return run(PY .. " bench/peer.py rss") end },
}, function(m)
  local r = m.ppe / m.floor
  return r <= 2, string.format("ppe/floor %.2fx, python/ppe %.1fx", r,
                               m.python / m.ppe)
end, "<= 2x a forked child with a fresh state")

figure("round trip, trivial task", "us", "lower", {
  { "ppe", function() return B.rtt(ex, 5000) end },
  { "socketpair", function() return run(FLOORS .. " rtt 20000") end },
  -- Both sides spinning instead of sleeping: no wake-ups, two cores busy.
  { "spinning", function() return run(FLOORS .. " spin 20000") end },
  { "luv", function() return run(LUV .. " rtt 5000") end },
  { "python", function() return run(PY .. " bench/peer.py rtt 3000") end },
}, function(m)
  local a, b = m.ppe / m.socketpair, m.python / m.ppe
  return a <= 1.3 and b >= 3,
    string.format("ppe/socketpair %.2fx, ppe/spinning %.2fx, ppe/luv %.2fx, "
                  .. "python/ppe %.2fx", a, m.ppe / m.spinning, m.ppe / m.luv,
                  b)
end, "<= 1.3x blocking socketpair and >= 3x python")

figure("100k trivial tasks at once", "tasks/s", "higher", {
  { "ppe", function() return B.many(ex, 100000) end },
  { "luv", function() return run(LUV .. " many 100000") end },
  { "python", function() return run(PY .. " bench/peer.py many 20000") end },
}, function(m)
  local r = ratio(m.ppe, m.luv)
  return r >= 1, string.format("ppe/luv %.2fx, ppe/python %.1fx", r,
                               ratio(m.ppe, m.python))
end, ">= luv's thread pool")

local items = B.ints(1000000)
figure("map 1M ints, chunksize 1000", "items/s", "higher", {
  { "ppe", function() return B.map(ex, items, 1000) end },
  { "python", function()
      return run(PY .. " bench/peer.py map 1000000 1000")
    end },
}, function(m)
  local r = ratio(m.ppe, m.python)
  return r >= 4, string.format("ppe/python %.2fx", r)
end, ">= 4x python")
items = nil

local big = string.rep("x", MIB64)
figure("echo of a 64 MiB string", "MB/s", "higher", {
  -- As many echoes as the socketpair's, each from the same start.
  { "ppe", function() return B.echo(ex, big, 5) end },
  { "socketpair", function()
      return run(FLOORS .. " echo " .. MIB64 .. " 5")
    end },
  { "python", function()
      return run(PY .. " bench/peer.py echo " .. MIB64 .. " 3")
    end },
}, function(m)
  local r = ratio(m.ppe, m.socketpair)
  return r >= 0.9, string.format("ppe/socketpair %.2f, ppe/python %.2fx", r,
                                 ratio(m.ppe, m.python))
end, ">= 0.9 of socketpair")
big = nil
collectgarbage()

local function spin(secs)
  local t = os.clock()
  local x = 0
  while os.clock() - t < secs do x = x + 1 end
  return x
end
local TASK = tonumber(os.getenv("BENCH_CPU_TASK")) or 0.25
figure(string.format("8 CPU tasks of %.2f s, 2 workers", TASK), "s",
       "lower", {
  { "ppe", function()
      local t0 = now()
      local fs = {}
      for i = 1, 8 do fs[i] = ex:submit(spin, TASK) end
      for i = 1, 8 do fs[i]:result() end
      return now() - t0
    end },
  { "sequential", function()
      local t0 = now()
      for _ = 1, 8 do spin(TASK) end
      return now() - t0
    end },
  { "luv", function() return run(LUV .. " cpu 8 " .. TASK) end },
}, function(m)
  local r = m.sequential / m.ppe
  return r >= 1.9, string.format("speed-up %.2fx, luv's %.2fx", r,
                                 m.sequential / m.luv)
end, ">= 1.9x")

-- A long task, then short ones submitted right after it: they must not
-- wait behind it while the other worker has room (the ideal is the long
-- one's time). Each round starts with pipelines made deep by trivial
-- tasks, as in a program that ran many before.
figure("1 task of 0.5 s, then 10 of 0.05 s", "s", "lower", {
  { "ppe", function()
      for _ = 1, 200 do ex:submit(trivial, 1):result() end
      local t0 = now()
      local fs = { ex:submit(spin, 0.5) }
      for i = 2, 11 do fs[i] = ex:submit(spin, 0.05) end
      for i = 1, 11 do fs[i]:result() end
      return now() - t0
    end },
  { "python", function()
      return run(PY .. " bench/peer.py uneven 500 10")
    end },
}, function(m)
  return nil, string.format("python/ppe %.2fx, ideal 0.5 s",
                            m.python / m.ppe)
end, "no target")

local function rss_kib()
  local f = assert(io.open("/proc/self/status"))
  local v
  for line in f:lines() do
    v = v or tonumber(line:match("^VmRSS:%s+(%d+)"))
  end
  f:close()
  return v
end

-- An endless iterator mapped with buffersize: the parent's memory after
-- N items and after 4N items must be the same within noise.
do
  local function endless()
    local i = 0
    return function() i = i + 1; return i end
  end
  local n, at1, at4 = 0, nil, nil
  for _, v in ex:map(trivial, endless(), { chunksize = 100,
                                           buffersize = 2000 }) do
    n = n + 1
    if n == 200000 then collectgarbage(); at1 = rss_kib() end
    if n == 800000 then collectgarbage(); at4 = rss_kib(); break end
    local _ = v
  end
  local grew = at4 - at1
  print(string.format("%-34s  ppe RSS %d KiB after 200k items, %d KiB after "
                      .. "800k", "endless map, buffersize 2000", at1, at4))
  local ok = grew < 2048
  print(string.format("%-34s  grew %d KiB  (target flat, < 2 MiB: %s)", "",
                      grew, ok and "PASS" or "MISS"))
  B.record("endless map", ok)
end

ex:close()
return B.report("executor")
