-- bench/lib.lua - what the benchmarks share: the clock, running a peer,
-- figures measured side by side and checked against their targets, and
-- the measurements of an executor that more than one benchmark takes.
--
--   package.path = "./?.lua;" .. package.path
--   local B = require "bench.lib"
--   B.figure(name, unit, better, sides, target, target_text)
--   return B.report("executor")
local M = {}

M.REPS = tonumber(os.getenv("BENCH_REPS")) or 3
M.PY = os.getenv("PYTHON") or "/usr/bin/python3"
-- This interpreter, for the processes a benchmark starts: arg[-1] when a
-- script was named, arg[0] when run by 'lua -e' (as bench/run.lua does).
M.LUA = arg and (arg[-1] or arg[0]) or "lua5.4"

-- Seconds: luv's clock where it is installed (tools/deps.sh installs it),
-- else /proc/uptime, whose 10 ms ticks the figures sum over many runs.
local has_uv, uv = pcall(require, "luv")
M.has_uv = has_uv
local function uptime()
  local f <close> = assert(io.open("/proc/uptime"))
  return f:read("n")
end
function M.now()
  if has_uv then return uv.hrtime() * 1e-9 end
  return uptime()
end

-- Lets the other processes run for about 'ms' milliseconds, where a busy
-- wait would take a core from them.
function M.sleep(ms)
  if has_uv then return uv.sleep(ms) end
  os.execute(("sleep %.3f"):format(ms / 1e3))
end

-- What shell command 'cmd' prints.
function M.output(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

-- The first number shell command 'cmd' prints (a peer's one figure).
function M.run(cmd)
  local out = M.output(cmd)
  return assert(tonumber(out:match("[%d%.eE+-]+")), cmd .. ": " .. out)
end

-- Min, median and max of the numbers in 'xs' (sorted in place).
function M.stats(xs)
  table.sort(xs)
  return xs[1], xs[(#xs + 1) // 2], xs[#xs]
end
local stats = M.stats

local results = {}

-- Runs each side REPS times, alternating, and prints one line: each side's
-- median, min and max. 'better' is "higher" or "lower", for the reader;
-- 'target', given the medians by side name, returns whether the target is
-- met and the text of the ratios, or nil and that text for a figure that
-- is only for the record (nothing is counted then).
function M.figure(name, unit, better, sides, target, target_text)
  local vals = {}
  for _, s in ipairs(sides) do vals[s[1]] = {} end
  for _ = 1, M.REPS do
    for _, s in ipairs(sides) do
      table.insert(vals[s[1]], (s[2]()))
    end
  end
  local med = {}
  io.write(string.format("%-34s", name))
  for _, s in ipairs(sides) do
    local lo, mid, hi = stats(vals[s[1]])
    med[s[1]] = mid
    io.write(string.format("  %s %.4g %s [%.4g..%.4g]", s[1], mid, unit,
                           lo, hi))
  end
  io.write("\n")
  if target then
    local ok, text = target(med)
    if ok == nil then
      io.write(string.format("%-34s  %s  (%s)\n", "", text, target_text))
    else
      io.write(string.format("%-34s  %s  (target %s: %s)\n", "", text,
                             target_text, ok and "PASS" or "MISS"))
      results[#results + 1] = { name = name, ok = ok }
    end
  end
  io.flush()
end

-- A result checked outside figure(): counted in the report.
function M.record(name, ok)
  results[#results + 1] = { name = name, ok = ok }
end

-- Prints how many targets were met; true if all were.
function M.report(what)
  local pass = 0
  for _, r in ipairs(results) do if r.ok then pass = pass + 1 end end
  print(string.format("%s targets met: %d of %d", what, pass, #results))
  return pass == #results
end

function M.ratio(a, b) return a / b end

-- The pid of the calling process. It has no upvalues: a task as it is.
function M.selfpid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return pid
end

-- Private KiB of process 'pid' (Private_Clean + Private_Dirty of its
-- smaps_rollup: what it does not share with its parent), or nil if it is
-- gone.
function M.private_kib(pid)
  local f = io.open("/proc/" .. pid .. "/smaps_rollup")
  if not f then return nil end
  local total = 0
  for line in f:lines() do
    local k = line:match("^Private_%a+:%s+(%d+)")
    if k then total = total + tonumber(k) end
  end
  f:close()
  return total
end

-- The task of every figure below: it returns its argument.
function M.trivial(x) return x end
local trivial = M.trivial

-- Executor 'ex' up to 'n' workers (far ones start after ppe.executor has
-- returned), within 'timeout' seconds; then a task on each, so that the
-- first measurement pays for no first encoding of 'trivial'.
function M.warm(ex, n, timeout)
  local t0 = M.now()
  while ex:stats().workers < n do
    assert(M.now() - t0 < (timeout or 60), "workers did not start in time")
    M.sleep(10)
  end
  for _ = 1, n do ex:submit(trivial, 1):result() end
  return ex
end

-- Microseconds per submit+result of a trivial task, 'n' in a row.
function M.rtt(ex, n)
  local t0 = M.now()
  for i = 1, n do ex:submit(trivial, i):result() end
  return (M.now() - t0) / n * 1e6
end

-- Tasks per second for 'n' trivial tasks submitted at once.
function M.many(ex, n)
  local fs = {}
  local t0 = M.now()
  for i = 1, n do fs[i] = ex:submit(trivial, i) end
  for i = 1, n do fs[i]:result() end
  return n / (M.now() - t0)
end

-- 1..n, the items of the map figures.
function M.ints(n)
  local items = {}
  for i = 1, n do items[i] = i end
  return items
end

-- Items per second for a map of 'items' (1..n) in chunks of 'chunksize'.
function M.map(ex, items, chunksize)
  local n = #items
  local t0 = M.now()
  local s = 0
  for _, v in ex:map(trivial, items, { chunksize = chunksize }) do
    s = s + v
  end
  assert(s == n * (n + 1) // 2)
  return n / (M.now() - t0)
end

-- MB/s one way for 'n' echoes of string 's', one after the other.
function M.echo(ex, s, n)
  local t0 = M.now()
  for _ = 1, n do assert(#ex:submit(trivial, s):result() == #s) end
  return #s * n / (M.now() - t0) / 1e6
end

return M
