-- bench/scaling.lua - how ppe's costs grow: per-future costs against the
-- number of pending futures, start-up and idle memory against the number
-- of workers, echo against the message size, map against the chunksize.
-- Each curve is written to bench/results/<curve>.csv and drawn on log-log
-- axes to bench/results/<curve>.png (gnuplot), beside Python's pool where
-- Python has the operation. The log-log slope of every series is printed;
-- as_completed, wait and callbacks run by poll must cost the same per
-- future whatever the number pending: the slope of their total time
-- against n must be <= 1.1.
--
--   BENCH_REPS          repetitions of each point (bench/lib.lua)
--   BENCH_SCALING_MAX   largest power of ten of pending futures (6)
--   BENCH_SCALING_LIMIT seconds a round may be expected to take (30): an
--                       operation whose next size would take longer, at
--                       the growth measured so far, is not run at it
package.cpath = "./?.so;" .. package.cpath
package.path = "./?.lua;" .. package.path
local ppe = require "ppe"
local B = require "bench.lib"

local now, trivial = B.now, B.trivial
local RESULTS = "bench/results"
local MAXEXP = tonumber(os.getenv("BENCH_SCALING_MAX")) or 6
local LIMIT = tonumber(os.getenv("BENCH_SCALING_LIMIT")) or 30
-- Python's pool runs about 7,000 trivial tasks a second here: 10^4
-- pending futures take it seconds a round, 10^5 would take minutes.
local PY_MAXEXP = 4
-- Its wait(FIRST_COMPLETED) loop is quadratic: each call walks every
-- future it is given, taking each one's lock, hanging a waiter on it and
-- taking it off again. 10^4 take it 15-30 s a round here (2.6 ms a
-- future; slope 1.87 from 10^3).
local PY_WAIT_MAXEXP = 3
-- Peers are killed if they hang, so that no wait here is without end.
local PY = "timeout 600 " .. B.PY
local PEER = PY .. " bench/scaling_peer.py"
-- The socketpair echo, in C (make bench builds it).
local SOCKETPAIR = io.open("bench/floors") and "bench/floors"
local TARGET = 1.1

local function log10(x) return math.log(x, 10) end

-- Slope of the least-squares line through the points (log x, log y) of
-- 'pts', a list of { x, y }; nil with fewer than two points.
local function slope(pts)
  local n, sx, sy, sxx, sxy = #pts, 0, 0, 0, 0
  if n < 2 then return nil end
  for _, p in ipairs(pts) do
    local x, y = log10(p[1]), log10(p[2])
    sx, sy, sxx, sxy = sx + x, sy + y, sxx + x * x, sxy + x * y
  end
  return (n * sxy - sx * sy) / (n * sxx - sx * sx)
end

-- A curve: its series in order, each a list of points { x, mid, lo, hi }.
local function curve(name, title, xlabel, ylabel)
  return { name = name, title = title, xlabel = xlabel, ylabel = ylabel,
           order = {}, series = {}, label = {} }
end

