-- The executor and its futures: workers, results, errors, worker deaths,
-- cancellation, timeouts, scheduling, big messages, shutdown, what is left
-- behind, options and stats. Every executor is closed and every wait has a
-- timeout, so that a broken ppe fails these specs instead of hanging them.
local ppe = require "ppe"
local H = require "helpers"

local ME = H.pid()
local MiB = 1024 * 1024

-- The task module spec/fixtures/mytasks.lua as "mytasks": the path must be
-- in place before an executor is created for its workers to see it.
local FIXTURES_PATH = "./spec/fixtures/?.lua;"

local function with_fixtures(fn)
  local saved = package.path
  package.path = FIXTURES_PATH .. saved
  local ok, err = pcall(fn)
  package.path = saved
  if not ok then error(err, 0) end
end

-- A task: sleeps 'secs' (no CPU), then returns the worker's pid and id.
local function nap_whoami(secs)
  os.execute("sleep " .. secs)
  local f = io.open("/proc/self/stat")
  local pid = f:read("*n")
  f:close()
  return pid, require("ppe").worker_id()
end

-- A task that never returns by itself.
local function forever()
  while true do end
end

-- True if the shell command succeeded: os.execute returns true from Lua
-- 5.2 on, the status 0 in Lua 5.1 and LuaJIT.
local function sh(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end


describe("workers", function()
  it("are processes other than the caller, one per worker",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2 })
    local fs = {}
    for i = 1, 4 do fs[i] = ex:submit(nap_whoami, 0.2) end
    local pids, ids = {}, {}
    for i = 1, 4 do
      local pid, id = fs[i]:result(10)
      assert.is_true(H.is_integer(pid), tostring(pid))
      assert.are_not.equal(ME, pid)
      assert.is_true(H.is_integer(id), tostring(id))
      assert.is_true(id >= 1 and id <= 2, "worker_id " .. tostring(id))
      -- A worker keeps its id.
      if pids[pid] then assert.are.equal(pids[pid], id) end
      pids[pid], ids[id] = id, pid
    end
    assert.are.equal(2, H.count(pids))
    assert.are.equal(2, H.count(ids))
  end))

  it("have no worker_id in the caller", H.scoped(function(scope)
    assert.is_nil(ppe.worker_id())
    local ex = scope(ppe.executor { max_workers = 1 })
    assert.is_nil(ppe.worker_id())
    local pid, id = ex:submit(H.whoami):result(10)
    assert.are_not.equal(ME, pid)
    assert.are.equal(1, id)
  end))
end)

