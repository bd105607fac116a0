-- shutdown{ timeout = s }: a bounded shutdown. What is not done in s
-- seconds is cut short: queued futures are cancelled, running ones fail
-- with WorkerDied as their workers are terminated (SIGKILL a second after
-- SIGTERM). Times are checked as upper bounds only.
require "fixtures.bad_util"  -- first: puts spec/fixtures on cpath
local ppe = require "ppe"
local H = require "helpers"

local T = 30  -- seconds: a loose bound for what takes a moment

-- A task that runs until it is killed, ignoring SIGTERM if told to.
local function forever(ignore_term)
  if ignore_term then require("evil").ignore(15) end
  while true do end
end

-- The command of a far worker through env (spec/far_spec.lua's).
local far_command = H.far_command

-- One worker running forever(ignore_term), five tasks queued behind it;
-- then shutdown{ timeout = secs }. Returns what shutdown returned, the
-- seconds it took, the running future and the queued ones, and the
-- running task's worker pid.
local function cut_short(secs, ignore_term, group)
  local ex = ppe.executor(group and { workers = { group } }
                          or { max_workers = 1 })
  local pid = ex:submit(H.whoami):result(30)
  local running = ex:submit(forever, ignore_term)
  assert.is_true(H.wait_until(function() return running:running() end, 30))
  H.sleep_pid(0.2)  -- (under way: SIGTERM ignored by then, if it is)
  local queued = {}
  for i = 1, 5 do queued[i] = ex:submit(function(x) return x end, i) end
  local t0 = H.now()
  local ok = ex:shutdown { timeout = secs }
  local took = H.now() - t0
  ex:close()
  return ok, took, running, queued, pid
end

describe("shutdown{ timeout }", function()
  it("returns true when everything finishes in time", function()
    local ex = ppe.executor { max_workers = 2 }
    local fs = {}
    for i = 1, 6 do
      fs[i] = ex:submit(function(x) H.spin(0.05) return x * 2 end, i)
    end
    assert.is_true(ex:shutdown { timeout = 30 })
    for i = 1, 6 do assert.are.equal(2 * i, fs[i]:result(0)) end
    assert.are.equal("ShutdownError",
                     H.expect_error("ShutdownError", ex.submit, ex,
                                    function() end).kind)
  end)

  it("cuts short what runs past it: running futures fail with WorkerDied, "
     .. "queued ones are cancelled, false", function()
    local ok, took, running, queued, pid = cut_short(0.5)
    assert.is_false(ok)
    assert.is_true(took < 5, ("it took %.1f s"):format(took))
    local e = H.failure(running, 0)
    assert.are.equal("WorkerDied", e.kind)
    assert.are.equal(15, e.signal)
    assert.are.equal(pid, e.pid)
    assert.matches("by shutdown, its timeout passed", e.message, 1, true)
    for i = 1, 5 do assert.is_true(queued[i]:cancelled()) end
    assert.is_false(H.alive(pid))
  end)

  it("kills a worker that ignores SIGTERM a second later", function()
    local ok, took, running, _, pid = cut_short(0.2, true)
    assert.is_false(ok)
    assert.is_true(took < 5, ("it took %.1f s"):format(took))
    assert.are.equal("WorkerDied", H.failure(running, 0).kind)
    assert.is_false(H.alive(pid))
  end)

  it("cuts short a far worker's task, naming its far pid and host",
     function()
    local ok, took, running, queued, pid = cut_short(0.3, false, {
      n = 1, launcher = { "env" }, command = far_command(), name = "far" })
    assert.is_false(ok)
    assert.is_true(took < 5, ("it took %.1f s"):format(took))
    local e = H.failure(running, 0)
    assert.are.equal("WorkerDied", e.kind)
    assert.are.equal(pid, e.pid)
    assert.are.equal("far", e.host)
    for i = 1, 5 do assert.is_true(queued[i]:cancelled()) end
    assert.is_true(H.wait_until(function() return not H.alive(pid) end, 2))
  end)

  it("with timeout 0 cuts short at once whatever is not done", function()
    local ok, took, running = cut_short(0)
    assert.is_false(ok)
    assert.is_true(took < 5, ("it took %.1f s"):format(took))
    assert.are.equal("WorkerDied", H.failure(running, 0).kind)
  end)

  it("is bounded while a worker runs its initializer", function()
    local ex = ppe.executor { max_workers = 1,
      initializer = function() os.execute("sleep 20") end }
    local f = ex:submit(function() return 1 end)
    local t0 = H.now()
    local ok = ex:shutdown { timeout = 0.5 }
    local took = H.now() - t0
    ex:close()
    assert.is_false(ok)
    assert.is_true(took < 5, ("it took %.1f s"):format(took))
    assert.is_true(f:done())
  end)

  it("cancels tasks taken back from a busy worker, not running them after",
     function()
    local ex = ppe.executor { max_workers = 2 }
    local warm = {}
    for i = 1, 200 do warm[i] = ex:submit(function() return 1 end) end
    for i = 1, 200 do warm[i]:result(T) end
    -- Tiny tasks measured: several go to a worker at once, and those
    -- behind a long one are taken back to the queue, where they wait
    -- (running) for a worker.
    local long = function() os.execute("sleep 3") return "long" end
    local fs = {}
    for i, fn in ipairs({ long, function() return "q" end, long, long,
                          long }) do
      fs[i] = ex:submit(fn)
    end
    H.sleep_pid(0.5)
    local t0 = H.now()
    assert.is_false(ex:shutdown { timeout = 0.3 })
    local took = H.now() - t0
    ex:close()
    assert.is_true(took < 2.5, ("it took %.1f s"):format(took))
    for i, f in ipairs(fs) do
      if i ~= 2 then
        assert.is_true(f:cancelled() or f:state() == "failed",
                       "long task " .. i .. " is " .. f:state())
      end
    end
  end)

  it("with math.huge waits for ever, and the work finishes", function()
    local ex = ppe.executor { max_workers = 1 }
    local f = ex:submit(function() os.execute("sleep 0.3") return "done" end)
    assert.is_true(ex:shutdown { timeout = math.huge })
    assert.are.equal("done", f:result(0))
  end)

  it("is ignored with wait = false: the work goes on", function()
    local ex = ppe.executor { max_workers = 1 }
    local f = ex:submit(function() H.spin(0.3) return "done" end)
    assert.is_true(ex:shutdown { wait = false, timeout = 0 })
    assert.are.equal("done", f:result(30))
    ex:close()
  end)

  it("refuses a bad timeout or an unknown option, naming it", function()
    local ex = ppe.executor { max_workers = 1 }
    for _, c in ipairs({
      { { timeout = -1 }, "'timeout' must be a number of seconds >= 0" },
      { { timeout = "soon" }, "'timeout' must be a number of seconds" },
      { { timeot = 1 }, "timeot" },
      { 5, "options table" },
    }) do
      local ok, e = pcall(ex.shutdown, ex, c[1])
      assert.is_false(ok)
      assert.matches(c[2], tostring(e), 1, true)
    end
    assert.is_true(ex:shutdown())
  end)
end)
