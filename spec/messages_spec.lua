-- What the errors say: each message names what really happened. A fork
-- that failed gives its own error, a signal its name and meaning, ppe's
-- own exit codes what they mean (and a task's os.exit only its code); a
-- task's debug hook does not outlive the task, and a failure of the
-- worker's own that is not memory is not reported as memory.
local U = require "fixtures.bad_util"  -- first: puts spec/fixtures on cpath
local ppe = require "ppe"
local H = require "helpers"
local evil = U.evil()

local T = 30
local ME = H.pid()
local PPE_PATH = assert(H.searchpath("ppe", package.cpath),
                        "ppe.so not found on package.cpath")

local sh = H.output

-- A task: its worker dies of signal 'sig' (a number), with no core file.
local function die_of(sig)
  local f = io.open("/proc/self/stat")
  local pid = f:read("*n")
  f:close()
  os.execute("command -v prlimit >/dev/null 2>&1 && prlimit --core=0 --pid "
             .. pid .. " >/dev/null 2>&1")
  os.execute("kill -" .. sig .. " " .. pid)
  local t = os.clock()
  while os.clock() - t < 5 do end  -- the signal is on its way
  return "survived"
end

describe("a worker that cannot be forked", function()
  -- RLIMIT_NPROC counts the processes and threads of a real user id and
  -- binds no root process: the program runs under an id of its own, with
  -- room for 'nproc' of them. A fork past that fails with EAGAIN, for real.
  -- The output of 'script' run so, or nil and why not.
  local function limited(nproc, script)
    if sh("id -u"):match("%d+") ~= "0" then
      return nil, "needs root, to run a program under another user id"
    end
    if not sh("command -v setpriv && command -v prlimit && " ..
              "command -v timeout"):find("timeout") then
      return nil, "needs setpriv, prlimit and timeout (util-linux)"
    end
    local uid = 60000 + ME % 5000
    script = ("package.cpath = %q\n"):format(package.cpath) .. script
    return sh(("timeout 30 prlimit --nproc=%d setpriv --reuid=%d " ..
               "--regid=%d --clear-groups %s -e %s 2>&1"):format(
               nproc, uid, uid, U.interpreter(), U.quote(script)))
  end

  -- Room for the program and the zygote, not for a worker.
  it("makes ppe.executor raise BrokenExecutor with the fork's own error",
     function()
    local out, why = limited(2, [[
      local ppe = require "ppe"
      local ok, err = pcall(ppe.executor, { max_workers = 2 })
      local e = type(err) == "table" and err or {}
      io.write(tostring(ok), "\n", tostring(e.kind), "\n",
               tostring(e.message or err), "\n", tostring(e.cause), "\n")
    ]])
    if not out then return pending(why) end
    local ok, kind, message, cause = out:match(
      "^(%a+)\n(%a+)\n([^\n]*)\n([^\n]*)\n")
    assert.is_not_nil(ok, out)
    assert.equal("false", ok, out)
    assert.equal("BrokenExecutor", kind, out)
    assert.equal("cannot fork a worker: Resource temporarily unavailable",
                 message)
    assert.equal("Resource temporarily unavailable", cause)
  end)

  -- Room for the program, the zygote, the first worker and the I/O
  -- thread, and one more: the constructor returns once the first worker
  -- is up, and the fork that fails later breaks the executor, however many
  -- workers it was to have (many more than are asked for at a time).
  it("#novalgrind after the first: the executor is made, then broken with "
     .. "the fork's error", function()
    local out, why = limited(5, [[
      local ppe = require "ppe"
      local ok, ex = pcall(ppe.executor, { max_workers = 40 })
      io.write(tostring(ok), "\n")
      if not ok then return io.write(tostring(ex), "\n") end
      local e
      for _ = 1, 1500 do
        local sok, f = pcall(ex.submit, ex, function() return 1 end)
        if not sok then e = f break end
        ppe.wait({}, 0.02)  -- a sleep: no process to fork for it
      end
      io.write(tostring(e and e.kind), "\n", tostring(e and e.message), "\n")
      ex:close()
    ]])
    if not out then return pending(why) end
    local ok, kind, message = out:match("^(%a+)\n(%a+)\n([^\n]*)\n")
    assert.equal("true", ok, out)
    assert.equal("BrokenExecutor", kind, out)
    assert.equal("cannot fork a worker: Resource temporarily unavailable",
                 message)
  end)
end)

describe("a worker killed by a signal", function()
  it("by SIGPIPE, writing to a pipe nobody reads: the message names it",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local pid = ex:submit(H.pid):result(T)
    local f = ex:submit(function()
      local h = io.popen("exit 0", "w")  -- a reader that ends unread
      for _ = 1, 64 do
        h:write(string.rep("x", 65536))
        h:flush()
      end
      return "survived"
    end)
    local err = H.expect_error("WorkerDied", f.result, f, T)
    assert.equal(13, err.signal)
    assert.is_nil(err.exit_code)
    assert.equal(pid, err.pid)
    assert.equal(("worker %d was killed by signal 13 (SIGPIPE: broken pipe)")
                 :format(pid), err.message)
    assert.equal("WorkerDied: " .. err.message, tostring(err))
    assert.equal(4, ex:submit(function() return 2 + 2 end):result(T))
  end))

  -- Linux's numbers; 36 is SIGRTMIN+2 under glibc, which keeps 32 and 33.
  local SIGNALS = {
    { 1, "SIGHUP: hangup" },
    { 9, "SIGKILL: killed" },
    { 10, "SIGUSR1: user signal 1" },
    { 11, "SIGSEGV: segmentation fault" },
    { 14, "SIGALRM: alarm clock" },
    { 15, "SIGTERM: terminated" },
    { 24, "SIGXCPU: CPU time limit exceeded" },
    { 36, "SIGRTMIN+2: real-time signal" },
  }

  it("by any other: the message names it and says what it means",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    for _, s in ipairs(SIGNALS) do
      local f = ex:submit(die_of, s[1])
      local err = H.expect_error("WorkerDied", f.result, f, T)
      assert.equal(s[1], err.signal)
      assert.is_nil(err.exit_code)
      assert.are_not.equal(ME, err.pid)
      assert.equal(("worker %d was killed by signal %d (%s)"):format(
                   err.pid, s[1], s[2]), err.message)
    end
  end))