local function add(c, key, x, lo, mid, hi)
  if not c.series[key] then
    c.series[key] = {}
    c.order[#c.order + 1] = key
  end
  table.insert(c.series[key], { x, mid, lo, hi })
end

-- Runs each side REPS times ('reps' if given), alternating; a side returns
-- a table of values by series name. Returns min, median and max of each.
local function point(sides, reps)
  local vals = {}
  for _ = 1, reps or B.REPS do
    for _, side in ipairs(sides) do
      for k, v in pairs(side()) do
        vals[k] = vals[k] or {}
        table.insert(vals[k], v)
      end
    end
  end
  local out = {}
  for k, vs in pairs(vals) do out[k] = { B.stats(vs) } end
  return out
end

-- Prints a point's medians in a line, and adds them to curve 'c' at 'x'.
local function record(c, xtext, x, keys, meds, unit)
  io.write(string.format("%-12s %-8s", c.name, xtext))
  for _, k in ipairs(keys) do
    local m = meds[k]
    if m then
      add(c, k, x, m[1], m[2], m[3])
      io.write(string.format("  %s %.4g [%.3g..%.3g]", k, m[2], m[1], m[3]))
    end
  end
  io.write(" ", unit, "\n")
  io.flush()
end

local function write_csv(c)
  local xs, seen = {}, {}
  for _, k in ipairs(c.order) do
    for _, p in ipairs(c.series[k]) do
      if not seen[p[1]] then seen[p[1]] = true; xs[#xs + 1] = p[1] end
    end
  end
  table.sort(xs)
  local f = assert(io.open(RESULTS .. "/" .. c.name .. ".csv", "w"))
  local head = { c.xcol or "x" }
  for _, k in ipairs(c.order) do
    head[#head + 1] = ("%s,%s_min,%s_max"):format(k, k, k)
  end
  f:write(table.concat(head, ","), "\n")
  for _, x in ipairs(xs) do
    local row = { ("%.10g"):format(x) }
    for _, k in ipairs(c.order) do
      local cell = ",,"
      for _, p in ipairs(c.series[k]) do
        if p[1] == x then
          cell = ("%.6g,%.6g,%.6g"):format(p[2], p[3], p[4])
        end
      end
      row[#row + 1] = cell
    end
    f:write(table.concat(row, ","), "\n")
  end
  f:close()
end

local has_gnuplot = os.execute("command -v gnuplot >/dev/null 2>&1")

-- Draws curve 'c' from its CSV: medians joined by lines, min to max as
-- error bars; a series has the colour of its operation (its name without
-- the side), Python's dashed.
local function plot(c)
  if not has_gnuplot then return end
  local lines = {
    "set terminal pngcairo size 1100,660 noenhanced",
    ("set output '%s/%s.png'"):format(RESULTS, c.name),
    "set datafile separator ','",
    "set logscale xy",
    "set grid",
    c.key or "set key top left",
    ("set title '%s'"):format(c.title),
    ("set xlabel '%s'"):format(c.xlabel),
    ("set ylabel '%s'"):format(c.ylabel),
  }
  local plots, colours = {}, {}
  for i, k in ipairs(c.order) do
    local col = 2 + (i - 1) * 3
    local op = k:gsub("^%a+_", "")
    if op == k then op = "" end
    if not colours[op] then
      colours[#colours + 1] = op
      colours[op] = #colours
    end
    plots[#plots + 1] = ("'%s/%s.csv' using 1:%d:%d:%d with yerrorlines "
      .. "lc %d dt %d pt %d title '%s'"):format(RESULTS, c.name, col,
      col + 1, col + 2, (op == "" and i or colours[op] - 1) % 8 + 1,
      k:match("^python") and 2 or 1, (i - 1) % 7 + 1, c.label[k] or k)
  end
  lines[#lines + 1] = "plot " .. table.concat(plots, ", \\\n  ")
  local p = assert(io.popen("gnuplot", "w"))
  p:write(table.concat(lines, "\n"), "\n")
  p:close()
end

-- Writes, draws and prints the slope of each series of 'c'. 'total', if
-- given, turns a point into the value whose slope is fitted; 'check'
-- returns a target for a series, or nil for one that is for the record.
-- Returns whether every target was met.
local function finish(c, total, check)
  write_csv(c)
  plot(c)
  local ok = true
  for _, k in ipairs(c.order) do
    local pts = {}
    for _, p in ipairs(c.series[k]) do
      pts[#pts + 1] = { p[1], total and total(p[1], p[2]) or p[2] }
    end
    local s = slope(pts)
    local line = ("%-12s slope %-26s %s"):format(c.name, k,
      s and ("%.2f"):format(s) or "-")
    local want = check and check(k, pts)
    if want then
      local met = s and s <= want.max and want.complete
      line = line .. ("  (target <= %.1f%s: %s)"):format(want.max,
        want.complete and "" or ", " .. want.why, met and "PASS" or "MISS")
      B.record(c.name .. " " .. k, met)
      ok = ok and met
    end
    print(line)
  end
  print(("%-12s written to %s/%s.csv%s"):format(c.name, RESULTS, c.name,
    has_gnuplot and (" and .png") or ""))
  return ok
end

-- Pids of the children of process 'pid' (every thread's).
local function children(pid)
  local out = B.output(("cat /proc/%d/task/*/children 2>/dev/null")
                       :format(pid))
  local pids = {}
  for p in out:gmatch("%d+") do pids[#pids + 1] = tonumber(p) end
  return pids
end

local selfpid = B.selfpid

--[[ Start-up and idle memory against the number of workers ]]

-- The workers of this process's executors are the children of its zygote,
-- this process's one child when no executor is starting or stopping (the
-- shell running 'cat' is its child too, and has none).
local function worker_pids()
  local pids = {}
  for _, z in ipairs(children(selfpid())) do
    for _, w in ipairs(children(z)) do pids[#pids + 1] = w end
  end
  return pids
end

local WORKERS = { 1, 4, 16, 64, 256 }
-- Python's pool forks its workers from a process of about 10 MB, 30-80
-- ms each here: 64 of them take 2-5 s a start.
local PY_WORKERS = 16

local function workers_curves()
  local start = curve("start", "executor start to first result, "
    .. "against workers", "workers", "ms")
  local mem = curve("memory", "private memory of the most costly idle "
    .. "worker, against workers", "workers", "KiB")
  start.xcol, mem.xcol = "workers", "workers"
  start.label.ppe_start, mem.label.ppe_memory = "ppe", "ppe"
  start.label.python_start = ("python (1..%d workers)"):format(PY_WORKERS)
  mem.label.python_memory = ("python (1..%d workers)"):format(PY_WORKERS)
  -- The process's first executor forks the zygote the later ones share.
  ppe.executor { max_workers = 1 }:close()
  for _, n in ipairs(WORKERS) do
    -- Several starts a measurement where one is short.
    local k, pk = math.max(1, 32 // n), math.max(1, 4 // n)
    local sides = {
      function()
        local total, kib = 0, 0
        for i = 1, k do
          local t0 = now()
          local ex = ppe.executor { max_workers = n }
          ex:submit(trivial, 1):result()
          total = total + (now() - t0)
          if i == k then
            -- The constructor returns once the first worker is up; the
            -- others come while the first task runs.
            local t1 = now()
            while ex:stats().workers < n and now() - t1 < 60 do
              B.sleep(10)
            end
            B.sleep(200)
            local pids = worker_pids()
            assert(#pids == n, ("%d workers found, %d expected")
                               :format(#pids, n))
            for _, pid in ipairs(pids) do
              kib = math.max(kib, B.private_kib(pid) or 0)
            end
          end
          ex:close()
        end
        return { ppe_start = total * 1e3 / k, ppe_memory = kib }
      end,
    }
    if n <= PY_WORKERS then
      sides[2] = function()
        local out = B.output(("%s workers %d %d"):format(PEER, n, pk))
        local s, m = out:match("start (%S+) memory (%S+)")
        assert(s, "scaling_peer.py workers: " .. out)
        return { python_start = tonumber(s), python_memory = tonumber(m) }
      end
    end
    local meds = point(sides)
    local x = tostring(n)
    record(start, x, n, { "ppe_start", "python_start" },
           { ppe_start = meds.ppe_start, python_start = meds.python_start },
           "ms")
    record(mem, x, n, { "ppe_memory", "python_memory" },
           { ppe_memory = meds.ppe_memory,
             python_memory = meds.python_memory }, "KiB")
  end
  finish(start)
  finish(mem)
end

--[[ Cost per future against the number pending ]]

-- Holds a worker until a byte comes through the FIFO at 'path'. The
-- caller keeps the FIFO open for writing, so the open never blocks; the
-- stream is unbuffered, so each gate takes one byte and leaves the other
-- gate's.
local function gate(path)
  local f = assert(io.open(path, "r"))
  f:setvbuf("no")
  local c = f:read(1)
  f:close()
  return c
end

-- 'callbacks' is a done-callback on every future: ppe's run in ex:poll(),
-- Python's in its pool's thread as results come.
local OPS = { "submit", "result", "as_completed", "wait", "callbacks" }

-- 'n' trivial tasks submitted while both workers are held by a gate, so
-- that all 'n' are pending when the timed part starts; 'each' is called
-- with each future. Returns the futures, the gates, the submit time and
-- when the submits began (moved later by the time the check that none is
-- done took, so that a round timed from there does not count it).
local function held(ex, fifo, n, each)
  local gates = { ex:submit(gate, fifo), ex:submit(gate, fifo) }
  local fs = {}
  local t0 = now()
  for i = 1, n do
    local f = ex:submit(trivial, i)
    if each then each(f) end
    fs[i] = f
  end
  local t = now() - t0
  local early, t1 = 0, now()
  for i = 1, n do if fs[i]:done() then early = early + 1 end end
  t0 = t0 + (now() - t1)
  if early > 0 then
    io.write(("(%d futures done before the gates opened)\n"):format(early))
  end
  return fs, gates, t, t0
end

local function release(w)
  w:write("xx")
  return now()
end

local function closed(gates)
  assert(gates[1]:result(600) and gates[2]:result(600))
end

-- Runs every callback, waiting on ex:fileno() between polls as an event
-- loop would (luv), until 'count' says 'n' have run; without luv it polls
-- without a pause.
local function poll_until(ex, count, n)
  if not B.has_uv then
    while count() < n do ex:poll() end
    return
  end
  local uv = require "luv"
  local watch, tick = uv.new_poll(ex:fileno()), uv.new_timer()
  watch:start("r", function() end)
  -- A timer so that no wait is without end, whatever the descriptor does.
  tick:start(10, 10, function() end)
  local t0 = now()
  while count() < n do
    if ex:poll() == 0 then uv.run("once") end
    assert(now() - t0 < 600, "callbacks did not all run in time")
  end
  watch:stop(); watch:close(); tick:stop(); tick:close()
  uv.run("nowait")
end

-- A round of each operation, 'n' futures; seconds by operation. The
-- futures are let go with the round's frame, before the next round.
local ROUNDS = {
  submit = function(ex, w, fifo, n)
    local fs, gates, t = held(ex, fifo, n)
    local t0 = release(w)
    for i = 1, n do fs[i]:result(600) end
    local out = { submit = t, result = now() - t0 }
    closed(gates)
    return out
  end,
  as_completed = function(ex, w, fifo, n)
    local fs, gates = held(ex, fifo, n)
    local c = 0
    local t0 = release(w)
    for _ in ppe.as_completed(fs, 600) do c = c + 1 end
    local t = now() - t0
    assert(c == n)
    closed(gates)
    return { as_completed = t }
  end,
  wait = function(ex, w, fifo, n)
    local fs, gates = held(ex, fifo, n)
    local t0 = release(w)
    local not_done = fs
    while #not_done > 0 do
      local done
      done, not_done = ppe.wait(not_done, 600, "FIRST_COMPLETED")
      assert(#done > 0, "wait ran out of time")
    end
    local t = now() - t0
    closed(gates)
    return { wait = t }
  end,
  -- Timed from the first submit: adding a callback is part of the cost.
  callbacks = function(ex, w, fifo, n)
    local ran = 0
    local function cb() ran = ran + 1 end
    local fs, gates, _, t0 = held(ex, fifo, n, function(f)
      f:add_done_callback(cb)
    end)
    release(w)
    poll_until(ex, function() return ran end, n)
    local t = now() - t0
    -- The futures were held to here: a future let go may never call back.
    assert(#fs == n)
    closed(gates)
    return { callbacks = t }
  end,
}

-- One round per operation in 'ops' (a set; submit's round times result
-- too); seconds by operation.
local function ppe_round(ex, w, fifo, n, ops)
  local out = {}
  for _, op in ipairs { "submit", "as_completed", "wait", "callbacks" } do
    if ops[op] or (op == "submit" and ops.result) then
      for k, t in pairs(ROUNDS[op](ex, w, fifo, n)) do out[k] = t end
      collectgarbage()
    end
  end
  return out
end

local function futures_curve(dir)
  local c = curve("futures", ("cost per future against futures pending "
    .. "(2 workers, trivial task; python to 10^%d)"):format(PY_MAXEXP),
    "futures pending", "us per future")
  c.xcol = "futures"
  c.key = "set key outside right top"
  local fifo, pyfifo = dir .. "/ppe", dir .. "/python"
  assert(os.execute(("mkfifo %s %s"):format(fifo, pyfifo)))
  local w = assert(io.open(fifo, "r+"))
  w:setvbuf("no")
  local ex = B.warm(ppe.executor { max_workers = 2 }, 2)
  -- Operations still to run, and why those left out were.
  local todo, dropped = {}, {}
  for _, op in ipairs(OPS) do todo[op] = true end
  local keys = {}
  for _, op in ipairs(OPS) do keys[#keys + 1] = "ppe_" .. op end
  for _, op in ipairs(OPS) do
    keys[#keys + 1] = "python_" .. op
    c.label["python_" .. op] = "python " .. op
    c.label["ppe_" .. op] = "ppe " .. op
  end
  c.label.ppe_callbacks = "ppe callbacks, poll"
  c.label.python_wait = ("python wait (to 10^%d)"):format(PY_WAIT_MAXEXP)
  for e = 3, MAXEXP do
    local n = math.tointeger(10 ^ e)
    -- Rounds enough for 10^4 futures a measurement: a round of 10^3 takes
    -- a few ms, which the other processes here could double.
    local rounds = math.max(1, 10000 // n)
    local sides = {
      function()
        local out = {}
        for _ = 1, rounds do
          for op, t in pairs(ppe_round(ex, w, fifo, n, todo)) do
            out["ppe_" .. op] = (out["ppe_" .. op] or 0) + t
          end
        end
        for k, t in pairs(out) do out[k] = t / (n * rounds) * 1e6 end
        return out
      end,
    }
    if e <= PY_MAXEXP then
      sides[2] = function()
        local out = B.output(("%s futures %d %s%s"):format(PEER, n, pyfifo,
          e > PY_WAIT_MAXEXP and " nowait" or ""))
        local vals = {}
        for k, v in out:gmatch("(%a[%w_]*) (%S+)") do
          vals["python_" .. k] = tonumber(v)
        end
        assert(vals.python_callbacks, "scaling_peer.py futures: " .. out)
        return vals
      end
    end
    local meds = point(sides)
    record(c, "10^" .. e, n, keys, meds, "us/future")
    -- What the next size would take at the growth seen from the last one.
    if e < MAXEXP then
      for _, op in ipairs(OPS) do
        local pts = c.series["ppe_" .. op]
        if todo[op] and pts then
          local s = #pts > 1 and slope({ pts[#pts - 1], pts[#pts] }) or 0
          local secs = pts[#pts][2] * n * 1e-6 * 10 ^ (1 + s)
          if secs > LIMIT then
            todo[op] = nil
            dropped[op] = ("10^%d would take about %.0f s a round")
                          :format(e + 1, secs)
            print(("%-12s %s left out from 10^%d: %s"):format(c.name, op,
              e + 1, dropped[op]))
          end
        end
      end
    end
  end
  ex:close()
  w:close()
  -- The fit is of the total time against n: n * us per future.
  return finish(c, function(n, us) return n * us end, function(k, pts)
    local op = k:match("^ppe_(.*)")
    if op ~= "as_completed" and op ~= "wait" and op ~= "callbacks" then
      return nil
    end
    local complete = pts[1] and pts[1][1] == 1000 and
                     pts[#pts][1] == 1000000
    return { max = TARGET, complete = complete,
             why = dropped[op] or ("measured to 10^%d only"):format(MAXEXP) }
  end)
end

--[[ Echo against the message size ]]

local MiB = 1024 * 1024
-- Python's pool echoes 16 MiB at about 100 MB/s on a quiet machine here
-- (10 MB/s on a busy one): larger ones would take it seconds each.
local PY_ECHO_MAX = 16 * MiB

local function echo_curves()
  local rtt = curve("echo_rtt", "echo of a string, round trip against size "
    .. "(python to 16 MiB)", "bytes", "us per echo")
  local rate = curve("echo_rate", "echo of a string, one way throughput "
    .. "against size (python to 16 MiB)", "bytes", "MB/s")
  rtt.xcol, rate.xcol = "bytes", "bytes"
  for _, c in ipairs { rtt, rate } do
    c.label.socketpair = "socketpair floor, C (from 1 KiB)"
    c.label.python = "python (to 16 MiB)"
  end
  local ex = B.warm(ppe.executor { max_workers = 2 }, 2)
  for e = 0, 14 do
    local size = 1 << (2 * e)
    -- 16 MiB a measurement, at least one echo and at most 1,000; Python
    -- a quarter of that, at most 100 (300 us each).
    local n = math.max(1, math.min(1000, 16 * MiB // size))
    local pn = math.max(1, math.min(100, 4 * MiB // size))
    local s = string.rep("x", size)
    local sides = {
      function() return { ppe = B.echo(ex, s, n) } end,
    }
    if SOCKETPAIR then
      sides[#sides + 1] = function()
        return { socketpair = B.run(("%s echo %d %d")
                                    :format(SOCKETPAIR, size, n)) }
      end
    end
    if size <= PY_ECHO_MAX then
      sides[#sides + 1] = function()
        return { python = B.run(("%s bench/peer.py echo %d %d")
                                :format(PY, size, pn)) }
      end
    end
    local meds = point(sides)
    -- The floor prints MB/s to one decimal: below 10 MB/s (messages under
    -- about 1 KiB) it has fewer than three digits, and is left out.
    if meds.socketpair and meds.socketpair[1] < 10 then
      meds.socketpair = nil
    end
    local x = size < 1024 and size .. " B" or size < MiB and
              size // 1024 .. " KiB" or size // MiB .. " MiB"
    record(rate, x, size, { "ppe", "socketpair", "python" }, meds, "MB/s")
    -- A round trip is the size over the one-way rate: MB/s is bytes/us.
    local us = {}
    for k, m in pairs(meds) do
      us[k] = { size / m[3], size / m[2], size / m[1] }
    end
    record(rtt, x, size, { "ppe", "socketpair", "python" }, us, "us")
    s = nil
    collectgarbage()
  end
  ex:close()
  finish(rtt)
  finish(rate)
end

--[[ map against the chunksize ]]

local function map_curve()
  local c = curve("map", "ex:map items/s against chunksize (2 workers, "
    .. "trivial task)", "chunksize", "items/s")
  c.xcol = "chunksize"
  local ex = B.warm(ppe.executor { max_workers = 2 }, 2)
  for e = 0, 4 do
    local chunk = math.tointeger(10 ^ e)
    -- Items enough for about a second a side: ppe at 50,000 per unit of
    -- chunksize up to 10^6, Python at 2,000.
    local n = math.min(1000000, 50000 * chunk)
    local pn = math.min(1000000, 2000 * chunk)
    c.label.ppe = "ppe (5*10^4 to 10^6 items)"
    c.label.python = "python (2*10^3 to 10^6 items)"
    local items = B.ints(n)
    local meds = point({
      function() return { ppe = B.map(ex, items, chunk) } end,
      function()
        return { python = B.run(("%s bench/peer.py map %d %d")
                                :format(PY, pn, chunk)) }
      end,
    })
    record(c, tostring(chunk), chunk, { "ppe", "python" }, meds, "items/s")
    items = nil
    collectgarbage()
  end
  ex:close()
  finish(c)
end

local function main()
  os.execute("mkdir -p " .. RESULTS)
  if not has_gnuplot then
    print("gnuplot not found, so the curves are written as CSV only; "
          .. "run: sudo apt-get install -y gnuplot-nox (as root, make bench "
          .. "installs it through tools/deps.sh bench)")
  end
  local dir = B.output("mktemp -d"):match("%S+")
  local ok, err = pcall(function()
    local t0 = now()
    local function took(what)
      print(("%-12s took %.0f s"):format(what, now() - t0))
      t0 = now()
    end
    workers_curves()
    took("workers")
    futures_curve(dir)
    took("futures")
    echo_curves()
    took("echo")
    map_curve()
    took("map")
  end)
  os.execute("rm -rf " .. dir)
  if not ok then error(err, 0) end
  return B.report("scaling")
end

return main()
