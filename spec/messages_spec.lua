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

-- What a shell command writes to stdout.
local function sh(cmd)
  local h = assert(io.popen(cmd))
  local out = h:read("*a")
  h:close()
  return out
end

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
  -- RLIMIT_NPROC counts the processes of a real user id and binds no
  -- root process: the program runs under an id of its own, with room for
  -- itself and the zygote but not for a worker. Its fork fails with
  -- EAGAIN, for real.
  it("makes ppe.executor raise BrokenExecutor with the fork's own error",
     function()
    if sh("id -u"):match("%d+") ~= "0" then
      return pending("needs root, to run a program under another user id")
    end
    if not sh("command -v setpriv && command -v prlimit && " ..
              "command -v timeout"):find("timeout") then
      return pending("needs setpriv, prlimit and timeout (util-linux)")
    end
    local uid = 60000 + ME % 5000
    local script = ("package.cpath = %q\n"):format(package.cpath) .. [[
      local ppe = require "ppe"
      local ok, err = pcall(ppe.executor, { max_workers = 2 })
      local e = type(err) == "table" and err or {}
      io.write(tostring(ok), "\n", tostring(e.kind), "\n",
               tostring(e.message or err), "\n", tostring(e.cause), "\n")
    ]]
    local out = sh(("timeout 30 prlimit --nproc=2 setpriv --reuid=%d " ..
                    "--regid=%d --clear-groups %s -e %s 2>&1"):format(
                    uid, uid, U.interpreter(), U.quote(script)))
    local ok, kind, message, cause = out:match(
      "^(%a+)\n(%a+)\n([^\n]*)\n([^\n]*)\n")
    assert.is_not_nil(ok, out)
    assert.equal("false", ok, out)
    assert.equal("BrokenExecutor", kind, out)
    assert.equal("cannot fork a worker: Resource temporarily unavailable",
                 message)
    assert.equal("Resource temporarily unavailable", cause)
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
