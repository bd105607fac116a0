-- Soak: many small tasks on two workers while workers are SIGKILLed from
-- the outside. Every future must end finished with the right value or
-- failed with WorkerDied; nothing pending, nothing lost, nothing left over.
-- PPE_SOAK=long: 100,000 tasks and 1000 kills (default 10,000 and 100).
local ppe = require "ppe"
local H = require "fixtures.faults_util"

local LONG = os.getenv("PPE_SOAK") == "long"
local NTASKS = LONG and 100000 or 10000
local NKILLS = LONG and 1000 or 100
local WORKERS = 2

local ME = H.mypid()

teardown(function() H.cleanup() end)  -- scratch files, even after a failure

-- The task: i * 2, with a tiny busy loop every few items.
local function double(i, spin)
  local x = 0
  for k = 1, spin do x = x + k end
  return i * 2
end

-- Kills one live worker of zygote z, picked at random among those not
-- killed yet (a worker already SIGKILLed can still look alive while it
-- exits: 'killed' holds pid:starttime of every kill); waits (up to 5 s) for
-- one to be there. Returns its pid, or nil if none came.
local function kill_one(z, keys)
  local pid, key
  H.wait_until(function()
    local live = {}
    for _, w in ipairs(H.live_workers(z)) do
      local st = H.stat(w)
      if st and not keys[w .. ":" .. st.starttime] then
        live[#live + 1] = w .. ":" .. st.starttime
      end
    end
    if #live == 0 then return false end
    key = live[math.random(#live)]
    pid = tonumber(key:match("^%d+"))
    return true
  end, 5)
  if not pid then return nil end
  -- Checked again just before the kill: only the spec kills workers, so a
  -- worker of z cannot have been reaped (and its pid reused) since.
  local st = H.stat(pid)
  if not st or st.ppid ~= z or st.state == "Z" then return nil end
  os.execute("kill -9 " .. pid)
  keys[key] = true
  return pid, st.starttime
end

describe("soak", function()
  it(("#slow %d tasks on %d workers, %d of them killed along the way")
     :format(NTASKS, WORKERS, NKILLS), function()
    math.randomseed(os.time())
    collectgarbage(); collectgarbage()
    H.zygote_up(ppe)
    local fds0 = H.fd_count(ME)
    local kids0 = #H.all_children(ME)
    local t0 = H.now()
    local futs = {}
    local kills, killed, keys = 0, {}, {}  -- killed: pid -> starttime
    local z
    local finished, died, other, blamed = 0, 0, {}, {}
    local st
    H.scoped(function(scope)
      local ex, zz = scope(H.executor(ppe, { max_workers = WORKERS }))
      scope(H.guard(ex))
      z = zz
      assert.equal(WORKERS, #H.live_workers(z))
      local batch = math.floor(NTASKS / NKILLS)
      for round = 1, NKILLS do
        local lo = (round - 1) * batch + 1
        local hi = round == NKILLS and NTASKS or round * batch
        for i = lo, hi do
          futs[i] = ex:submit(double, i, i % 7 == 0 and 3000 or 0)
        end
        -- kill somewhere in the middle of this round's work
        local mid = futs[math.random(lo, hi)]
        mid:wait(20)
        local pid, start = kill_one(z, keys)
        assert.is_not_nil(pid, "no live worker to kill in round " .. round)
        killed[pid] = start
        kills = kills + 1
      end

      local done, not_done = ppe.wait(futs, 60)
      assert.equal(0, #not_done, #not_done .. " futures still pending")
      assert.equal(NTASKS, #done)

      for i = 1, NTASKS do
        local f = futs[i]
        local s = f:state()
        if s == "finished" then
          local v = f:result(0)
          if v == 2 * i then finished = finished + 1
          else other[#other + 1] = ("#%d returned %s"):format(i, tostring(v))
          end
        elseif s == "failed" and f:exception(0).kind == "WorkerDied" then
          local err = f:exception(0)
          if err.signal == 9 and killed[err.pid] and not blamed[err.pid] then
            died = died + 1
            blamed[err.pid] = i  -- one death fails one task at most
          else
            other[#other + 1] = ("#%d: %s%s"):format(i, tostring(err),
              blamed[err.pid] and (" (also #" .. blamed[err.pid] .. ")") or "")
          end
        else
          other[#other + 1] = ("#%d %s: %s"):format(i, s,
                                                   tostring(f:exception(0)))
        end
        if #other > 20 then break end
      end

      -- every kill has been seen and its worker replaced
      st = H.wait_until(function()
        local s = ex:stats()
        return s.restarts >= kills and s.workers == WORKERS and s
      end, 10) or ex:stats()
      -- the zygote has reaped every killed worker
      assert.is_true(H.wait_until(function()
        return #H.children(z) == WORKERS end, 5),
        "zygote children: " .. table.concat(H.children(z), " "))
      assert.equal(WORKERS, #H.live_workers(z))
    end)()
    local elapsed = H.now() - t0

    print(("\nsoak: %d tasks, %d kills in %.1f s: finished %d, " ..
           "WorkerDied %d, restarts %d, other %d")
          :format(NTASKS, kills, elapsed, finished, died, st.restarts,
                  #other))
    assert.same({}, other)
    assert.equal(NTASKS, finished + died)
    assert.equal(NKILLS, kills)
    assert.is_true(died <= kills, died .. " WorkerDied for " .. kills .. " kills")
    assert.equal(kills, st.restarts)
    assert.equal(WORKERS, st.workers)
    assert.equal(0, st.pending)
    assert.equal(0, st.running)
    assert.equal(NTASKS, st.completed)
    assert.equal(died, st.failed)

    -- closed: no zombie, no child, no descriptor left
    local kids = H.all_children(ME)
    local desc = {}
    for _, k in ipairs(kids) do
      desc[#desc + 1] = k.pid .. " " .. k.comm .. " " .. k.state
    end
    assert.equal(kids0, #kids, "children left: " .. table.concat(desc, ", "))
    assert.same({}, H.children(z))  -- the zygote is idle
    for pid, start in pairs(killed) do  -- gone (or the pid is reused)
      local now = H.stat(pid)
      assert.is_true(now == nil or now.starttime ~= start, "pid " .. pid)
    end
    futs = nil  -- luacheck: ignore 311 (dropped for the collector)
    collectgarbage(); collectgarbage()
    assert.equal(fds0, H.fd_count(ME))
  end)
  it("#slow tasks that kill their own worker: exactly those fail", H.scoped(function(scope)
    local N, EVERY = LONG and 20000 or 3000, 150
    local ex = scope(ppe.executor{ max_workers = WORKERS })
    scope(H.guard(ex))
    local task = function(i, die)
      if die then os.exit(3) end
      return i * 2
    end
    local futs = {}
    for i = 1, N do futs[i] = ex:submit(task, i, i % EVERY == 0) end
    local _, not_done = ppe.wait(futs, 60)
    assert.equal(0, #not_done)
    local wrong, nwrong, dying = {}, 0, math.floor(N / EVERY)
    local function bad(msg)
      nwrong = nwrong + 1
      if #wrong < 10 then wrong[#wrong + 1] = msg end
    end
    for i = 1, N do
      local f = futs[i]
      if i % EVERY == 0 then
        local e = f:exception(0)
        if not (e and e.kind == "WorkerDied" and e.exit_code == 3) then
          bad(("#%d (dies) %s: %s"):format(i, f:state(), tostring(e)))
        end
      elseif f:state() ~= "finished" or f:result(0) ~= 2 * i then
        bad(("#%d %s: %s"):format(i, f:state(), tostring(f:exception(0))))
      end
    end
    local st = H.wait_until(function()
      local s = ex:stats()
      return s.workers == WORKERS and s
    end, 5) or ex:stats()
    print(("\nself-kill soak: %d tasks, %d of them dying: %d futures wrong, " ..
           "restarts %d"):format(N, dying, nwrong, st.restarts))
    assert.same({}, wrong, nwrong .. " futures wrong, the first ones:")
    assert.equal(dying, st.restarts)
    assert.equal(dying, st.failed)
  end))
end)