describe("results", function()
  local ex
  setup(function()
    with_fixtures(function()
      ex = ppe.executor {
        max_workers = 2,
        -- A global table of tasks, reached by a global path.
        initializer = function()
          jobs = { double = function(x) return 2 * x end }
        end,
      }
    end)
  end)
  teardown(function() ex:close() end)

  it("keep every returned value, trailing nils included", function()
    local f = ex:submit(function() return 1, nil, "x", nil, nil end)
    local n = select("#", f:result(10))
    assert.are.equal(5, n)
    local a, b, c, d, e = f:result(10)
    assert.are.equal(1, a)
    assert.is_nil(b)
    assert.are.equal("x", c)
    assert.is_nil(d)
    assert.is_nil(e)
  end)

  it("may be nothing at all", function()
    local f = ex:submit(function() end)
    assert.are.equal(0, select("#", f:result(10)))
  end)

  it("keep the argument count exactly, trailing nils included", function()
    local f = ex:submit(function(...) return select("#", ...), ... end,
                        nil, 2, nil, nil)
    assert.are.equal(5, select("#", f:result(10)))
    assert.are.equal(4, (f:result(10)))
  end)

  it("keep many arguments and binary strings", function()
    local bin = "a\0b\255\0" .. string.rep("\0", 100)
    local f = ex:submit(function(...) return select("#", ...), select(20, ...),
                                             (select(21, ...)) end,
                        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                        17, 18, 19, 20, bin)
    local n, twenty, b = f:result(10)
    assert.are.equal(21, n)
    assert.are.equal(20, twenty)
    assert.are.equal(bin, b)
  end)

  it("keep the number subtypes", function()
    -- x - x % 1 is the floor division x // 1, which Lua 5.1 and 5.2 lack:
    -- of a float, both give a float. -z is -0.0, as H.NEG_ZERO is.
    local f = ex:submit(function(i, x)
      local z = 0.0
      return i, x, i + 0.0, x - x % 1, 2^53, -z
    end, 3, 3.0)
    local i, x, xf, xi, big, nz = f:result(10)
    assert.are.equal(3, i)
    assert.are.equal(3.0, x)
    assert.are.equal(3, xf)
    assert.are.equal(3, xi)
    assert.are.equal(2^53, big)
    assert.are.equal(H.float_bits(H.NEG_ZERO), H.float_bits(nz))
    -- Lua 5.3 and later have the integer and float subtypes, and integers
    -- beyond 2^53.
    if math.type then
      assert.are.equal("integer", math.type(i))
      assert.are.equal("float", math.type(x))
      assert.are.equal("float", math.type(xf))
      assert.are.equal("float", math.type(xi))
      assert.are.equal("float", math.type(big))
      local g = ex:submit(function()
        return math.maxinteger, math.mininteger
      end)
      local hi, lo = g:result(10)
      assert.are.equal(math.maxinteger, hi)
      assert.are.equal(math.mininteger, lo)
      assert.are.equal("integer", math.type(hi))
    end
    local inf, ninf, nan = ex:submit(function() return 1/0, -1/0, 0/0 end)
                             :result(10)
    assert.are.equal(math.huge, inf)
    assert.are.equal(-math.huge, ninf)
    assert.is_true(nan ~= nan)
  end)

  -- Where numbers are doubles (Lua 5.1, 5.2, LuaJIT), an integral one of
  -- magnitude up to 2^53 travels in the integer encoding and any other as
  -- a float; from Lua 5.3 on all of these are floats. Either way each comes
  -- back as the same double, bit for bit, and a float stays a float.
  it("keep doubles bit for bit, around 2^53, at -0.0, inf and NaN", function()
    local nan = 0 / 0
    local xs = { 2^53 - 1, 2^53, -2^53, 2^53 + 2, 2^60, -2^63, 2^64, 1e300,
                 1.5, -2.5, 2^-1074, H.NEG_ZERO, 1 / 0, -1 / 0, nan, -nan }
    local got = H.pack(ex:submit(function(...) return ... end, H.unpack(xs))
                         :result(10))
    assert.are.equal(#xs, got.n)
    for k = 1, #xs do
      if xs[k] == xs[k] then
        assert.are.equal(xs[k], got[k])
      else
        assert.is_true(got[k] ~= got[k], "NaN " .. k .. " came back as "
                       .. tostring(got[k]))
      end
      -- LuaJIT gives each NaN that C code pushes (lua_pushnumber) its one
      -- canonical bit pattern: there a NaN comes back a NaN, but with the
      -- sign and payload of that pattern.
      if xs[k] == xs[k] or not jit then
        assert.are.equal(H.float_bits(xs[k]), H.float_bits(got[k]),
                         "value " .. k .. ": " .. tostring(xs[k]))
      end
      if math.type then
        assert.are.equal("float", math.type(got[k]), tostring(xs[k]))
      end
    end
  end)

  it("round-trip tables, nested, shared and cyclic", function()
    local shared = { "s" }
    local t = { 1, 2.5, "three", { deep = { deeper = true } }, a = shared,
                b = shared, [10] = false }
    t.self = t
    local r = ex:submit(function(x) return x end, t):result(10)
    assert.are_not.equal(t, r)
    assert.are.equal(1, r[1])
    assert.are.equal(2.5, r[2])
    if math.type then assert.are.equal("float", math.type(r[2])) end
    assert.are.equal("three", r[3])
    assert.is_true(r[4].deep.deeper)
    assert.is_false(r[10])
    assert.are.equal("s", r.a[1])
    assert.are.equal(r.a, r.b)
    assert.are.equal(r, r.self)
  end)

  it("come from a function sent by value with its upvalues", function()
    local k = 10
    local scale = { by = 3 }
    local function sq(x) return x * x end
    local f = ex:submit(function(x) return sq(x) * scale.by + k end, 4)
    assert.are.equal(58, f:result(10))
  end)

  it("see an upvalue's value at each submit", function()
    local k = 1
    local function get() return k end
    local a = ex:submit(get)
    k = 2
    local b = ex:submit(get)
    k = 3
    assert.are.equal(1, a:result(10))
    assert.are.equal(2, b:result(10))
    assert.are.equal(3, ex:submit(get):result(10))
  end)

  it("see each closure's own upvalue, however hot the function "
     .. "(LuaJIT compiles it)", function()
    local fs = {}
    for i = 1, 400 do fs[i] = ex:submit(function() return i end) end
    for i = 1, 400 do assert.are.equal(i, fs[i]:result(10)) end
  end)

  it("come from a dotted name in the standard library", function()
    assert.are.equal("ababab", ex:submit("string.rep", "ab", 3):result(10))
  end)

  it("come from a C function reachable by name", function()
    assert.are.equal("xyxy", ex:submit(string.rep, "xy", 2):result(10))
    assert.are.equal(7, ex:submit(math.max, 3, 7, 5):result(10))
  end)

  it("come from a global path made by the initializer", function()
    assert.are.equal(42, ex:submit("jobs.double", 21):result(10))
  end)

  it("come from a module found on the creator's package.path", function()
    assert.are.equal(144, ex:submit("mytasks.square", 12):result(10))
    local r = ex:submit("mytasks.square", 1.5):result(10)
    assert.are.equal(2.25, r)
  end)

  it("come from a field path inside a module", function()
    assert.are.equal(27, ex:submit("mytasks.nested.cube", 3):result(10))
  end)

  it("fail with a RemoteError naming an unknown function", function()
    local f = ex:submit("no_such_module.no_such_fn", 1)
    local err = H.expect_error("RemoteError", f.result, f, 10)
    assert.is_truthy(
      tostring(err.message):find("no_such_module.no_such_fn", 1, true),
      tostring(err))
    local g = ex:submit("string.no_such_fn")
    local err2 = H.expect_error("RemoteError", g.result, g, 10)
    assert.is_truthy(tostring(err2.message):find("string.no_such_fn", 1, true),
                     tostring(err2))
  end)

  it("are reported by tostring(future)", function()
    local f = ex:submit(function() return 1 end)
    f:result(10)
    assert.matches("^ppe%.future: 0x%x+ %(finished%)$", tostring(f))
  end)
end)

describe("package.path", function()
  it("is the one of the executor's creation", H.scoped(function(scope)
    local dir = os.tmpname()
    os.remove(dir)
    assert.is_true(sh("mkdir " .. dir))
    local fh = assert(io.open(dir .. "/ppe_late_mod.lua", "w"))
    fh:write("return { f = function() return 'late' end }\n")
    fh:close()
    local saved = package.path
    local ex = scope(ppe.executor { max_workers = 1 })
    package.path = dir .. "/?.lua;" .. saved
    local ok, err = pcall(function()
      local f = ex:submit("ppe_late_mod.f")
      return f:result(10)
    end)
    package.path = saved
    os.remove(dir .. "/ppe_late_mod.lua")
    os.remove(dir)
    assert.is_false(ok, "a module added to package.path after creation "
                    .. "was found by the worker")
    assert.are.equal("RemoteError", err.kind, tostring(err))
  end))
end)

describe("a task's error", function()
  local ex, wpid
  setup(function()
    ex = ppe.executor { max_workers = 1 }
    wpid = ex:submit(H.pid):result(10)
  end)
  teardown(function() ex:close() end)

  it("is a RemoteError with the message, traceback and pid", function()
    local f = ex:submit(function() error("boom") end)
    local err = H.expect_error("RemoteError", f.result, f, 10)
    assert.are.equal("string", type(err.message))
    assert.is_truthy(err.message:find("boom", 1, true), err.message)
    assert.are.equal("string", type(err.traceback))
    assert.is_truthy(err.traceback:find("stack traceback", 1, true),
                     err.traceback)
    assert.are.equal(wpid, err.pid)
    assert.is_truthy(err.value and tostring(err.value):find("boom", 1, true))
    local s = tostring(err)
    assert.are.equal("RemoteError: ", s:sub(1, 13))
    assert.is_truthy(s:find("boom", 1, true), s)
  end)

  it("is raised the same every time result() is called", function()
    local f = ex:submit(function() error("again") end)
    local e1 = H.expect_error("RemoteError", f.result, f, 10)
    local e2 = H.expect_error("RemoteError", f.result, f, 10)
    assert.are.equal(e1.message, e2.message)
    assert.are.equal("failed", f:state())
    assert.is_true(f:done())
  end)

  it("keeps a table error value", function()
    local f = ex:submit(function() error({ code = 42, why = "bad" }) end)
    local err = H.expect_error("RemoteError", f.result, f, 10)
    assert.are.equal("table", type(err.value))
    assert.are.equal(42, err.value.code)
    assert.are.equal("bad", err.value.why)
  end)

  it("may be nil", function()
    local f = ex:submit(function() error(nil) end)
    local err = H.expect_error("RemoteError", f.result, f, 10)
    assert.is_nil(err.value)
    assert.are.equal("string", type(err.message))
  end)

  it("may be a number", function()
    -- Level 0: Lua 5.1 and 5.2 would make error(12) the string
    -- "file:line: 12", as they do for a string.
    local f = ex:submit(function() error(12, 0) end)
    local err = H.expect_error("RemoteError", f.result, f, 10)
    assert.are.equal(12, err.value)
    assert.is_true(H.is_integer(err.value))
  end)

  it("is what exception() returns, and wait() does not raise it", function()
    local f = ex:submit(function() error("quiet") end)
    assert.is_true(f:wait(10))
    local err = f:exception(10)
    assert.are.equal(ppe.Error, getmetatable(err))
    assert.are.equal("RemoteError", err.kind)
    assert.is_truthy(err.message:find("quiet", 1, true))
  end)

  it("leaves the worker and the executor working", function()
    assert.are.equal(wpid, ex:submit(H.pid):result(10))
  end)
end)

describe("an unsendable value", function()
  -- The unsendable value is most often a thread. Its function is a Lua
  -- one, as Lua 5.1's coroutine.create will take no other.
  it("as a result fails the future with a SerializationError; the worker "
     .. "survives", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local pid = ex:submit(H.pid):result(10)
    local f = ex:submit(function()
      return 1, coroutine.create(function() end)
    end)
    local err = H.expect_error("SerializationError", f.result, f, 10)
    assert.is_truthy(tostring(err.message):find("thread", 1, true),
                     tostring(err))
    assert.are.equal("failed", f:state())
    assert.are.equal(pid, ex:submit(H.pid):result(10))
    assert.are.equal(9, ex:submit(function(x) return x * x end, 3):result(10))
  end))

  -- The contract's clarifications: "A result or error value that cannot be sent
  -- fails its future with SerializationError; the worker survives."
  it("as an error value fails the future with a SerializationError; the "
     .. "worker survives", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local pid = ex:submit(H.pid):result(10)
    local g = ex:submit(function() error(coroutine.create(function() end)) end)
    local err = H.expect_error("SerializationError", g.result, g, 10)
    assert.is_nil(err.value)
    assert.are.equal(pid, ex:submit(H.pid):result(10))
  end))

  it("as an argument raises in the caller at once", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    H.expect_error("SerializationError", ex.submit, ex, print,
                   1, coroutine.create(function() end))
    H.expect_error("SerializationError", ex.submit, ex, print,
                   { conn = io.stdout })
    -- A C function not reachable by name cannot be sent either.
    H.expect_error("SerializationError", ex.submit, ex,
                   string.gmatch("a", "a"))
    -- An upvalue is sent like an argument.
    local co = coroutine.create(function() end)
    H.expect_error("SerializationError", ex.submit, ex,
                   function() return co end)
    assert.are.equal(5, ex:submit(function() return 5 end):result(10))
  end))
