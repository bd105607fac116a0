-- ex:resize and idle_timeout: the number of workers while work runs.
-- Growing starts workers at once; shrinking retires idle workers first
-- and busy ones after their task; nothing pending is lost. Idle workers
-- leave after idle_timeout and start again when work comes.
local ppe = require "ppe"
local H = require "helpers"

local T = 30  -- seconds: a loose bound for what takes a moment

local function workers(ex) return ex:stats().workers end

-- Waits until ex has n workers up.
local function settles(ex, n)
  assert.is_true(H.wait_until(function() return workers(ex) == n end, T),
                 "workers: " .. workers(ex) .. ", not " .. n)
end

-- A task that holds its worker 'secs' seconds, then says who ran it.
local function hold(secs)
  os.execute("sleep " .. secs)
  return (require("helpers").whoami())
end

local far_command = H.far_command

describe("ex:resize", function()
  it("grows at once: the new workers run work side by side",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    ex:resize(3)
    settles(ex, 3)
    local fs, pids = {}, {}
    for i = 1, 3 do fs[i] = ex:submit(hold, 0.5) end
    for i = 1, 3 do pids[fs[i]:result(T)] = true end
    assert.are.equal(3, H.count(pids))
    assert.are.equal(0, ex:stats().restarts)
  end))

  it("shrinks by its idle workers first: a busy one keeps its task",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 3 })
    settles(ex, 3)
    local busy = ex:submit(hold, 1)
    assert.is_true(H.wait_until(function() return busy:running() end, T))
    ex:resize(1)
    settles(ex, 1)
    assert.is_false(busy:done())
    local pid = busy:result(T)
    assert.are.equal(pid, ex:submit(H.whoami):result(T))
    assert.are.equal(0, ex:stats().restarts)
  end))

  it("retires busy workers after their task, losing nothing queued",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 3 })
    settles(ex, 3)
    local fs = {}
    for i = 1, 3 do fs[i] = ex:submit(hold, 0.4) end
    for i = 4, 30 do fs[i] = ex:submit(function(x) return x * x end, i) end
    ex:resize(1)
    for i = 1, 3 do assert.is_number(fs[i]:result(T)) end
    for i = 4, 30 do assert.are.equal(i * i, fs[i]:result(T)) end
    settles(ex, 1)
    assert.are.equal(0, ex:stats().restarts)
    assert.are.equal(30, ex:stats().completed)
  end))

  it("to 0 keeps work waiting until a later resize", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2 })
    ex:resize(0)
    settles(ex, 0)
    local f = ex:submit(function() return "ran" end)
    H.sleep_pid(0.3)
    assert.is_false(f:done())
    ex:resize(1)
    assert.are.equal("ran", f:result(T))
    settles(ex, 1)
  end))

  it("sets each group by name; a far group too", H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = {
      { n = 1 },
      { n = 1, launcher = { "env" }, command = far_command(), name = "far" },
    } })
    local ok, e = pcall(ex.resize, ex, 3)
    assert.is_false(ok)
    assert.matches("has 2 groups; give their sizes by name", e, 1, true)
    ex:resize { ["local"] = 2, far = 2 }
    settles(ex, 4)
    local g = ex:stats().groups
    assert.are.equal(2, g[1].workers)
    assert.are.equal(2, g[2].workers)
    ex:resize { far = 0 }
    settles(ex, 2)
    assert.are.equal(0, ex:stats().groups[2].workers)
    assert.are.equal(0, ex:stats().groups[2].restarts)
    assert.are.equal(9, ex:submit(function() return 9 end):result(T))
  end))

  it("refuses bad sizes and names, setting nothing", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2 })
    settles(ex, 2)
    for _, c in ipairs({
      { -1, "the size must be an integer from 0 to 1024, got -1" },
      { 1.5, "got 1.5" },
      { "3", "got 3" },
      { 1025, "from 0 to 1024" },
      { { nope = 1 }, "no group named 'nope'" },
      { { [1] = 2 }, "a group is named by a string" },
      { { ["local"] = true }, "the size of 'local' must be an integer" },
    }) do
      local ok, e = pcall(ex.resize, ex, c[1])
      assert.is_false(ok)
      assert.matches(c[2], e, 1, true)
    end
    assert.are.equal(2, workers(ex))
    ex:shutdown()
    local ok, e = pcall(ex.resize, ex, 1)
    assert.is_false(ok)
    assert.are.equal("ShutdownError", e.kind)
  end))
end)

