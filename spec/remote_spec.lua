-- Far workers through real launchers: ssh to a private sshd, and Slurm's
-- srun on a single-node cluster, both on 127.0.0.1 and started by the
-- project's own scripts (spec/launchers.lua). Outside CI, a daemon that
-- cannot start makes its specs pending with the reason; in CI they fail.
-- Not under valgrind (#novalgrind): spec/far_spec.lua runs the same code
-- of the caller there, through env; these add the launchers themselves.
local ppe = require "ppe"
local H = require "helpers"
local L = require "launchers"

local T = 60  -- seconds: launchers take a moment to start

local function failure(f) return H.failure(f, T) end

-- What the far side runs: this interpreter, told where ppe and the specs'
-- modules are. 'shell' quotes each word for the remote shell ssh hands
-- its command to; srun runs its argv as it is.
-- Under the sanitizers, the far side gets their runtime as this process
-- has it, and the launcher (ssh, srun: not ours to check) goes without.
local SANITIZER_VARS = { "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS" }

-- A search path with its relative entries made absolute: the far side
-- starts elsewhere (ssh: in the home directory).
local function absolute(path)
  local cwd = assert(os.getenv("PWD"))
  local t = {}
  for entry in path:gmatch("[^;]+") do
    if entry:sub(1, 1) ~= "/" then
      entry = cwd .. "/" .. entry:gsub("^%./", "")
    end
    t[#t + 1] = entry
  end
  return table.concat(t, ";")
end

local function command(shell)
  local function q(s) return shell and L.quote(s) or s end
  local cmd = { "env", "LUA_CPATH=" .. q(absolute(package.cpath)),
                "LUA_PATH=" .. q(absolute(package.path)) }
  for _, k in ipairs(SANITIZER_VARS) do
    local v = os.getenv(k)
    if v then cmd[#cmd + 1] = k .. "=" .. q(v) end
  end
  cmd[#cmd + 1] = H.interpreter()
  cmd[#cmd + 1] = "-lppe.serve"
  return cmd
end

-- The launcher d gives, started through env without the sanitizers'
-- variables (env is also left untraced by the valgrind run).
local function launcher(d, swap)
  local t = { "env" }
  for _, k in ipairs(SANITIZER_VARS) do
    t[#t + 1] = "-u"
    t[#t + 1] = k
  end
  for _, w in ipairs(d.launcher) do
    if w == "env" and #t == 1 + 2 * #SANITIZER_VARS then  -- luacheck: ignore
    else t[#t + 1] = w end
  end
  if swap then swap(t) end
  return t
end

-- The common checks, for a group through 'argv' named 'name'.
local function works(argv, cmd, name)
  local ex = ppe.executor { workers = { {
    n = 2, launcher = argv, command = cmd, name = name } } }
  local ok, err = pcall(function()
    assert.are.equal("ababab", ex:submit("string.rep", "ab", 3):result(T))
    local pid, id = ex:submit(H.whoami):result(T)
    assert.are_not.equal(H.pid(), pid)
    assert.is_true(id == 1 or id == 2)
    local sum = 0
    for _, v in ex:map(function(x) return x * x end, { 1, 2, 3, 4 },
                       { chunksize = 2 }) do
      sum = sum + v
    end
    assert.are.equal(30, sum)
    local e = failure(ex:submit(function() error("far away") end))
    assert.are.equal("RemoteError", e.kind)
    assert.are.equal(name, e.host)
    -- Large enough to span many reads and to be taken with its buffer,
    -- and below the blocks kept for reuse (whose later release another
    -- spec's memory count would see).
    local big = string.rep("x", 3 * 1024 * 1024)
    assert.are.equal(#big + 1, #ex:submit(function(s) return s .. "!" end,
                                          big):result(T))
    -- A worker killed mid-task through its launcher leaves nothing
    -- behind: the far process ends once its channel does.
    local fpid = ex:submit(H.whoami):result(T)
    local f = ex:submit(function() while true do end end)
    assert.is_true(H.wait_until(function() return f:running() end, T))
    H.sleep_pid(0.2)
    ex:kill_workers()
    assert.are.equal("WorkerDied", failure(f).kind)
    assert.is_true(H.wait_until(function() return not H.alive(fpid) end, 2),
                   "far worker " .. fpid .. " lives on")
  end)
  ex:close()
  if not ok then error(err, 0) end
end

describe("far workers through ssh #novalgrind", function()
  teardown(function() L.stop_all() end)

  it("run tasks, maps and errors, and leave nothing when killed", function()
    local d = L.require_or_pending("sshd")
    if not d then return end
    works(launcher(d), command(true), "box")
  end)

  it("give the group up when ssh cannot connect, with its words",
     H.scoped(function(scope)
    local d = L.require_or_pending("sshd")
    if not d then return end
    local argv = launcher(d, function(t)
      for i, w in ipairs(t) do
        if w == "-p" then t[i + 1] = "1" end  -- nobody listens there
      end
    end)
    local ex = scope(ppe.executor { host_failures = 2, workers = { {
      n = 1, launcher = argv, command = command(true), name = "nowhere" } } })
    local e = H.submit_failure(ex, function() return 1 end)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.matches("'nowhere' exited with code 255", e.message)
    assert.matches("refused", e.message)
  end))
end)

-- A list of strings as Lua source, for a program of its own.
local function lua_list(t)
  local s = {}
  for i, w in ipairs(t) do s[i] = ("%q"):format(w) end
  return "{ " .. table.concat(s, ", ") .. " }"
end

-- The ssh clients among the children of process 'ppid'.
local function ssh_clients(ppid)
  local t = {}
  for pid, comm in pairs(H.children(ppid)) do
    if comm == "ssh" then t[#t + 1] = pid end
  end
  return t
end

describe("far workers through ssh, when the link fails #novalgrind",
         function()
  teardown(function() L.stop_all() end)

  -- One ssh worker, busy in a task; its far pid. 'fail' breaks the link.
  local function busy(scope, d)
    local ex = scope(ppe.executor { host_failures = 2, workers = { {
      n = 1, launcher = launcher(d), command = command(true),
      name = "box" } } })
    local fpid = ex:submit(H.whoami):result(T)
    local f = ex:submit(function() while true do end end)
    assert.is_true(H.wait_until(function() return f:running() end, T))
    return ex, f, fpid
  end

  it("fail only the running task when the ssh client is killed, and "
     .. "replace the worker", H.scoped(function(scope)
    local d = L.require_or_pending("sshd")
    if not d then return end
    local ex, f, fpid = busy(scope, d)
    local clients = ssh_clients(H.pid())
    assert.are.equal(1, #clients)
    os.execute("kill -9 " .. clients[1])
    local e = failure(f)
    assert.are.equal("WorkerDied", e.kind)
    assert.are.equal("box", e.host)
    assert.is_true(H.wait_until(function() return not H.alive(fpid) end,
                                1.5), "far worker " .. fpid .. " lives on")
    local pid = ex:submit(H.whoami):result(T)
    assert.are_not.equal(fpid, pid)
    assert.are.equal(1, ex:stats().groups[1].restarts)
  end))

  it("fail only the running task when sshd stops, then give the group up",
     H.scoped(function(scope)
    local d = L.require_or_pending("sshd")
    if not d then return end
    local ex, f, fpid = busy(scope, d)
    assert(L.stop("sshd"))  -- its sessions end with it
    local e = failure(f)
    assert.are.equal("WorkerDied", e.kind)
    assert.are.equal("box", e.host)
    assert.is_true(H.wait_until(function() return not H.alive(fpid) end,
                                1.5), "far worker " .. fpid .. " lives on")
    e = H.submit_failure(ex, function() return 1 end)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.matches("'box' exited with code 255", e.message)
    assert.is_true(ex:stats().groups[1].given_up)
  end))

  it("leave nothing on either side when the caller is killed", function()
    local d = L.require_or_pending("sshd")
    if not d then return end
    local prog = os.tmpname()
    local f = assert(io.open(prog, "w"))
    f:write(([[
      package.cpath = %q
      package.path = %q
      local ppe = require "ppe"
      local ex = ppe.executor { workers = { { n = 2, launcher = %s,
        command = %s } } }
      local fs = {}
      for i = 1, 2 do
        fs[i] = ex:submit(function()
          os.execute("sleep 0.3")
          return (require("helpers").whoami())
        end)
      end
      for i = 1, 2 do io.write(fs[i]:result(60), " ") end
      io.write("\n")
      io.flush()
      ex:submit(function() while true do end end)
      ex:submit(function() while true do end end)
      while true do end
    ]]):format(package.cpath, package.path, lua_list(launcher(d)),
               lua_list(command(true))))
    f:close()
    local h = assert(io.popen("exec " .. H.interpreter() .. " " .. prog
                              .. " & echo $!; wait"))
    local caller = tonumber(h:read("*l"))
    local line = h:read("*l") or ""
    local pids = {}
    for p in line:gmatch("%d+") do pids[#pids + 1] = tonumber(p) end
    assert.are.equal(2, #pids, line)
    for _, c in ipairs(ssh_clients(caller)) do pids[#pids + 1] = c end
    assert.are.equal(4, #pids, "two ssh clients")
    H.sleep_pid(0.3)  -- (the busy tasks under way)
    os.execute("kill -9 " .. caller)
    h:close()
    os.remove(prog)
    assert.is_true(H.none_alive(pids, 1.5),
                   "left alive of " .. table.concat(pids, " "))
  end)
end)

describe("far workers through Slurm's srun #novalgrind", function()
  teardown(function() L.stop_all() end)

  it("run tasks, maps and errors, and leave nothing when killed", function()
    local d = L.require_or_pending("slurm")
    if not d then return end
    works(launcher(d), command(false), "cluster")
  end)
end)

-- Mixed: local workers beside far ones, one executor.
describe("an executor of local and far workers #novalgrind", function()
  teardown(function() L.stop_all() end)

  it("spreads work over both", H.scoped(function(scope)
    local d = L.require_or_pending("sshd")
    if not d then return end
    local ex = scope(ppe.executor { workers = {
      { n = 1 },
      { n = 1, launcher = launcher(d), command = command(true), name = "b" },
    } })
    local fs = {}
    for i = 1, 40 do
      fs[i] = ex:submit(function() H.spin(0.02) return H.whoami() end)
    end
    local ids = {}
    for i = 1, 40 do
      local _, id = fs[i]:result(T)
      ids[id] = true
    end
    assert.is_true(ids[1] and ids[2], "work went to one side only")
    local g = ex:stats().groups
    assert.are.equal(40, g[1].completed + g[2].completed)
  end))
end)