end)

describe("a worker that dies", function()
  it("by os.exit(3) fails its task with WorkerDied, exit_code 3",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local pid = ex:submit(H.pid):result(10)
    local f = ex:submit(function() os.exit(3) end)
    local err = H.expect_error("WorkerDied", f.result, f, 10)
    assert.are.equal(3, err.exit_code)
    assert.is_nil(err.signal)
    assert.are.equal(pid, err.pid)
    assert.are.equal("failed", f:state())
    -- The executor goes on with a new worker.
    local pid2 = ex:submit(H.pid):result(10)
    assert.are_not.equal(pid, pid2)
    assert.are_not.equal(ME, pid2)
    assert.is_true(ex:stats().restarts >= 1)
  end))

  it("by SIGKILL fails its task with WorkerDied, signal 9",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local f = ex:submit(function()
      local fh = io.open("/proc/self/stat")
      local pid = fh:read("*n")
      fh:close()
      os.execute("kill -9 " .. pid)
      os.execute("sleep 5")
      return "survived"
    end)
    local err = H.expect_error("WorkerDied", f.result, f, 10)
    assert.are.equal(9, err.signal)
    assert.is_true(err.exit_code == nil, tostring(err.exit_code))
    assert.is_true(H.is_integer(err.pid), tostring(err.pid))
    assert.are_not.equal(ME, err.pid)
    assert.are.equal(4, ex:submit(function() return 2 + 2 end):result(10))
    assert.is_true(ex:stats().restarts >= 1)
  end))

  it("loses nothing else that was pending", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local a = ex:submit(function() os.exit(1) end)
    local fs = {}
    for i = 1, 5 do fs[i] = ex:submit(function(x) return x * 10 end, i) end
    H.expect_error("WorkerDied", a.result, a, 10)
    for i = 1, 5 do assert.are.equal(i * 10, fs[i]:result(10)) end
  end))
