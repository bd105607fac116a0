-- f:cancel{ force = true }: a running task is cancelled too, its worker
-- killed and replaced; one sent to a worker that has not started it is
-- taken back, nobody killed; a task that finishes at that instant is
-- either finished or cancelled, and the worker's end fails nothing else.
-- Every executor is closed and every wait has a timeout.
local ppe = require "ppe"
local H = require "helpers"

local T = 30  -- seconds: a loose bound for work that takes a moment

-- Under valgrind every process is many times slower: the hammers are
-- smaller there.
local SLOW = H.traced()

-- The hammers' tasks run up to this long: long enough to be cancelled
-- while they run, under valgrind too, where the caller is much slower
-- (and far workers, started through env, are not traced).
local SPAN = SLOW and 0.02 or 0.002
local FAR_SPAN = SLOW and 0.1 or 0.002

local function tmpname(tag)
  local p = os.tmpname()
  os.remove(p)
  return p .. "-" .. tag
end

-- A task that says it has started (its pid, in the file 'path'), then
-- runs until it is killed (or for 20 s: a spec that fails ends anyway).
local function forever(path)
  local pid = require("helpers").pid()
  local out = assert(io.open(path .. ".tmp", "w"))
  out:write(pid)
  out:close()
  os.rename(path .. ".tmp", path)
  local deadline = os.time() + 20
  while os.time() < deadline do end
end

-- The pid a task wrote into 'path', once it is there.
local function started(path)
  local pid
  H.wait_until(function()
    local s = H.read_file(path)
    pid = s and tonumber(s)
    return pid
  end, T)
  assert.is_number(pid, "the task did not start in time")
  os.remove(path)
  return pid
end

local far = H.far

-- A task that runs until the file 'path' exists (or for 20 s), then
-- returns its pid.
local function hold(path)
  local deadline = os.time() + 20
  while os.time() < deadline do
    local f = io.open(path)
    if f then f:close() break end
  end
  return (require("helpers").pid())
end

