-- Large messages through the shared arenas: their bytes are written where
-- the other side reads them, not sent through the channel; the memory
-- behind them is reused, given back after PPE_KEEP_SECONDS without use,
-- never writable by a worker for the caller's part, and not shared with
-- the child of a fork.
local U = require "fixtures.bad_util"  -- first: puts spec/fixtures on cpath
local ppe = require "ppe"
local H = require "helpers"

local evil = U.evil()
local MiB = 1024 * 1024
local ARENA = "/memfd:ppe (deleted)"

-- An executor of one worker, and that worker's pid. With 'keep', it is
-- made while PPE_KEEP_SECONDS is that: the keep time of its workers, and
-- of this process until the next executor is made.
local function one_worker(scope, keep)
  if keep then evil.setenv("PPE_KEEP_SECONDS", keep) end
  local ok, ex = pcall(ppe.executor, { max_workers = 1 })
  if keep then evil.setenv("PPE_KEEP_SECONDS", nil) end
  assert(ok, ex)
  scope(ex)
  return ex, ex:submit(H.pid):result(10)
end

-- A process's mappings of arenas: { perms =, inode =, rss = KiB }.
local function arenas(pid)
  local t, cur = {}, nil
  local s = assert(H.read_file("/proc/" .. pid .. "/smaps"))
  for line in s:gmatch("[^\n]+") do
    local perms, inode, name =
      line:match("^%x+%-%x+ (%S+) %x+ %S+ (%d+)%s+(.-)%s*$")
    if perms then
      cur = nil
      if name == ARENA then
        cur = { perms = perms, inode = inode, rss = 0 }
        t[#t + 1] = cur
      end
    elseif cur then
      local rss = line:match("^Rss:%s+(%d+) kB")
      if rss then cur.rss = tonumber(rss) end
    end
  end
  return t
end

local function find(list, perms, inode)
  for _, m in ipairs(list) do
    if m.perms == perms and (inode == nil or m.inode == inode) then
      return m
    end
  end
end

-- A worker's own arena (where it builds replies) and, in the caller, the
-- caller's own arena (where requests are built): their resident KiB.
local function resident(wpid)
  local w = arenas(wpid)
  local own, callers = find(w, "rw-s"), find(w, "r--s")
  local mine = find(arenas(H.pid()), "rw-s", callers.inode)
  return own.rss, mine.rss
end

-- 256 distinct bytes over and over: n bytes.
local function pattern(n)
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return string.rep(table.concat(t), math.floor(n / 256))
end

local function reverse(s) return s:reverse(), #s end

describe("large messages", function()
  it("#novalgrind are read where they were written: the request in the "
     .. "caller's arena, the reply in the worker's", H.scoped(function(scope)
    local ex, pid = one_worker(scope)
    local s = pattern(16 * MiB)
    local r, n = ex:submit(reverse, s):result(60)
    assert.are.equal(16 * MiB, n)
    assert.is_true(r == s:reverse())
    assert.are.equal(string.char(255, 254, 253), r:sub(1, 3))
    -- Pages a process has touched in a mapping are resident there: the
    -- worker read 16 MiB in its view of the caller's arena, and the caller
    -- in its view of the worker's. Through the channel, neither would.
    local w = arenas(pid)
    local own, callers = find(w, "rw-s"), find(w, "r--s")
    assert.is_true(callers.rss >= 16 * 1024, "read in the caller's arena: "
                   .. callers.rss .. " KiB")
    local view = find(arenas(H.pid()), "rw-s", own.inode)
    assert.is_true(view.rss >= 16 * 1024, "read in the worker's arena: "
                   .. view.rss .. " KiB")
  end))

  it("keep every value whole: strings in tables, errors, initargs",
     H.scoped(function(scope)
    local big = pattern(6 * MiB)
    local ex = scope(ppe.executor {
      max_workers = 1,
      initializer = function(x) BIG_INIT = x end,
      initargs = { big },
    })
    local t = ex:submit(function(a)
      return { a, a:upper(), n = #a, init = BIG_INIT == a }
    end, big):result(60)
    assert.is_true(t[1] == big)
    assert.is_true(t[2] == big:upper())
    assert.are.equal(6 * MiB, t.n)
    assert.is_true(t.init)
    local ok, e = pcall(function()
      return ex:submit(function(a) error({ a }) end, big):result(60)
    end)
    assert.is_false(ok)
    assert.are.equal("RemoteError", e.kind)
    assert.is_true(e.value[1] == big)
  end))

  it("carry an initializer's error to every future", H.scoped(function(scope)
    local ex = scope(ppe.executor {
      max_workers = 1,
      initializer = function(n) error(string.rep("i", n), 0) end,
      initargs = { 5 * MiB },
    })
    local ok, e = pcall(function()
      return ex:submit(function() return 1 end):result(60)
    end)
    assert.is_false(ok)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.are.equal("RemoteError", e.cause.kind)
    assert.is_true(e.cause.message == string.rep("i", 5 * MiB))
  end))

  it("#novalgrind reuse the memory of results once they are read or dropped",
     H.scoped(function(scope)
    local ex, pid = one_worker(scope)
    local s = pattern(16 * MiB)
    for _ = 1, 8 do
      assert.are.equal(16 * MiB, #ex:submit(reverse, s):result(60))
    end
    for _ = 1, 8 do
      local f = ex:submit(reverse, s)
      assert.is_true(f:wait(60))
      f = nil  -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
    end
    -- 16 messages of 16 MiB each way; a block or three stays in use.
    local worker, caller = resident(pid)
    assert.is_true(worker <= 3 * 18 * 1024, "worker's arena " .. worker)
    assert.is_true(caller <= 3 * 18 * 1024, "caller's arena " .. caller)
  end))

  it("are freed with their future, in the first collection after it is "
     .. "dropped", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1 })
    local f = ex:submit(function() return string.rep("r", 8 * MiB) end)
    assert.are.equal(8 * MiB, #f:result(60))
    collectgarbage()
    collectgarbage()
    local before = collectgarbage("count")
    f = nil  -- luacheck: ignore 311
    collectgarbage()
    -- A future with a finalizer would keep its result one cycle more.
    local freed = before - collectgarbage("count")
    assert.is_true(freed >= 8 * 1024, freed .. " KiB freed")
  end))

  it("#novalgrind outlive their worker; its arena goes with the last one "
     .. "read", H.scoped(function(scope)
    local ex = scope(ppe.executor { max_workers = 1, max_tasks_per_child = 2 })
    -- Task 1 of 2: the worker's pid and its own arena's inode.
    local pid, inode = ex:submit(function()
      local f = io.open("/proc/self/maps")
      local maps = f:read("*a")
      f:close()
      f = io.open("/proc/self/stat")
      local me = f:read("*n")
      f:close()
      return me, maps:match("%x+%-%x+ rw%-s %x+ %S+ (%d+)%s+/memfd:ppe")
    end):result(10)
    assert.is_not_nil(inode)
    -- Task 2 of 2: a reply in that arena; then the worker leaves, and
    -- once another runs, the executor has let go of it.
    local s = pattern(8 * MiB)
    local f = ex:submit(reverse, s)
    assert.is_true(f:wait(60))
    assert.are_not.equal(pid, ex:submit(H.pid):result(10))
    assert.is_truthy(find(arenas(H.pid()), "rw-s", inode))
    assert.is_true(f:result(10) == s:reverse())
    assert.is_nil(find(arenas(H.pid()), "rw-s", inode))
  end))

  it("#novalgrind keep their memory for reuse, by default longer than a "
     .. "second or two", H.scoped(function(scope)
    local ex, pid = one_worker(scope)
    local s = pattern(8 * MiB)
    assert.are.equal(8 * MiB, #ex:submit(reverse, s):result(60))
    ex:submit(H.pid):result(10)  -- the worker has taken the loan back
    os.execute("sleep 2.5")
    local worker, caller = resident(pid)
    assert.is_true(worker >= 8 * 1024 and caller >= 8 * 1024,
                   "given back: " .. worker .. " and " .. caller .. " KiB")
  end))

  it("#novalgrind give their memory back after PPE_KEEP_SECONDS without use",
     H.scoped(function(scope)
    local ex, pid = one_worker(scope, "1")
    local s = pattern(8 * MiB)
    assert.are.equal(8 * MiB, #ex:submit(reverse, s):result(60))
    local worker, caller = resident(pid)
    assert.is_true(worker >= 8 * 1024 and caller >= 8 * 1024,
                   "kept for reuse at first")
    -- The worker's arena keeps one page: its reply ring's counters and
    -- gate.
    assert.is_truthy(H.wait_until(function()
      worker, caller = resident(pid)
      return worker <= 4 and caller == 0
    end, 5), "still resident: " .. worker .. " and " .. caller .. " KiB")
  end))
end)

describe("the caller's large strings", function()
  -- The measurement runs in an interpreter of its own: blocks that
  -- earlier specs left kept here would be evicted by the new one, and the
  -- memory they give back counted as this string's.
  local SCRIPT = [[
package.cpath = %q
local ppe = require "ppe"
local function resident_kib()
  local f = assert(io.open("/proc/self/statm"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("^%%d+ (%%d+)")) * 4
end
local ex = ppe.executor { max_workers = 1 }
local s = string.rep("0123456789abcdef", 1024 * 1024)
local r = ex:submit(function(x) return x:reverse() end, s):result(60)
assert(#r == 16 * 1024 * 1024 and r:sub(1, 2) == "fe")
collectgarbage()
collectgarbage()
local before = resident_kib()
r = nil
collectgarbage()
collectgarbage()
io.write(before - resident_kib(), "\n")
ex:close()
]]

  -- KiB by which a new interpreter's resident memory shrinks when a 16 MiB
  -- result of an executor made with PPE_KEEP_SECONDS 'keep' (nil: unset)
  -- is collected.
  local function shrinks(keep)
    local env = keep and "PPE_KEEP_SECONDS=" .. U.quote(keep) .. " exec "
      or "unset PPE_KEEP_SECONDS; exec "
    local h = assert(io.popen(env .. H.interpreter() .. " -e " ..
                              U.quote(SCRIPT:format(package.cpath)) ..
                              " 2>&1"))
    local out = h:read("*a")
    h:close()
    return assert(tonumber(out:match("^(%-?%d+)\n$")), out)
  end

  it("#novalgrind keep their memory when collected, for the next one",
     function()
    if rawget(_G, "jit") then
      return pending("LuaJIT's states allocate with an allocator of its own")
    end
    local kib = shrinks(nil)
    assert.is_true(kib < 1024, "given back: " .. kib .. " KiB")
  end)

  it("#novalgrind give their memory back when collected with "
     .. "PPE_KEEP_SECONDS=0", function()
    if rawget(_G, "jit") then
      return pending("LuaJIT's states allocate with an allocator of its own")
    end
    local kib = shrinks("0")
    -- (Most of 16 MiB: the collection itself may take some memory.)
    assert.is_true(kib >= 12 * 1024, "kept: " .. kib .. " KiB")
  end)
end)

describe("a worker's large strings", function()
  -- /proc/<pid>/smaps_rollup's LazyFree: pages marked free (MADV_FREE),
  -- still mapped, that the kernel takes back when it needs memory.
  local function lazy_kib(pid)
    local s = H.read_file("/proc/" .. pid .. "/smaps_rollup") or ""
    return tonumber(s:match("LazyFree:%s+(%d+) kB")) or 0
  end

  it("#novalgrind are left to the kernel PPE_KEEP_SECONDS after they are "
     .. "freed, still mapped for reuse", H.scoped(function(scope)
    if rawget(_G, "jit") then
      return pending("LuaJIT's states allocate with an allocator of its own")
    end
    local ex, pid = one_worker(scope, "1")
    assert.are.equal(0, lazy_kib(pid))
    -- The argument becomes a 16 MiB string there, garbage once it returns.
    assert.are.equal(16 * MiB, ex:submit(function(x) return #x end,
                                         pattern(16 * MiB)):result(60))
    -- At least 15 MiB of the 16: the count moves by a few pages from run
    -- to run.
    assert.is_truthy(H.wait_until(function()
      return lazy_kib(pid) >= 15 * 1024
    end, 5), "LazyFree: " .. lazy_kib(pid) .. " KiB")
  end))
end)

describe("without arenas", function()
  -- An address-space limit below an arena's size (the machine's RAM): no
  -- arena can be mapped, in the caller or for a worker, and large
  -- messages go through the channels.
  it("#novalgrind large messages go through the channels", function()
    if (os.getenv("LD_PRELOAD") or ""):find("asan") then
      return pending("AddressSanitizer needs more address space")
    end
    local dir = assert(H.searchpath("ppe", package.cpath)):gsub("ppe%.so$", "")
    local script = ([[
      package.cpath = %q .. "?.so;" .. package.cpath
      local ppe = require "ppe"
      local ex = ppe.executor { max_workers = 1 }
      local s = string.rep("ab", 4 * 1048576)
      local r = ex:submit(function(x) return x:upper() end, s):result(60)
      local f = io.open("/proc/self/maps")
      local _, arenas = f:read("*a"):gsub("memfd:ppe", "")
      f:close()
      ex:close()
      io.write(#r, " ", tostring(r == s:upper()), " ", arenas, "\n")
    ]]):format(dir)
    local h = assert(io.popen("ulimit -v 2000000 && " .. H.interpreter() ..
                              " -e '" .. script:gsub("'", "'\\''") ..
                              "' 2>&1"))
    local out = h:read("*a")
    h:close()
    assert.are.equal("8388608 true 0\n", out)
  end)
end)

describe("the arenas", function()
  it("#novalgrind are the worker's own, writable, and the caller's, "
     .. "read-only in the worker", H.scoped(function(scope)
    local _, pid = one_worker(scope)
    local mine = arenas(H.pid())
    do
      local w = arenas(pid)
      assert.are.equal(2, #w)
      local own, callers = find(w, "rw-s"), find(w, "r--s")
      assert.is_truthy(own and callers)
      -- The caller reads the worker's replies, writes its own requests.
      assert.is_truthy(find(mine, "rw-s", own.inode))
      assert.is_truthy(find(mine, "rw-s", callers.inode))
    end
  end))

  it("#novalgrind are not shared with the child of a fork, which makes its "
     .. "own", H.scoped(function(scope)
    local ex, pid = one_worker(scope, "0")
    local s = pattern(8 * MiB)
    local f = ex:submit(reverse, s)
    assert.is_true(f:wait(60))
    local inodes = {}
    for _, m in ipairs(arenas(H.pid())) do inodes[m.inode] = true end
    -- The I/O thread must not hold the lock at the fork: it sleeps once
    -- the request's block has gone back, at once with a keep time of 0.
    assert.is_truthy(H.wait_until(function()
      local _, caller = resident(pid)
      return caller == 0
    end, 5))
    local out = evil.fork(function()
      local before = #arenas(H.pid())
      local ok, e = pcall(f.result, f, 1)
      local back = ppe.decode(ppe.encode(s)) == s
      local ex2 = ppe.executor { max_workers = 1 }
      back = back and ex2:submit(reverse, s):result(10) == s:reverse()
      ex2:close()
      local after = arenas(H.pid())
      return table.concat({ before, tostring(ok), e.kind, tostring(back),
                            #after, after[1].perms, after[1].inode }, " ")
    end)
    local before, ok, kind, back, nafter, perms, inode =
      out:match("^(%d+) (%S+) (%S+) (%S+) (%d+) (%S+) (%d+)$")
    assert.are.equal("0", before)
    assert.are.equal("false", ok)
    assert.are.equal("BrokenExecutor", kind)
    assert.are.equal("true", back)
    assert.are.equal("1", nafter)
    assert.are.equal("rw-s", perms)
    assert.is_nil(inodes[inode])
    -- The parent's future is whole.
    assert.is_true(f:result(10) == s:reverse())
  end))
end)