end)

describe("task_timeout", function()
  it("stops a task that runs too long with TaskTimeout",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1, task_timeout = 0.5 })
    local f = ex:submit(forever)
    local t0 = H.now()
    local err = H.expect_error("TaskTimeout", f.result, f, 10)
    local dt = H.now() - t0
    assert.is_true(dt >= 0.4 and dt < 3, "TaskTimeout after " .. dt .. " s")
    assert.is_true(H.is_integer(err.pid), tostring(err.pid))
    assert.are_not.equal(ME, err.pid)
    assert.is_true(H.wait_until(function() return not H.alive(err.pid) end, 5),
                   "the timed-out worker is still alive")
    -- The next task runs on a new worker.
    local pid = ex:submit(H.pid):result(10)
    assert.are_not.equal(err.pid, pid)
  end))

  -- The task below goes straight from submit to an idle worker, while the
  -- I/O thread sleeps with no deadline to watch.
  it("stops a task submitted to an executor that sat idle",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1, task_timeout = 0.5 })
    local first = ex:submit(H.pid):result(10)
    os.execute("sleep 1.5")
    local f = ex:submit(forever)
    local err = H.expect_error("TaskTimeout", f.result, f, 10)
    assert.are.equal(first, err.pid)
  end))

  it("leaves alone a task that finishes in time", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1, task_timeout = 2 })
    assert.are.equal("ok", ex:submit(H.spin, 0.1, "ok"):result(10))
  end))
end)

describe("max_tasks_per_child", function()
  it("replaces a worker after that many tasks", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1, max_tasks_per_child = 2 })
    local seq, seen = {}, {}
    for i = 1, 6 do
      seq[i] = ex:submit(H.pid):result(10)
      seen[seq[i]] = true
    end
    assert.are.equal(3, H.count(seen))
    for i = 1, 5, 2 do
      assert.are.equal(seq[i], seq[i + 1])
      assert.are_not.equal(ME, seq[i])
    end
  end))

  it("runs the initializer again in each replacement", H.scoped(function(scope)
    local ex = scope(ppe.executor {
      max_workers = 1, max_tasks_per_child = 1,
      initializer = function() INITS = (INITS or 0) + 1 end,
    })
    local seen = {}
    for _ = 1, 3 do
      local inits, pid, id = ex:submit(function()
        local f = io.open("/proc/self/stat")
        local pid = f:read("*n")
        f:close()
        return INITS, pid, require("ppe").worker_id()
      end):result(10)
      assert.are.equal(1, inits)
      assert.are.equal(1, id)
      assert.is_nil(seen[pid])
      seen[pid] = true
    end
    assert.is_true(ex:stats().restarts >= 2)
  end))

  it("replaces workers after a shutdown while work is queued, which it "
     .. "waits for", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2, max_tasks_per_child = 5 })
    local fs, pids = {}, {}
    for i = 1, 30 do
      fs[i] = ex:submit(function(x)
        local t = os.clock()
        while os.clock() - t < 0.005 do end
        local f = io.open("/proc/self/stat")
        local pid = f:read("*n")
        f:close()
        return x, pid
      end, i)
    end
    ex:shutdown { wait = true }
    for i = 1, 30 do
      local x, pid = fs[i]:result(0)
      assert.are.equal(i, x)
      pids[pid] = (pids[pid] or 0) + 1
    end
    for pid, n in pairs(pids) do
      assert.is_true(n <= 5, pid .. " ran " .. n)
    end
    assert.are.equal(0, ex:stats().workers)
  end))

  it("replaces no worker after a shutdown that cancelled what was queued",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1, max_tasks_per_child = 1 })
    local fs = {}
    for i = 1, 5 do fs[i] = ex:submit(H.spin, 0.3, i) end
    H.spin(0.1)  -- the first is running
    ex:shutdown { wait = true, cancel_futures = true }
    assert.are.equal(1, fs[1]:result(0))
    for i = 2, 5 do assert.is_true(fs[i]:cancelled(), "task " .. i) end
    assert.are.equal(0, ex:stats().restarts)
  end))
end)

describe("the initializer", function()
  it("runs in each worker before its tasks", H.scoped(function(scope)
    local ex = scope(ppe.executor {
      max_workers = 2,
      initializer = function(tag, n) WORKER_TAG = tag .. n end,
      initargs = { "w", 7 },
    })
    local fs = {}
    for i = 1, 6 do
      fs[i] = ex:submit(function(s)
        os.execute("sleep " .. s)
        return WORKER_TAG
      end, 0.05)
    end
    for i = 1, 6 do assert.are.equal("w7", fs[i]:result(10)) end
  end))

  it("may be given by name", function()
    with_fixtures(H.scoped(function(scope)
      local ex = scope(ppe.executor {
        max_workers = 1, initializer = "mytasks.init", initargs = { "named" },
      })
      assert.are.equal("named", ex:submit("mytasks.get_init"):result(10))
    end))
  end)

  it("that raises breaks the executor: BrokenExecutor, caused by the "
     .. "RemoteError", H.scoped(function(scope)
    local ex = scope(ppe.executor {
      max_workers = 1,
      initializer = function() error("init failed") end,
    })
    -- The pool may already be known broken when submit is called: then
    -- submit raises the BrokenExecutor itself, as Python's does.
    local ok, f = pcall(ex.submit, ex, function() return 1 end)
    local err
    if ok then
      err = H.expect_error("BrokenExecutor", f.result, f, 10)
    else
      err = f
      assert.are.equal("BrokenExecutor", err.kind, tostring(err))
    end
    assert.are.equal(ppe.Error, getmetatable(err))
    assert.are.equal("table", type(err.cause), tostring(err))
    assert.are.equal("RemoteError", err.cause.kind)
    assert.is_truthy(tostring(err.cause.message):find("init failed", 1, true),
                     tostring(err.cause))
  end))
end)

