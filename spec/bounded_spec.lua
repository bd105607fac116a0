-- Nothing waits forever on a process: terminate_workers, kill_workers,
-- close, shutdown and __gc return in bounded time whatever the workers or
-- the zygote do (stopped with SIGSTOP, as a debugger does, or ignoring
-- SIGTERM, as a task with a signal handler of its own may), fail what is
-- unfinished when they say so, and leave no process behind.
local ppe = require "ppe"
local H = require "fixtures.faults_util"
require "fixtures.bad_util"  -- puts spec/fixtures (evil) on package.cpath

local SIGTERM, SIGKILL = 15, 9

teardown(function() H.cleanup() end)

local function expect_died(f, sig)
  local err = f:exception(0)
  assert.equal("failed", f:state())
  assert.equal("WorkerDied", err.kind, tostring(err))
  assert.equal(sig, err.signal, tostring(err))
  assert.matches("worker " .. err.pid .. " was sent signal " .. sig .. " %(" ..
                 (sig == SIGTERM and "SIGTERM" or "SIGKILL") .. ".*%) by " ..
                 (sig == SIGTERM and "terminate_workers" or "kill_workers"),
                 err.message)
  return err
end

-- The worker 'pid' is gone: neither alive nor a zombie of the zygote z.
local function reaped(pid, z)
  return H.wait_until(function()
    return H.stat(pid) == nil and H.children(z)[pid] == nil
  end, 5)
end

-- A task that writes its worker's pid to 'path', ignores SIGTERM if told
-- to, then runs 'secs' seconds and returns "done".
local function stubborn(path, secs, ignore_term)
  if ignore_term then require("evil").ignore(15) end
  local f = io.open("/proc/self/stat")
  local pid = f:read("*n")
  f:close()
  local o = io.open(path, "a")
  o:write(pid, "\n")
  o:close()
  require("evil").sleep(secs)
  return "done"
end

