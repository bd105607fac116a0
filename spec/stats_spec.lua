-- stats()'s rows per worker, its counts of map items, and f:pid().
local ppe = require "ppe"
local H = require "helpers"

-- A task: waits (30 s at most) until file 'go' exists, then says who ran
-- it.
local function pid_after(go)
  for _ = 1, 1500 do
    local g = io.open(go)
    if g then g:close() break end
    os.execute("sleep 0.02")
  end
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*n")
  f:close()
  return pid
end

local function spin_pid(secs)
  local t = os.clock()
  while os.clock() - t < secs do end
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*n")
  f:close()
  return pid
end

describe("stats().per_worker", function()
  it("has a row per worker: its id, pid, state, items done and the age " ..
     "of its task", H.scoped(function(scope)
    local ex = H.all_up(scope(ppe.executor { max_workers = 2 }), 2)
    local pids = {}
    for _, f in ipairs { ex:submit(H.pid), ex:submit(H.pid) } do
      pids[f:result(30)] = true
    end
    local rows = ex:stats().per_worker
    assert.equal(2, #rows)
    local done = 0
    for id, row in ipairs(rows) do
      assert.equal(id, row.id)
      assert.is_true(pids[row.pid] ~= nil, "not a worker's pid: " ..
                     tostring(row.pid))
      assert.equal("idle", row.state)
      assert.is_nil(row.age)
      assert.is_nil(row.host)
      done = done + row.done
    end
    assert.equal(2, done)
    local go = os.tmpname()
    os.remove(go)
    local slow = ex:submit(pid_after, go)
    local busy
    assert.is_true(H.wait_until(function()
      for _, row in ipairs(ex:stats().per_worker) do
        if row.state == "busy" and row.age > 0.05 then busy = row end
      end
      return busy ~= nil
    end, 30))
    assert.is_true(busy.age < 30)
    assert(io.open(go, "w")):close()
    assert.equal(slow:result(30), busy.pid)
    os.remove(go)
  end))

  it("counts a map's items, not its chunks, in every figure",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    for _ = 1, 3 do ex:submit(H.pid):result(30) end
    local n = 0
    for _, v in ex:map(function(x) return x * 2 end, { 1, 2, 3, 4, 5, 6, 7 },
                       { chunksize = 3 }) do
      n = n + v
    end
    assert.equal(56, n)
    local st = ex:stats()
    assert.equal(10, st.completed)
    assert.equal(10, st.per_worker[1].done)
    assert.equal(10, st.groups[1].completed)
    local ok = pcall(function()
      for _ in ex:map(function(x) error("no " .. x) end, { 1, 2, 3, 4 },
                      { chunksize = 4 }) do end
    end)
    assert.is_false(ok)
    st = ex:stats()
    assert.equal(14, st.completed)
  end))

  it("is empty once the executor is closed", function()
    local ex = ppe.executor { max_workers = 1 }
    ex:submit(H.pid):result(30)
    ex:close()
    assert.same({}, ex:stats().per_worker)
  end)
end)

describe("f:pid()", function()
  it("is the pid of the worker that ran it, once done; nil before, and " ..
     "for one cancelled", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local slow = ex:submit(spin_pid, 0.3)
    local queued = ex:submit(H.pid)
    local cancelled = ex:submit(H.pid)
    assert.is_true(cancelled:cancel())
    assert.is_nil(queued:pid())
    assert.equal(slow:result(30), slow:pid())
    assert.equal(queued:result(30), queued:pid())
    assert.is_nil(cancelled:pid())
    local bad = ex:submit(function() error("boom") end)
    local err = H.failure(bad)
    assert.equal(err.pid, bad:pid())
  end))
end)
