-- Waiting, mapping, callbacks and event-loop integration.
local ppe = require "ppe"
local H = require "helpers"
local now = H.now

-- A shell word.
local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function spin(secs, v)
  local t = os.clock()
  while os.clock() - t < secs do end
  return v
end

-- The counter of an eventfd, from the kernel's own account of it: the
-- descriptor is readable exactly when it is not zero.
local function eventfd_count(fd)
  local f = assert(io.open("/proc/self/fdinfo/" .. fd))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("eventfd%-count:%s*(%x+)"), 16)
end

describe("ppe.wait", function()
  local ex
  before_each(function() ex = H.all_up(ppe.executor { max_workers = 3 }, 3) end)
  after_each(function() ex:close() end)

  it("has the return_when constants", function()
    assert.are.equal("ALL_COMPLETED", ppe.ALL_COMPLETED)
    assert.are.equal("FIRST_COMPLETED", ppe.FIRST_COMPLETED)
    assert.are.equal("FIRST_EXCEPTION", ppe.FIRST_EXCEPTION)
  end)

  it("waits for all by default, arrays in input order", function()
    local fs = {}
    for i = 1, 5 do fs[i] = ex:submit(spin, 0.01 * (6 - i), i) end
    local done, not_done = ppe.wait(fs, 10)
    assert.are.equal(5, #done)
    assert.are.equal(0, #not_done)
    for i = 1, 5 do assert.are.equal(fs[i], done[i]) end
  end)

  it("#novalgrind returns at the first completion with FIRST_COMPLETED",
     function()
    local slow = ex:submit(spin, 1.0, "slow")
    local fast = ex:submit(spin, 0.05, "fast")
    local t0 = now()
    local done, not_done = ppe.wait({ slow, fast }, 10, ppe.FIRST_COMPLETED)
    assert.is_true(now() - t0 < 0.8)
    assert.are.same({ fast }, done)
    assert.are.same({ slow }, not_done)
    assert.are.equal("fast", fast:result())
  end)

  it("returns at the first failure with FIRST_EXCEPTION", function()
    local slow = ex:submit(spin, 1.0)
    local bad = ex:submit(function() error("boom") end)
    local ok = ex:submit(spin, 0.01, 1)
    local t0 = now()
    local done, not_done = ppe.wait({ slow, bad, ok }, 10,
                                    "FIRST_EXCEPTION")
    assert.is_true(now() - t0 < 0.8)
    local where = {}
    for _, f in ipairs(done) do where[f] = "done" end
    for _, f in ipairs(not_done) do where[f] = "not_done" end
    assert.are.equal("done", where[bad])
    assert.are.equal("not_done", where[slow])
    assert.are.equal("RemoteError", bad:exception().kind)
    assert.are.equal(3, #done + #not_done)
    local _ = ok
  end)

  it("splits what is done on a timeout, without raising", function()
    local slow = ex:submit(spin, 1.0)
    local fast = ex:submit(spin, 0.0, 1)
    fast:result(10)
    local done, not_done = ppe.wait({ slow, fast }, 0.1)
    assert.are.same({ fast }, done)
    assert.are.same({ slow }, not_done)
  end)

  it("blocks without burning the CPU", function()
    local f = ex:submit(spin, 0.6)
    local c0 = os.clock()
    ppe.wait({ f }, 10)
    assert.is_true(os.clock() - c0 < 0.15)
  end)

  it("rejects what is not a future and an unknown return_when", function()
    assert.has_error(function() ppe.wait({ 1 }) end)
    local f = ex:submit(spin, 0, 1)
    assert.has_error(function() ppe.wait({ f }, 1, "SOMETIMES") end)
  end)
end)

describe("ppe.as_completed", function()
  local ex
  before_each(function() ex = H.all_up(ppe.executor { max_workers = 3 }, 3) end)
  after_each(function() ex:close() end)

  it("yields in completion order, each future once", function()
    local a = ex:submit(spin, 0.45, "a")
    local b = ex:submit(spin, 0.05, "b")
    local c = ex:submit(spin, 0.25, "c")
    local got = {}
    for f in ppe.as_completed({ a, b, c, a, b }, 10) do
      got[#got + 1] = f:result()
    end
    assert.are.same({ "b", "c", "a" }, got)
  end)

  it("raises TimeoutError when the time runs out", function()
    local slow = ex:submit(spin, 1.0)
    local ok, err = pcall(function()
      for _ in ppe.as_completed({ slow }, 0.1) do end
    end)
    assert.is_false(ok)
    assert.are.equal("TimeoutError", err.kind)
    assert.are.equal("futures not completed within 0.1 s", err.message)
    assert.are.equal(ppe.Error, getmetatable(err))
  end)

  it("yields futures already done at once", function()
    local f = ex:submit(spin, 0, 7)
    f:result(10)
    local n = 0
    for g in ppe.as_completed({ f }, 0) do n = n + g:result() end
    assert.are.equal(7, n)
  end)
end)

-- Every wait on many futures reads a completion list of its own, which the
-- engine fills as tasks complete: a future may be in many at once, and a
-- wait costs what was given and what completed, not a look at every
-- future at each completion.
describe("completion lists", function()
  local ex
  before_each(function() ex = H.all_up(ppe.executor { max_workers = 3 }, 3) end)
  after_each(function() ex:close() end)

  it("yields futures done before as_completed began in the order they " ..
     "completed, not the order given", function()
    local a = ex:submit(spin, 0.45, "a")
    local b = ex:submit(spin, 0.05, "b")
    local c = ex:submit(spin, 0.25, "c")
    assert.are.equal(3, #ppe.wait({ a, b, c }, 10))
    local got = {}
    for f in ppe.as_completed({ a, b, c }, 0) do got[#got + 1] = f:result() end
    assert.are.same({ "b", "c", "a" }, got)
  end)

  it("serves two as_completed, a wait and callbacks on the same futures " ..
     "at once, each every future once", function()
    local fs, called = {}, {}
    for i = 1, 12 do
      fs[i] = ex:submit(spin, 0.01 * ((i * 7) % 5), i)
      fs[i]:add_done_callback(function(f)
        local v = f:result()  -- (may run the other callbacks first)
        called[#called + 1] = v
      end)
    end
    local one, two = ppe.as_completed(fs, 10), ppe.as_completed(fs, 10)
    local got1, got2 = {}, {}
    for _ = 1, 12 do
      got1[#got1 + 1] = one():result()
      local done = ppe.wait(fs, 10, "FIRST_COMPLETED")
      assert.is_true(#done >= 1)
      got2[#got2 + 1] = two():result()
    end
    assert.is_nil(one())
    assert.is_nil(two())
    assert.are.same(got1, got2)  -- both in the order of completion
    local done, not_done = ppe.wait(fs, 10)
    assert.are.equal(12, #done)
    assert.are.equal(0, #not_done)
    ex:poll()
    for _, seen in ipairs { got1, called } do
      table.sort(seen)
      assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }, seen)
    end
  end)

  it("keeps a future given twice to wait in both places", function()
    local f = ex:submit(spin, 0.05, 1)
    local g = ex:submit(spin, 0, 2)
    local done, not_done = ppe.wait({ f, g, f }, 10)
    assert.are.same({ f, g, f }, done)
    assert.are.equal(0, #not_done)
    done = ppe.wait({ f, f }, 10, "FIRST_COMPLETED")
    assert.are.same({ f, f }, done)
    assert.are.same({ {}, {} }, { ppe.wait({}, 0, "FIRST_COMPLETED") })
  end)

  it("lets go of an as_completed left early: its futures go on", function()
    local fs = {}
    for i = 1, 20 do fs[i] = ex:submit(spin, 0.01, i) end
    for _ = 1, 50 do  -- each left after its first future
      local next_done = ppe.as_completed(fs, 10)
      assert.is_number(next_done():result())
    end
    collectgarbage()
    collectgarbage()
    local sum = 0
    for f in ppe.as_completed(fs, 10) do sum = sum + f:result() end
    assert.are.equal(210, sum)
  end)

  it("#novalgrind collects 100,000 futures through as_completed, wait and " ..
     "poll, each once", function()
    local n = 100000
    local function many()
      local fs = {}
      for i = 1, n do fs[i] = ex:submit(spin, 0, i) end
      return fs
    end
    local seen, k = {}, 0
    for f in ppe.as_completed(many(), 60) do
      local v = f:result()
      assert.is_nil(seen[v])
      seen[v], k = true, k + 1
    end
    assert.are.equal(n, k)
    local left, rounds, sum = many(), 0, 0
    repeat
      local done
      done, left = ppe.wait(left, 60, "FIRST_COMPLETED")
      for _, f in ipairs(done) do sum = sum + f:result() end
      rounds = rounds + 1
    until #left == 0 or rounds > n
    assert.are.equal(n * (n + 1) / 2, sum)
    local fs, called = many(), 0
    for _, f in ipairs(fs) do
      f:add_done_callback(function() called = called + 1 end)
    end
    local t0 = now()
    while called < n and now() - t0 < 60 do ex:poll() end
    assert.are.equal(n, called)
  end)
end)

describe("ex:map", function()
  local ex
  -- Both workers up: a drain timed below must not wait for a fork.
  before_each(function() ex = H.all_up(ppe.executor { max_workers = 2 }, 2) end)
  after_each(function() ex:close() end)

  local function square(x) return x * x end

  it("yields index and every value, in input order", function()
    local got = {}
    for i, v, w in ex:map(function(x) return x * x, -x end, { 3, 1, 2 }) do
      got[#got + 1] = { i, v, w }
    end
    assert.are.same({ { 1, 9, -3 }, { 2, 1, -1 }, { 3, 4, -2 } }, got)
  end)

  it("sends chunksize items per message", function()
    -- A worker that serves one message and leaves: each chunk has a
    -- process of its own, and its items all run there.
    local one = ppe.executor { max_workers = 2, max_tasks_per_child = 1 }
    local items, pids, distinct = {}, {}, {}
    for i = 1, 100 do items[i] = i end
    for i, pid in one:map(H.pid, items, { chunksize = 10 }) do
      pids[i] = pid
      distinct[pid] = true
    end
    one:close()
    assert.are.equal(100, #pids)
    assert.are.equal(10, H.count(distinct))
    for i = 1, 100 do
      assert.are.equal(pids[10 * math.floor((i - 1) / 10) + 1], pids[i])
    end
    local before = ex:stats().completed
    for i, v in ex:map(square, items, { chunksize = 10 }) do
      assert.are.equal(i * i, v)
    end
    assert.are.equal(100, ex:stats().completed - before)  -- (items)
  end)

  it("yields in completion order with ordered = false", function()
    local got = {}
    for i in ex:map(spin, { { 0.5, 1 }, { 0.05, 2 }, { 0.1, 3 } },
                    { ordered = false, unpack = true }) do
      got[#got + 1] = i
    end
    assert.are.equal(1, got[3])
  end)

  -- Each chunk is found as it completes, not by going over every chunk
  -- outstanding: that took time in the square of their number (30,000
  -- took 20 s). The caller's CPU for 30,000 items against 3,000 tells the
  -- two apart on a machine of any speed (10-20 against 100).
  it("#novalgrind yields many chunks with ordered = false, each once",
     function()
    local function run(count)
      local items, seen, n = {}, {}, 0
      for i = 1, count do items[i] = i end
      local t0 = os.clock()
      for i, v in ex:map(function(x) return -x end, items,
                         { ordered = false }) do
        assert.are.equal(-i, v)
        assert.is_nil(seen[i])
        seen[i] = true
        n = n + 1
      end
      assert.are.equal(count, n)
      return os.clock() - t0
    end
    run(1000)  -- warm
    local small, large = run(3000), run(30000)
    assert.is_true(large < 40 * small + 0.05, ("3,000 items took %.3f s " ..
      "of CPU, 30,000 took %.3f s"):format(small, large))
  end)

  it("lets go of an unordered map left early, and of what it holds",
     function()
    local items = {}
    for i = 1, 200 do items[i] = i end
    local n = 0
    for _ in ex:map(function(x) return x end, items, { ordered = false }) do
      n = n + 1
      if n == 3 then break end
    end
    collectgarbage()
    collectgarbage()
    local s = 0
    for _, v in ex:map(function(x) return x end, items,
                       { ordered = false }) do
      s = s + v
    end
    assert.are.equal(200 * 201 / 2, s)
  end)

  -- A chunk whose items all return one value travels without counts; one
  -- with any other item (none, two, an error) keeps them: both kinds of
  -- chunk, one after the other, must give every item exactly its values.
  it("gives each item exactly its values, one or not", function()
    local function f(x)
      if x == 7 then return end
      if x == 8 then return x, "two" end
      if x == 9 then error("nine", 0) end
      return x * 10
    end
    local items = {}
    for k = 1, 12 do items[k] = k end
    local seen = {}
    local it = ex:map(f, items, { chunksize = 3 })
    for k = 1, 12 do
      local r = H.pack(pcall(it))
      seen[k] = r
    end
    assert.is_nil((it()))
    for k = 1, 12 do
      local r = seen[k]
      if k == 9 then
        assert.is_false(r[1])
        assert.are.equal("RemoteError", r[2].kind)
        assert.are.equal("nine", r[2].value)
      elseif k == 7 then
        assert.are.same({ true, 7, n = 2 }, r)
      elseif k == 8 then
        assert.are.same({ true, 8, 8, "two", n = 4 }, r)
      else
        assert.are.same({ true, k, k * 10, n = 3 }, r)
      end
    end
  end)

  it("spreads table items with unpack = true", function()
    local got = {}
    for i, s in ex:map(function(a, b) return a .. b end,
                       { { "x", "y" }, { "p", "q" } }, { unpack = true }) do
      got[i] = s
    end
    assert.are.same({ "xy", "pq" }, got)
  end)

  it("takes an iterator function", function()
    local k = 0
    local function gen() k = k + 1; if k <= 50 then return k end end
    local sum, count = 0, 0
    for _, v in ex:map(square, gen, { chunksize = 7 }) do
      sum = sum + v
      count = count + 1
    end
    assert.are.equal(50, count)
    assert.are.equal(42925, sum)
  end)

  it("raises a task's error when its item is reached", function()
    local seen = {}
    local ok, err = pcall(function()
      for _, v in ex:map(function(x)
          if x == 3 then error("bad item " .. x) end
          return x
        end, { 1, 2, 3, 4 }, { chunksize = 2 }) do
        seen[#seen + 1] = v
      end
    end)
    assert.is_false(ok)
    assert.are.same({ 1, 2 }, seen)
    assert.are.equal("RemoteError", err.kind)
    assert.truthy(err.message:find("bad item 3", 1, true))
    assert.truthy(err.traceback:find("stack traceback", 1, true))
    assert.is_true(err.pid > 0)
  end)

  it("raises TimeoutError past its timeout", function()
    local ok, err = pcall(function()
      for _ in ex:map(spin, { 1.0, 1.0 }, { timeout = 0.1 }) do end
    end)
    assert.is_false(ok)
    assert.are.equal("TimeoutError", err.kind)
    assert.are.equal("map did not complete within 0.1 s", err.message)
  end)

  it("keeps memory bounded on an endless iterator with buffersize", function()
    -- Under valgrind a quarter as many: 64 bytes kept per item would still
    -- show, as 960 KiB.
    local N = H.traced() and 20000 or 80000
    local i = 0
    local function endless() i = i + 1; return i end
    local n, mem1 = 0, nil
    for _, v in ex:map(square, endless, { chunksize = 50,
                                          buffersize = 500 }) do
      n = n + 1
      assert.are.equal(n * n, v)
      if n == N / 4 then collectgarbage(); mem1 = collectgarbage("count") end
      if n == N then break end
    end
    collectgarbage()
    local mem2 = collectgarbage("count")
    assert.are.equal(N, n)
    assert.is_true(i <= N + 500)  -- never read far ahead
    assert.is_true(mem2 - mem1 < 1024, "grew " .. (mem2 - mem1) .. " KiB")
  end)

  -- 200 items of 40 ms on 2 workers take 4 s: an executor that drains in
  -- under 2 s had most of them cancelled, even on a busy machine.
  local function drain_time()
    local t0 = now()
    ex:shutdown()
    return now() - t0
  end
  local function slow_items()
    local items = {}
    for k = 1, 200 do items[k] = 0.04 end
    return items
  end

  if _VERSION == "Lua 5.4" then
    it("cancels what has not started when the loop is left (Lua 5.4)", function()
      for _ in ex:map(spin, slow_items()) do break end  -- luacheck: ignore 512
      assert.is_true(drain_time() < 2)
    end)
  end

  it("cancels what has not started on it:close()", function()
    local m = ex:map(spin, slow_items())
    assert.are.equal(1, select(1, m()))
    m:close()
    assert.is_nil((m()))  -- a closed map is at its end
    assert.is_true(drain_time() < 2)
  end)

  it("cancels what has not started when the iterator is collected", function()
    local m = ex:map(spin, slow_items())
    m()
    m = nil  -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    assert.is_true(drain_time() < 2)
  end)

  it("checks its options", function()
    for _, opts in ipairs { { chunksize = 0 }, { chunksize = 1.5 },
                            { buffersize = 0 }, { bogus = 1 },
                            { timeout = -1 }, { ordered = 1 } } do
      assert.has_error(function() ex:map(square, { 1 }, opts) end)
    end
    assert.has_error(function() ex:map(square, 42) end)
  end)

  it("raises ShutdownError after shutdown", function()
    ex:shutdown()
    local ok, err = pcall(ex.map, ex, square, { 1 })
    assert.is_false(ok)
    assert.are.equal("ShutdownError", err.kind)
  end)
end)

describe("done-callbacks, poll and fileno", function()
  local ex
  before_each(function() ex = ppe.executor { max_workers = 2 } end)
  after_each(function() ex:close() end)

  it("runs at once on a future already done", function()
    local f = ex:submit(spin, 0, 5)
    f:result(10)
    local got
    f:add_done_callback(function(g) got = g:result() end)
    assert.are.equal(5, got)
  end)

  it("runs only inside a ppe call, never from a thread", function()
    local f = ex:submit(spin, 0.05, 1)
    local n = 0
    f:add_done_callback(function() n = n + 1 end)
    local t0 = now()
    while not f:done() and now() - t0 < 10 do end  -- done() runs none
    spin(0.05)
    assert.are.equal(0, n)
    assert.are.equal(1, ex:poll())
    assert.are.equal(1, n)
    assert.are.equal(0, ex:poll())
  end)

  it("runs inside result, wait and submit", function()
    local order = {}
    local a = ex:submit(spin, 0, "a")
    local b = ex:submit(spin, 0.1, "b")
    a:add_done_callback(function(f) order[#order + 1] = f:result() end)
    b:add_done_callback(function(f) order[#order + 1] = f:result() end)
    b:result(10)
    assert.are.same({ "a", "b" }, order)
  end)

  it("runs every callback of a future, in order, with the future", function()
    local f = ex:submit(spin, 0.05, 1)
    local seen = {}
    for k = 1, 3 do
      f:add_done_callback(function(g)
        assert.are.equal(f, g)
        seen[#seen + 1] = k
      end)
    end
    f:wait(10)
    assert.are.same({ 1, 2, 3 }, seen)
  end)

  it("run from a callback, runs the others due, in completion order",
     function()
    local one = ppe.executor { max_workers = 1 }  -- completes in order
    local fs, index, order, inner = {}, {}, {}, nil
    one:submit(spin, 0.3)  -- none completes while they are submitted
    for i = 1, 100 do
      fs[i] = one:submit(spin, 0, i)
      index[fs[i]] = i
      fs[i]:add_done_callback(function(f)
        order[#order + 1] = index[f]
        if f == fs[1] then inner = one:poll() end
      end)
    end
    local t0 = now()
    while not fs[100]:done() and now() - t0 < 10 do end  -- runs none
    assert.are.equal(1, one:poll())
    assert.are.equal(99, inner)
    local want = {}
    for i = 1, 100 do want[i] = i end
    assert.are.same(want, order)
    one:close()
  end)

  it("swallows a callback's error and goes on", function()
    local f = ex:submit(spin, 0.05, 1)
    local after = false
    f:add_done_callback(function() error({ "not a string" }) end)
    f:add_done_callback(function() after = true end)
    assert.are.equal(1, f:result(10))
    assert.is_true(after)
  end)

  -- An error value whose __tostring raises (or returns no string) cannot
  -- be printed: it is reported all the same, and breaks nothing else.
  local unprintable = {
    setmetatable({}, { __tostring = function() error("no text") end }),
    setmetatable({}, { __tostring = function() return {} end }),
  }
  for k, bad in ipairs(unprintable) do
    for _, how in ipairs { "result", "wait", "poll", "as_completed",
                           "add_done_callback" } do
      it("an unprintable callback error (" .. k .. ") escapes not from " ..
         how .. ", and every other callback runs", function()
        local fs = { ex:submit(spin, 0, 1), ex:submit(spin, 0, 2) }
        local ran = {}
        if how == "add_done_callback" then
          for i = 1, 2 do assert.are.equal(i, fs[i]:result(10)) end
        end
        for i = 1, 2 do
          fs[i]:add_done_callback(function() error(bad) end)
          fs[i]:add_done_callback(function(f)
            local v = f:result()  -- (runs the other future's callbacks)
            ran[#ran + 1] = v
          end)
        end
        if how == "result" then
          assert.are.equal(2, fs[2]:result(10))
          assert.are.equal(1, fs[1]:result(10))
        elseif how == "wait" then
          local done = ppe.wait(fs, 10)
          assert.are.equal(2, #done)
        elseif how == "poll" then
          assert.is_true(fs[1]:wait(10) and fs[2]:wait(10))
          spin(0.02)
          ex:poll()
        elseif how == "as_completed" then
          local n = 0
          for _ in ppe.as_completed(fs, 10) do n = n + 1 end
          assert.are.equal(2, n)
        end
        table.sort(ran)
        assert.are.same({ 1, 2 }, ran)
      end)
    end
  end

  -- What a program prints whose one future has the done-callback 'cb'
  -- (Lua source) that raises: its result and the warning.
  local function callback_warning(cb)
    local script = ("package.cpath = %q .. ';' .. package.cpath\n")
      :format(package.cpath:match("^[^;]+")) .. [[
      local ppe = require "ppe"
      local ex = ppe.executor { max_workers = 1 }
      local f = ex:submit("string.rep", "x", 2)
      f:add_done_callback(]] .. cb .. [[)
      io.stdout:write(f:result(10), "\n")
      ex:close()
    ]]
    local h = assert(io.popen(H.interpreter() .. " -e " .. quote(script) ..
                              " 2>&1"))
    local out = h:read("*a")
    h:close()
    assert.matches("xx\n", out)
    return out
  end

  it("reports an unprintable callback error by its type", function()
    local out = callback_warning([[function()
        error(setmetatable({}, { __tostring = function() error("no") end }))
      end]])
    assert.matches("ppe: error in a done%-callback: table value " ..
                   "%(its __tostring raised: .*no%)", out)
  end)

  -- By default, as Python's pool logs it: warnings off (5.4's default)
  -- do not hide it.
  it("reports a callback's error on stderr, by default", function()
    local out = callback_warning('function() error("cb failed", 0) end')
    assert.matches("^ppe: error in a done%-callback: cb failed$",
                   out:gsub("xx\n", ""):match("^[^\n]*"))
    assert.equal(2, select(2, out:gsub("\n", "")))  -- nothing more
  end)

  it("runs the callbacks of a cancelled future", function()
    local busy = ex:submit(spin, 0.3)
    local busy2 = ex:submit(spin, 0.3)
    local queued = ex:submit(spin, 0, 1)
    local state
    queued:add_done_callback(function(f) state = f:state() end)
    assert.is_true(queued:cancel())
    assert.are.equal("cancelled", state)
    busy:wait(10); busy2:wait(10)
  end)

  it("makes fileno readable while completions await poll", function()
    local fd = ex:fileno()
    assert.is_true(H.is_integer(fd))
    assert.are.equal(0, eventfd_count(fd))
    local f = ex:submit(spin, 0, 1)
    f:wait(10)
    spin(0.02)
    assert.is_true(eventfd_count(fd) > 0)
    ex:poll()
    assert.are.equal(0, eventfd_count(fd))
  end)

  it("poll never blocks", function()
    ex:submit(spin, 1.0)
    local t0 = now()
    assert.are.equal(0, ex:poll())
    assert.is_true(now() - t0 < 0.05)
  end)
end)

describe("a wait under way", function()
  -- One worker: a short task whose callback shuts the executor down with
  -- cancel_futures, and behind it 20 tasks of 0.5 s, the last of which
  -- is still queued then. 'how' waits on the last one; it must return
  -- once the callback has cancelled it, not after the 10 s the queue
  -- would take.
  local function cancelled_meanwhile(how)
    local ex = ppe.executor { max_workers = 1 }
    local first = ex:submit(spin, 0.2, 1)
    local fs = {}
    for i = 1, 20 do fs[i] = ex:submit(spin, 0.5, i) end
    first:add_done_callback(function()
      ex:shutdown { wait = false, cancel_futures = true }
    end)
    local t0 = now()
    local ok, e = pcall(how, fs[20], ex)
    local took = now() - t0
    ex:close()
    assert.is_true(fs[20]:cancelled())
    assert.is_true(took < 5, ("it took %.1f s"):format(took))
    return ok, e
  end

  it("runs the callbacks of futures that complete meanwhile: result",
     function()
    local ok, e = cancelled_meanwhile(function(f) return f:result(30) end)
    assert.is_false(ok)
    assert.are.equal("CancelledError", e.kind)
  end)

  it("runs the callbacks of futures that complete meanwhile: wait",
     function()
    local done
    assert.is_true(cancelled_meanwhile(function(f)
      done = ppe.wait({ f }, 30)
    end))
    assert.are.equal(1, #done)
  end)

  it("runs the callbacks of futures that complete meanwhile: "
     .. "as_completed", function()
    local n = 0
    assert.is_true(cancelled_meanwhile(function(f)
      for _ in ppe.as_completed({ f }, 30) do n = n + 1 end
    end))
    assert.are.equal(1, n)
  end)

  for _, ordered in ipairs({ true, false }) do
    it("runs the callbacks of futures that complete meanwhile: map, "
       .. "ordered = " .. tostring(ordered), function()
      local ex = ppe.executor { max_workers = 1 }
      local first = ex:submit(spin, 0.2, 1)
      first:add_done_callback(function()
        ex:shutdown { wait = false, cancel_futures = true }
      end)
      local items = {}
      for i = 1, 20 do items[i] = i end
      local t0, seen = now(), 0
      local ok, e = pcall(function()
        for _ in ex:map(function(i) return spin(0.5, i) end, items,
                        { ordered = ordered, timeout = 30 }) do
          seen = seen + 1
        end
      end)
      local took = now() - t0
      ex:close()
      assert.is_false(ok)
      assert.are.equal("CancelledError", e.kind)
      assert.is_true(seen < 20)
      assert.is_true(took < 5, ("it took %.1f s"):format(took))
    end)
  end

  it("ends when a callback cancels what it waits for", function()
    local ex = ppe.executor { max_workers = 1 }
    local first = ex:submit(spin, 0.2, 1)
    local fs = {}
    for i = 1, 20 do fs[i] = ex:submit(spin, 0.5, i) end
    first:add_done_callback(function() fs[20]:cancel() end)
    local t0 = now()
    local done = ppe.wait({ fs[20] }, 30)
    local took = now() - t0
    for i = 1, 19 do fs[i]:cancel() end
    ex:close()
    assert.are.equal(1, #done)
    assert.is_true(fs[20]:cancelled())
    assert.is_true(took < 5, ("it took %.1f s"):format(took))
  end)

  -- A task done (by its state, which runs no callbacks) whose callback
  -- is still due: the next wait runs it first.
  local function done_with_callback(ex, cb)
    local g = ex:submit(spin, 0, 0)
    g:add_done_callback(cb)
    assert.is_true(H.wait_until(function() return g:done() end, 30))
    return g
  end

  it("answers for the futures given, whatever a callback does to the " ..
     "array", function()
    local ex = ppe.executor { max_workers = 1 }
    local fs = { ex:submit(spin, 0, 1), ex:submit(spin, 0, 2) }
    local given = { fs[1], fs[2] }
    done_with_callback(ex, function()
      fs[1], fs[2] = "not a future", nil
    end)
    local done, not_done = ppe.wait(fs, 30)
    ex:close()
    assert.are.same(given, done)
    assert.are.same({}, not_done)
  end)

  it("ends an as_completed that a callback ran to its end", function()
    local ex = ppe.executor { max_workers = 2 }
    local f = ex:submit(spin, 0.1, 1)
    local it = ppe.as_completed({ f }, 30)
    local inner = 0
    done_with_callback(ex, function()
      for _ in it do inner = inner + 1 end
    end)
    local outer = it()
    ex:close()
    assert.are.equal(1, inner)
    assert.is_nil(outer)
  end)

  -- The map's task starts, then lets the callback's task end, and waits
  -- for that callback (run by the map's own wait: nothing else runs one
  -- then) to write the file 'go'.
  for _, ordered in ipairs({ true, false }) do
    it("refuses to step or close a map from a callback run in its own " ..
       "wait, ordered = " .. tostring(ordered), function()
      local started, go = os.tmpname(), os.tmpname()
      os.remove(started)
      os.remove(go)
      local function await_file(name)
        local t = os.time() + 30
        while os.time() < t do
          local f = io.open(name)
          if f then f:close() return true end
        end
        return false
      end
      local ex = ppe.executor { max_workers = 2 }
      local g = ex:submit(await_file, started)
      local it = ex:map(function(i)
        io.open(started, "w"):close()
        assert(await_file(go))
        return i
      end, { 1 }, { ordered = ordered, timeout = 60 })
      local errs = {}
      g:add_done_callback(function()
        errs[1] = select(2, pcall(it))
        errs[2] = select(2, pcall(it.close, it))
        io.open(go, "w"):close()
      end)
      local i, v = it()
      local after = { it() }
      ex:close()
      os.remove(started)
      os.remove(go)
      assert.are.same({ 1, 1 }, { i, v })
      assert.are.same({}, after)
      assert.matches("its own wait", tostring(errs[1]))
      assert.matches("its own wait", tostring(errs[2]))
    end)
  end
end)

describe("a host library's fork handlers", function()
  it("do not reach the workers (libuv's atfork re-creates fds)",
     H.scoped(function(scope)
    local ok = pcall(require, "luv")
    if not ok then return pending("lua-luv not installed") end
    local ex = scope(ppe.executor { max_workers = 2 })
    local fs = {}
    for i = 1, 6 do fs[i] = ex:submit(function(x) return x + 1 end, i) end
    for i = 1, 6 do assert.are.equal(i + 1, fs[i]:result(10)) end
    assert.are.equal(0, ex:stats().restarts)
  end))
end)
