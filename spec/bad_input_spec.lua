-- A catalog of bad input: options, arguments, results and error values
-- that cannot be sent, names that resolve to nothing, wrong 'self',
-- futures of closed executors, callbacks that submit or shut down, workers
-- that corrupt their own channel, and random bytes for the decoder. Each
-- case checks the exact error, then that the executor still works. Every
-- wait has a timeout: nothing here may hang.
local U = require "fixtures.bad_util"  -- first: puts spec/fixtures on cpath
local ppe = require "ppe"
local H = require "helpers"

local T = 30        -- seconds: a loose bound for work that takes a moment
local QUICK = 10    -- seconds: "within a few seconds", loosely

-- The error fn(...) raises; fails if it returns.
local function catch(fn, ...)
  local ok, e = pcall(fn, ...)
  assert(not ok, "expected an error, but the call succeeded")
  return e
end

-- A ppe error of this kind, returned for more checks.
local function ppe_error(kind, fn, ...)
  local e = catch(fn, ...)
  assert.equal(ppe.Error, getmetatable(e),
               "not a ppe.Error: " .. tostring(e))
  assert.equal(kind, e.kind, tostring(e))
  assert.is_string(e.message)
  return e
end

-- A plain Lua error (a string) containing every one of the given words.
local function lua_error(fn, args, ...)
  local e = catch(fn, H.unpack(args, 1, args.n or #args))
  assert.is_string(e, "expected a Lua error message, got " .. tostring(e))
  for _, w in ipairs{...} do
    assert(e:find(w, 1, true), ("%q does not mention %q"):format(e, w))
  end
  return e
end

-- An option's error: a ppe.Error ValueError naming the option (its
-- field option), whose message contains every one of the given words.
local function value_error(fn, args, ...)
  local e = catch(fn, H.unpack(args, 1, args.n or #args))
  assert.equal(ppe.Error, getmetatable(e), "not a ppe.Error: " .. tostring(e))
  assert.equal("ValueError", e.kind, tostring(e))
  assert.is_string(e.option)
  for _, w in ipairs{...} do
    assert(e.message:find(w, 1, true),
           ("%q does not mention %q"):format(e.message, w))
  end
  return e
end

-- The failure of a future: the error object, waited for with a timeout.
local function failure(f, timeout)
  assert.is_true(f:wait(timeout or T), "the future did not finish in time")
  local ok, e = pcall(f.result, f, 0)
  assert(not ok, "the future succeeded")
  return e
end

-- The executor still serves: an ordinary task gives the right value. The
-- worker's pid is returned.
local function healthy(ex)
  local f = ex:submit(function(a, b)
    local h = io.open("/proc/self/stat")
    local pid = h:read("*n")
    h:close()
    return a * b, pid
  end, 6, 7)
  local v, pid = f:result(T)
  assert.equal(42, v)
  assert.is_number(pid)
  return pid
end

-- One worker: a task that fails without killing it leaves the same pid.
local ex, pid0

local function same_worker()
  assert.equal(pid0, healthy(ex), "the worker was replaced")
end

describe("bad input", function()

  lazy_setup(function()
    ex = ppe.executor{ max_workers = 1 }
    pid0 = healthy(ex)
  end)

  lazy_teardown(function()
    if ex then ex:close() end
    ex = nil
  end)

  describe("executor options", function()
    -- option table, words the message must contain
    local cases = {
      { { bogus = 1 }, "unknown executor option", "bogus" },
      { { 2 }, "unknown executor option" },
      { { max_workers = 0 }, "max_workers" },
      { { max_workers = -1 }, "max_workers" },
      { { max_workers = 1.5 }, "max_workers" },
      { { max_workers = "2" }, "max_workers" },
      { { max_workers = math.huge }, "max_workers" },
      { { max_workers = 10^9 }, "max_workers" },
      { { max_workers = 0/0 }, "max_workers" },
      { { max_workers = true }, "max_workers" },
      { { task_timeout = -1 }, "task_timeout" },
      { { task_timeout = 0 }, "task_timeout" },
      { { task_timeout = "x" }, "task_timeout" },
      { { task_timeout = 0/0 }, "task_timeout" },
      { { max_tasks_per_child = 0 }, "max_tasks_per_child" },
      { { max_tasks_per_child = -3 }, "max_tasks_per_child" },
      { { max_tasks_per_child = 2.5 }, "max_tasks_per_child" },
      { { initializer = 42 }, "initializer" },
      { { initializer = {} }, "initializer" },
      { { initializer = "print", initargs = 5 }, "initargs" },
      { { initializer = "print", initargs = "x" }, "initargs" },
      { { initargs = {} }, "initargs" },
    }
    -- No process was started since 'before' (U.children()) was taken.
    local function none_started(before)
      for p in pairs(U.children()) do
        assert(before[p], "a process was left behind: " .. p)
      end
    end

    for _, c in ipairs(cases) do
      local opts = c[1]
      local shown = {}
      for k, v in pairs(opts) do
        shown[#shown + 1] = tostring(k) .. "=" .. (type(v) == "string" and
          ("%q"):format(v) or tostring(v))
      end
      it("rejects {" .. table.concat(shown, ", ") .. "} naming it, and "
         .. "starts no process", function()
        local before = U.children()
        value_error(ppe.executor, { opts }, H.unpack(c, 2))
        none_started(before)
        healthy(ex)
      end)
    end

    it("names the option, its value and the range, and the nearest key " ..
       "of a misspelt one", function()
      local e = value_error(ppe.executor, { { max_workers = 0 } })
      assert.equal("max_workers", e.option)
      assert.equal(0, e.value)
      assert.equal("option 'max_workers' must be an integer from 1 to " ..
                   "1024, got 0", e.message)
      e = value_error(ppe.executor, { { max_worker = 2 } })
      assert.equal("max_worker", e.option)
      assert.equal("unknown executor option 'max_worker' (did you mean " ..
                   "'max_workers'?)", e.message)
      e = value_error(ppe.executor, { { task_timout = 1 } })
      assert.equal("unknown executor option 'task_timout' (did you mean " ..
                   "'task_timeout'?)", e.message)
      e = value_error(ppe.executor, { { zzz = 1 } })
      assert.equal("unknown executor option 'zzz'", e.message)
      e = value_error(ex.map, { ex, tostring, { 1 }, { chunksize = "x" } })
      assert.equal("chunksize", e.option)
      assert.equal("x", e.value)
      e = value_error(ex.map, { ex, tostring, { 1 }, { orderd = false } })
      assert.equal("unknown map option 'orderd' (did you mean 'ordered'?)",
                   e.message)
    end)

    for _, v in ipairs { "soon", "", "-1", "86401", "nan", "2s" } do
      it(("rejects PPE_KEEP_SECONDS=%q naming it, and starts no process")
         :format(v), function()
        local before = U.children()
        U.evil().setenv("PPE_KEEP_SECONDS", v)
        local ok, e = pcall(lua_error, ppe.executor, { { max_workers = 1 } },
                            "environment variable PPE_KEEP_SECONDS must be "
                            .. "a number of seconds from 0 to 86400, got '"
                            .. v .. "'")
        U.evil().setenv("PPE_KEEP_SECONDS", nil)
        assert(ok, e)
        none_started(before)
        healthy(ex)
      end)
    end

    it("rejects options that are not a table", function()
      lua_error(ppe.executor, { "x" }, "bad argument #1", "table expected")
      lua_error(ppe.executor, { 3 }, "bad argument #1", "table expected")
      healthy(ex)
    end)
  end)

  describe("arguments that cannot be sent", function()
    it("a userdata argument, named by its position", function()
      local e = ppe_error("SerializationError", ex.submit, ex, print,
                          io.stdout)
      assert.equal("argument #2: userdata cannot be sent", e.message)
      same_worker()
    end)

    it("a userdata field, named by position and field", function()
      local e = ppe_error("SerializationError", ex.submit, ex,
                          function(t) return t end, { conn = io.stdout })
      assert.equal('argument #2, field "conn": userdata cannot be sent',
                   e.message)
      assert.equal('SerializationError: argument #2, field "conn": '
                   .. "userdata cannot be sent", tostring(e))
      same_worker()
    end)

    it("ppe.encode numbers its values the same way", function()
      local e = ppe_error("SerializationError", ppe.encode, 1,
                          { conn = io.stdout })
      assert.equal('argument #2, field "conn": userdata cannot be sent',
                   e.message)
    end)

    it("a coroutine", function()
      -- Of a Lua function: Lua 5.1 makes no coroutine of a C function.
      local e = ppe_error("SerializationError", ex.submit, ex, print, 1,
                          coroutine.create(function() end))
      assert.equal("argument #3: thread cannot be sent", e.message)
      same_worker()
    end)

    it("a C function not reachable by name (coroutine.wrap)", function()
      local e = ppe_error("SerializationError", ex.submit, ex, print,
                          coroutine.wrap(function() end))
      assert.matches("^argument #2: C function cannot be sent", e.message)
      same_worker()
    end)

    it("such a C function as the task itself", function()
      local e = ppe_error("SerializationError", ex.submit, ex,
                          coroutine.wrap(function() end))
      assert.matches("^argument #1: C function cannot be sent", e.message)
      same_worker()
    end)

    it("100,000 levels of nesting, without a crash", function()
      local deep = {}
      local cur = deep
      for _ = 1, 100000 do cur[1] = {}; cur = cur[1] end
      local e = ppe_error("SerializationError", ex.submit, ex, print, deep)
      assert.matches("^argument #2, index 1", e.message)
      assert.matches("nesting deeper than " .. ppe.MAX_DEPTH .. " levels",
                     e.message, 1, true)
      same_worker()
    end)

    it("a userdata table key", function()
      local e = ppe_error("SerializationError", ex.submit, ex, print,
                          { [io.stdout] = 1 })
      assert.equal("argument #2, table key: userdata cannot be sent",
                   e.message)
      same_worker()
    end)

    it("a userdata upvalue of the task", function()
      local conn = io.stdout
      local e = ppe_error("SerializationError", ex.submit, ex,
                          function() return conn end)
      assert.equal('argument #1, upvalue "conn": userdata cannot be sent',
                   e.message)
      same_worker()
    end)

    it("queues nothing when an argument fails", function()
      local before = ex:stats()
      catch(ex.submit, ex, print, io.stdout)
      local after = ex:stats()
      assert.equal(before.pending, after.pending)
      assert.equal(before.completed, after.completed)
      same_worker()
    end)
  end)

  describe("results that cannot be sent", function()
    it("a coroutine: SerializationError, the worker survives", function()
      -- Of a Lua function: Lua 5.1 makes no coroutine of a C function.
      local e = failure(ex:submit(function()
        return coroutine.create(function() end)
      end))
      assert.equal(ppe.Error, getmetatable(e))
      assert.equal("SerializationError", e.kind)
      assert.equal("result #1: thread cannot be sent", e.message)
      same_worker()
    end)

    it("io.stdout", function()
      local e = failure(ex:submit(function() return 1, io.stdout end))
      assert.equal("SerializationError", e.kind)
      assert.equal("result #2: userdata cannot be sent", e.message)
      same_worker()
    end)

    it("a table nested 100,000 deep", function()
      local e = failure(ex:submit(function()
        local d = {}
        local c = d
        for _ = 1, 100000 do c[1] = {}; c = c[1] end
        return d
      end))
      assert.equal("SerializationError", e.kind)
      assert.matches("^result #1, index 1", e.message)
      assert.matches("nesting deeper than", e.message, 1, true)
      same_worker()
    end)

    it("a C function not reachable by name", function()
      local e = failure(ex:submit(function()
        return coroutine.wrap(function() end)
      end))
      assert.equal("SerializationError", e.kind)
      assert.matches("^result #1: C function cannot be sent", e.message)
      same_worker()
    end)
  end)

  describe("error values", function()
    -- The contract: "A result or error value that cannot be sent fails its
    -- future with SerializationError; the worker survives." The message
    -- still says what the task raised.
    it("io.stdout: SerializationError describing it", function()
      local e = failure(ex:submit(function() error(io.stdout) end))
      assert.equal(ppe.Error, getmetatable(e))
      assert.equal("SerializationError", e.kind, tostring(e))
      assert.matches("userdata cannot be sent", e.message, 1, true)
      assert.matches("file (0x", e.message, 1, true)
      assert.is_nil(e.value)
      same_worker()
    end)

    it("a coroutine: SerializationError describing it", function()
      local e = failure(ex:submit(function()
        error(coroutine.create(function() end))
      end))
      assert.equal("SerializationError", e.kind, tostring(e))
      assert.matches("thread cannot be sent", e.message, 1, true)
      assert.is_nil(e.value)
      same_worker()
    end)

    it("a table holding a userdata: SerializationError naming the field",
       function()
      local e = failure(ex:submit(function()
        error({ code = 3, conn = io.stdout })
      end))
      assert.equal("SerializationError", e.kind, tostring(e))
      assert.matches('field "conn": userdata cannot be sent', e.message, 1,
                     true)
      assert.is_nil(e.value)
      same_worker()
    end)

    it("a table with fields arrives as a table", function()
      local e = failure(ex:submit(function()
        error({ code = 7, why = "because", list = { 1, 2 } })
      end))
      assert.equal("RemoteError", e.kind)
      assert.same({ code = 7, why = "because", list = { 1, 2 } }, e.value)
      assert.equal(pid0, e.pid)
      same_worker()
    end)

    it("nil", function()
      local e = failure(ex:submit(function() error(nil) end))
      assert.equal("RemoteError", e.kind)
      assert.is_nil(e.value)
      assert.matches("nil", e.message, 1, true)
      same_worker()
    end)

    it("the integer 12 stays an integer", function()
      -- Level 0: before 5.3, error() prefixes the position to a number
      -- as it does to a string, which would make it a string.
      local e = failure(ex:submit(function() error(12, 0) end))
      assert.equal("RemoteError", e.kind)
      assert.equal(12, e.value)
      assert.is_true(H.is_integer(e.value))  -- of that subtype from 5.3 on
      assert.equal("12", e.message)
      same_worker()
    end)

    it("a float stays a float", function()
      local e = failure(ex:submit(function() error(1.5, 0) end))  -- as above
      assert.equal("RemoteError", e.kind)
      assert.equal(1.5, e.value)
      -- Before 5.3 numbers have no subtype: there the float's bits show
      -- that it crossed as one.
      if math.type then assert.equal("float", math.type(e.value)) end
      assert.equal(H.float_bits(1.5), H.float_bits(e.value))
      same_worker()
    end)

    it("false", function()
      local e = failure(ex:submit(function() error(false) end))
      assert.equal("RemoteError", e.kind)
      assert.is_false(e.value)
      assert.matches("boolean", e.message, 1, true)
      same_worker()
    end)

    it("a string, with and without position", function()
      local e = failure(ex:submit(function() error("boom", 0) end))
      assert.equal("RemoteError", e.kind)
      assert.equal("boom", e.value)
      assert.equal("boom", e.message)
      e = failure(ex:submit(function() error("boom") end))
      assert.matches("boom$", e.value)
      assert.matches(":%d+: boom$", e.message)
      assert.matches("^RemoteError: .*boom", tostring(e))
      same_worker()
    end)

    it("an object with __tostring: its text, raw contents", function()
      local e = failure(ex:submit(function()
        error(setmetatable({ x = 1 }, {
          __tostring = function() return "custom!" end }))
      end))
      assert.equal("RemoteError", e.kind)
      assert.equal("custom!", e.message)
      assert.same({ x = 1 }, e.value)
      assert.is_nil(getmetatable(e.value))  -- metatables are not sent
      same_worker()
    end)

    it("an object whose __tostring returns no string", function()
      local e = failure(ex:submit(function()
        error(setmetatable({ x = 1 }, {
          __tostring = function() return {} end }))
      end))
      assert.equal("RemoteError", e.kind)
      assert.is_string(e.message)
      assert.matches("table", e.message, 1, true)
      assert.same({ x = 1 }, e.value)
      assert.is_string(e.traceback)
      assert.matches("stack traceback", e.traceback, 1, true)
      same_worker()
    end)

    it("an object whose __tostring raises: still a RemoteError", function()
      local e = failure(ex:submit(function()
        error(setmetatable({ x = 1 }, {
          __tostring = function() error("no text for you") end }))
      end))
      assert.equal("RemoteError", e.kind, tostring(e))
      assert.is_string(e.message)
      same_worker()
    end)
  end)

  describe("function names", function()
    for _, name in ipairs{ "no.such.module.fn", "string.nope", "",
                           "string..rep", "math.pi" } do
      it(("%q: RemoteError naming it"):format(name), function()
        local e = failure(ex:submit(name, 1))
        assert.equal(ppe.Error, getmetatable(e))
        assert.equal("RemoteError", e.kind)
        assert(e.message:find("'" .. name .. "'", 1, true),
               e.message .. " does not name " .. name)
        same_worker()
      end)
    end
  end)

  describe("non-callables and wrong self", function()
    for _, v in ipairs{ 42, {}, true } do
      it("submit(" .. type(v) .. ") raises at once", function()
        lua_error(ex.submit, { ex, v }, "function or function name expected",
                  type(v))
        same_worker()
      end)
    end

    it("submit(nil) and submit() raise at once", function()
      lua_error(ex.submit, { ex, nil, n = 2 }, "function or function name",
                "nil")
      lua_error(ex.submit, { ex }, "function or function name", "no value")
      same_worker()
    end)

    it("ex.submit(nil, f) and ex.submit({}, f)", function()
      lua_error(ex.submit, { nil, print, n = 2 }, "ppe.Executor expected")
      lua_error(ex.submit, { {}, print }, "ppe.Executor expected", "table")
      same_worker()
    end)

    it("a future method on an executor, and the reverse", function()
      -- From 5.3 on, "bad argument" messages name a userdata by its
      -- metatable's __name ("got FILE*"); Lua 5.1, 5.2 and LuaJIT say
      -- "got userdata".
      local named = select(2, pcall(string.rep, io.stdout, 1))
                    :find("FILE*", 1, true) ~= nil
      local f = ex:submit(function() return 1 end)
      lua_error(f.result, { ex }, "ppe.Future expected",
                named and "ppe.Executor" or "userdata")
      lua_error(f.cancel, {}, "ppe.Future expected")
      lua_error(ex.shutdown, { f }, "ppe.Executor expected",
                named and "ppe.Future" or "userdata")
      assert.equal(1, f:result(T))
      same_worker()
    end)

    it("decode of non-strings raises; a number is a string", function()
      lua_error(ppe.decode, { nil, n = 1 }, "string expected")
      lua_error(ppe.decode, { {} }, "string expected")
      lua_error(ppe.decode, { true }, "string expected")
      lua_error(ppe.decode, {}, "string expected")
      ppe_error("SerializationError", ppe.decode, 42)  -- "42": no message
    end)
  end)

  describe("futures and closed executors", function()
    it("a future finished before close keeps its value", function()
      local e2 = ppe.executor{ max_workers = 1 }
      local f = e2:submit(function() return "kept", nil, 3 end)
      assert.same({ "kept", nil, 3, n = 3 }, H.pack(f:result(T)))
      e2:close()
      assert.same({ "kept", nil, 3, n = 3 }, H.pack(f:result(0)))
      assert.equal("finished", f:state())
      ppe_error("ShutdownError", e2.submit, e2, print)
      ppe_error("ShutdownError", e2.map, e2, print, { 1 })
      e2:shutdown()  -- idempotent
      e2:close()
    end)

    -- Tables have finalizers from 5.2 on.
    local gc_tables = _VERSION ~= "Lua 5.1"

    -- What make() returns, held by nothing but a table whose finalizer
    -- brings it back once the collector has found it unreachable.
    local function revived(make)
      local back
      setmetatable({ x = make() }, { __gc = function(o) back = o.x end })
      collectgarbage()
      collectgarbage()
      assert.is_not_nil(back)
      return back
    end

    ;(gc_tables and it or pending)("one a finalizer brings back after its "
                                   .. "collection: a Lua error", function()
      local e2 = ppe.executor{ max_workers = 1 }
      local back = revived(function()
        local f = e2:submit(function() return "gone" end)
        assert.equal("gone", f:result(T))
        return f
      end)
      lua_error(back.result, { back, 0 }, "attempt to use a collected future")
      lua_error(back.done, { back }, "attempt to use a collected future")
      e2:close()
    end)

    ;(gc_tables and it or pending)("a map a finalizer brings back after its "
                                   .. "collection: a Lua error", function()
      local e2 = ppe.executor{ max_workers = 1 }
      local back = revived(function()
        local m = e2:map(function(x) return x end, { 1, 2, 3, 4 },
                         { chunksize = 1 })
        assert.same({ 1, 1 }, { m() })
        return m
      end)
      lua_error(back, {}, "attempt to use a collected map")
      lua_error(back.close, { back }, "attempt to use a collected map")
      e2:close()
    end)

    it("one cancelled by shutdown{cancel_futures=true}", function()
      local e2 = ppe.executor{ max_workers = 1 }
      local slow = e2:submit(function()
        local t = os.time()
        while os.time() - t < 2 do end
        return "slow"
      end)
      -- Once the slow task has run a while, the worker takes no more
      -- behind it: what follows stays queued.
      assert.is_false(slow:wait(0.3))
      local queued = {}
      for i = 1, 5 do queued[i] = e2:submit(function() return i end) end
      e2:shutdown{ wait = false, cancel_futures = true }
      assert.equal("slow", slow:result(T))
      local cancelled = 0
      for _, q in ipairs(queued) do
        assert.is_true(q:wait(T))
        if q:cancelled() then
          cancelled = cancelled + 1
          ppe_error("CancelledError", q.result, q, 0)
        end
      end
      assert.equal(5, cancelled)
      e2:close()
      for _, q in ipairs(queued) do
        if q:cancelled() then ppe_error("CancelledError", q.result, q, 0) end
      end
    end)

    it("submit from inside a done-callback works", function()
      local inner
      local f = ex:submit(function() return 1 end)
      f:add_done_callback(function()
        inner = ex:submit(function() return 99 end)
      end)
      assert.equal(1, f:result(T))
      ex:poll()
      assert.equal("userdata", type(inner))
      assert.equal(99, inner:result(T))
      same_worker()
    end)

    it("shutdown from inside a done-callback does not deadlock", function()
      local e2 = ppe.executor{ max_workers = 1 }
      local f = e2:submit(function()
        local t = os.clock()
        while os.clock() - t < 0.3 do end
        return 2
      end)
      local g = e2:submit(function() return 3 end)
      local r
      f:add_done_callback(function()
        r = H.pack(pcall(e2.shutdown, e2, { wait = true }))
      end)
      local t0 = U.now()
      assert.equal(2, f:result(T))
      assert.equal(3, g:result(T))
      assert.is_table(r, "the callback did not run")
      assert.is_true(r[1], tostring(r[2]))
      assert(U.now() - t0 < T)
      ppe_error("ShutdownError", e2.submit, e2, print)
      e2:close()
    end)

    it("close from a callback that runs at once", function()
      local e2 = ppe.executor{ max_workers = 1 }
      local f = e2:submit(function() return 2 end)
      assert.is_true(f:wait(T))
      local r, inner
      f:add_done_callback(function()
        inner = e2:submit(function() return 5 end)
        r = H.pack(pcall(e2.close, e2))
      end)
      assert.is_table(r)
      assert.is_true(r[1], tostring(r[2]))
      assert.equal(5, inner:result(T))  -- close waited for it
      ppe_error("ShutdownError", e2.submit, e2, print)
    end)
  end)

  describe("argument and result counts", function()
    -- Lua 5.1 and LuaJIT let a C function hold at most 8000 stack slots
    -- (LUAI_MAXCSTACK): 'unpack' cannot make 10,000 values there, nor can
    -- a call take or return them. Those versions count 7,000.
    local many = pcall(H.unpack, {}, 1, 10000) and 10000 or 7000
    local shown = many == 10000 and "10,000" or "7,000"

    it(shown .. " arguments arrive, counted exactly", function()
      local f = ex:submit(function(...) return select("#", ...) end,
                          H.unpack({}, 1, many))
      assert.equal(many, f:result(T))
      same_worker()
    end)

    it(shown .. " results come back, counted exactly", function()
      -- Not H.unpack: as an upvalue it would send all of the helpers to
      -- the worker. Lua 5.1 has table.unpack as the global 'unpack'.
      local f = ex:submit(function(n)
        return (table.unpack or unpack)({}, 1, n)
      end, many)
      assert.equal(many, select("#", f:result(T)))
      same_worker()
    end)

    it("trailing nils are kept both ways", function()
      local f = ex:submit(function(...)
        return select("#", ...), nil, nil
      end, 1, nil, nil)
      assert.same({ 3, nil, nil, n = 3 }, H.pack(f:result(T)))
      same_worker()
    end)
  end)

  describe("workers that corrupt their channel", function()
    -- Each on an executor of its own. The task sleeps 15 s after the harm
    -- (past QUICK, so a future that waits for the worker's own end shows);
    -- if the case fails the executor is killed, which takes no longer.
    lazy_setup(function()
      U.evil()  -- built, or a message that says how
    end)

    local function misbehave(task)
      local e2 = ppe.executor{ max_workers = 1 }
      local before = healthy(e2)
      local t0 = U.now()
      local f = e2:submit(task)
      local done = f:wait(QUICK)
      local elapsed = U.now() - t0
      local state = f:state()
      if not done then e2:kill_workers() end
      local ok, e = pcall(f.result, f, T)
      local after = (done and healthy(e2)) or nil
      e2:close()
      assert.is_true(done, ("the future is still %s after %.1f s"):format(
                     state, elapsed))
      assert.is_false(ok, "the future succeeded")
      assert.equal(ppe.Error, getmetatable(e), tostring(e))
      assert.not_equal(before, after, "the worker was not replaced")
      return e, elapsed
    end

    -- A frame header as the channel carries it: type and aux (4 bytes
    -- each), task id and payload length (8 bytes each), in host byte
    -- order. Lua 5.1, 5.2 and LuaJIT have no string.pack: there the bytes
    -- are made by arithmetic (exact below 2^53), in the byte order that
    -- the wire format's header reports (its fifth byte is 1 on a
    -- little-endian host).
    local function frame_header(ftype, aux, id, len)
      if string.pack then
        return string.pack("=I4I4I8I8", ftype, aux, id, len)
      end
      local little = ppe.encode():byte(5) == 1
      local function field(n, size)
        local s = H.uint(n, size)
        return little and s or s:reverse()
      end
      return field(ftype, 4) .. field(aux, 4) .. field(id, 8) .. field(len, 8)
    end

    -- A worker that writes 'bytes' on its channel, then sleeps: its task
    -- fails with WorkerDied.
    local function dies_of(bytes)
      local e = misbehave(function()
        local evil = require "evil"
        evil.write(evil.channel_fd(), bytes)
        evil.sleep(15)
      end)
      assert.equal("WorkerDied", e.kind, tostring(e))
    end

    it("garbage bytes: WorkerDied, and a new worker", function()
      dies_of(string.rep("garbage!", 64))
    end)

    it("a reply for a task it was not given: WorkerDied", function()
      -- PPE_F_OK (3) for task id 999999, 3 payload bytes
      dies_of(frame_header(3, 0, 999999, 3) .. "abc")
    end)

    it("a header claiming more than 2^40 bytes: WorkerDied", function()
      dies_of(frame_header(3, 0, 1, 2^40 + 1))
    end)

    it("a header claiming 2^40 bytes: fails within seconds", function()
      dies_of(frame_header(3, 0, 1, 2^40))
    end)

    -- PPE_F_REF (8): the reply is in the worker's arena, at an offset
    -- and length that follow the header as two 8-byte fields.
    local function ref_frame(off, len)
      return frame_header(8, 0, 1, 16) .. frame_header(0, 0, off, len):sub(9)
    end

    it("a reference outside the worker's arena: WorkerDied", function()
      dies_of(ref_frame(2^50, 4096))
    end)

    it("a reference to what is not the message it names: WorkerDied",
       function()
      dies_of(ref_frame(0, 4096))
    end)

    -- The reply ring, the first bytes of the worker's own arena
    -- (src/ring.h): what the worker has appended in total (8 bytes at
    -- 0), and its records, from byte 192 on, each a frame header and
    -- its payload. The worker then rings the bell (PPE_F_BELL, 9) on its
    -- channel, as after a reply.
    local BELL = frame_header(9, 0, 0, 0)
    local function dies_of_ring(record, ahead)
      local e = misbehave(function()
        local evil = require "evil"
        local head, b = 0, { evil.peek(0, 8):byte(1, 8) }
        for i = 8, 1, -1 do head = head * 256 + b[i] end
        local at = head % 65536
        evil.poke(192 + at, record)
        local new, s = head + ahead, {}
        for i = 1, 8 do
          s[i] = string.char(new % 256)
          new = math.floor(new / 256)
        end
        evil.poke(0, table.concat(s))
        evil.write(evil.channel_fd(), BELL)
        evil.sleep(15)
      end)
      assert.equal("WorkerDied", e.kind, tostring(e))
    end

    it("a ring that claims more than it holds: WorkerDied", function()
      dies_of_ring("", 65536 + 8)
    end)

    it("a ring record longer than the ring: WorkerDied", function()
      dies_of_ring(frame_header(3, 0, 1, 2^40), 24)
    end)

    it("a ring record past what the ring claims: WorkerDied", function()
      dies_of_ring(frame_header(3, 0, 1, 64) .. ("x"):rep(64), 24)
    end)

    it("a bell in the ring: WorkerDied", function()
      dies_of_ring(BELL, 24)
    end)

    it("a worker that closes its channel, then sleeps: fails within "
       .. "seconds", function()
      local e = misbehave(function()
        local evil = require "evil"
        evil.close(evil.channel_fd())
        evil.sleep(15)
      end)
      assert.equal("WorkerDied", e.kind, tostring(e))
    end)
  end)

  describe("the decoder", function()
    it("#novalgrind 1000 random byte strings: decoded or SerializationError, no "
       .. "crash", function()
      local cmd = ("LUA_CPATH=%s LUA_PATH=%s %s spec/fixtures/decode_fuzz.lua"
                   .. " 20240601 1000 2>&1; echo exit=$?"):format(
                   U.quote(package.cpath), U.quote(package.path),
                   U.quote(U.interpreter()))
      local h = assert(io.popen(cmd))
      local out = h:read("*a")
      h:close()
      local last = "none"
      for n in out:gmatch("case (%d+)\n") do last = n end
      local exit = out:match("exit=(%d+)")
      assert.equal("0", exit, "the decoder crashed on case " .. last ..
                   " (seed 20240601): " .. out:sub(-300))
      local ok_n, serr_n, other_n = out:match(
        "done ok=(%d+) serr=(%d+) other=(%d+)")
      assert.is_not_nil(ok_n, out:sub(-300))
      assert.equal("0", other_n, out:match("other: [^\n]*") or "")
      assert.equal(1000, tonumber(ok_n) + tonumber(serr_n))
      assert(tonumber(serr_n) > 500, "most of them should be refused")
    end)

    it("decodes what it encodes after all that", function()
      local t = { 1, "two", { three = 3.0 } }
      assert.same({ t, nil, n = 2 }, H.pack(ppe.decode(ppe.encode(t, nil))))
    end)
  end)
end)
