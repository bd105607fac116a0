-- Helpers for the executor specs: pids, clocks, children and descriptors
-- read from /proc (Lua has no getpid and no readdir), error checks.
local luassert = require "luassert"

local M = {}

-- Wall-clock seconds since boot (10 ms resolution), without a child process.
function M.now()
  local f = assert(io.open("/proc/uptime"))
  local t = f:read("*n")
  f:close()
  return t
end

-- The pid of the calling process. It has no upvalues, so it can be sent as
-- a task as it is, or called from within one.
function M.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*n")
  f:close()
  return pid
end

-- A task: the pid and worker id of the process that runs it. It has no
-- upvalues, so it can be sent as it is, or called from within one.
function M.whoami()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*n")
  f:close()
  return pid, require("ppe").worker_id()
end

-- The failure of future f, waited for with a timeout (30 s by default);
-- fails the spec if f does not finish in time or succeeds.
function M.failure(f, timeout)
  luassert.is_true(f:wait(timeout or 30), "the future did not finish in time")
  local ok, e = pcall(f.result, f, 0)
  luassert.is_false(ok, "the future succeeded")
  return e
end

-- True once none of the processes 'pids' lives (zombies are the
-- system's to reap), within 'timeout' seconds.
function M.none_alive(pids, timeout)
  return M.wait_until(function()
    for _, p in ipairs(pids) do
      if M.alive(p) then return false end
    end
    return true
  end, timeout)
end

-- The error of ex:submit(fn, ...): raised by submit itself when ex is
-- known broken by then, else its future's failure (as M.failure).
function M.submit_failure(ex, fn, ...)
  local ok, f = pcall(ex.submit, ex, fn, ...)
  if not ok then
    luassert.are.equal(require("ppe").Error, getmetatable(f), tostring(f))
    return f
  end
  return M.failure(f)
end

-- Busy for 'secs' of CPU time, then returns the rest of its arguments.
function M.spin(secs, ...)
  local t = os.clock()
  while os.clock() - t < secs do end
  return ...
end

-- Sleeps 'secs' of wall time in a shell (no CPU), then returns the pid of
-- the caller: the worker's, in a task.
function M.sleep_pid(secs)
  os.execute("sleep " .. secs)
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*n")
  f:close()
  return pid
end

-- True if process 'pid' exists and is not a zombie.
function M.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local s = f:read("*a") or ""
  f:close()
  local state = s:match("^%d+ %(.*%) (%S)")
  return state ~= nil and state ~= "Z"
end

-- True if /proc holds an entry for 'pid' at all (zombies included).
function M.exists(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then f:close() end
  return f ~= nil
end

-- Makes sure the process's zygote runs (it serves every executor, from
-- the first one on), so that a count of children or descriptors taken
-- next holds it whatever spec ran first.
function M.zygote_up(ppe)
  local ex = ppe.executor { max_workers = 1 }
  ex:close()
end

-- The set { [pid] = comm } of every process whose parent is 'ppid', from a
-- scan of /proc/*/stat (field 4). The scan's own 'cat' is left out.
function M.children(ppid)
  local h = assert(io.popen("exec cat /proc/[0-9]*/stat 2>/dev/null"))
  local s = h:read("*a")
  h:close()
  local t = {}
  for line in s:gmatch("[^\n]+") do
    local pid, comm, pp = line:match("^(%d+) %((.*)%) %S (%d+)")
    if pid and tonumber(pp) == ppid and comm ~= "cat" then
      t[tonumber(pid)] = comm
    end
  end
  return t
end

local function list_fds(pid)
  local h = assert(io.popen("ls -l /proc/" .. pid .. "/fd"))
  local t = {}
  for line in h:lines() do
    local fd, target = line:match("(%d+) %-> (.*)$")
    if fd then t[tonumber(fd)] = target end
  end
  h:close()
  return t
end

-- The open descriptors of process 'pid', as { [fd] = target }. Listed
-- twice: the pipe of each listing is a new one, so it is left out.
function M.fds(pid)
  local a, b = list_fds(pid), list_fds(pid)
  local t = {}
  for fd, target in pairs(a) do
    if b[fd] == target then t[fd] = target end
  end
  return t
end

-- The descriptors of 'after' that 'before' did not have, as a string.
function M.new_fds(before, after)
  local s = {}
  for fd, target in pairs(after) do
    if before[fd] ~= target then s[#s + 1] = fd .. " -> " .. target end
  end
  table.sort(s)
  return table.concat(s, ", ")
end

-- What a shell command writes to stdout.
function M.output(cmd)
  local h = assert(io.popen(cmd))
  local s = h:read("*a")
  h:close()
  return s
end

-- Whether a file can be opened for reading.
function M.file_exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- Where Debian puts the lua.h of interpreter 'lua' (lua5.1 ... luajit).
function M.lua_header(lua)
  if lua == "luajit" then return "/usr/include/luajit-2.1/lua.h" end
  return "/usr/include/" .. lua .. "/lua.h"
end

-- A whole file, or nil if it cannot be opened (/proc entries of processes
-- that are gone).
function M.read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Sleeps 'secs' in this process: by evil.so's nanosleep where it is
-- built (the fixtures' directory, or a build's on cpath), else in a shell,
-- a process, which under valgrind costs a second.
local nanosleep
function M.nap(secs)
  if nanosleep == nil then
    local file = M.searchpath("evil", package.cpath .. ";spec/fixtures/?.so")
    local open = file and package.loadlib(file, "luaopen_evil")
    nanosleep = open and open().sleep or false
  end
  if nanosleep then nanosleep(secs) else os.execute("sleep " .. secs) end
end

-- Polls cond() until it is true or 'timeout' seconds pass; its last value.
function M.wait_until(cond, timeout)
  local deadline = M.now() + (timeout or 5)
  repeat
    local v = cond()
    if v then return v end
    M.nap(0.02)
  until M.now() > deadline
  return cond()
end

-- Waits until every one of ex's n workers is up (an executor returns
-- once its first is forked); ex, for chaining.
function M.all_up(ex, n, timeout)
  luassert.is_true(M.wait_until(function()
    return ex:stats().workers == n
  end, timeout or 30), "workers up: " .. ex:stats().workers .. ", not " .. n)
  return ex
end

-- The number of keys of a table.
function M.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- {======================================================
-- The specs run on Lua 5.1 to 5.4 and LuaJIT: what they need that not
-- every version has.

-- -0.0, made at run time: Lua 5.1 keeps one constant for 0.0 and -0.0 in
-- a function, so a literal -0.0 may be read as a 0.0 beside it.
M.NEG_ZERO = -1 / math.huge

M.pack = table.pack or function(...)
  return { n = select("#", ...), ... }
end
M.unpack = table.unpack or unpack  -- luacheck: ignore 143

-- True if v is an integer: of that subtype from 5.3 on, before it a number
-- with an integral value (the only kind of integer those versions have).
function M.is_integer(v)
  if math.type then return math.type(v) == "integer" end
  return type(v) == "number" and v == math.floor(v)
end

-- The eight bytes of a float, little-endian, to compare floats bit for bit
-- (-0.0 and NaN payloads included). Before 5.3 there is no string.pack:
-- the wire format's own float encoding stands in, the last eight bytes of
-- ppe.encode(x).
function M.float_bits(x)
  if string.pack then return string.pack("<d", x) end
  return require("ppe").encode(x):sub(-8)
end

-- Little-endian unsigned integers of 4 and 8 bytes, by arithmetic, so that
-- they work where numbers are doubles (exact below 2^53).
function M.u32(n) return M.uint(n, 4) end
function M.u64(n) return M.uint(n, 8) end
function M.uint(n, size)
  local t = {}
  for i = 1, size do
    t[i] = string.char(n % 256)
    n = math.floor(n / 256)
  end
  return table.concat(t)
end

-- a XOR b for bytes, by arithmetic (the ~ operator came with 5.3).
function M.bxor(a, b)
  local r, bit = 0, 1
  for _ = 1, 8 do
    if a % 2 ~= b % 2 then r = r + bit end
    a, b, bit = math.floor(a / 2), math.floor(b / 2), bit * 2
  end
  return r
end

-- The wire format's varint of n >= 0, by arithmetic so that it works where
-- numbers are doubles: exact while n / 128 is, as for powers of two and
-- values below 2^53.
function M.varint(n)
  local out = {}
  repeat
    local byte = n % 128
    n = math.floor(n / 128)
    out[#out + 1] = string.char(byte + (n ~= 0 and 128 or 0))
  until n == 0
  return table.concat(out)
end

-- What runs this process: the interpreter, or a tool that runs it
-- (valgrind). Read once: under valgrind, each process started costs a
-- second.
local exe
local function own_exe()
  if exe == nil then
    local h = assert(io.popen("readlink /proc/" .. M.pid() .. "/exe"))
    exe = h:read("*l") or ""
    h:close()
  end
  return exe
end

-- Whether a tool runs the interpreter (valgrind): what it slows, specs
-- do less of.
function M.traced()
  return not own_exe():match("/lua[^/]*$")
end

-- The interpreter running the specs, for the Lua programs some specs start:
-- ppe.so is built for one Lua and loads in no other. Under a tool that
-- runs it, this version's usual name.
function M.interpreter()
  if not M.traced() then return own_exe() end
  return rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
end

-- A far side's command: this interpreter, with this process's paths (the
-- far side's own, on another machine), running 'extra' (Lua source) if
-- given, then serving.
function M.far_command(extra)
  return { M.interpreter(), "-e", ("package.cpath = %q; package.path = %q; "
    .. "%srequire('ppe').serve()"):format(package.cpath, package.path,
                                         extra or "") }
end

-- A group of n far workers through the launcher env, on this machine,
-- with the options in opts besides.
function M.far(n, opts)
  local g = { n = n, launcher = { "env" }, command = M.far_command() }
  for k, v in pairs(opts or {}) do g[k] = v end
  return g
end

-- package.searchpath, which 5.1 lacks.
M.searchpath = package.searchpath or function(name, path)
  local file = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local candidate = template:gsub("%?", file)
    local f = io.open(candidate)
    if f then f:close() return candidate end
  end
  return nil
end

-- To-be-closed variables, which came with 5.4: M.scoped(function(scope)
-- ... end) is a function that runs its body with 'scope(x, ...)' standing
-- for 'local x <close>' (it returns its arguments). When the body ends,
-- normally or by an error, what it registered is closed in reverse order,
-- each __close given the error, and the error is raised again.
function M.scoped(body)
  return function()
    local list = {}
    local function scope(x, ...)
      list[#list + 1] = x
      return x, ...
    end
    local ok, err = xpcall(function() return body(scope) end,
                           function(e) return e end)
    for i = #list, 1, -1 do
      local mt = getmetatable(list[i])
      local close = type(mt) == "table" and mt.__close
      if close then close(list[i], (not ok) and err or nil) end
    end
    if not ok then error(err, 0) end
  end
end

-- }======================================================

-- Calls fn(...), which must raise a ppe error of kind 'kind'; returns it.
-- Checked with luassert, so that busted reports a failure, not an error.
function M.expect_error(kind, fn, ...)
  local ppe = require "ppe"
  local ok, err = pcall(fn, ...)
  luassert.is_false(ok, "expected a " .. kind .. " error, the call succeeded")
  luassert.are.equal("table", type(err),
                     "expected a " .. kind .. " error table, got: "
                     .. tostring(err))
  luassert.are.equal(ppe.Error, getmetatable(err),
                     "error without the ppe.Error metatable")
  luassert.are.equal(kind, err.kind,
                     "expected a " .. kind .. " error, got: " .. tostring(err))
  return err
end

return M
