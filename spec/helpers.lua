-- Helpers for the executor specs: pids, clocks, children and descriptors
-- read from /proc (Lua has no getpid and no readdir), error checks.
local luassert = require "luassert"

local M = {}

-- Wall-clock seconds since boot (10 ms resolution), without a child process.
function M.now()
  local f = assert(io.open("/proc/uptime"))
  local t = f:read("n")
  f:close()
  return t
end

-- The pid of the calling process. It has no upvalues, so it can be sent as
-- a task as it is, or called from within one.
function M.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return pid
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
  local pid = f:read("n")
  f:close()
  return pid
end

-- True if process 'pid' exists and is not a zombie.
function M.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local s = f:read("a") or ""
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

-- The set { [pid] = comm } of every process whose parent is 'ppid', from a
-- scan of /proc/*/stat (field 4). The scan's own 'cat' is left out.
function M.children(ppid)
  local h = assert(io.popen("exec cat /proc/[0-9]*/stat 2>/dev/null"))
  local s = h:read("a")
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

-- Polls cond() until it is true or 'timeout' seconds pass; its last value.
function M.wait_until(cond, timeout)
  local deadline = M.now() + (timeout or 5)
  repeat
    local v = cond()
    if v then return v end
    os.execute("sleep 0.02")
  until M.now() > deadline
  return cond()
end

-- The number of keys of a table.
function M.count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

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