describe("cancel", function()
  it("cancels a task that has not started", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local a = ex:submit(H.sleep_pid, 1.0)
    local b = ex:submit(function() return "b" end)
    assert.is_true(H.wait_until(function() return a:running() end, 5))
    assert.are.equal("running", a:state())
    assert.are.equal("pending", b:state())
    assert.is_false(b:running())
    assert.is_true(b:cancel())
    assert.are.equal("cancelled", b:state())
    assert.is_true(b:cancelled())
    assert.is_true(b:done())
    assert.is_true(b:cancel())  -- again: still cancelled
    H.expect_error("CancelledError", b.result, b, 10)
    H.expect_error("CancelledError", b.exception, b, 10)
    assert.is_true(b:wait(0))
    -- The running one cannot be cancelled, and finishes.
    assert.is_false(a:cancel())
    assert.is_false(a:cancelled())
    assert.are_not.equal(ME, a:result(10))
    assert.is_false(a:cancel())
    assert.are.equal("finished", a:state())
  end))

  it("of everything queued by shutdown{cancel_futures=true}",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local a = ex:submit(H.sleep_pid, 0.5)
    local queued = {}
    for i = 1, 4 do queued[i] = ex:submit(function() return i end) end
    assert.is_true(H.wait_until(function() return a:running() end, 5))
    ex:shutdown { cancel_futures = true }
    assert.are_not.equal(ME, a:result(10))
    for i = 1, 4 do
      assert.are.equal("cancelled", queued[i]:state())
      H.expect_error("CancelledError", queued[i].result, queued[i], 10)
    end
  end))
end)

describe("waiting with a timeout", function()
  it("raises TimeoutError from result() and leaves the future as it was",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local f = ex:submit(H.sleep_pid, 0.8)
    local t0 = H.now()
    local err = H.expect_error("TimeoutError", f.result, f, 0.05)
    assert.equal("the future is not done within 0.05 s", err.message)
    assert.is_true(H.now() - t0 < 0.5)
    local st = f:state()
    assert.is_true(st == "pending" or st == "running", st)
    assert.is_false(f:done())
    assert.is_false(f:wait(0.05))
    H.expect_error("TimeoutError", f.exception, f, 0.05)
    assert.is_false(f:done())
    -- It still finishes.
    assert.is_true(f:wait(10))
    assert.are_not.equal(ME, f:result(10))
    assert.is_nil(f:exception())
    assert.is_nil(f:exception(10))
    assert.are.equal("finished", f:state())
  end))
end)

describe("scheduling", function()
  it("#novalgrind balances short tasks around a long one",
     H.scoped(function(scope)
    require "fixtures.bad_util"  -- the workers find evil.so
    local ex = scope(ppe.executor { max_workers = 2 })
    -- Let both workers come up so that only the tasks are timed.
    ex:submit(H.pid):result(10)
    ex:submit(H.pid):result(10)
    -- The sleep is the worker's own (no shell, which the sanitizers'
    -- preloaded runtimes would slow down at each start).
    local function nap(secs) require("evil").sleep(secs) end
    local t0 = H.now()
    local fs = { ex:submit(nap, 1.0) }
    for i = 2, 11 do fs[i] = ex:submit(nap, 0.1) end
    for i = 1, 11 do fs[i]:result(10) end
    local dt = H.now() - t0
    assert.is_true(dt < 1.45, "11 tasks (1.0 s + 10 x 0.1 s) on 2 workers "
                   .. "took " .. dt .. " s")
  end))

  it("takes back the tasks sent behind a long one that has not started "
     .. "them, for another worker", H.scoped(function(scope)
    require "fixtures.bad_util"  -- the workers find evil.so
    local ex = scope(ppe.executor { max_workers = 2 })
    -- Sleeps in the worker itself, which takes no longer under valgrind.
    local function nap(secs)
      require("evil").sleep(secs)
      local f = io.open("/proc/self/stat")
      local pid = f:read("*n")
      f:close()
      return pid
    end
    -- Trivial tasks first: the pipelines are deep when the long one comes.
    for _ = 1, 50 do ex:submit(H.pid):result(10) end
    -- Long enough for the other worker to run every short one first.
    local long = ex:submit(nap, 2.0)
    local fs, handed = {}, {}
    for i = 1, 8 do fs[i] = ex:submit(nap, 0.1) end
    for i = 1, 8 do handed[i] = fs[i]:running() end
    -- A task handed to a worker is running, as the contract says, even
    -- once taken back and waiting for the other worker (from when that
    -- worker has run what it was handed, 0.4 s or so, to 0.8 s).
    os.execute("sleep 0.55")
    for i = 1, 8 do
      if handed[i] then
        assert.are_not.equal("pending", fs[i]:state(), "task " .. i)
        assert.is_false(fs[i]:cancel(), "task " .. i)
      end
    end
    local st = ex:stats()
    assert.are.equal(50 + 9, st.pending + st.running + st.completed)
    local other
    for i = 1, 8 do
      local pid = fs[i]:result(10)
      other = other or pid
      assert.are.equal(other, pid, "task " .. i .. " ran elsewhere")
    end
    assert.are_not.equal(other, long:result(10))
    assert.are.equal(0, ex:stats().restarts)
  end))

  it("takes back tasks in an executor made by a task, each run once",
     H.scoped(function(scope)
    require "fixtures.bad_util"  -- the workers find evil.so
    local outer = scope(ppe.executor { max_workers = 1 })
    -- The outer worker has served tasks before it makes its executor,
    -- whose workers are forked from it.
    for _ = 1, 5 do outer:submit(H.pid):result(10) end
    local out = outer:submit(function()
      local inner = require("ppe").executor { max_workers = 2 }
      local function task(i, secs)
        if secs > 0 then require("evil").sleep(secs) end
        return i
      end
      for _ = 1, 50 do inner:submit(task, 0, 0):result(10) end
      local fs = { inner:submit(task, 0, 0.5) }
      for i = 1, 30 do fs[i + 1] = inner:submit(task, i, 0) end
      local wrong = 0
      for i = 0, 30 do
        local ok, v = pcall(fs[i + 1].result, fs[i + 1], 10)
        if not ok or v ~= i then wrong = wrong + 1 end
      end
      local restarts = inner:stats().restarts
      inner:close()
      return wrong, restarts
    end)
    local wrong, restarts = out:result(30)
    assert.are.equal(0, wrong)
    assert.are.equal(0, restarts)
  end))

  it("#novalgrind runs tasks while the caller computes in pure Lua",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2 })
    local fs = {}
    for i = 1, 4 do fs[i] = ex:submit(H.sleep_pid, 0.2) end
    -- A busy loop with no ppe call: the tasks must still be dispatched and
    -- their results collected in the background.
    local t = os.clock()
    while os.clock() - t < 1.0 do end
    for i = 1, 4 do
      assert.is_true(fs[i]:done(), "task " .. i .. " is " .. fs[i]:state())
    end
    for i = 1, 4 do assert.are_not.equal(ME, fs[i]:result(10)) end
  end))