-- On ex, of one worker: a task sent behind a long one is taken back by
-- cancel{force}, and the worker, killed by nobody, runs the long one to
-- its end. Tasks go behind one that has run less than a millisecond, when
-- the pipeline is deep (after trivial tasks): on a busy machine that may
-- take a few tries.
local function behind(ex)
  local pid0, long, handed, shorts
  local go = tmpname("go")
  finally(function() os.remove(go) end)
  for _ = 1, 30 do
    for _ = 1, 50 do pid0 = ex:submit(H.pid):result(T) end
    long = ex:submit(hold, go)
    shorts = {}
    for i = 1, 20 do shorts[i] = ex:submit(function(x) return x end, i) end
    for i = 20, 1, -1 do
      if shorts[i]:running() then handed = i break end
    end
    if handed then break end
    assert(io.open(go, "w")):close()
    assert.are.equal(pid0, long:result(T))
    os.remove(go)
  end
  if not handed then
    -- (A machine too busy to submit two tasks within a millisecond, 30
    -- times over, never pipelines one behind: that is no fault of
    -- cancel's, and nothing was checked.)
    return pending("no task was sent behind the long one in 30 tries: "
                   .. "the machine is too busy for a pipeline")
  end
  assert.is_true(long:running())
  local short = shorts[handed]
  assert.is_true(short:cancel { force = true })
  assert.is_true(short:cancelled())
  assert.are.equal("cancelled", short:state())
  H.expect_error("CancelledError", short.result, short, T)
  -- The long one runs on to its end on the same worker, which lives on.
  assert.is_true(long:running())
  assert(io.open(go, "w")):close()
  assert.are.equal(pid0, long:result(T))
  os.remove(go)
  for i = 1, 20 do
    if i ~= handed then assert.are.equal(i, shorts[i]:result(T)) end
  end
  assert.is_true(H.alive(pid0))
  assert.are.equal(pid0, ex:submit(H.pid):result(T))
  local st = ex:stats()
  assert.are.equal(0, st.restarts)
  assert.are.equal(0, st.failed)
end

describe("cancel{force=true}", function()
  it("cancels a running task: its worker is killed and replaced, the rest "
     .. "runs", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local pid0 = ex:submit(H.pid):result(T)
    local path = tmpname("forever")
    local f = ex:submit(forever, path)
    local called
    f:add_done_callback(function(fut) called = fut:state() end)
    assert.are.equal(pid0, started(path))
    -- Queued meanwhile, some sent behind it already.
    local gs = {}
    for i = 1, 20 do gs[i] = ex:submit(function(x) return x * x end, i) end
    assert.is_true(f:running())
    assert.is_true(f:cancel { force = true })
    assert.is_true(f:cancelled())
    assert.is_true(f:done())
    assert.are.equal("cancelled", f:state())
    assert.are.equal("cancelled", called)  -- its callback ran in cancel
    H.expect_error("CancelledError", f.result, f, T)
    H.expect_error("CancelledError", f.exception, f, T)
    assert.is_true(f:cancel { force = true })  -- again: still cancelled
    assert.is_true(f:cancel())
    for i = 1, 20 do assert.are.equal(i * i, gs[i]:result(T), "task " .. i) end
    assert.is_true(H.wait_until(function() return not H.alive(pid0) end, T),
                   "the worker that ran it lives on")
    local pid1 = ex:submit(H.pid):result(T)
    assert.are_not.equal(pid0, pid1)
    local st = ex:stats()
    assert.are.equal(0, st.failed)
    assert.are.equal(1, st.restarts)
    assert.are.equal(0, st.running)
    assert.are.equal(23, st.completed)
    assert.are.equal(1, st.workers)
  end))

  it("takes back a task sent behind a long one, killing nobody",
     H.scoped(function(scope)
    behind(scope(ppe.executor { max_workers = 1 }))
  end))

  it("cancels a task still queued, killing nobody", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local pid0 = ex:submit(H.pid):result(T)
    local long = ex:submit(function(s) H.spin(s) return H.pid() end, 0.3)
    local queued = {}
    for i = 1, 300 do queued[i] = ex:submit(function(x) return x end, i) end
    assert.are.equal("pending", queued[300]:state())
    assert.is_true(queued[300]:cancel { force = true })
    assert.are.equal("cancelled", queued[300]:state())
    assert.are.equal(pid0, long:result(T))
    for i = 1, 299 do assert.are.equal(i, queued[i]:result(T)) end
    assert.are.equal(0, ex:stats().restarts)
    assert.is_true(H.alive(pid0))
  end))

  it("returns false for a future already finished or failed, which stays "
     .. "as it was", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local f = ex:submit(function() return "v", 2 end)
    local a, b = f:result(T)
    assert.are.equal("v", a)
    assert.is_false(f:cancel { force = true })
    assert.is_false(f:cancelled())
    assert.are.equal("finished", f:state())
    local c, d = f:result(0)
    assert.are.equal("v", c)
    assert.are.equal(b, d)
    local g = ex:submit(function() error("boom") end)
    assert.is_true(g:wait(T))
    assert.is_false(g:cancel { force = true })
    assert.are.equal("failed", g:state())
    local e = H.failure(g)
    assert.are.equal("RemoteError", e.kind)
    assert.matches("boom", e.message)
    assert.are.equal(0, ex:stats().restarts)
  end))

  it("leaves cancel() without options as it was: false while running",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local f = ex:submit(function(s) H.spin(s) return "done" end, 0.3)
    assert.is_true(H.wait_until(function() return f:running() end, T))
    assert.is_false(f:cancel())
    assert.is_false(f:cancel {})
    assert.is_false(f:cancel { force = false })
    assert.are.equal("done", f:result(T))
  end))

  it("cancels a running task on a far worker: its process ends",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = { far(1) } })
    local pid0 = ex:submit(H.pid):result(T)
    local path = tmpname("farever")
    local f = ex:submit(forever, path)
    assert.are.equal(pid0, started(path))
    local g = ex:submit(function() return "after" end)
    assert.is_true(f:cancel { force = true })
    assert.is_true(f:cancelled())
    H.expect_error("CancelledError", f.result, f, T)
    assert.are.equal("after", g:result(T))
    assert.is_true(H.wait_until(function() return not H.alive(pid0) end, T),
                   "the far worker lives on")
    assert.are_not.equal(pid0, ex:submit(H.pid):result(T))
    local st = ex:stats()
    assert.are.equal(0, st.failed)
    assert.are.equal(1, st.groups[1].restarts)
  end))

  it("cancels a task of a stopped worker: killed, here at once, and far "
     .. "once it has not answered for a second", H.scoped(function(scope)
    for _, workers in ipairs { { { n = 1 } }, { far(1) } } do
      local ex = scope(ppe.executor { workers = workers })
      local pid0 = ex:submit(H.pid):result(T)
      local path = tmpname("stopped")
      local f = ex:submit(forever, path)
      assert.are.equal(pid0, started(path))
      assert.is_true(os.execute("kill -STOP " .. pid0) ~= false)
      local t0 = H.now()
      assert.is_true(f:cancel { force = true })
      local took = H.now() - t0
      assert.is_true(took < 10, ("cancel took %.1f s"):format(took))
      assert.is_true(f:cancelled())
      assert.is_true(H.wait_until(function() return not H.alive(pid0) end, T),
                     "the stopped worker lives on")
      assert.are_not.equal(pid0, ex:submit(H.pid):result(T))
      assert.are.equal(0, ex:stats().failed)
      ex:close()
    end
  end))

  it("takes back a task sent behind a long one on a far worker, killing "
     .. "nobody", H.scoped(function(scope)
    behind(scope(ppe.executor { workers = { far(1) } }))
  end))

  it("raises for bad arguments, naming them", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local f = ex:submit(function() return 1 end)
    -- (an option's error is a ppe.Error ValueError; an argument's, a
    -- plain Lua error)
    local function raises(pattern, ...)
      local ok, err = pcall(f.cancel, f, ...)
      assert.is_false(ok)
      if type(err) == "table" then
        assert.are.equal("ValueError", err.kind)
        err = err.message
      end
      assert.matches(pattern, err)
    end
    raises("options table expected, got number", 3)
    raises("options table expected, got string", "force")
    raises("option 'force' must be a boolean, got number", { force = 1 })
    raises("option 'force' must be a boolean, got string", { force = "yes" })
    raises("unknown cancel option 'forse'", { forse = true })
    raises("unknown cancel option '1'", { true })
    local ok, err = pcall(function()
      local r = f:cancel(3)  -- (not a tail call: LuaJIT would name no one)
      return r
    end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'cancel'", err)
    assert.are.equal(1, f:result(T))
  end))
