-- Fault tolerance: workers that die (while running a task, while idle),
-- task_timeout, max_tasks_per_child, the initializer, terminate/kill, and
-- what is left behind (orphans, zombies, descriptors).
local ppe = require "ppe"
local H = require "fixtures.faults_util"

local ME = H.mypid()
local PPE_DIR = assert(H.searchpath("ppe", package.cpath),
                       "ppe.so not found on package.cpath"):gsub("ppe%.so$", "")

-- The interpreter running the specs, for the programs the orphan specs
-- start: ppe.so is built for one Lua (5.1 to 5.4, LuaJIT) and loads in no
-- other.
local LUA = H.interpreter()

local function square(x) return x * x end

teardown(function() H.cleanup() end)  -- scratch files, even after a failure

-- Tasks (by value) that return their argument squared and their pid.
local function square_pid(x)
  local f = io.open("/proc/self/stat")
  local pid = f:read("*n")
  f:close()
  return x * x, pid
end

local function expect_error(kind, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected a " .. kind .. " error")
  assert.equal("table", type(err), tostring(err))
  assert.equal(kind, err.kind, tostring(err))
  return err
end

local function stats_when(ex, cond, timeout)
  local st
  H.wait_until(function() st = ex:stats(); return cond(st) end, timeout or 5)
  return st
end

local DEATHS = {
  { how = "kill", name = "SIGKILL", signal = 9 },
  { how = "segv", name = "SIGSEGV", signal = 11 },
  { how = "exit", name = "os.exit(3)", exit_code = 3 },
}

local function check_died(err, d, pid)
  assert.equal("WorkerDied", err.kind, tostring(err))
  assert.equal(getmetatable(err), ppe.Error)
  assert.equal(pid, err.pid)
  assert.is_true(H.is_integer(err.pid) and err.pid > 0)
  assert.are_not.equal(ME, err.pid)
  if d.signal then
    assert.equal(d.signal, err.signal, tostring(err))
    assert.is_true(err.exit_code == nil or err.exit_code == 0, tostring(err))
  else
    assert.equal(d.exit_code, err.exit_code, tostring(err))
    assert.is_true(err.signal == nil or err.signal == 0, tostring(err))
  end
  assert.matches("^WorkerDied: ", tostring(err))
end

describe("a worker that dies while running a task", function()
  for _, d in ipairs(DEATHS) do
    it("by " .. d.name .. ": only its future fails, others complete, " ..
       "a replacement with a new pid serves later tasks", H.scoped(function(scope)
      local ex, z = scope(H.executor(ppe, { max_workers = 2 }))
      scope(H.guard(ex))
      local first = H.live_workers(z)
      assert.equal(2, #first)
      local firstset = H.set(first)
      local path = H.tmpname("die_" .. d.how)

      local others = {}
      for i = 1, 10 do others[i] = ex:submit(square, i) end
      local victim = ex:submit(H.die, path, d.how)
      for i = 11, 20 do others[i] = ex:submit(square, i) end

      assert.is_true(victim:wait(20))
      assert.equal("failed", victim:state())
      local lines = H.read_lines(path)
      assert.equal(1, #lines, "the dying task ran more than once")
      local dead = tonumber(lines[1])
      assert.is_true(firstset[dead])
      local err = victim:exception(0)
      check_died(err, d, dead)
      check_died(expect_error("WorkerDied", victim.result, victim, 0), d, dead)

      for i = 1, 20 do
        assert.equal(i * i, others[i]:result(20))
        assert.equal("finished", others[i]:state())
      end

      local st = stats_when(ex, function(s)
        return s.restarts >= 1 and s.workers == 2 end)
      assert.equal(1, st.restarts)
      assert.equal(2, st.workers)
      assert.equal(1, st.failed)
      assert.equal(0, st.pending)
      assert.equal(0, st.running)
      assert.equal(21, st.completed)

      -- the dead worker is reaped by the zygote; a new pid took its place
      assert.is_true(H.wait_until(function() return H.stat(dead) == nil end, 5),
                     "dead worker " .. dead .. " not reaped")
      local now = H.live_workers(z)
      assert.equal(2, #now)
      local new = {}
      for _, w in ipairs(now) do
        assert.are_not.equal(dead, w)
        if not firstset[w] then new[#new + 1] = w end
      end
      assert.equal(1, #new)

      -- the executor goes on: later tasks succeed, never on the dead pid
      local seen = {}
      local deadline = H.now() + 10
      repeat
        local fs = {}
        for i = 1, 4 do fs[i] = ex:submit(H.spin, 0.02, nil, i) end
        for i = 1, 4 do assert.equal(i, fs[i]:result(20)) end
        local a, b = ex:submit(square_pid, 7), ex:submit(square_pid, 8)
        local va, pa = a:result(20)
        local vb, pb = b:result(20)
        assert.equal(49, va); assert.equal(64, vb)
        seen[pa], seen[pb] = true, true
      until seen[new[1]] or H.now() > deadline
      assert.is_nil(seen[dead])
      assert.is_true(seen[new[1]], "no task ran on the replacement worker")
      os.remove(path)
    end))

    -- The executor sends small tasks several at a time once it has
    -- measured them as short; whether a given burst lands in one read of
    -- the worker depends on timing, so the scenario runs a few times.
    it("by " .. d.name .. " with tasks pipelined before and after it on " ..
       "the same worker: only its own future fails, it runs once", function()
      for round = 1, 5 do
        H.scoped(function(scope)
          local ex, z = scope(H.executor(ppe, { max_workers = 1 }))
          scope(H.guard(ex))
          -- many tiny tasks first, so the executor sends several at a time
          local nwarm = H.warm_up(ex)
          local path = H.tmpname("pipe_" .. d.how)
          local before, after = {}, {}
          for i = 1, 20 do before[i] = ex:submit(square, i) end
          local victim = ex:submit(H.die, path, d.how)
          for i = 1, 20 do after[i] = ex:submit(square, 100 + i) end

          assert.is_true(victim:wait(20))
          for i = 1, 20 do
            assert.is_true(before[i]:wait(20))
            assert.is_true(after[i]:wait(20))
          end
          local lost = {}
          for i = 1, 20 do
            if before[i]:state() ~= "finished" then
              lost[#lost + 1] = "before #" .. i .. ": " ..
                                tostring(before[i]:exception(0))
            end
            if after[i]:state() ~= "finished" then
              lost[#lost + 1] = "after #" .. i .. ": " ..
                                tostring(after[i]:exception(0))
            end
          end
          local lines = H.read_lines(path)
          assert.same({}, lost, "round " .. round)
          assert.equal(1, #lines, "round " .. round .. ": the dying task ran "
                       .. #lines .. " times")
          for i = 1, 20 do
            assert.equal(i * i, before[i]:result(0))
            assert.equal((100 + i) * (100 + i), after[i]:result(0))
          end
          check_died(victim:exception(0), d, tonumber(lines[1]))
          local st = stats_when(ex, function(s) return s.workers == 1 end)
          assert.equal(1, st.restarts)
          assert.equal(1, st.failed)
          assert.equal(nwarm + 41, st.completed)
          assert.equal(1, #H.live_workers(z))
          os.remove(path)
        end)()
      end
    end)
  end
end)

describe("a worker that dies while idle", function()
  it("is replaced silently", H.scoped(function(scope)
    local ex, z = scope(H.executor(ppe, { max_workers = 2 }))
    scope(H.guard(ex))
    local v, victim = ex:submit(square_pid, 3):result(20)
    assert.equal(9, v)
    assert.is_true(H.alive(victim))
    assert.equal(z, H.stat(victim).ppid)
    os.execute("kill -9 " .. victim)

    local st = stats_when(ex, function(s)
      return s.restarts == 1 and s.workers == 2 end, 5)
    assert.equal(1, st.restarts)
    assert.equal(2, st.workers)
    assert.equal(0, st.failed)
    assert.is_true(H.wait_until(function() return H.stat(victim) == nil end, 5),
                   "killed worker not reaped")
    assert.equal(2, #H.live_workers(z))

    local fs = {}
    for i = 1, 40 do fs[i] = ex:submit(square_pid, i) end
    for i = 1, 40 do
      local r, pid = fs[i]:result(20)
      assert.equal(i * i, r)
      assert.are_not.equal(victim, pid)
    end
    st = ex:stats()
    assert.equal(0, st.failed)
    assert.equal(41, st.completed)
    assert.equal(1, st.restarts)
  end))
end)

describe("task_timeout", function()
  it("fails a task that runs too long with TaskTimeout; others unaffected",
     H.scoped(function(scope)
    local ex, z = scope(H.executor(ppe, { max_workers = 2, task_timeout = 0.3 }))
    scope(H.guard(ex))
    local first = H.set(H.live_workers(z))
    local t0 = H.now()
    local long = ex:submit(H.spin, 30, nil, "not stopped")  -- "forever"
    local short = ex:submit(H.spin, 0.05, nil, 42)
    assert.equal(42, short:result(20))
    assert.is_true(long:wait(20))
    local elapsed = H.now() - t0
    assert.is_true(elapsed >= 0.25, "stopped after " .. elapsed .. " s")
    assert.is_true(elapsed < 2, "stopped after " .. elapsed .. " s")
    assert.equal("failed", long:state())
    local err = long:exception(0)
    assert.equal("TaskTimeout", err.kind, tostring(err))
    assert.equal(getmetatable(err), ppe.Error)
    assert.is_true(H.is_integer(err.pid) and err.pid > 0)
    assert.is_true(first[err.pid], "pid " .. tostring(err.pid) ..
                   " is not one of the workers")
    assert.matches("^TaskTimeout: ", tostring(err))
    expect_error("TaskTimeout", long.result, long, 0)
    -- its worker was killed (and reaped) and replaced
    assert.is_true(H.wait_until(function() return H.stat(err.pid) == nil end, 5))
    local st = stats_when(ex, function(s) return s.workers == 2 end)
    assert.equal(2, st.workers)
    assert.equal(1, st.restarts)
    -- the next task works
    assert.equal(49, ex:submit(square, 7):result(20))
    local v, pid = ex:submit(square_pid, 5):result(20)
    assert.equal(25, v)
    assert.are_not.equal(err.pid, pid)
  end))

  it("does not stop tasks that finish in time", H.scoped(function(scope)
    local ex = scope(ppe.executor{ max_workers = 2, task_timeout = 0.3 })
    scope(H.guard(ex))
    local fs = {}
    for i = 1, 6 do fs[i] = ex:submit(H.spin, 0.05, nil, i) end
    for i = 1, 6 do assert.equal(i, fs[i]:result(20)) end
    assert.equal(0, ex:stats().restarts)
  end))

  it("times each task, not a burst of them sent to one worker", function()
    -- Once the executor has measured its tasks as tiny, it sends several
    -- at a time to a worker (how many depends on that measure, so on
    -- timing): 6 rounds. Each task takes 0.05 s, well under task_timeout
    -- (8 times, for a loaded machine), and the 12 of them well over it.
    for round = 1, 6 do
      H.scoped(function(scope)
        local ex = scope(ppe.executor{ max_workers = 1, task_timeout = 0.4 })
        scope(H.guard(ex))
        H.warm_up(ex)
        local fs = {}
        for i = 1, 12 do fs[i] = ex:submit(H.spin, 0.05, nil, i) end
        local bad = {}
        for i = 1, 12 do
          assert.is_true(fs[i]:wait(20))
          if fs[i]:state() ~= "finished" then
            bad[#bad + 1] = "#" .. i .. ": " .. tostring(fs[i]:exception(0))
          end
        end
        assert.same({}, bad, "round " .. round)
        for i = 1, 12 do assert.equal(i, fs[i]:result(0)) end
        assert.equal(0, ex:stats().restarts)
      end)()
    end
  end)
end)

describe("max_tasks_per_child", function()
  it("= 3 with one worker: 9 tasks run on exactly 3 workers, 3 each",
     H.scoped(function(scope)
    local ex = scope(ppe.executor{ max_workers = 1, max_tasks_per_child = 3 })
    scope(H.guard(ex))
    local pids, uses = {}, {}
    for i = 1, 9 do
      local v, pid = ex:submit(square_pid, i):result(20)
      assert.equal(i * i, v)
      pids[i] = pid
      uses[pid] = (uses[pid] or 0) + 1
    end
    assert.equal(3, H.count(uses))
    for pid, n in pairs(uses) do assert.equal(3, n, "pid " .. pid) end
    for k = 0, 2 do
      assert.equal(pids[3 * k + 1], pids[3 * k + 2])
      assert.equal(pids[3 * k + 1], pids[3 * k + 3])
    end
    assert.equal(0, ex:stats().failed)
  end))

  it("= 3 with a burst of submits: none lost, none runs a 4th task",
     H.scoped(function(scope)
    local ex = scope(ppe.executor{ max_workers = 2, max_tasks_per_child = 3 })
    scope(H.guard(ex))
    local fs, uses = {}, {}
    for i = 1, 60 do fs[i] = ex:submit(square_pid, i) end
    for i = 1, 60 do
      local v, pid = fs[i]:result(20)
      assert.equal(i * i, v)
      uses[pid] = (uses[pid] or 0) + 1
    end
    for pid, n in pairs(uses) do assert.is_true(n <= 3, pid .. " ran " .. n) end
    assert.is_true(H.count(uses) >= 20)
    assert.equal(0, ex:stats().failed)
  end))
end)

describe("initializer", function()
  it("runs once in every worker, replacements included", H.scoped(function(scope)
    local path = H.tmpname("init")
    local ex, z = scope(H.executor(ppe, {
      max_workers = 2,
      initializer = function(a, b, p)
        _G.INIT = a + b
        local f = io.open("/proc/self/stat")
        local pid = f:read("*n")
        f:close()
        local o = io.open(p, "a")
        o:write(pid, "\n")
        o:close()
      end,
      initargs = { 1, 2, path },
    }))
    scope(H.guard(ex))
    local probe = function(d)
      local f = io.open("/proc/self/stat")
      local pid = f:read("*n")
      f:close()
      local t = os.clock()
      while os.clock() - t < d do end
      return _G.INIT, pid
    end
    local first = H.live_workers(z)
    assert.equal(2, #first)
    local fs = {}
    for i = 1, 10 do fs[i] = ex:submit(probe, 0.01) end
    for i = 1, 10 do assert.equal(3, (fs[i]:result(20))) end

    -- one worker dies; its replacement runs the initializer too
    local dpath = H.tmpname("init_die")
    local victim = ex:submit(H.die, dpath, "kill")
    assert.is_true(victim:wait(20))
    assert.equal("WorkerDied", victim:exception(0).kind)
    local dead = tonumber(H.read_lines(dpath)[1])
    local st = stats_when(ex, function(s)
      return s.restarts == 1 and s.workers == 2 end)
    assert.equal(2, st.workers)
    assert.equal(1, st.restarts)
    local now = H.live_workers(z)
    local firstset, new = H.set(first), nil
    for _, w in ipairs(now) do if not firstset[w] then new = w end end
    assert.is_not_nil(new, "no replacement worker")

    local seen_new = false
    local deadline = H.now() + 10
    repeat
      local a, b = ex:submit(probe, 0.05), ex:submit(probe, 0.05)
      local ia, pa = a:result(20)
      local ib, pb = b:result(20)
      assert.equal(3, ia); assert.equal(3, ib)
      assert.are_not.equal(dead, pa); assert.are_not.equal(dead, pb)
      if pa == new or pb == new then seen_new = true end
    until seen_new or H.now() > deadline
    assert.is_true(seen_new, "no task ran on the replacement worker")

    local lines = H.read_lines(path)
    assert.equal(2 + ex:stats().restarts, #lines)
    local ran = {}
    for _, l in ipairs(lines) do
      local pid = tonumber(l)
      assert.is_nil(ran[pid], "initializer ran twice in " .. l)
      ran[pid] = true
    end
    assert.same(H.set({ first[1], first[2], new }), ran)
    os.remove(path); os.remove(dpath)
  end))

  local function check_broken(f)
    assert.is_true(f:wait(20))
    assert.equal("failed", f:state())
    local err = f:exception(0)
    assert.equal("BrokenExecutor", err.kind, tostring(err))
    assert.equal(getmetatable(err), ppe.Error)
    assert.equal("table", type(err.cause), tostring(err))
    assert.equal("RemoteError", err.cause.kind)
    assert.matches("init failed", err.cause.message, 1, true)
    err = expect_error("BrokenExecutor", f.result, f, 0)
    assert.matches("init failed", err.cause.message, 1, true)
  end

  local function raising_init(n)
    H.scoped(function(scope)
      local ok, ex = pcall(ppe.executor, {
        max_workers = n,
        initializer = function() error("init failed") end,
      })
      assert(ok, "ppe.executor raised: " .. tostring(ex) .. (type(ex) == "table"
             and (" (cause: " .. tostring(ex.cause) .. ")") or ""))
      scope(ex)
      scope(H.guard(ex))
      local f
      ok, f = pcall(ex.submit, ex, square, 2)
      if ok then check_broken(f) end
      -- known broken now: a later submit raises the BrokenExecutor at
      -- once, as Python's pool does, and so does map, at the call
      local t0 = H.now()
      local e
      ok, e = pcall(ex.submit, ex, square, 3)
      assert.is_false(ok)
      assert.equal("BrokenExecutor", e.kind, tostring(e))
      assert.equal("RemoteError", e.cause.kind)
      assert.matches("init failed", e.cause.message, 1, true)
      assert.is_true(H.now() - t0 < 1)
      ok, e = pcall(ex.map, ex, square, { 1, 2 }, { timeout = 5 })
      assert.is_false(ok)
      assert.equal("BrokenExecutor", e.kind, tostring(e))
      t0 = H.now()
      ex:close()
      assert.is_true(H.now() - t0 < 2, "close took " .. (H.now() - t0) .. " s")
    end)()
  end

  it("that raises makes the executor broken, and close stays prompt " ..
     "(one worker)", function() raising_init(1) end)

  it("#novalgrind that raises: the executor is still created and its " ..
     "futures fail with the initializer's error (eight workers, ten times)", function()
    for _ = 1, 10 do raising_init(8) end
  end)
end)

describe("terminate_workers / kill_workers", function()
  for _, c in ipairs({ { "terminate_workers", 15 }, { "kill_workers", 9 } }) do
    local method, sig = c[1], c[2]
    it(method .. ": running tasks fail with WorkerDied (signal " .. sig ..
       "), queued ones with BrokenExecutor", H.scoped(function(scope)
      local ex, z = scope(H.executor(ppe, { max_workers = 2 }))
      scope(H.guard(ex))
      local workers = H.live_workers(z)
      local path = H.tmpname("term")
      local running = { ex:submit(H.spin, 20, path, "a"),
                        ex:submit(H.spin, 20, path, "b") }
      assert.is_true(H.wait_until(function()
        return #H.read_lines(path) == 2 end, 10), "tasks did not start")
      local queued = {}
      for i = 1, 3 do queued[i] = ex:submit(square, i) end
      for i = 1, 3 do assert.is_false(queued[i]:done()) end

      local t0 = H.now()
      ex[method](ex)
      assert.is_true(H.now() - t0 < 2, method .. " took " .. (H.now() - t0))

      local started = {}
      for _, l in ipairs(H.read_lines(path)) do started[tonumber(l)] = true end
      local pids = {}
      for _, f in ipairs(running) do
        assert.is_true(f:wait(5))
        assert.equal("failed", f:state())
        local err = f:exception(0)
        assert.equal("WorkerDied", err.kind, tostring(err))
        assert.equal(sig, err.signal, tostring(err))
        assert.is_true(started[err.pid], "pid " .. tostring(err.pid))
        pids[err.pid] = true
      end
      assert.equal(2, H.count(pids))
      for _, f in ipairs(queued) do
        assert.is_true(f:wait(5))
        assert.equal("failed", f:state())
        assert.equal("BrokenExecutor", f:exception(0).kind)
        expect_error("BrokenExecutor", f.result, f, 0)
      end
      local serr = expect_error("ShutdownError", ex.submit, ex, square, 1)
      assert.equal(getmetatable(serr), ppe.Error)
      -- nothing is left: the zygote has reaped every worker, and serves on
      for _, w in ipairs(workers) do assert.is_nil(H.stat(w)) end
      assert.same({}, H.children(z))
      assert.is_true(H.alive(z))
      t0 = H.now()
      ex:close()
      ex:shutdown()
      assert.is_true(H.now() - t0 < 1)
      os.remove(path)
    end))
  end
end)

-- A Lua program run as a child of the spec: creates an executor, starts a
-- long task, prints its own, the zygote's and the workers' pids, then ends
-- as told ("wait": blocks in result; "exit": os.exit without closing, once
-- the file 'go' exists, so that the pids are looked at first; "fork":
-- first forks a child that sleeps, holding a copy of every descriptor,
-- whose pid ends the line, then waits).
local function child_script(mode, go)
  return ([[
package.cpath = %q .. "?.so;" .. %q .. ";./spec/fixtures/?.so"
local ppe = require "ppe"
local function kids(p)
  local f = io.open("/proc/" .. p .. "/task/" .. p .. "/children")
  local s = f:read("*a"); f:close()
  local t = {}
  for x in s:gmatch("%%d+") do t[#t + 1] = x end
  return t
end
local f = io.open("/proc/self/stat"); local me = f:read("*n"); f:close()
local ex = ppe.executor{ max_workers = 2 }
local fut = ex:submit(function()
  local t = os.clock() while os.clock() - t < 20 do end
end)
for _ = 1, 1500 do  -- both workers up, so both are in the line
  if ex:stats().workers == 2 then break end
  os.execute("sleep 0.02")
end
local z = kids(me)[1]
local line = me .. " " .. z .. " " .. table.concat(kids(z), " ")
if %q == "fork" then line = line .. " " .. require("evil").sleeper(30) end
io.write(line, "\n")
io.flush()
if %q == "exit" then
  for _ = 1, 600 do
    local g = io.open(%q)
    if g then g:close() break end
    os.execute("sleep 0.05")
  end
  os.exit(0, false)
end
fut:wait(30)
]]):format(PPE_DIR, package.cpath, mode, mode, go)
end

local function orphan_check(mode)
  local go = os.tmpname()
  os.remove(go)
  local script = child_script(mode, go)
  local h = assert(io.popen("exec " .. LUA .. " -e '" ..
                            script:gsub("'", "'\\''") .. "'", "r"))
  local line = h:read("*l")
  assert.is_string(line)
  local pids = {}
  for x in line:gmatch("%d+") do pids[#pids + 1] = tonumber(x) end
  assert.equal(mode == "fork" and 5 or 4, #pids, line)  -- lua, zygote,
  local lua = pids[1]                                   -- 2 workers
  local starts = {}
  for i = 2, 4 do
    local st = H.stat(pids[i])
    assert.is_not_nil(st)
    starts[pids[i]] = st.starttime
  end
  local function ours_alive(pid)
    local st = H.stat(pid)
    return st ~= nil and st.state ~= "Z" and st.starttime == starts[pid]
  end
  H.sleep(0.1)
  local t0 = H.now()
  if mode ~= "exit" then os.execute("kill -9 " .. lua) end
  assert(io.open(go, "w")):close()
  local gone = H.wait_until(function()
    for i = 2, 4 do if ours_alive(pids[i]) then return false end end
    return true
  end, 1.5)
  local left = {}
  for i = 2, 4 do
    if ours_alive(pids[i]) then
      left[#left + 1] = pids[i]
      os.execute("kill -9 " .. pids[i])  -- do not leave a spinning process
    end
  end
  if pids[5] then os.execute("kill -9 " .. pids[5]) end
  h:close()
  os.remove(go)
  assert.is_true(gone, "still alive after " .. (H.now() - t0) .. " s: " ..
                 table.concat(left, " "))
end

describe("no orphans", function()
  it("a parent killed with SIGKILL leaves no zygote or worker behind",
     function() orphan_check("wait") end)
  -- Under valgrind the parent's exit is its leak check, seconds long.
  it("#novalgrind a parent that exits without closing its Lua state "
     .. "leaves none", function() orphan_check("exit") end)
  it("a parent killed while a child of its fork holds its descriptors "
     .. "leaves none", function() orphan_check("fork") end)
end)

describe("no zombies and no descriptor leaks", function()
  it("#novalgrind a worker holds only stdio and its channel", H.scoped(function(scope)
    local ex = scope(ppe.executor{ max_workers = 2 })
    scope(H.guard(ex))
    local _, pid = ex:submit(square_pid, 1):result(20)
    local fds = H.fds(pid)
    local nums = {}
    for i, e in ipairs(fds) do nums[i] = e.fd end
    assert.equal(4, #fds, "worker fds: " .. table.concat(nums, " "))
    assert.same({ 0, 1, 2 }, { nums[1], nums[2], nums[3] })
    assert.equal("/dev/null", fds[1].target)
    assert.matches("^socket:", fds[4].target)
  end))

  -- one worker dies in a task, one is killed while idle; returns the pids
  local function run_and_kill(ex, z, seen)
    local fs = {}
    for i = 1, 50 do fs[i] = ex:submit(square_pid, i) end
    for i = 1, 50 do
      local v, pid = fs[i]:result(20)
      assert.equal(i * i, v)
      seen[pid] = true
    end
    local dpath = H.tmpname("zomb")
    local victim = ex:submit(H.die, dpath, "kill")
    assert.is_true(victim:wait(20))
    seen[tonumber(H.read_lines(dpath)[1])] = true
    os.remove(dpath)
    local _, idle = ex:submit(square_pid, 2):result(20)
    seen[idle] = true
    os.execute("kill -9 " .. idle)
    local st = stats_when(ex, function(s)
      return s.restarts == 2 and s.workers == 2 end)
    assert.equal(2, st.restarts)
    -- the zygote reaps: exactly the two live workers are its children
    assert.is_true(H.wait_until(function()
      return #H.children(z) == 2 and #H.live_workers(z) == 2 end, 5),
      "zygote children: " .. table.concat(H.children(z), " "))
    for _, w in ipairs(H.live_workers(z)) do
      seen[w] = true
      -- a worker just forked has not closed the zygote's descriptors yet
      local fds
      H.wait_until(function()
        fds = {}
        for _, e in ipairs(H.fds(w)) do
          fds[#fds + 1] = e.fd .. "=" .. e.target
        end
        return #fds == 4
      end, 2)
      assert.equal(4, #fds, "worker " .. w .. ": " .. table.concat(fds, " "))
    end
    for i = 1, 20 do
      assert.equal(i * i, (ex:submit(square_pid, i):result(20)))
    end
  end

  it("#novalgrind after close: no child process left, no descriptor once collected",
     function()
    H.zygote_up(ppe)
    collectgarbage(); collectgarbage()
    local fds0 = H.fd_count(ME)
    local kids0 = #H.all_children(ME)
    local z, seen
    seen = {}
    H.scoped(function(scope)
      local ex, zz = scope(H.executor(ppe, { max_workers = 2 }))
      scope(H.guard(ex))
      z = zz
      assert.is_true(H.fd_count(ME) > fds0)
      run_and_kill(ex, z, seen)
    end)()
    -- closed: every worker is gone and reaped; the zygote stays, idle
    local kids = H.all_children(ME)
    local desc = {}
    for _, k in ipairs(kids) do
      desc[#desc + 1] = k.pid .. " " .. k.comm .. " " .. k.state
    end
    assert.equal(kids0, #kids, "children left: " .. table.concat(desc, ", "))
    assert.same({}, H.children(z))
    assert.equal(ME, H.stat(z).ppid)
    for pid in pairs(seen) do assert.is_nil(H.stat(pid), "pid " .. pid) end
    assert.equal(kids0, #kids)
    collectgarbage(); collectgarbage()
    local left = {}
    for _, e in ipairs(H.fds(ME)) do left[#left + 1] = e.fd .. "=" .. e.target end
    assert.equal(fds0, #left, "after close and GC: " .. table.concat(left, " "))
  end)

  it("#novalgrind close releases every descriptor, without waiting for the GC",
     H.scoped(function(scope)
    H.zygote_up(ppe)
    collectgarbage(); collectgarbage()
    local fds0 = H.fd_count(ME)
    local ex, z = scope(H.executor(ppe, { max_workers = 2 }))
    scope(H.guard(ex))
    run_and_kill(ex, z, {})
    ex:close()
    local left = {}
    for _, e in ipairs(H.fds(ME)) do left[#left + 1] = e.fd .. "=" .. e.target end
    assert.equal(fds0, #left, "after close: " .. table.concat(left, " "))
  end))

  it("#novalgrind no descriptor of an executor leaks into a program the parent runs",
     H.scoped(function(scope)
    local out = H.tmpname("exec_fds")
    local function child_fds()
      os.execute("ls /proc/self/fd > " .. out)  -- ls's own descriptors
      local l = H.read_lines(out)
      table.sort(l)
      return table.concat(l, " ")
    end
    local before = child_fds()
    local ex = scope(ppe.executor{ max_workers = 2 })
    scope(H.guard(ex))
    assert.equal(1, ex:submit(square, 1):result(20))
    assert.equal(before, child_fds())
    -- and none into a program a task runs
    local inner = ex:submit(function(path)
      os.execute("ls /proc/self/fd > " .. path)
      return true
    end, out):result(20)
    assert.is_true(inner)
    local l = H.read_lines(out)
    table.sort(l)
    -- stdio (1 is the redirection) and ls's directory: the worker's
    -- channel is not there
    assert.equal("0 1 2 3", table.concat(l, " "))
    os.remove(out)
  end))

  it("an executor nobody closes is collected: workers reaped, fds back",
     function()
    H.zygote_up(ppe)
    collectgarbage(); collectgarbage()
    local fds0 = H.fd_count(ME)
    local z, pid
    do
      local ex, zz = H.executor(ppe, { max_workers = 2 })
      z = zz
      local v
      v, pid = ex:submit(square_pid, 4):result(20)
      assert.equal(16, v)
      ex = nil  -- luacheck: ignore 311 (dropped for the collector)
    end
    collectgarbage(); collectgarbage()
    assert.same({}, H.children(z))
    assert.is_nil(H.stat(pid))
    assert.equal(fds0, H.fd_count(ME))
  end)
end)