end)

describe("a burst of submits", function()
  -- Submits that find the I/O thread busy with replies are left beside the
  -- queue for it rather than wait: they must still run in their order, and
  -- each once.
  it("runs every task once, in the order submitted", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local n = 20000
    local fs = {}
    for i = 1, n do
      fs[i] = ex:submit(function(x)
        COUNT = (COUNT or 0) + 1
        return COUNT, x
      end, i)
    end
    local last = 0
    for i = 1, n do
      local c, x = fs[i]:result(60)
      assert.are.equal(i, x)
      assert.is_true(c > last, "task " .. i .. " ran " .. c .. "th")
      last = c
    end
    assert.are.equal(n, last)
    local st = ex:stats()
    assert.are.same({ n, 0, 0 }, { st.completed, st.pending, st.running })
  end))
end)

describe("replies of every size in a burst", function()
  -- Small replies come back through a ring in shared memory, larger ones
  -- (over 16 KiB) and those the ring has no room for through the channel,
  -- the largest (over 4 MiB) as a reference to the worker's arena: mixed,
  -- each must still reach its own future, whole.
  it("reach their futures whole, in any mix", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local sizes = { 10, 20000, 0, 70000, 3, 16360, 16400, 5000, 9000,
                    12000, 1, 40 }
    local fs, want = {}, {}
    for i = 1, 400 do
      local n = i % 97 == 0 and 5 * MiB or sizes[i % #sizes + 1]
      want[i] = n
      fs[i] = ex:submit(function(k, c)
        return string.rep(string.char(c), k), k
      end, n, i % 256)
    end
    for i = 1, #fs do
      local s, k = fs[i]:result(60)
      assert.are.equal(want[i], k)
      assert.is_true(s == string.rep(string.char(i % 256), k),
                     "reply " .. i .. " is not its own")
    end
  end))
end)

describe("big messages", function()
  it("carry a 64 MiB argument and a 64 MiB result", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local s = string.rep("ab", 32 * MiB)
    local f = ex:submit(function(x) return x:upper(), #x end, s)
    local r, n = f:result(60)
    assert.are.equal(64 * MiB, n)
    assert.are.equal(64 * MiB, #r)
    assert.are.equal("AB", r:sub(1, 2))
    assert.are.equal("AB", r:sub(-2))
    assert.are.equal("ABAB", r:sub(32 * MiB + 1, 32 * MiB + 4))
    assert.is_nil(r:find("[^AB]"))
    -- Unchanged in the caller.
    assert.are.equal("ab", s:sub(-2))
  end))

  -- The caller's state gets its big blocks from ppe once ppe is loaded: a
  -- block made before must still go back to Lua's own allocator, blocks
  -- grown, shrunk and alive at exit must stay whole, and exit must not
  -- find the allocator unloaded with ppe.so.
  it("leave the caller's own big blocks whole, before and after require",
     function()
    local dir = assert(H.searchpath("ppe", package.cpath)):gsub("ppe%.so$", "")
    local script = ([[
      local before = string.rep("b", 6 * 1048576)
      package.cpath = %q .. "?.so;" .. package.cpath
      local ppe = require "ppe"
      local ex = ppe.executor { max_workers = 1 }
      local t = {}
      for i = 1, 700000 do t[i] = i end
      local s = ex:submit(function(x) return x .. "e" end, before):result(60)
      local grown = ppe.decode(ppe.encode(s)) .. "x"
      local sum = 0
      for i = 1, #t, 1000 do sum = sum + t[i] end
      before, t = nil, nil
      collectgarbage()
      local small = grown:sub(1, 3) .. grown:sub(-3)
      ex:close()
      KEEP = { s, grown, string.rep("k", 5 * 1048576) }
      io.write(#s, " ", #grown, " ", small, " ", sum, "\n")
    ]]):format(dir)
    local h = assert(io.popen(H.interpreter() .. " -e '" ..
                              script:gsub("'", "'\\''") .. "' 2>&1"))
    local out = h:read("*a")
    local ok, how, code = h:close()
    assert.are.equal("6291457 6291458 bbbbex 244650700\n", out)
    if how ~= nil then  -- Lua 5.1's close says nothing of the status
      assert.are.same({ true, "exit", 0 }, { ok, how, code })
    end
  end)
end)

describe("shutdown", function()
  it("makes submit raise a ShutdownError, and is idempotent",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local f = ex:submit(function() return 1 end)
    ex:shutdown()
    assert.are.equal(1, f:result(10))
    H.expect_error("ShutdownError", ex.submit, ex, function() return 2 end)
    ex:shutdown()
    ex:shutdown { wait = false }
    ex:close()
    ex:close()
    H.expect_error("ShutdownError", ex.submit, ex, function() return 3 end)
  end))

  it("waits for pending work by default", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2 })
    local fs = {}
    for i = 1, 4 do fs[i] = ex:submit(H.sleep_pid, 0.1) end
    ex:shutdown()
    for i = 1, 4 do
      assert.is_true(fs[i]:done())
      assert.are.equal("finished", fs[i]:state())
    end
  end))

  it("returns at once with wait=false; the work still finishes",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local f = ex:submit(H.spin, 0.5, "late")
    local g = ex:submit(function() return "queued" end)
    local t0 = H.now()
    ex:shutdown { wait = false }
    assert.is_true(H.now() - t0 < 0.3, "shutdown{wait=false} blocked")
    H.expect_error("ShutdownError", ex.submit, ex, function() end)
    assert.are.equal("late", f:result(10))
    assert.are.equal("queued", g:result(10))
  end))

  it("#novalgrind by the garbage collector alone reaps the workers", function()
    H.zygote_up(ppe)
    local before = H.children(ME)
    local pids = {}
    do
      local ex = H.all_up(ppe.executor { max_workers = 2 }, 2)
      local a, b = ex:submit(H.sleep_pid, 0.2), ex:submit(H.sleep_pid, 0.2)
      pids[1], pids[2] = a:result(10), b:result(10)
      a, b, ex = nil, nil, nil  -- luacheck: ignore (let the GC see them go)
    end
    assert.are_not.equal(pids[1], pids[2])
    collectgarbage()
    collectgarbage()
    for _, pid in ipairs(pids) do
      assert.is_false(H.exists(pid),
                      "worker " .. pid .. " outlived its executor")
    end
    for pid, comm in pairs(H.children(ME)) do
      assert.is_truthy(before[pid], "child " .. pid .. " (" .. comm .. ") left")
    end
  end)