-- Starts one stubborn task on a one-worker executor; returns the executor,
-- the zygote, the future and the worker's pid once the task runs.
local function start(scope, secs, ignore_term)
  local ex, z = H.executor(ppe, { max_workers = 1 })
  scope(ex)
  scope(H.guard(ex))
  local path = H.tmpname("bounded")
  local f = ex:submit(stubborn, path, secs, ignore_term)
  assert.is_true(H.wait_until(function()
    return #H.read_lines(path) == 1 end, 10), "the task did not start")
  return ex, z, f, tonumber(H.read_lines(path)[1])
end

-- Stops process 'pid' (SIGSTOP) and has it continued 20 s later, so that a
-- call that waits for it without bound fails its time check instead of
-- hanging the specs.
local function stop(pid)
  os.execute("kill -STOP " .. pid)
  os.execute("(sleep 20; kill -CONT " .. pid .. ") >/dev/null 2>&1 &")
end

-- Runs fn and returns the seconds it took.
local function timed(fn, ...)
  local t0 = H.now()
  fn(...)
  return H.now() - t0
end

describe("terminate_workers", function()
  it("with a stopped worker: its future fails at once, the call returns " ..
     "within a grace period, the worker is killed and reaped",
     H.scoped(function(scope)
    local ex, z, f, pid = start(scope, 20)
    stop(pid)
    local took = timed(ex.terminate_workers, ex)
    assert.is_true(took < 4, "terminate_workers took " .. took .. " s")
    local err = expect_died(f, SIGTERM)
    assert.equal(pid, err.pid)
    assert.is_true(reaped(pid, z), "worker " .. pid .. " left behind")
    assert.is_true(H.alive(z), "the zygote serves on")
  end))

  it("with a task that ignores SIGTERM: its future fails (it does not " ..
     "succeed later), the worker is killed and reaped",
     H.scoped(function(scope)
    local ex, z, f, pid = start(scope, 20, true)
    local took = timed(ex.terminate_workers, ex)
    assert.is_true(took < 4, "terminate_workers took " .. took .. " s")
    local err = expect_died(f, SIGTERM)
    assert.equal(pid, err.pid)
    assert.is_true(reaped(pid, z), "worker " .. pid .. " left behind")
    local st = ex:stats()
    assert.equal(1, st.failed)
    assert.equal(0, st.running)
  end))

  it("fails tasks sent behind the running one that it had not started " ..
     "with BrokenExecutor, at once", H.scoped(function(scope)
    local ex, z, f, pid = start(scope, 20, true)
    local queued = {}
    for i = 1, 3 do queued[i] = ex:submit("string.rep", "x", i) end
    local took = timed(ex.terminate_workers, ex)
    assert.is_true(took < 4, "terminate_workers took " .. took .. " s")
    expect_died(f, SIGTERM)
    for i = 1, 3 do
      assert.equal("BrokenExecutor", queued[i]:exception(0).kind)
    end
    assert.is_true(reaped(pid, z), "worker " .. pid .. " left behind")
  end))
end)

describe("kill_workers", function()
  it("with a stopped worker: returns at once, the worker is reaped",
     H.scoped(function(scope)
    local ex, z, f, pid = start(scope, 20)
    stop(pid)
    local took = timed(ex.kill_workers, ex)
    assert.is_true(took < 2, "kill_workers took " .. took .. " s")
    expect_died(f, SIGKILL)
    assert.is_true(reaped(pid, z), "worker " .. pid .. " left behind")
  end))

  it("with a task that ignores SIGTERM: the same", H.scoped(function(scope)
    local ex, z, f, pid = start(scope, 20, true)
    local took = timed(ex.kill_workers, ex)
    assert.is_true(took < 2, "kill_workers took " .. took .. " s")
    expect_died(f, SIGKILL)
    assert.is_true(reaped(pid, z), "worker " .. pid .. " left behind")
  end))
end)

describe("close, shutdown and __gc", function()
  -- An idle worker that is stopped cannot read the end of its channel:
  -- it is killed once it has had the time an exiting worker gets.
  local function idle_stopped()
    local ex, z = H.executor(ppe, { max_workers = 2 })
    assert.equal("xx", ex:submit("string.rep", "x", 2):result(10))
    local ws = H.live_workers(z)
    assert.equal(2, #ws)
    stop(ws[1])
    return ex, z, ws
  end

  for _, how in ipairs { "close", "shutdown", "__gc" } do
    -- (One of the three under valgrind: each waits for the same timers.)
    it((how == "close" and "" or "#novalgrind ") .. how ..
       " with an idle stopped worker returns in bounded time, " ..
       "the worker killed and reaped", H.scoped(function()
      local ex, z, ws = idle_stopped()
      local took
      if how == "__gc" then
        ex = nil  -- luacheck: ignore 311
        took = timed(function() collectgarbage() collectgarbage() end)
      else
        took = timed(ex[how], ex)
      end
      assert.is_true(took < 9, how .. " took " .. took .. " s")
      for _, w in ipairs(ws) do
        assert.is_true(reaped(w, z), "worker " .. w .. " left behind")
      end
      assert.is_true(H.alive(z), "the zygote serves on")
    end))
  end

  it("close waits for a task whose worker is stopped (work is not " ..
     "abandoned) and returns with its result once it is continued",
     H.scoped(function(scope)
    local ex, z, f, pid = start(scope, 1)
    stop(pid)
    os.execute("(sleep 1; kill -CONT " .. pid .. ") >/dev/null 2>&1 &")
    local took = timed(ex.close, ex)
    assert.is_true(took >= 0.9, "close returned before the task ended")
    assert.is_true(took < 10, "close took " .. took .. " s")
    assert.equal("done", f:result(0))
    assert.is_true(reaped(pid, z), "worker " .. pid .. " left behind")
  end))

  it("close waits for a task that ignores SIGTERM and gets its result",
     H.scoped(function(scope)
    local ex, z, f, pid = start(scope, 0.5, true)
    local took = timed(ex.close, ex)
    assert.is_true(took < 10, "close took " .. took .. " s")
    assert.equal("done", f:result(0))
    assert.is_true(reaped(pid, z), "worker " .. pid .. " left behind")
  end))
end)

describe("a stopped zygote", function()
  -- The zygote stopped: it neither reaps nor kills. A close that waits for
  -- it gives up on it in bounded time: it is killed (and its workers with
  -- it), and the next executor gets a new one.
  local function stopped_zygote(scope)
    local ex, z = H.executor(ppe, { max_workers = 2 })
    scope(H.guard(ex))
    assert.equal("xx", ex:submit("string.rep", "x", 2):result(10))
    local ws = H.live_workers(z)
    assert.equal(2, #ws)
    stop(z)
    return ex, z, ws
  end

  local function all_gone(z, ws)
    assert.is_true(H.wait_until(function()
      if H.stat(z) ~= nil then return false end
      for _, w in ipairs(ws) do if H.alive(w) then return false end end
      return true
    end, 5), "the zygote or a worker is left")
    local ex2 = ppe.executor { max_workers = 1 }
    assert.equal("yy", ex2:submit("string.rep", "y", 2):result(10))
    ex2:close()
    assert.is_not.equal(z, H.zygote())
  end

  it("#novalgrind close returns in bounded time; the zygote and workers " ..
     "are gone",
     H.scoped(function(scope)
    local ex, z, ws = stopped_zygote(scope)
    local took = timed(ex.close, ex)
    assert.is_true(took < 12, "close took " .. took .. " s")
    all_gone(z, ws)
  end))

  it("kill_workers returns in bounded time and fails the running task " ..
     "at once", H.scoped(function(scope)
    local ex, z = H.executor(ppe, { max_workers = 1 })
    scope(H.guard(ex))
    local path = H.tmpname("bounded")
    local f = ex:submit(stubborn, path, 20)
    assert.is_true(H.wait_until(function()
      return #H.read_lines(path) == 1 end, 10), "the task did not start")
    local ws = H.live_workers(z)
    stop(z)
    local took = timed(ex.kill_workers, ex)
    assert.is_true(took < 7, "kill_workers took " .. took .. " s")
    expect_died(f, SIGKILL)
    all_gone(z, ws)
  end))
end)

describe("a burst of kills", function()
  -- terminate_workers on a large executor sends the zygote more requests
  -- than its channel holds: none may be lost (each worker is reaped at
  -- once), and a zygote that serves is never taken for a stuck one, so
  -- another executor it serves goes on.
  it("#slow on 400 workers loses none and harms no other executor",
     H.scoped(function(scope)
    local other = scope(ppe.executor { max_workers = 1 })
    local z = H.zygote()
    local long = other:submit(function()
      require("evil").sleep(6)
      return "other ok"
    end)
    local n = 400
    local ex = scope(ppe.executor { max_workers = n })
    scope(H.guard(ex))
    local fs = {}
    for i = 1, n do
      fs[i] = ex:submit(function()
        require("evil").ignore(15)
        require("evil").sleep(30)
      end)
    end
    assert.is_true(H.wait_until(function()
      return ex:stats().running == n end, 60), "the tasks did not start")
    local took = timed(ex.terminate_workers, ex)
    assert.is_true(took < 4, "terminate_workers took " .. took .. " s")
    for i = 1, n do expect_died(fs[i], SIGTERM) end
    assert.equal("other ok", long:result(30))
    assert.is_true(H.alive(z), "the zygote was killed")
    assert.equal(1, #H.live_workers(z))  -- the other executor's worker
  end))
end)

describe("a worker that outlives SIGKILL", function()
  -- A worker held by a tracer is not reported ended however long it was
  -- killed: a close waits for it a while (its zygote answers pings), then
  -- counts it as gone, and the zygote, which serves, lives on.
  it("#slow is given up 10 s after SIGKILL; the zygote serves on",
     H.scoped(function(scope)
    local ex, z, f, pid = start(scope, 30)
    require("evil").seize(pid, 12)
    local took = timed(ex.kill_workers, ex)
    assert.is_true(took < 14, "kill_workers took " .. took .. " s")
    assert.is_true(took > 9, "kill_workers gave up after " .. took .. " s")
    expect_died(f, SIGKILL)
    assert.is_true(H.alive(z), "the zygote was killed")
    local ex2 = ppe.executor { max_workers = 1 }
    assert.equal("zz", ex2:submit("string.rep", "z", 2):result(10))
    ex2:close()
    -- Once the tracer lets go, the zygote reaps it: nothing is left for
    -- the specs that count processes after this one.
    assert.is_true(H.wait_until(function()
      return H.children(z)[pid] == nil end, 10), "worker " .. pid .. " left")
  end))
end)

describe("a burst of deaths", function()
  -- Every worker of a large executor dies at once (task_timeout): the
  -- zygote is asked for as many forks as its channel holds and more; none
  -- is dropped, so the executor keeps its size.
  it("#slow on 300 workers: every one is replaced", H.scoped(function(scope)
    local n = 300
    local ex = scope(ppe.executor { max_workers = n, task_timeout = 1 })
    local fs = {}
    for i = 1, n do
      fs[i] = ex:submit(function() require("evil").sleep(30) end)
    end
    for i = 1, n do
      assert.is_true(fs[i]:wait(30))
      assert.equal("TaskTimeout", fs[i]:exception(0).kind)
    end
    local st
    assert.is_true(H.wait_until(function()
      st = ex:stats()
      return st.workers == n
    end, 30), "workers: " .. tostring(st and st.workers))
    assert.equal(n, st.restarts)
  end))
end)