end)

describe("a worker that exits", function()
  it("by the task's os.exit: only its code, whatever ppe uses it for",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    for _, code in ipairs({ 3, 4, 5, 6, 7 }) do
      local f = ex:submit(function(c) os.exit(c) end, code)
      local err = H.expect_error("WorkerDied", f.result, f, T)
      assert.equal(code, err.exit_code)
      assert.is_nil(err.signal)
      assert.equal(("worker %d exited with code %d (the task called " ..
                    "os.exit)"):format(err.pid, code),
                   err.message)
    end
  end))

  -- The hook is the host's, the same in every worker: one that raises
  -- breaks the executor with its words, rather than have workers start
  -- and die for ever.
  for _, init in ipairs { false, true } do
    it("because the host's worker-init hook raised" ..
       (init and ", before its initializer" or "") .. ": the executor is " ..
       "broken with the hook's message, which its user data carried",
       H.scoped(function(scope)
      evil.worker_init(PPE_PATH, "libhost.so: cannot open shared object")
      local ok, ex = pcall(ppe.executor, {
        max_workers = 2,
        initializer = init and function() end or nil,
      })
      evil.worker_init(PPE_PATH, false)
      assert(ok, tostring(ex))
      scope(ex)
      local err = H.submit_failure(ex, function() return 1 end)
      assert.equal("BrokenExecutor", err.kind)
      assert.equal("the host's worker-init hook raised: libhost.so: " ..
                   "cannot open shared object", err.message)
      local t0 = H.now()
      while H.now() - t0 < 0.3 do ppe.wait({}, 0.05) end
      assert.equal(0, ex:stats().restarts)  -- none started again
      local again = H.submit_failure(ex, function() return 2 end)
      assert.equal("BrokenExecutor", again.kind)
      ex:close()
    end))
  end
end)

describe("a worker that ends while running its initializer", function()
  local guard = require("fixtures.faults_util").guard
  local CASES = {
    { "exits", function() os.exit(7) end, {},
      "a worker exited with code 7 while running the initializer" },
    { "is killed", die_of, { 9 },
      "a worker was killed by signal 9 (SIGKILL: killed) while running " ..
      "the initializer" },
  }
  for _, c in ipairs(CASES) do
    it(c[1] .. ": the executor is broken at once, and says how the worker "
       .. "ended", H.scoped(function(scope)
      local ex = scope(ppe.executor {
        max_workers = 1,
        initializer = c[2],
        initargs = c[3],
      })
      scope(guard(ex))
      -- (broken before the submit, or after it)
      local err = H.submit_failure(ex, function() return 1 end)
      assert.equal("BrokenExecutor", err.kind)
      assert.equal(c[4], err.message)
      assert.equal(0, ex:stats().restarts)
    end))
  end
end)