end)

describe("futures and the garbage collector", function()
  -- A future has no finalizer: its task is let go by a sweep once per
  -- collection cycle, at the second that finds the future gone.
  -- Tables have finalizers from Lua 5.2 on.
  local it_gc = _VERSION ~= "Lua 5.1" and it or pending
  it_gc("held by an object with a finalizer, they still work in that "
        .. "finalizer", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local got
    do
      local f = ex:submit(function() return 7 end)
      local g = ex:submit(function() return "late" end)
      assert.is_true(f:wait(10))
      setmetatable({ f = f, g = g }, { __gc = function(o)
        got = { o.f:result(), o.g:result(10), o.g:cancel() }
      end })
      -- A cycle while the object lives: the collector's own bookkeeping
      -- is then newer than the object, and its finalizer runs first.
      collectgarbage()
    end
    collectgarbage()
    collectgarbage()
    assert.are.same({ 7, "late", false }, got)
  end))

  it("dropped, their tasks still run; kept, they work across many cycles",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2 })
    local path = os.tmpname()
    local modes = { false }
    if _VERSION == "Lua 5.4" then modes = { "incremental", "generational" } end
    local n = 0
    for _, mode in ipairs(modes) do
      if mode then collectgarbage(mode) end
      local keep = ex:submit(function() return "kept" end)
      for _ = 1, 5 do
        for i = 1, 1000 do
          n = n + 1
          ex:submit(function(p, k)
            local f = io.open(p, "a")
            f:write(k, "\n")
            f:close()
          end, path, i)
        end
        collectgarbage()
        assert.are.equal("kept", keep:result(10))
      end
    end
    if _VERSION == "Lua 5.4" then collectgarbage("incremental") end
    ex:close()
    local _, lines = H.read_file(path):gsub("\n", "")
    os.remove(path)
    assert.are.equal(n, lines)
  end))
end)

describe("after close", function()
  -- The state's close runs ppe's finalizers last, when a Lua (LuaJIT
  -- does) may have unloaded C libraries already.
  it("a program that ends with an executor, futures and a map alive exits "
     .. "with status 0", function()
    local script = ([[
      package.cpath = %q
      local ppe = require "ppe"
      EX = ppe.executor { max_workers = 2 }
      F = EX:submit(function(x) return x * 2 end, 21)
      G = EX:submit(function() return 1 end)
      M = EX:map(function(x) return x end, { 1, 2, 3 })
      io.write(F:result(10), "\n")
    ]]):format(package.cpath)
    local h = assert(io.popen(H.interpreter() .. " -e '" ..
                              script:gsub("'", "'\\''") ..
                              "' 2>&1; echo exit=$?"))
    local out = h:read("*a")
    h:close()
    assert.are.equal("42\nexit=0\n", out)
  end)

  it("#novalgrind no process, zombie or descriptor is left", function()
    H.zygote_up(ppe)
    local fds = H.fds(ME)
    local before = H.children(ME)
    local pids = {}
    H.scoped(function(scope)
      local ex = scope(ppe.executor { max_workers = 3 })
      local fs = {}
      for i = 1, 6 do fs[i] = ex:submit(H.sleep_pid, 0.2) end
      for i = 1, 6 do pids[fs[i]:result(10)] = true end
    end)()
    assert.are.equal(3, H.count(pids))
    for pid in pairs(pids) do
      assert.is_false(H.exists(pid), "worker " .. pid .. " outlived close()")
    end
    for pid, comm in pairs(H.children(ME)) do
      assert.is_truthy(before[pid], "child " .. pid .. " (" .. comm .. ") left")
    end
    local after = H.fds(ME)
    assert.are.equal(H.count(fds), H.count(after),
                     "descriptors left open: " .. H.new_fds(fds, after))
  end)

  it("submit raises a ShutdownError; shutdown and close do nothing", function()
    local ex = ppe.executor { max_workers = 1 }
    ex:close()
    H.expect_error("ShutdownError", ex.submit, ex, print)
    ex:shutdown()
    ex:close()
  end)
end)

