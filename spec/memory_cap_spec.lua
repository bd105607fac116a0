-- max_memory_per_child: after a task, a worker whose resident memory is
-- over the cap leaves and is replaced; the task's result is delivered and
-- nothing queued is lost. The caps are set above what a fresh worker
-- holds here (measured first: a sanitizer or valgrind makes it larger),
-- so that only the task that keeps 64 MiB crosses them. Every executor is
-- closed and every wait has a timeout.
local ppe = require "ppe"
local H = require "helpers"

local T = 30  -- seconds: a loose bound for work that takes a moment
local MiB = 1024 * 1024

-- A task: the worker's pid and resident bytes (/proc/self/statm's second
-- field, in pages of 'page' bytes).
local function pid_rss(page)
  local f = io.open("/proc/self/stat")
  local pid = f:read("*n")
  f:close()
  f = io.open("/proc/self/statm")
  local _, resident = f:read("*n", "*n")
  f:close()
  return pid, resident * page
end

-- A task: keeps 'mib' MiB in a global, touched, and returns its pid and
-- the length kept.
local function keep(mib)
  KEPT = string.rep("x", mib * 1024 * 1024)
  local f = io.open("/proc/self/stat")
  local pid = f:read("*n")
  f:close()
  return pid, #KEPT
end

local PAGE = (function()
  local h = assert(io.popen("getconf PAGESIZE"))
  local n = tonumber(h:read("*l"))
  h:close()
  return n or 4096
end)()

local far = H.far

-- What a worker of these options holds after a few small tasks, in bytes.
local function baseline(opts)
  local ex = ppe.executor(opts)
  local most = 0
  for _ = 1, 3 do
    local _, rss = ex:submit(pid_rss, PAGE):result(T)
    if rss > most then most = rss end
  end
  ex:close()
  return most
end

-- A cap of base + 32 MiB, in the form asked: bytes, or a string in M.
local function cap(base, form)
  if form == "bytes" then return base + 32 * MiB end
  return string.format("%dM", math.ceil(base / MiB) + 32)
end

-- Runs small tasks, then one keeping 64 MiB, then small ones again on ex
-- (one worker); the pids of the three parts.
local function around_big(ex)
  local first = {}
  for i = 1, 3 do first[i] = ex:submit(pid_rss, PAGE):result(T) end
  local big = ex:submit(keep, 64)
  local after = {}
  for i = 1, 10 do after[i] = ex:submit(pid_rss, PAGE) end
  local bpid, n = big:result(T)
  assert.are.equal(64 * MiB, n)
  local apids = {}
  for i = 1, 10 do apids[i] = after[i]:result(T) end
  return first, bpid, apids
end