describe("a task that sets a debug hook", function()
  -- Hooks that raise "hooked": at every call of a C function (ppe's own
  -- code is C), at every call, at every instruction, and one that raises
  -- a table.
  local function on_c_calls()
    debug.sethook(function()
      if debug.getinfo(2, "S").what == "C" then error("hooked", 0) end
    end, "c")
  end
  local function on_calls()
    debug.sethook(function() error("hooked", 0) end, "c")
  end
  local function on_count()
    debug.sethook(function() error("hooked", 0) end, "", 1)
  end
  local function table_on_count()
    debug.sethook(function() error({ why = "hooked" }) end, "", 1)
  end
  -- The task: sets the hook, calls a Lua function, returns.
  local function install(set)
    set()
    local function g() return "after" end
    return g()
  end
  local function double(x) return 2 * x end
  local function no_hook() return debug.gethook() == nil end

  -- Later tasks run as if the hook had never been set, on the same worker.
  local function later_tasks_fine(ex, pid)
    for i = 1, 3 do
      local f = ex:submit(double, i)
      assert.equal(2 * i, f:result(T))
    end
    assert.is_true(ex:submit(no_hook):result(T))
    assert.equal(pid, ex:submit(H.pid):result(T))
  end

  it("raising at calls of C functions: the task returns, later tasks run "
     .. "without it", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local pid = ex:submit(H.pid):result(T)
    assert.equal("after", ex:submit(install, on_c_calls):result(T))
    later_tasks_fine(ex, pid)
  end))

  it("raising at every call or instruction: the task fails with the hook's "
     .. "error, later tasks run without it", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local pid = ex:submit(H.pid):result(T)
    for _, set in ipairs({ on_calls, on_count }) do
      local f = ex:submit(install, set)
      local err = H.expect_error("RemoteError", f.result, f, T)
      assert.equal("hooked", err.message)
      assert.equal("hooked", err.value)
      assert.equal(pid, err.pid)
      later_tasks_fine(ex, pid)
    end
    local f = ex:submit(install, table_on_count)
    local err = H.expect_error("RemoteError", f.result, f, T)
    assert.equal("(error object is a table value)", err.message)
    assert.same({ why = "hooked" }, err.value)
    later_tasks_fine(ex, pid)
  end))

  it("in one item of a map chunk: the other items run without it",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local pid = ex:submit(H.pid):result(T)
    local item = function(x)
      if x == 2 then
        debug.sethook(function() error("hooked", 0) end, "", 1)
      end
      return 10 * x
    end
    local got, errs = {}, {}
    local it = ex:map(item, { 1, 2, 3, 4 }, { chunksize = 4 })
    while true do
      local ok, i, v = pcall(it)
      if not ok then
        errs[#errs + 1] = i
      elseif i == nil then
        break
      else
        got[i] = v
      end
    end
    assert.same({ [1] = 10, [3] = 30, [4] = 40 }, got)
    assert.equal(1, #errs)
    assert.equal("RemoteError", errs[1].kind)
    assert.equal("hooked", errs[1].message)
    later_tasks_fine(ex, pid)
  end))

  -- A hook that raises at the call of the worker's message handler: the
  -- error is not one the handler saw (LuaJIT: "error in error handling"),
  -- and the traceback of an earlier task must not stand in for its own.
  it("raising in the message handler: no earlier task's traceback",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local f = ex:submit(function() error("the first task's error") end)
    local first = H.expect_error("RemoteError", f.result, f, T)
    f = ex:submit(function()
      debug.sethook(function()
        local i = debug.getinfo(2, "Sf")
        if i.what == "C" and i.func ~= error then error("hooked", 0) end
      end, "c")
      error("boom", 0)
    end)
    local err = H.expect_error("RemoteError", f.result, f, T)
    assert.is_true(err.message == "hooked" or
                   err.message == "error in error handling", err.message)
    assert.are_not.equal(first.traceback, err.traceback)
    later_tasks_fine(ex, err.pid)
  end))

  it("in the initializer: removed when it returns, before the first task",
     H.scoped(function(scope)
    local ex = scope(ppe.executor {
      max_workers = 1,
      initializer = on_c_calls,
    })
    local pid = ex:submit(H.pid):result(T)
    later_tasks_fine(ex, pid)
  end))
end)

describe("a failure of the worker's own that is not memory", function()
  it("is reported with its own message", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local count = function(...) return select("#", ...) end
    local it = ex:map(count, { { n = 200000 } }, { unpack = true })
    local err = H.expect_error("SerializationError", it)
    assert.equal("map item with too many values to spread", err.message)
    assert.equal(2, ex:submit(count, 1, 2):result(T))
  end))
end)