describe("ex:resize, at the edges", function()
  it("counts no failed start for far workers retired while starting",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { host_failures = 1, workers = {
      { n = 3, launcher = { "env" }, command = far_command() } } })
    ex:resize(0)
    settles(ex, 0)
    ex:resize(1)
    assert.are.equal(7, ex:submit(function() return 7 end):result(T))
    assert.is_false(ex:stats().groups[1].given_up)
  end))

  it("counts no failed start for one grown back before its launcher ended",
     H.scoped(function(scope)
    -- Retired while starting, its launcher is killed; wanted again before
    -- that end is heard of, the end is no failure either, and the slot
    -- starts anew. Each round catches the moment between, or not.
    for _ = 1, 50 do
      local ex = scope(ppe.executor { host_failures = 1, workers = {
        { n = 2, launcher = { "env" }, command = far_command() } } })
      ex:resize(0)
      assert.is_true(H.wait_until(function()
        for _, w in ipairs(ex:stats().per_worker) do
          if w.state ~= "retired" then return false end
        end
        return true
      end, T))
      ex:resize(2)
      assert.are.equal(7, ex:submit(function() return 7 end):result(T))
      assert.is_false(ex:stats().groups[1].given_up)
      ex:close()
    end
  end))

  it("counts no restart for a slot grown back before its worker left",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2 })
    settles(ex, 2)
    -- The worker retired first is the last one: stopped, it cannot
    -- leave before the group grows back.
    local pid
    for _ = 1, 50 do
      local fs = {}
      for i = 1, 4 do
        fs[i] = ex:submit(function()
          os.execute("sleep 0.05")
          return ppe.worker_id(), (require("helpers").whoami())
        end)
      end
      for i = 1, 4 do
        local id, p = fs[i]:result(T)
        if id == 2 then pid = p end
      end
      if pid then break end
    end
    assert.is_number(pid)
    os.execute("kill -STOP " .. pid)
    ex:resize(1)
    settles(ex, 1)
    ex:resize(2)
    H.sleep_pid(0.2)
    os.execute("kill -CONT " .. pid)
    settles(ex, 2)
    assert.is_true(H.wait_until(function() return not H.alive(pid) end, T))
    assert.are.equal(0, ex:stats().restarts)
  end))

  it("to 0 before shutdown: the work left fails, and shutdown says so",
     function()
    local ex = ppe.executor { max_workers = 1 }
    ex:resize(0)
    settles(ex, 0)
    local f = ex:submit(function() return 1 end)
    assert.is_false(ex:shutdown())
    local e = H.failure(f, 0)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.matches("no worker was left to run it", e.message, 1, true)
  end)
end)

describe("idle_timeout", function()
  it("lets idle workers leave, and starts them again for work",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2, idle_timeout = 0.3 })
    local before = ex:submit(H.whoami):result(T)
    settles(ex, 0)
    assert.is_true(H.wait_until(function() return not H.alive(before) end,
                                T))
    local fs = {}
    for i = 1, 4 do fs[i] = ex:submit(function(x) return x + 1 end, i) end
    for i = 1, 4 do assert.are.equal(i + 1, fs[i]:result(T)) end
    assert.are_not.equal(before, ex:submit(H.whoami):result(T))
    assert.are.equal(0, ex:stats().restarts)
    settles(ex, 0)
  end))

  it("counts from the end of a worker's last task", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1, idle_timeout = 0.5 })
    local f = ex:submit(hold, 1)  -- longer than the timeout: not idle
    local pid = f:result(T)
    assert.are.equal(pid, ex:submit(H.whoami):result(T))
  end))

  it("parks far workers too", H.scoped(function(scope)
    local ex = scope(ppe.executor { idle_timeout = 0.3, workers = {
      { n = 1, launcher = { "env" }, command = far_command() } } })
    local before = ex:submit(H.whoami):result(T)
    settles(ex, 0)
    assert.is_true(H.wait_until(function() return not H.alive(before) end,
                                T))
    assert.are_not.equal(before, ex:submit(H.whoami):result(T))
  end))

  it("starts a parked worker of a group that is up, not one given up",
     H.scoped(function(scope)
    -- The far group's first start works, every later one fails; once
    -- all are parked, the task must get the local worker.
    local once = os.tmpname()
    os.remove(once)
    local ex = scope(ppe.executor { idle_timeout = 0.3, host_failures = 1,
      workers = {
        { n = 2, name = "far", command = far_command(), launcher = {
          "sh", "-c", 'mkdir "$0" 2>/dev/null && exec "$@"; exit 3', once } },
        { n = 1 } } })
    assert.is_true(H.wait_until(function()
      return ex:stats().groups[1].given_up and workers(ex) == 0 end, T))
    assert.are.equal(42, ex:submit(function() return 42 end):result(T))
    os.remove(once)
  end))

  it("refuses what is not a number of seconds > 0", function()
    for _, v in ipairs({ 0, -1, "soon" }) do
      local ok, e = pcall(ppe.executor, { idle_timeout = v })
      assert.is_false(ok)
      assert.matches("option 'idle_timeout' must be a number of seconds > 0",
                     e, 1, true)
    end
  end)
end)