describe("max_memory_per_child", function()
  for _, form in ipairs { "bytes", "string" } do
    it("replaces a worker over it after its task (" .. form .. ")",
       H.scoped(function(scope)
      local base = baseline { max_workers = 1 }
      local ex = scope(ppe.executor {
        max_workers = 1, max_memory_per_child = cap(base, form) })
      local first, bpid, after = around_big(ex)
      -- Small tasks leave it under the cap: the same worker throughout.
      assert.are.equal(first[1], first[2])
      assert.are.equal(first[1], first[3])
      -- The big one ran there, and its result came; then it left.
      assert.are.equal(first[1], bpid)
      for i = 1, 10 do
        assert.are_not.equal(bpid, after[i], "task " .. i .. " after it")
        assert.are.equal(after[1], after[i])
      end
      local st
      assert.is_true(H.wait_until(function()
        st = ex:stats()
        return st.workers == 1
      end, T))
      assert.are.equal(1, st.restarts)
      assert.are.equal(1, st.groups[1].restarts)
      assert.are.equal(0, st.failed)
      assert.are.equal(14, st.completed)
    end))
  end

  it("keeps a worker under a high cap", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1,
                                    max_memory_per_child = "16G" })
    local first, bpid, after = around_big(ex)
    assert.are.equal(first[1], bpid)
    for i = 1, 10 do assert.are.equal(bpid, after[i]) end
    assert.are.equal(0, ex:stats().restarts)
  end))

  it("holds for far workers", H.scoped(function(scope)
    local base = baseline { workers = { far(1) } }
    local ex = scope(ppe.executor { workers = { far(1) },
                                    max_memory_per_child = cap(base, "bytes") })
    local first, bpid, after = around_big(ex)
    assert.are.equal(first[1], first[3])
    assert.are.equal(first[1], bpid)
    for i = 1, 10 do assert.are_not.equal(bpid, after[i]) end
    local st
    assert.is_true(H.wait_until(function()
      st = ex:stats()
      return st.workers == 1
    end, T))
    assert.are.equal(1, st.restarts)
    assert.are.equal(0, st.failed)
    assert.is_false(st.groups[1].given_up)
  end))

  it("takes K, M and G as powers of 1024", H.scoped(function(scope)
    -- A cap of a few KiB: every worker is over it after every task.
    for _, v in ipairs { "4K", "1M" } do
      local ex = scope(ppe.executor { max_workers = 1,
                                      max_memory_per_child = v })
      local a = ex:submit(pid_rss, PAGE):result(T)
      local b = ex:submit(pid_rss, PAGE):result(T)
      assert.are_not.equal(a, b, v)
    end
    local ex = scope(ppe.executor { max_workers = 1,
                                    max_memory_per_child = "1G" })
    local a = ex:submit(pid_rss, PAGE):result(T)
    assert.are.equal(a, ex:submit(pid_rss, PAGE):result(T))
  end))

  -- An address-space limit below an arena's size (the machine's RAM): a
  -- worker has no ring to say why it leaves, and says it on its channel.
  it("#novalgrind holds for workers without arenas", function()
    if (os.getenv("LD_PRELOAD") or ""):find("asan") then
      return pending("AddressSanitizer needs more address space")
    end
    local dir = assert(H.searchpath("ppe", package.cpath)):gsub("ppe%.so$", "")
    local script = ([[
      package.cpath = %q .. "?.so;" .. package.cpath
      local ppe = require "ppe"
      local function pid_rss(page, mib)
        if mib then KEPT = string.rep("x", mib * 1048576) end
        local f = io.open("/proc/self/stat")
        local pid = f:read("*n")
        f:close()
        f = io.open("/proc/self/statm")
        local _, resident = f:read("*n", "*n")
        f:close()
        return pid, resident * page
      end
      local ex = ppe.executor { max_workers = 1 }
      local _, base = ex:submit(pid_rss, %d):result(60)
      ex:close()
      ex = ppe.executor { max_workers = 1,
                          max_memory_per_child = base + 32 * 1048576 }
      local a = ex:submit(pid_rss, %d):result(60)
      local big = ex:submit(pid_rss, %d, 64)
      local fs = {}
      for i = 1, 10 do fs[i] = ex:submit(pid_rss, %d) end
      local b = big:result(60)
      local moved = 0
      for i = 1, 10 do
        if fs[i]:result(60) ~= b then moved = moved + 1 end
      end
      local restarts = ex:stats().restarts
      local f = io.open("/proc/self/maps")
      local _, arenas = f:read("*a"):gsub("memfd:ppe", "")
      f:close()
      ex:close()
      io.write(tostring(a == b), " ", moved, " ", restarts, " ", arenas, "\n")
    ]]):format(dir, PAGE, PAGE, PAGE, PAGE)
    local h = assert(io.popen("ulimit -v 2000000 && " .. H.interpreter() ..
                              " -e '" .. script:gsub("'", "'\\''") ..
                              "' 2>&1"))
    local out = h:read("*a")
    h:close()
    assert.are.equal("true 10 1 0\n", out)
  end)

  it("must be bytes > 0 or a size such as \"512M\"", function()
    for _, v in ipairs { 0, -5, 1.5, "12X", "0M", "M", "", "-1K", "1.5G",
                         "99999999999999999999G", {}, true } do
      local ok, err = pcall(ppe.executor, { max_workers = 1,
                                            max_memory_per_child = v })
      assert.is_false(ok, "max_memory_per_child = " .. tostring(v))
      assert.matches("max_memory_per_child", tostring(err))
    end
  end)
end)
