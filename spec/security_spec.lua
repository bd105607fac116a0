-- What a worker can reach and what a message can make us do: a worker holds
-- stdio (stdin /dev/null) and one unnamed, close-on-exec socketpair, no
-- path and no port; the zygote likewise; and the decoder checks every size
-- claim before it allocates, never loads bytecode it did not make nor a
-- genuine function with another upvalue layout, never runs 'require' for a
-- name found in a message, and asked for plain data gives nothing else.
local U = require "fixtures.bad_util"  -- first: puts spec/fixtures on cpath
local ppe = require "ppe"
local H = require "helpers"
local evil = U.evil()

local T = 30  -- seconds: a loose bound for work that takes a moment

local O_CLOEXEC = 0x80000  -- 02000000, as /proc/<pid>/fdinfo shows flags

local function cloexec(pid, fd)
  local s = assert(H.read_file("/proc/" .. pid .. "/fdinfo/" .. fd))
  local flags = tonumber(assert(s:match("flags:%s*(%d+)")), 8)
  -- The bit by arithmetic: the & operator came with 5.3.
  return math.floor(flags / O_CLOEXEC) % 2 == 1
end

-- Descriptors of another process, as an array of numbers (ls, as Lua
-- has no readdir).
local function fds_of(pid)
  local h = assert(io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null"))
  local t = {}
  for x in h:read("*a"):gmatch("%d+") do t[#t + 1] = tonumber(x) end
  h:close()
  table.sort(t)
  return t
end

-- Inodes of the sockets in /proc/net/<name>: inode -> the whole line.
-- The inode is the 10th column of tcp/udp (and their 6 forms), the 7th
-- of unix.
local function net_inodes(name)
  local s = H.read_file("/proc/net/" .. name)
  local t = {}
  if not s then return t end
  local col = name == "unix" and 7 or 10
  local first = true
  for line in s:gmatch("[^\n]+") do
    if first then
      first = false
    else
      local fields = {}
      for w in line:gmatch("%S+") do fields[#fields + 1] = w end
      if fields[col] then t[fields[col]] = line end
    end
  end
  return t
end

-- Runs in a worker: its pid, its descriptors, its channel and what the
-- channel's fdinfo says, and what stdin gives.
local function inspect()
  local ev = require "evil"
  local f = io.open("/proc/self/stat")
  local pid = f:read("*n")
  f:close()
  local fds = ev.fds()
  local ch = ev.channel_fd()
  return { pid = pid, fds = fds, channel = ch, id = ppe.worker_id(),
           stdin_line = io.read("*l"), stdin_all = io.read("*a") }
end

-- Inspects every worker of an executor of n workers: tasks until each
-- worker id has answered (bounded).
local function inspect_all(ex, n)
  local seen, count = {}, 0
  for _ = 1, 200 do
    local fs = {}
    for i = 1, n * 2 do fs[i] = ex:submit(inspect) end
    for _, f in ipairs(fs) do
      local r = f:result(T)
      if not seen[r.id] then
        seen[r.id] = r
        count = count + 1
      end
    end
    if count == n then return seen end
  end
  error("only " .. count .. " of " .. n .. " workers answered")
end

-- Our working directory.
local function cwd()
  local h = assert(io.popen("pwd -P"))
  local s = h:read("*l")
  h:close()
  return s
end

-- The parent of a process (the zygote, of a worker).
local function ppid_of(pid)
  local s = H.read_file("/proc/" .. pid .. "/stat")
  return s and tonumber(s:match("^%d+ %b() %S+ (%d+)"))
end

describe("security", function()
  local ex, workers, zygote
  local extra_file, extra_pipe

  lazy_setup(function()
    -- Descriptors the parent holds without close-on-exec (io.open and
    -- io.popen set none): the workers must not inherit them.
    extra_file = assert(io.open("/dev/null"))
    extra_pipe = assert(io.popen("exec cat >/dev/null", "w"))
    ex = H.all_up(ppe.executor{ max_workers = 2 }, 2)
    workers = inspect_all(ex, 2)
    zygote = ppid_of(workers[1].pid)
  end)

  lazy_teardown(function()
    if ex then ex:close() end
    ex = nil
    if extra_file then extra_file:close() end
    if extra_pipe then extra_pipe:close() end  -- cat ends on end of file
  end)

  describe("a worker's descriptors", function()
    it("#novalgrind are exactly 0, 1, 2 and one socket, in every worker", function()
      for id, w in pairs(workers) do
        assert.equal(4, #w.fds, "worker " .. id .. " holds " ..
                     table.concat(w.fds, ","))
        assert.same({ 0, 1, 2 }, { w.fds[1], w.fds[2], w.fds[3] })
        assert.equal(w.channel, w.fds[4])
      end
    end)

    it("#novalgrind are the same in a replacement worker", function()
      local e2 = ppe.executor{ max_workers = 1, max_tasks_per_child = 1 }
      local a = e2:submit(inspect):result(T)
      local b = e2:submit(inspect):result(T)
      e2:close()
      assert.not_equal(a.pid, b.pid, "the worker was not replaced")
      assert.equal(4, #b.fds, table.concat(b.fds, ","))
      assert.same({ 0, 1, 2 }, { b.fds[1], b.fds[2], b.fds[3] })
    end)

    it("stdin is /dev/null: reads give end of file", function()
      for id, w in pairs(workers) do
        assert.equal("/dev/null", U.fdlink(w.pid, 0), "worker " .. id)
        assert.is_nil(w.stdin_line)
        assert.equal("", w.stdin_all)
      end
    end)

    it("stdout and stderr are the parent's", function()
      local me = U.mypid()
      for _, w in pairs(workers) do
        assert.equal(U.fdlink(me, 1), U.fdlink(w.pid, 1))
        assert.equal(U.fdlink(me, 2), U.fdlink(w.pid, 2))
      end
    end)

    it("the channel is close-on-exec: a child of a task sees none", function()
      for _, w in pairs(workers) do
        assert.is_true(cloexec(w.pid, w.channel))
      end
      local listing = ex:submit(function()
        local h = io.popen("ls -l /proc/self/fd/")
        local s = h:read("*a")
        h:close()
        return s
      end):result(T)
      assert.is_nil(listing:find("socket:", 1, true), listing)
    end)
  end)

  describe("the channel", function()
    it("is an unnamed socket: socket:[inode], no path", function()
      for _, w in pairs(workers) do
        local link = U.fdlink(w.pid, w.channel)
        assert.matches("^socket:%[%d+%]$", link)
      end
    end)

    it("is an AF_UNIX stream socket with no path in /proc/net/unix",
       function()
      local unix = net_inodes("unix")
      for _, w in pairs(workers) do
        local inode = U.fdlink(w.pid, w.channel):match("%[(%d+)%]")
        local line = unix[inode]
        assert.is_not_nil(line, "inode " .. inode .. " not in /proc/net/unix")
        local fields = {}
        for x in line:gmatch("%S+") do fields[#fields + 1] = x end
        assert.equal("0001", fields[5], "not SOCK_STREAM: " .. line)
        assert.is_nil(fields[8], "the socket has a path: " .. line)
      end
    end)

    it("has no TCP or UDP port, nor has any socket of the zygote", function()
      local inodes = {}
      for _, w in pairs(workers) do
        for _, fd in ipairs(w.fds) do
          local l = U.fdlink(w.pid, fd)
          local i = l and l:match("^socket:%[(%d+)%]$")
          if i then inodes[i] = "worker " .. w.pid end
        end
      end
      assert.is_not_nil(zygote, "the zygote was not found")
      for _, fd in ipairs(fds_of(zygote)) do
        local l = U.fdlink(zygote, fd)
        local i = l and l:match("^socket:%[(%d+)%]$")
        if i then inodes[i] = "zygote " .. zygote end
      end
      assert.is_not_nil(next(inodes))
      for _, name in ipairs{ "tcp", "tcp6", "udp", "udp6", "raw", "raw6" } do
        local net = net_inodes(name)
        for i, owner in pairs(inodes) do
          assert.is_nil(net[i], owner .. " has a socket in /proc/net/" ..
                        name .. ": " .. tostring(net[i]))
        end
      end
    end)
  end)

  describe("the zygote", function()
    it("#novalgrind holds stdio, sockets and its own close-on-exec fds only, none of "
       .. "the parent's files but the executor's directory, stdout and stderr",
       function()
      assert.is_not_nil(zygote, "the zygote was not found")
      local me, parents = U.mypid(), {}
      -- what each executor's workers start with
      local given = { [U.fdlink(me, 1)] = true, [U.fdlink(me, 2)] = true,
                      [cwd()] = true }
      for _, fd in ipairs(evil.fds()) do
        local l = U.fdlink(me, fd)
        if fd > 2 and l and not l:find("^anon_inode:") then
          parents[l] = fd
        end
      end
      assert.is_not_nil(parents["/dev/null"], "the parent's extra file")
      for _, fd in ipairs(fds_of(zygote)) do
        local l = U.fdlink(zygote, fd)
        if fd > 2 and l and not given[l] then
          assert.is_nil(parents[l], "the zygote holds the parent's fd " ..
                        tostring(parents[l]) .. " -> " .. l)
          assert(l:find("^socket:%[%d+%]$") or l:find("^anon_inode:"),
                 "the zygote holds fd " .. fd .. " -> " .. l)
          assert.is_true(cloexec(zygote, fd), "fd " .. fd .. " -> " .. l)
        end
      end
    end)
  end)

  describe("the parent", function()
    it("opens every descriptor of an executor close-on-exec", function()
      local me = U.mypid()
      local before = {}
      for _, fd in ipairs(evil.fds()) do before[fd] = true end
      local e2 = ppe.executor{ max_workers = 1 }
      local new = {}
      for _, fd in ipairs(evil.fds()) do
        if not before[fd] then new[#new + 1] = fd end
      end
      local bad = {}
      for _, fd in ipairs(new) do
        if not cloexec(me, fd) then
          bad[#bad + 1] = fd .. " -> " .. tostring(U.fdlink(me, fd))
        end
      end
      e2:close()
      assert.is_true(#new > 0)
      assert.same({}, bad)
    end)
  end)

  describe("the decoder bounds sizes before allocating", function()
    -- The format of src/wire.c: a 7-byte header, a varint count of values,
    -- then tagged values; a table is tag, varint array size, a byte that
    -- counts its pairs (0x80 + b: up to 2^b of them, ended by a nil key).
    -- Tags are taken from real messages where one can be.
    local header = ppe.encode():sub(1, 7)
    local T_STR = ppe.encode(string.rep("x", 40)):sub(9, 9)
    local T_TABLE = ppe.encode({}):sub(9, 9)
    local T_LFUNC = ppe.encode(function() end):sub(9, 9)
    local T_CFUNC = ppe.encode(print):sub(9, 9)
    local T_NIL = ppe.encode(nil):sub(9, 9)

    local varint = H.varint

    -- The varint of 2^64 - 1, which only 64-bit integers hold: nine bytes
    -- of seven 1 bits each, then one holding the 64th.
    local VARINT_MAX = ("\255"):rep(9) .. "\1"

    -- A uint32 in the byte order of the header (its fifth byte is 1 when
    -- little-endian), as string.pack's "=I4" writes it; by arithmetic, as
    -- 5.1 and 5.2 have no string.pack.
    local function u32(n)
      local s = H.u32(n)
      return header:byte(5) == 1 and s or s:reverse()
    end

    local bxor = H.bxor

    -- Decodes s expecting a SerializationError; returns its message, the
    -- time taken and how much the Lua heap grew (no collection meanwhile,
    -- so every allocation counts).
    local function refused(s)
      collectgarbage()
      collectgarbage()
      collectgarbage("stop")
      local kb0, t0 = collectgarbage("count"), os.clock()
      local ok, e = pcall(ppe.decode, s)
      local dt, kb = os.clock() - t0, collectgarbage("count") - kb0
      collectgarbage("restart")
      assert.is_false(ok, "decoded")
      assert.equal(ppe.Error, getmetatable(e), tostring(e))
      assert.equal("SerializationError", e.kind)
      return e.message, dt, kb
    end

    local cases = {
      { "a string of 2^60 bytes",
        header .. varint(1) .. T_STR .. varint(2^60) .. "abc" },
      { "a string of 2^64-1 bytes",
        header .. varint(1) .. T_STR .. VARINT_MAX .. "abc" },
      { "a table of 2^40 array elements",
        header .. varint(1) .. T_TABLE .. varint(2^40) ..
        "\0" .. "\0\0\0" },
      { "a table of up to 2^62 hash entries",
        header .. varint(1) .. T_TABLE .. varint(0) ..
        string.char(0x80 + 62) .. "\1\1\1\1" },
      { "2^40 values",
        header .. varint(2^40) .. T_NIL },
      { "a function of 4 GiB of bytecode",
        header .. varint(1) .. T_LFUNC .. u32(0xffffffff) ..
        "12345678" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. ": refused at once, nothing allocated", function()
        local _, dt, kb = refused(c[2])
        assert(dt < 0.5, ("took %.3f s"):format(dt))
        assert(kb < 64, ("the heap grew by %.0f KiB"):format(kb))
      end)
    end

    it("nested size claims share one budget: the message's size", function()
      -- 900 nested tables, each claiming as many elements as there are
      -- bytes left (100,000 nils at the end). Trusting each claim would
      -- preallocate 900 x 100,000 slots (1.4 GB); the budget allows about
      -- one message's worth.
      local level = T_TABLE .. varint(100000) .. "\0"
      local s = header .. varint(1) .. level:rep(900) .. T_NIL:rep(100000)
      local _, dt, kb = refused(s)
      assert(dt < 2, ("took %.3f s"):format(dt))
      assert(kb < 16 * 1024, ("the heap grew by %.0f KiB"):format(kb))
    end)

    it("bytecode not made by this process tree is never loaded", function()
      local good = ppe.encode(function(a) return a * 2 end)
      assert.equal(10, ppe.decode(good)(5))
      -- The tag is the 8 bytes after tag byte and uint32 length; the
      -- bytecode follows. Change one byte of each.
      for _, pos in ipairs{ 14, 20, #good - 2 } do
        local b = good:byte(pos)
        local forged = good:sub(1, pos - 1) .. string.char(bxor(b, 0x55)) ..
                       good:sub(pos + 1)
        local msg = refused(forged)
        assert.is_string(msg)
      end
      -- Raw string.dump output with a made-up tag.
      local dump = string.dump(function() return os.exit end)
      local raw = header .. varint(1) .. T_LFUNC ..
                  u32(#dump) .. ("\0"):rep(8) .. dump .. "\0"
      assert.matches("not made by this process tree", refused(raw), 1, true)
    end)

    it("never runs 'require' for a name in a message", function()
      assert.is_nil(package.loaded["fixtures.sec_marker"])
      _G.SEC_MARKER_LOADED = nil
      local name = ppe.encode("fixtures.sec_marker\0f"):sub(9)
      local msg = refused(header .. varint(1) .. T_CFUNC .. name)
      assert.matches("not found", msg, 1, true)
      assert.is_nil(_G.SEC_MARKER_LOADED, "the module was loaded")
      assert.is_nil(package.loaded["fixtures.sec_marker"])
    end)
  end)

  describe("decoding untrusted bytes", function()
    local header = ppe.encode():sub(1, 7)
    local T_CFUNC = ppe.encode(print):sub(9, 9)
    local SAFE = { functions = false }

    -- Decodes s with opts expecting a SerializationError; its message.
    local function refused(s, opts)
      local e = H.expect_error("SerializationError", ppe.decode, s, opts)
      assert.equal("SerializationError: " .. e.message, tostring(e))
      return e.message
    end

    -- The message of a plain Lua error (not a ppe.Error) that fn raises.
    local function lua_error(fn, ...)
      local ok, e = pcall(fn, ...)
      assert.is_false(ok)
      assert.is_string(e, "expected a Lua error message, got " .. tostring(e))
      return e
    end

    -- The message of one function: its tag and bytecode, then the rest (the
    -- upvalues and what says how they are laid out): header, count,
    -- T_LFUNC, a uint32 length, the 8-byte tag, the bytecode.
    local function record(s)
      local b1, b2, b3, b4 = s:byte(10, 13)
      local blen = header:byte(5) == 1
                   and b1 + 256 * (b2 + 256 * (b3 + 256 * b4))
                   or b4 + 256 * (b3 + 256 * (b2 + 256 * b1))
      return s:sub(1, 21 + blen), s:sub(22 + blen)
    end

    it("by default, can give back the globals and any C function by name",
       function()
      -- What the safe form is for: nothing here is bytecode, so no tag
      -- stands in the way.
      local popen = header .. H.varint(1) .. T_CFUNC ..
                    ppe.encode("io\0popen"):sub(9)
      assert.is_true(rawequal(io.popen, ppe.decode(popen)))
      assert.is_true(rawequal(_G, ppe.decode(ppe.encode(_G))))
      assert.is_true(rawequal(io.popen, ppe.decode(popen, {})))
      assert.is_true(rawequal(io.popen,
                              ppe.decode(popen, { functions = true })))
      assert.matches('^C function "io.popen" refused %(functions = false%)',
                     refused(popen, SAFE))
    end)

    it("with functions = false gives back plain data exactly", function()
      local cyc = { "c" }
      cyc.self = cyc
      local shared = { 1 }
      local r = H.pack(ppe.decode(ppe.encode(nil, true, false, 42, -7, 2.5,
        "", "bytes\0\255", { 1, 2, { 3 }, k = { x = "y" }, [2.5] = false },
        cyc, { a = shared, b = shared }, nil), SAFE))
      assert.equal(12, r.n)
      assert.same({ nil, true, false, 42, -7, 2.5, "", "bytes\0\255" },
                  { H.unpack(r, 1, 8) })
      assert.equal(2.5, r[6])
      assert.is_true(H.is_integer(r[4]))
      assert.same({ 1, 2, { 3 }, k = { x = "y" }, [2.5] = false }, r[9])
      assert.equal("c", r[10][1])
      assert.is_true(rawequal(r[10], r[10].self))
      assert.is_true(rawequal(r[11].a, r[11].b))
      assert.is_nil(r[12])
      assert.equal(0, select("#", ppe.decode(ppe.encode(), SAFE)))
    end)

    it("with functions = false refuses a Lua function, wherever it is",
       function()
      local up = { 1 }
      local f = function() return up end
      assert.matches("^Lua function refused %(functions = false%) at byte 9$",
                     refused(ppe.encode(f), SAFE))
      assert.matches("^Lua function refused %(functions = false%)",
                     refused(ppe.encode(1, { t = { f } }), SAFE))
    end)

    it("with functions = false refuses C functions by name", function()
      assert.matches('^C function "os.execute" refused %(functions = false%)'
                     .. " at byte 9$", refused(ppe.encode(os.execute), SAFE))
      assert.matches('^C function "_G.print" refused %(functions = false%)',
                     refused(ppe.encode({ 1, 2, { p = print } }), SAFE))
      -- A name nobody has: refused as a function, never looked up.
      _G.SEC_MARKER_LOADED = nil
      local name = ppe.encode("fixtures.sec_marker\0f"):sub(9)
      assert.matches('^C function "fixtures.sec_marker.f" refused',
                     refused(header .. H.varint(1) .. T_CFUNC .. name, SAFE))
      assert.is_nil(_G.SEC_MARKER_LOADED)
    end)

    it("with functions = false refuses the globals table", function()
      assert.matches("^globals table refused %(functions = false%) at byte 9$",
                     refused(ppe.encode(_G), SAFE))
      assert.matches("^globals table refused %(functions = false%)",
                     refused(ppe.encode({ env = _G }), SAFE))
    end)

    it("raises on bad options, naming the option", function()
      local s = ppe.encode(1)
      local function value_error(...)
        local ok, e = pcall(ppe.decode, ...)
        assert.is_false(ok)
        assert.equal(ppe.Error, getmetatable(e), tostring(e))
        assert.equal("ValueError", e.kind)
        return e.message
      end
      assert.equal("unknown decode option 'function' (did you mean " ..
                   "'functions'?)",
                   value_error(s, { ["function"] = false }))
      assert.matches("unknown decode option 'fun'",
                     value_error(s, { functions = false, fun = 1 }))
      assert.matches("option 'functions' must be a boolean, got number",
                     value_error(s, { functions = 0 }))
      assert.matches("option 'functions' must be a boolean, got string",
                     value_error(s, { functions = "no" }))
      -- The function's name in the message differs between versions.
      assert.matches("bad argument #2 to '.-' %(options table expected, "
                     .. "got boolean%)", lua_error(ppe.decode, s, false))
      assert.matches("bad argument #2 to '.-' %(options table expected, "
                     .. "got string%)", lua_error(ppe.decode, s, "safe"))
      assert.equal(1, ppe.decode(s, nil))
    end)

    it("refuses a genuine record's tag and bytecode with another upvalue "
       .. "layout", function()
      -- Three functions of one upvalue each: a table, the globals, a C
      -- function by name. Each one's tag and bytecode followed by another's
      -- upvalues is a function its sender never sent.
      local cfg = { x = 1 }
      local G = _G
      local run = os.execute
      local msgs = {
        data = ppe.encode(function(k) return cfg[k] end),
        env = ppe.encode(function(k) return G[k] end),
        cfunc = ppe.encode(function(k) return run, k end),
      }
      assert.equal(1, ppe.decode(msgs.data)("x"))
      assert.is_true(rawequal(os, ppe.decode(msgs.env)("os")))
      assert.is_true(rawequal(os.execute, (ppe.decode(msgs.cfunc)())))
      for a, sa in pairs(msgs) do
        local code = record(sa)
        for b, sb in pairs(msgs) do
          if a ~= b then
            local _, rest = record(sb)
            assert.matches("not made by this process tree",
                           refused(code .. rest), 1, true)
          end
        end
      end
    end)

    -- s with the short string 'from' (a name as the encoder writes it, its
    -- length in its tag byte) replaced by 'to'.
    local function rename(s, from, to)
      local old = string.char(0x20 + #from) .. from
      local i = assert(s:find(old, 1, true), "name not in the message")
      return s:sub(1, i - 1) .. string.char(0x20 + #to) .. to ..
             s:sub(i + #old)
    end

    -- Decodes s and, if that gives a function, calls it with arg as its
    -- receiver would; the decoder's error message.
    local function decode_and_call(s, arg)
      local ok, f = pcall(ppe.decode, s)
      if ok and type(f) == "function" then pcall(f, arg) end
      assert.is_false(ok, "the renamed record decoded")
      assert.equal("SerializationError", f.kind)
      return f.message
    end

    it("refuses a genuine record whose C function upvalue is renamed",
       function()
      -- string.upper made os.execute: the function would run its argument.
      local marker = os.tmpname()
      os.remove(marker)
      finally(function() os.remove(marker) end)
      local up = string.upper
      local s = ppe.encode(function(x) return up(x) end)
      assert.equal("TOUCH", ppe.decode(s)("touch"))
      local forged = rename(s, "string\0upper", "os\0execute")
      assert.matches("not made by this process tree",
                     decode_and_call(forged, "touch " .. marker), 1, true)
      assert.is_nil(io.open(marker))
      -- A name of the same length is no different.
      assert.matches("not made by this process tree",
                     refused(rename(s, "string\0upper", "string\0lower")),
                     1, true)
    end)

    it("refuses a genuine record whose module upvalue is renamed", function()
      -- table made os: t.remove would remove a file.
      local victim = os.tmpname()
      finally(function() os.remove(victim) end)
      local t = table
      local s = ppe.encode(function(a) return t.remove(a) end)
      assert.equal(3, ppe.decode(s)({ 1, 2, 3 }))
      assert.matches("not made by this process tree",
                     decode_and_call(rename(s, "table", "os"), victim), 1,
                     true)
      assert.is_not_nil(io.open(victim))
      assert.matches("not made by this process tree",
                     refused(rename(s, "table", "debug")), 1, true)
    end)
  end)
end)
