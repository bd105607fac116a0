-- retries: a task whose worker died runs again, up to that many times,
-- and its error says how many runs it had (attempts). Each task writes
-- the pid of every run of its own into a scratch file of its own, so the
-- runs are counted whatever the executor says. Every executor is closed
-- and every wait has a timeout.
local ppe = require "ppe"
local H = require "helpers"

local T = 30  -- seconds: a loose bound for work that takes a moment

-- Scratch files, one per task, removed at the end.
local scratch = {}
local function tmpname()
  local path = os.tmpname()
  scratch[#scratch + 1] = path
  os.remove(path)
  return path
end

teardown(function()
  for _, path in ipairs(scratch) do
    os.remove(path)
    os.remove(path .. ".go")
  end
end)

-- The pids written to path, one a line, in order.
local function runs(path)
  local t = {}
  local f = io.open(path)
  if not f then return t end
  for line in f:lines() do t[#t + 1] = tonumber(line) end
  f:close()
  return t
end

-- A task: writes its worker's pid as a line of 'path'; while the file has
-- at most 'deaths' lines, kills its own worker (SIGKILL), else returns
-- the pids of every run and 'ret'. No upvalues: it travels as it is.
local function die_first(path, deaths, ret)
  local f = io.open("/proc/self/stat")
  local pid = f:read("*n")
  f:close()
  local o = assert(io.open(path, "a"))
  o:write(pid, "\n")
  o:close()
  local pids = {}
  for line in io.lines(path) do pids[#pids + 1] = tonumber(line) end
  if #pids <= deaths then
    os.execute("kill -9 " .. pid)
    local t = os.clock()
    while os.clock() - t < 10 do end  -- the signal is on its way
    return "survived"
  end
  return pids, ret
end

-- A task that writes its pid to 'path', then raises, or runs for 'secs'.
local function note_then(path, what, secs)
  local f = io.open("/proc/self/stat")
  local pid = f:read("*n")
  f:close()
  local o = assert(io.open(path, "a"))
  o:write(pid, "\n")
  o:close()
  if what == "raise" then error("boom") end
  local t = os.clock()
  while os.clock() - t < secs do end
  return "done"
end

-- A task: writes its pid to 'path', then waits (20 s at most) for the
-- file path .. ".go"; returns its pid.
local function blocker(path)
  local f = io.open("/proc/self/stat")
  local pid = f:read("*n")
  f:close()
  local o = assert(io.open(path, "a"))
  o:write(pid, "\n")
  o:close()
  local t = os.time()
  repeat
    f = io.open(path .. ".go")
    if f then
      f:close()
      return pid
    end
    os.execute("sleep 0.02")
  until os.time() - t > 20
  return pid
end

local function release(path)
  assert(io.open(path .. ".go", "w")):close()
end

-- Polls until 'path' has n lines (T seconds at most).
local function wait_runs(path, n)
  return H.wait_until(function() return #runs(path) >= n end, T)
end

local function distinct(t)
  local seen = {}
  for _, v in ipairs(t) do
    if seen[v] then return false end
    seen[v] = true
  end
  return true
end

describe("retries", function()
  it("runs a task whose worker died again, and it succeeds",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1, retries = 1 })
    local path = tmpname()
    local f = ex:submit(die_first, path, 1, "ok")
    assert.is_true(f:wait(T), "the retried task did not finish")
    local pids, ret = f:result(0)
    assert.are.equal("ok", ret)
    assert.are.equal(2, #pids)
    assert.are.same(pids, runs(path))
    assert.are_not.equal(pids[1], pids[2])
    assert.are.equal("finished", f:state())
    local st
    assert.is_true(H.wait_until(function()
      st = ex:stats()
      return st.workers == 1
    end, T))
    assert.are.equal(1, st.completed)
    assert.are.equal(0, st.failed)
    assert.are.equal(1, st.restarts)
  end))

  it("fails with WorkerDied and attempts = 1 when retries is 0 (the default)",
     H.scoped(function(scope)
    for _, opts in ipairs { { max_workers = 1 },
                            { max_workers = 1, retries = 0 } } do
      local ex = scope(ppe.executor(opts))
      local path = tmpname()
      local e = H.failure(ex:submit(die_first, path, 1), T)
      assert.are.equal("WorkerDied", e.kind)
      assert.are.equal(1, e.attempts)
      assert.are.equal(9, e.signal)
      local pids = runs(path)
      assert.are.equal(1, #pids)
      assert.are.equal(pids[1], e.pid)
    end
  end))

  it("gives up after retries + 1 runs, each on another process",
     H.scoped(function(scope)
    for _, n in ipairs { 1, 3 } do
      local ex = scope(ppe.executor { max_workers = 2, retries = n })
      local path = tmpname()
      local e = H.failure(ex:submit(die_first, path, 100), T)
      assert.are.equal("WorkerDied", e.kind)
      assert.are.equal(n + 1, e.attempts)
      local pids = runs(path)
      assert.are.equal(n + 1, #pids)
      assert.is_true(distinct(pids), table.concat(pids, " "))
      assert.are.equal(pids[#pids], e.pid)
      assert.matches("worker " .. e.pid .. " was killed by signal 9",
                     e.message)
      local st = ex:stats()
      assert.are.equal(1, st.failed)
      assert.are.equal(1, st.completed)
    end
  end))

  it("runs it again on another worker where there is one",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2, retries = 1 })
    local pb, px, py = tmpname(), tmpname(), tmpname()
    local b = ex:submit(blocker, pb)  -- holds worker 1
    assert.is_true(wait_runs(pb, 1), "the first task did not start")
    local x = ex:submit(die_first, px, 1)  -- ends worker 2
    local y = ex:submit(blocker, py)  -- queued behind it
    -- The replacement of worker 2 runs y, which passes x: x waits for
    -- worker 1, which it did not end.
    assert.is_true(wait_runs(py, 1), "the task behind did not start")
    assert.are.equal(1, #runs(px))
    assert.are.equal("running", x:state())
    release(pb)
    local pids = x:result(T)
    assert.are.equal(2, #pids)
    assert.are.equal(b:result(T), pids[2])
    release(py)
    local replacement = y:result(T)
    assert.are_not.equal(pids[1], replacement)
    assert.are_not.equal(pids[2], replacement)
  end))

  it("runs it on the replacement when it is the only worker",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1, retries = 1 })
    local px = tmpname()
    local x = ex:submit(die_first, px, 1)
    -- Behind it: how many runs x had when this one started.
    local y = ex:submit(function(p)
      local n = 0
      for _ in io.lines(p) do n = n + 1 end
      return n
    end, px)
    local pids = x:result(T)
    assert.are.equal(2, #pids)
    assert.are.equal(2, y:result(T), "the task behind it passed it")
  end))

  it("keeps the future running between runs", H.scoped(function(scope)
    local path = tmpname()
    -- A replacement's initializer waits for the spec's word: meanwhile
    -- the task has died once and waits for its second run.
    local ex = scope(ppe.executor {
      max_workers = 1, retries = 1,
      initializer = function(p)
        local f = io.open(p)
        if not f then return end
        f:close()
        local t = os.time()
        repeat
          f = io.open(p .. ".go")
          if f then f:close() return end
          os.execute("sleep 0.02")
        until os.time() - t > 20
      end,
      initargs = { path },
    })
    local f = ex:submit(die_first, path, 1, "second")
    assert.is_true(H.wait_until(function()
      return ex:stats().restarts == 1
    end, T), "the worker was not replaced")
    assert.are.equal(1, #runs(path))
    assert.are.equal("running", f:state())
    assert.is_true(f:running())
    assert.is_false(f:done())
    assert.is_false(f:cancel())
    assert.is_false(f:wait(0.2))
    local st = ex:stats()
    assert.are.equal(0, st.pending)
    assert.are.equal(1, st.running)
    assert.are.equal(0, st.completed)
    release(path)
    local pids, ret = f:result(T)
    assert.are.equal("second", ret)
    assert.are.equal(2, #pids)
  end))

  it("never retries a RemoteError", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2, retries = 3 })
    local path = tmpname()
    local e = H.failure(ex:submit(note_then, path, "raise"), T)
    assert.are.equal("RemoteError", e.kind)
    assert.matches("boom", e.message)
    assert.are.equal(1, e.attempts)
    assert.are.equal(1, #runs(path))
  end))

  it("never retries a TaskTimeout", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2, retries = 3,
                                    task_timeout = 0.3 })
    local path = tmpname()
    local e = H.failure(ex:submit(note_then, path, "spin", 20), T)
    assert.are.equal("TaskTimeout", e.kind)
    assert.are.equal(1, e.attempts)
    -- A retry would have run by now: the replacement is up.
    assert.is_true(H.wait_until(function()
      return ex:stats().workers == 2
    end, T))
    assert.are.equal("done", ex:submit(note_then, tmpname(), "spin", 0)
                                :result(T))
    assert.are.equal(1, #runs(path))
  end))

  for _, how in ipairs { "terminate_workers", "kill_workers" } do
    it("never retries a death by " .. how, H.scoped(function(scope)
      local ex = scope(ppe.executor { max_workers = 1, retries = 3 })
      local path = tmpname()
      local f = ex:submit(note_then, path, "spin", 20)
      assert.is_true(wait_runs(path, 1), "the task did not start")
      ex[how](ex)
      local e = H.failure(f, T)
      assert.are.equal("WorkerDied", e.kind)
      assert.are.equal(how == "kill_workers" and 9 or 15, e.signal)
      assert.are.equal(1, e.attempts)
      assert.matches("by " .. how, e.message)
      assert.are.equal(1, #runs(path))
    end))
  end

  it("retries map's chunks", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 2, retries = 1 })
    local path = tmpname()
    local items = {}
    for i = 1, 40 do items[i] = { i, path } end
    local got = {}
    for i, v in ex:map(function(x, p)
      if x == 13 then  -- its first run kills the worker
        local f = io.open("/proc/self/stat")
        local pid = f:read("*n")
        f:close()
        local o = io.open(p, "a")
        o:write(pid, "\n")
        o:close()
        local n = 0
        for _ in io.lines(p) do n = n + 1 end
        if n == 1 then os.execute("kill -9 " .. pid) while true do end end
      end
      return x * 10
    end, items, { chunksize = 5, timeout = T, unpack = true }) do
      got[i] = v
    end
    assert.are.equal(40, #got)
    for i = 1, 40 do assert.are.equal(i * 10, got[i]) end
    assert.are.equal(2, #runs(path))
  end))

  it("gives a map item's error the runs of its chunk",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1, retries = 1 })
    local path = tmpname()
    local got = {}
    local e = H.expect_error("RemoteError", function()
      for i, v in ex:map(function(x, p)
        if x == 1 then return die_first(p, 1, "first") end
        error("item " .. x)
      end, { { 1, path }, { 2, path } }, { chunksize = 2, unpack = true,
                                           timeout = T }) do
        got[i] = v
      end
    end)
    assert.matches("item 2", e.message)
    assert.are.equal(2, e.attempts)
    assert.are.equal(2, #got[1])
  end))

  it("fails map's chunk with attempts when retries run out",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local e = H.expect_error("WorkerDied", function()
      for _ in ex:map(function(x)
        if x == 3 then
          local f = io.open("/proc/self/stat")
          local pid = f:read("*n")
          f:close()
          os.execute("kill -9 " .. pid)
          while true do end
        end
        return x
      end, { 1, 2, 3, 4 }, { chunksize = 2, timeout = T }) do end
    end)
    assert.are.equal(1, e.attempts)
  end))

  it("retries on far workers too", H.scoped(function(scope)
    local ex = scope(ppe.executor {
      workers = { H.far(1) },
      retries = 3,
    })
    local path = tmpname()
    local pids, ret = ex:submit(die_first, path, 1, "far"):result(T)
    assert.are.equal("far", ret)
    assert.are.equal(2, #pids)
    assert.are_not.equal(pids[1], pids[2])
    -- Its replacements die before their first reply, which would be
    -- failed starts (host_failures, 3) but that the task ended them.
    local path2 = tmpname()
    local e = H.failure(ex:submit(die_first, path2, 100), T)
    assert.are.equal("WorkerDied", e.kind)
    assert.are.equal(4, e.attempts)
    assert.are.equal("env", e.host)
    local all = runs(path2)
    assert.are.equal(4, #all)
    assert.is_true(distinct(all), table.concat(all, " "))
    assert.are.equal(all[4], e.pid)
    local pid = ex:submit(H.whoami):result(T)
    assert.are_not.equal(all[4], pid)
    assert.is_false(ex:stats().groups[1].given_up)
  end))

  it("must be an integer >= 0", function()
    for _, v in ipairs { -1, 1.5, "x", "1", true, {} } do
      local ok, err = pcall(ppe.executor, { max_workers = 1, retries = v })
      assert.is_false(ok, "retries = " .. tostring(v))
      assert.matches("retries", tostring(err))
    end
  end)
end)