end)

-- Tasks of random short length, each writing its id to a record as it
-- returns, force-cancelled at random moments: every future ends, finished
-- with its own value or cancelled; a finished one's task wrote its record,
-- and no task ran twice; nothing failed; no worker is left.
local function hammer(workers, n, seed, span)
  math.randomseed(seed)
  H.zygote_up(ppe)
  collectgarbage()
  collectgarbage()
  local record = tmpname("record")
  local before = H.children(H.pid())
  local ex = ppe.executor { workers = workers }
  local task = function(id, secs, path)
    local t = os.clock()
    while os.clock() - t < secs do end
    local out = assert(io.open(path, "a"))
    out:write(id, "\n")
    out:close()
    return "r" .. id, id
  end
  local fs, said = {}, {}
  for i = 1, n do
    -- Most short, so that several wait in each worker's pipeline.
    local secs = math.random() * span * (math.random() < 0.7 and 0.05 or 1)
    fs[i] = ex:submit(task, i, secs, record)
    -- A few in flight at most: the last ones are queued, sent, running,
    -- returning or done, whichever the moment makes them.
    if i > 6 then assert.is_true(fs[i - 6]:wait(T)) end
    if math.random() < 0.25 then
      local j = math.random(math.max(1, i - 8), i)
      if said[j] == nil then said[j] = fs[j]:cancel { force = true } end
    end
    if math.random() < 0.05 then H.spin(math.random() * span) end
  end
  local done, not_done = ppe.wait(fs, 120)
  assert.are.equal(0, #not_done, "futures left pending")
  assert.are.equal(n, #done)
  local st = ex:stats()
  local pids = {}
  for _ = 1, 2 * #workers do pids[ex:submit(H.pid):result(T)] = true end
  ex:close()
  local ran = {}
  for line in io.lines(record) do
    local id = tonumber(line)
    assert.is_nil(ran[id], "task " .. id .. " ran twice")
    ran[id] = true
  end
  os.remove(record)
  local cancelled, finished = 0, 0
  for i = 1, n do
    local f = fs[i]
    local state = f:state()
    if said[i] == true then
      assert.are.equal("cancelled", state, "task " .. i)
    elseif said[i] == false then
      assert.are.equal("finished", state, "task " .. i)
    end
    if state == "finished" then
      local v, id = f:result(0)
      assert.are.equal("r" .. i, v)
      assert.are.equal(i, id)
      assert.is_true(ran[i], "task " .. i .. " finished, with no record")
      finished = finished + 1
    else
      assert.are.equal("cancelled", state, "task " .. i)
      assert.is_true(said[i], "task " .. i .. " cancelled, never asked")
      cancelled = cancelled + 1
    end
  end
  assert.are.equal(n, finished + cancelled)
  assert.is_true(cancelled > 0, "nothing was cancelled")
  assert.are.equal(0, st.failed)
  -- Each kill replaced one worker: never more than the cancels. Some
  -- were of running tasks.
  assert.is_true(st.restarts <= cancelled, st.restarts .. " restarts")
  assert.is_true(st.restarts > 0, "no running task was cancelled")
  -- No worker left: the last ones are gone, and so are all the zygote's
  -- and all the launchers. (Under valgrind the scan's own process is
  -- traced, and no plain child.)
  for pid in pairs(pids) do assert.is_false(H.exists(pid)) end
  if not SLOW then
    assert.are.same(before, H.children(H.pid()))
    for pid, comm in pairs(before) do
      if comm == "ppe zygote" then assert.are.same({}, H.children(pid)) end
    end
  end
  return cancelled, st.restarts
end

describe("cancel{force=true} at random moments", function()
  it("settles every task exactly: local workers", function()
    hammer({ { n = 2 } }, SLOW and 300 or 3000, 1, SPAN)
  end)

  it("settles every task exactly: far workers", function()
    hammer({ far(2) }, SLOW and 150 or 1000, 2, FAR_SPAN)
  end)

  it("settles every task exactly: local and far workers together #slow",
     function()
    hammer({ { n = 2 }, far(1) }, 20000, 3, SPAN)
  end)
end)