describe("options", function()
  local function bad(opts, name)
    local ok, ex = pcall(ppe.executor, opts)
    if ok then ex:close() end
    assert.is_false(ok, "accepted " .. name)
    assert.is_truthy(tostring(ex):find(name, 1, true),
                     "error does not name '" .. name .. "': " .. tostring(ex))
  end

  it("unknown keys raise, naming the key", function()
    bad({ max_worker = 2 }, "max_worker")
    bad({ max_workers = 1, timeout = 1 }, "timeout")
  end)

  it("max_workers must be a positive integer", function()
    for _, v in ipairs { 0, -1, 1.5, "2", true, 0.0 / 0.0 } do
      bad({ max_workers = v }, "max_workers")
    end
  end)

  it("task_timeout must be positive seconds", function()
    for _, v in ipairs { 0, -1, "1", -0.5 } do
      bad({ max_workers = 1, task_timeout = v }, "task_timeout")
    end
  end)

  it("max_tasks_per_child must be a positive integer", function()
    for _, v in ipairs { 0, -2, 1.5, "1" } do
      bad({ max_workers = 1, max_tasks_per_child = v }, "max_tasks_per_child")
    end
  end)

  it("the initializer must be callable, initargs a table", function()
    bad({ max_workers = 1, initializer = 42 }, "initializer")
    bad({ max_workers = 1, initializer = print, initargs = 5 }, "initargs")
  end)

  -- The zygote forks them one after another: 128 take it tens of ms,
  -- while the constructor waits for the first alone.
  it("#novalgrind returns once the first worker is forked, the others "
     .. "following", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 128 })
    local up = ex:stats().workers
    assert.is_true(up >= 1 and up < 128, "workers up: " .. up)
    assert.are.equal("abab", ex:submit(string.rep, "ab", 2):result(30))
    assert.is_true(H.wait_until(function()
      return ex:stats().workers == 128
    end, 30), "workers: " .. ex:stats().workers)
  end))

  -- The others are asked for once the first answers, or a second task
  -- comes, or shortly after the constructor, whichever is first.
  it("are all started, though the one task runs on and no other comes",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 3 })
    local f = ex:submit(H.sleep_pid, 2)
    assert.is_true(H.wait_until(function()
      return ex:stats().workers == 3
    end, 1.5), "workers: " .. ex:stats().workers)
    assert.is_false(f:done())
    local fs, pids = {}, {}
    for i = 1, 4 do fs[i] = ex:submit(H.sleep_pid, 0.2) end
    for i = 1, 4 do pids[fs[i]:result(10)] = true end
    assert.are.equal(2, H.count(pids))
    assert.is_nil(pids[f:result(10)])
  end))

  it("default to cpu_count() workers", H.scoped(function(scope)
    local n = ppe.cpu_count()
    assert.is_true(H.is_integer(n), tostring(n))
    assert.is_true(n >= 1)
    local ex = scope(ppe.executor())
    -- The first is forked when the constructor returns, the others soon.
    assert.are.equal(n, #ex:stats().per_worker)
    assert.is_true(H.wait_until(function()
      return ex:stats().workers == n
    end, 30), "workers: " .. ex:stats().workers)
  end))

  it("submit needs something callable", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    assert.is_false(pcall(ex.submit, ex, 42))
    assert.is_false(pcall(ex.submit, ex))
    assert.is_false(pcall(ex.submit, ex, {}))
    assert.are.equal(1, ex:submit(function() return 1 end):result(10))
  end))
end)

describe("stats", function()
  it("counts completed and failed futures", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2 })
    -- Both start at once; the second may still be forking.
    assert.is_true(H.wait_until(function()
      return ex:stats().workers == 2
    end, 30))
    local st = ex:stats()
    assert.are.equal(0, st.completed)
    assert.are.equal(0, st.failed)
    assert.are.equal(0, st.restarts)
    local fs = {}
    for i = 1, 7 do fs[i] = ex:submit(function(x) return x end, i) end
    for i = 8, 10 do fs[i] = ex:submit(function() error("no") end) end
    for i = 1, 10 do assert.is_true(fs[i]:wait(10)) end
    st = ex:stats()
    -- completed counts every future in a final state, failed ones too.
    assert.are.equal(10, st.completed)
    assert.are.equal(3, st.failed)
    assert.are.equal(2, st.workers)
    assert.are.equal(0, st.pending)
    assert.are.equal(0, st.running)
    assert.are.equal(0, st.restarts)
  end))

  it("counts pending and running futures", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local a = ex:submit(H.sleep_pid, 0.5)
    local b = ex:submit(function() return 1 end)
    local c = ex:submit(function() return 2 end)
    assert.is_true(H.wait_until(function() return a:running() end, 5))
    local st = ex:stats()
    assert.are.equal(1, st.running)
    assert.are.equal(2, st.pending)
    assert.is_true(c:cancel())
    b:result(10)
    st = ex:stats()
    assert.are.equal(3, st.completed)
    assert.are.equal(0, st.pending)
    assert.are.equal(0, st.running)
  end))
end)

describe("terminate_workers and kill_workers", function()
  for _, how in ipairs { "terminate_workers", "kill_workers" } do
    it(how .. " stops the workers and fails unfinished futures",
       H.scoped(function(scope)
      local ex = scope(ppe.executor { max_workers = 2 })
      local fs = {}
      for i = 1, 4 do fs[i] = ex:submit(forever) end
      assert.is_true(H.wait_until(function() return fs[1]:running() end, 5))
      local t0 = H.now()
      ex[how](ex)
      for i = 1, 4 do
        assert.is_true(fs[i]:wait(10))
        assert.is_false(fs[i]:state() == "finished", fs[i]:state())
      end
      -- The tasks never end: any bound shows it did not wait for them.
      -- Under valgrind, each worker's end (its leak check) takes seconds.
      local bound = (os.getenv("LD_PRELOAD") or ""):find("vgpreload") and 15
                    or 3
      assert.is_true(H.now() - t0 < bound, how .. " waited for the tasks")
      H.expect_error("ShutdownError", ex.submit, ex, print)
    end))
  end
end)
