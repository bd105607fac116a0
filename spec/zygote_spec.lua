-- The zygote: one fork server per process, forked when the first executor
-- starts, serving every executor after it; workers still start with what
-- the caller had when their executor was made.
local U = require "fixtures.bad_util"  -- first: puts spec/fixtures on cpath
local ppe = require "ppe"
local H = require "fixtures.faults_util"
local evil = U.evil()

local T = 30
local ME = H.mypid()
local all_up = require("helpers").all_up
local read_file = require("helpers").read_file
local worker_pid = H.task_pid

-- Executors earlier specs left to the collector go, so that the zygote's
-- children are this spec's.
local function quiet()
  collectgarbage()
  collectgarbage()
end

-- The zygote of an executor: the parent of one of its workers.
local function zygote_of(ex)
  return H.stat(ex:submit(worker_pid):result(T)).ppid
end


local function tmpdir(tag)
  local d = H.tmpname(tag)
  assert(os.execute("mkdir -p " .. d))
  return d
end

describe("the zygote", function()
  it("is one process, a child of ours, that forks every executor's workers "
     .. "and stays while idle", H.scoped(function(scope)
    quiet()
    local e1 = scope(ppe.executor { max_workers = 1 })
    local e2 = all_up(scope(ppe.executor { max_workers = 2 }), 2)
    local z = zygote_of(e1)
    assert.equal(z, zygote_of(e2))
    local st = H.stat(z)
    assert.equal(ME, st.ppid)
    assert.equal("ppe zygote", st.comm)
    -- workers keep the caller's name
    local w = e1:submit(worker_pid):result(T)
    assert.equal(H.stat(ME).comm, H.stat(w).comm)
    assert.equal(3, #H.live_workers(z))
    e1:close()
    e2:close()
    assert.same({}, H.children(z))
    assert.is_true(H.alive(z))
    local e3 = scope(ppe.executor { max_workers = 1 })
    assert.equal(z, zygote_of(e3))
    assert.equal(1, #H.live_workers(z))
  end))

  it("starts workers in the caller's working directory of when their "
     .. "executor was made", H.scoped(function(scope)
    local here = evil.getcwd()
    local dir = tmpdir("cwd")
    local f = assert(io.open(dir .. "/marker", "w"))
    f:write("there")
    f:close()
    local function marker()
      local m = io.open("marker")
      if not m then return "none" end
      local s = m:read("*a")
      m:close()
      return s
    end
    local before = scope(ppe.executor { max_workers = 1 })
    evil.chdir(dir)
    local ok, after = pcall(ppe.executor, { max_workers = 1 })
    evil.chdir(here)
    assert(ok, after)
    scope(after)
    assert.equal(zygote_of(before), zygote_of(after))
    assert.equal("there", after:submit(marker):result(T))
    assert.equal("none", before:submit(marker):result(T))
    -- and a replacement worker starts there too
    local ex = scope(ppe.executor { max_workers = 1, max_tasks_per_child = 1 })
    evil.chdir(dir)
    local ok2, ex2 = pcall(ppe.executor,
                           { max_workers = 1, max_tasks_per_child = 1 })
    evil.chdir(here)
    assert(ok2, ex2)
    scope(ex2)
    for _ = 1, 3 do
      assert.equal("there", ex2:submit(marker):result(T))
      assert.equal("none", ex:submit(marker):result(T))
    end
    os.remove(dir .. "/marker")
    os.remove(dir)
  end))

  it("gives workers the caller's stdout and stderr of when their executor "
     .. "was made", H.scoped(function(scope)
    -- an executor made while stdout and stderr go to files o and e;
    -- its worker writes text to both
    local function writes(o, e, text)
      io.stdout:flush()
      io.stderr:flush()
      local saved_out, saved_err = evil.redirect(1, o), evil.redirect(2, e)
      local ok, ex = pcall(ppe.executor, { max_workers = 1 })
      evil.restore(saved_out, 1)
      evil.restore(saved_err, 2)
      assert(ok, ex)
      scope(ex)
      assert.is_true(ex:submit(function(s)
        io.stdout:write(s)
        io.stderr:write(s)
        return true
      end, text):result(T))
    end
    local out, err = H.tmpname("out"), H.tmpname("err")
    local out2, err2 = H.tmpname("out2"), H.tmpname("err2")
    writes(out, err, "first\n")
    writes(out2, err2, "second\n")  -- the same zygote, other stdio
    assert.equal("first\n", read_file(out))
    assert.equal("first\n", read_file(err))
    assert.equal("second\n", read_file(out2))
    assert.equal("second\n", read_file(err2))
    for _, f in ipairs { out, err, out2, err2 } do os.remove(f) end
  end))

  it("is a new one once the environment has changed; the old one is reaped "
     .. "when its last executor closes", H.scoped(function(scope)
    quiet()
    local function getenv() return os.getenv("PPE_SPEC_VAR") or "unset" end
    local e1 = scope(ppe.executor { max_workers = 1 })
    local z1 = zygote_of(e1)
    evil.setenv("PPE_SPEC_VAR", "set")
    local ok, e2 = pcall(ppe.executor, { max_workers = 1 })
    evil.setenv("PPE_SPEC_VAR", nil)
    assert(ok, e2)
    scope(e2)
    local z2 = zygote_of(e2)
    assert.not_equal(z1, z2)
    assert.equal(ME, H.stat(z2).ppid)
    assert.equal("set", e2:submit(getenv):result(T))
    assert.equal("unset", e1:submit(getenv):result(T))
    e1:close()
    assert.is_nil(H.stat(z1))  -- reaped: not even a zombie
    -- the environment is back as it was: yet another zygote
    local e3 = scope(ppe.executor { max_workers = 1 })
    local z3 = zygote_of(e3)
    assert.not_equal(z2, z3)
    assert.equal("unset", e3:submit(getenv):result(T))
    e2:close()
    assert.is_nil(H.stat(z2))
    assert.is_true(H.alive(z3))
  end))

  -- (root only: a caller that drops privileges for a while; not under
  -- valgrind, whose files in /tmp a process of another user may not make)
  local it_root = read_file("/proc/self/status")
    :match("\nUid:%s+%d+%s+(%d+)") == "0" and it or pending
  it_root("#novalgrind is a new one for a caller whose effective user has "
          .. "changed",
          H.scoped(function(scope)
    local function euid()
      local f = io.open("/proc/self/status")
      local s = f:read("*a")
      f:close()
      return tonumber(s:match("\nUid:%s+%d+%s+(%d+)"))
    end
    local e1 = scope(ppe.executor { max_workers = 1 })
    local z1 = zygote_of(e1)
    local before = evil.seteuid(65534)
    local ok, e2 = pcall(ppe.executor, { max_workers = 1 })
    evil.seteuid(before)
    assert(ok, e2)
    scope(e2)
    assert.not_equal(z1, zygote_of(e2))
    assert.equal(65534, e2:submit(euid):result(T))
    assert.equal(0, e1:submit(euid):result(T))
  end))

  it("killed, breaks its executors; the next executor gets a new one",
     H.scoped(function(scope)
    quiet()
    local e1 = scope(ppe.executor { max_workers = 2 })
    scope(H.guard(e1))
    local z1 = zygote_of(e1)
    local running = e1:submit(function()
      local t = os.clock() while os.clock() - t < 20 do end
    end)
    assert.is_true(H.wait_until(function() return running:running() end, 5))
    os.execute("kill -9 " .. z1)
    assert.is_true(running:wait(10))
    assert.equal("failed", running:state())
    local kind = running:exception(0).kind
    assert.is_true(kind == "WorkerDied" or kind == "BrokenExecutor", kind)
    -- (known broken by now: submit raises it)
    local ok, e = pcall(e1.submit, e1, function() return 1 end)
    assert.is_false(ok)
    assert.equal("BrokenExecutor", e.kind)
    assert.matches("zygote", tostring(e))
    local e2 = scope(ppe.executor { max_workers = 1 })
    local z2 = zygote_of(e2)
    assert.not_equal(z1, z2)
    assert.equal(4, e2:submit(function(x) return x * x end, 2):result(T))
    e1:close()
    assert.is_nil(H.stat(z1))  -- reaped
  end))

  it("killed while idle, is reaped and replaced by the next executor",
     H.scoped(function(scope)
    quiet()
    local e1 = scope(ppe.executor { max_workers = 1 })
    local z1 = zygote_of(e1)
    e1:close()
    os.execute("kill -9 " .. z1)
    assert.is_true(H.wait_until(function()
      local st = H.stat(z1)
      return st == nil or st.state == "Z"
    end, 5))
    local e2 = scope(ppe.executor { max_workers = 1 })
    local z2 = zygote_of(e2)
    assert.not_equal(z1, z2)
    assert.is_nil(H.stat(z1))  -- reaped, not left a zombie
    assert.equal(9, e2:submit(function(x) return x * x end, 3):result(T))
  end))

  it("of a worker that makes an executor in a task is the worker's own",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local outer_zygote = zygote_of(ex)
    local pid, stat = worker_pid, H.stat  -- sent with the task, by value
    local me, inner_zygote, its_parent, v = ex:submit(function()
      local inner = require("ppe").executor { max_workers = 1 }
      local z = stat(inner:submit(pid):result(10)).ppid
      local r = inner:submit(function(x) return x + 1 end, 41):result(10)
      inner:close()
      return pid(), z, stat(z).ppid, r
    end):result(T)
    assert.equal(42, v)
    assert.equal(me, its_parent)
    assert.not_equal(outer_zygote, inner_zygote)
  end))

  it("of a fork's child is the child's own", function()
    local out = evil.fork(function()
      local ex = ppe.executor { max_workers = 1 }
      local z = zygote_of(ex)
      ex:close()
      local s = H.stat(z)
      return table.concat({ s.ppid, H.mypid() }, " ")
    end)
    local ppid, child = out:match("^(%d+) (%d+)$")
    assert.equal(child, ppid)
    assert.not_equal(tostring(ME), child)
  end)

  it("refuses package paths too long to hand over, naming them, and starts "
     .. "no process", function()
    local saved = package.path
    package.path = string.rep("?;", 40000)
    local before = U.children()
    local ok, err = pcall(ppe.executor, { max_workers = 1 })
    package.path = saved
    assert.is_false(ok)
    assert.matches("package.path and package.cpath", tostring(err))
    for p in pairs(U.children()) do
      assert(before[p], "a process was left behind: " .. p)
    end
  end)

  -- A Lua program with the fixtures on its cpath, run with sh; returns
  -- what it wrote to the file named by its global OUT, and the seconds
  -- the run took.
  -- What run_program's programs start with: WORKER(ex) is the pid of one
  -- of ex's workers, and its parent's.
  local PRELUDE = [[
    function WORKER(ex)
      local w = ex:submit(function()
        local f = io.open("/proc/self/stat")
        local p = f:read("*n")
        f:close()
        return p
      end):result(10)
      local f = io.open("/proc/" .. w .. "/stat")
      local z = tonumber(f:read("*a"):match("^%d+ %b() %S+ (%d+)"))
      f:close()
      return w, z
    end
  ]]

  local function run_program(body, redirections, prefix)
    local out = H.tmpname("prog")
    local script = ("package.cpath = %q\nOUT = %q\n"):format(package.cpath, out)
      .. PRELUDE .. body
    local t0 = H.now()
    os.execute((prefix or "") .. H.interpreter() .. " -e '" .. script:gsub("'", "'\\''") ..
               "' " .. (redirections or ""))
    local took = H.now() - t0
    local s = read_file(out)
    os.remove(out)
    return s, took
  end

  it("lets an executor close at once while a child forked with it open "
     .. "lives on", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2 })
    assert.equal(1, ex:submit(function() return 1 end):result(T))
    local sleeper = evil.sleeper(20)  -- far longer than a close takes,
    local t0 = H.now()                -- even under valgrind
    ex:close()
    local took = H.now() - t0
    os.execute("kill -9 " .. sleeper)
    assert.is_true(took < 10, "close took " .. took .. " s")
  end))

  it("does not hold up the close of a program whose fork's child lives on",
     function()
    local s, took = run_program([[
      local ppe = require "ppe"
      local ex = ppe.executor { max_workers = 1 }
      assert(ex:submit(function() return 1 end):result(10) == 1)
      ex:close()
      local sleeper = require("evil").sleeper(20)
      local f = io.open(OUT, "w")
      f:write(sleeper)
      f:close()
    ]])
    local sleeper = tonumber(s)
    assert.is_number(sleeper)
    -- it let go of its copy of the zygote's channel, the one socket there
    local sockets = {}
    for _, e in ipairs(H.fds(sleeper)) do
      if e.target:find("^socket:") then sockets[#sockets + 1] = e.target end
    end
    os.execute("kill -9 " .. sleeper)
    assert.same({}, sockets)
    -- far less than the sleeper's 20 s, even under valgrind
    assert.is_true(took < 10, "the program took " .. took .. " s")
  end)

  -- (valgrind itself does not start without stderr)
  it("#novalgrind gives workers /dev/null for the stdio a caller has "
     .. "closed, and none of its own descriptors", function()
    local s, took = run_program([[
      local ppe = require "ppe"
      local ex = ppe.executor { max_workers = 1 }
      local r = ex:submit(function()
        io.stdout:write("lost\n")
        io.stderr:write("lost\n")
        local t = {}
        for fd = 0, 2 do
          t[#t + 1] = os.execute("test /proc/self/fd/" .. fd ..
                                 " -ef /dev/null") and "null" or "other"
        end
        return table.concat(t, " ")
      end):result(10)
      ex:close()
      local f = io.open(OUT, "w")
      f:write(r)
      f:close()
    ]], "<&- >&- 2>&-")
    assert.equal("null null null", s)
    assert.is_true(took < 5, "the program took " .. took .. " s")
  end)

  -- (valgrind keeps limits of its own: ulimit does not reach the kernel)
  it("#novalgrind raises its own limit of open descriptors, and leaves "
     .. "workers the caller's", function()
    local s = run_program([[
      local function soft(pid)
        local f = io.open("/proc/" .. pid .. "/limits")
        local n = f:read("*a"):match("Max open files%s+(%S+)")
        f:close()
        return n
      end
      local ppe = require "ppe"
      local ex = ppe.executor { max_workers = 1 }
      local w, z = WORKER(ex)
      local f = io.open(OUT, "w")
      f:write(soft("self"), " ", soft(w), " ", soft(z))
      f:close()
      ex:close()
    ]], "", "ulimit -Sn 256; ")
    local hard = read_file("/proc/self/limits"):match(
      "Max open files%s+%S+%s+(%S+)")
    assert.equal("256 256 " .. hard, s)
  end)

  -- (a child process, so that a hang ends with it)
  it("#slow #novalgrind forks 600 workers for one executor, and serves them",
     function()
    local s = run_program([[
      local ppe = require "ppe"
      local ex = ppe.executor { max_workers = 600 }
      local fs = {}
      for i = 1, 1200 do fs[i] = ex:submit(function(x) return x * 2 end, i) end
      local sum = 0
      for i = 1, 1200 do sum = sum + fs[i]:result(30) end
      local deadline = os.time() + 60  -- the last are forked meanwhile
      while ex:stats().workers < 600 and os.time() < deadline do
        os.execute("sleep 0.05")
      end
      local n = ex:stats().workers
      ex:close()
      local f = io.open(OUT, "w")
      f:write(n, " ", sum)
      f:close()
    ]], "", "timeout 120 ")
    assert.equal("600 1441200", s)
  end)

  -- Tables have finalizers from Lua 5.2 on: one made before ppe is loaded
  -- runs after ppe's own at the state's close.
  local it_gc = _VERSION ~= "Lua 5.1" and it or pending
  it_gc("ends, and is reaped, when the last Lua state with ppe closes",
        function()
    local s = run_program([[
      local z
      PROBE = setmetatable({}, { __gc = function()
        local f = io.open("/proc/" .. z .. "/stat")
        local o = io.open(OUT, "w")
        o:write(z, f and " there" or " gone")
        o:close()
        if f then f:close() end
      end })
      local ppe = require "ppe"
      local ex = ppe.executor { max_workers = 1 }
      local _
      _, z = WORKER(ex)
      ex:close()
    ]])
    assert.matches("^%d+ gone$", s)
  end)
end)
