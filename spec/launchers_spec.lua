-- The real launchers the far-worker specs use: tools/sshd.sh and
-- tools/slurm.sh through spec/launchers.lua. Bytes and exit codes through
-- 'ssh' and 'srun', and what a stop leaves (nothing). Outside CI, a daemon
-- that cannot start makes its specs pending with the reason; in CI they
-- fail. Tagged novalgrind: they count the children and descriptors of the
-- process, which valgrind adds to.
local H = require "helpers"
local L = require "launchers"

local ME = H.pid()
local q = L.quote

-- Every command of these specs is bounded: a hung launcher is a failure.
local LIMIT = 60

local children_before, fds_before

setup(function()
  children_before = H.children(ME)
  fds_before = H.fds(ME)
end)

teardown(function()
  assert(L.stop_all())
end)

-- Runs shell command 'cmd' under 'timeout'; its stdout and exit status.
local function sh(cmd)
  local h = assert(io.popen(("timeout %d sh -c %s; echo \"rc=$?\""):format(
    LIMIT, q(cmd))))
  local out = h:read("*a")
  h:close()
  local body, rc = out:match("^(.*)rc=(%d+)\n$")
  return body, tonumber(rc)
end

-- The 256 bytes of block b of the blob: every byte value once, in an
-- order that differs from block to block (an odd step is a permutation).
local function block(b)
  local t = {}
  local step = (b % 128) * 2 + 1
  for i = 0, 255 do t[i + 1] = string.char((i * step + b) % 256) end
  return table.concat(t)
end

-- Writes the blob, 4096 blocks (1 MiB), to 'path' 64 KiB at a time: the
-- specs after this file measure the memory of this process, and freeing a
-- string of a MiB makes glibc's malloc keep and give back memory
-- differently (it raises its mmap threshold).
local function write_blob(path)
  local f = assert(io.open(path, "wb"))
  for piece = 0, 15 do
    local t = {}
    for b = 0, 255 do t[b + 1] = block(piece * 256 + b) end
    f:write(table.concat(t))
  end
  f:close()
end

-- Sends the 1 MiB blob through 'cat' run by daemon 'd' and checks that it
-- comes back byte for byte (cmp).
local function round_trip(d)
  local first = block(0)
  for v = 0, 255 do
    assert.is_truthy(first:find(string.char(v), 1, true), "byte " .. v)
  end
  local input = d.dir .. "/blob.in"
  local output = d.dir .. "/blob.out"
  write_blob(input)
  local _, rc = sh(L.command(d, { "cat" }) .. " <" .. q(input) .. " >" ..
                   q(output))
  assert.are.equal(0, rc)
  assert.are.equal("1048576\n", (sh("wc -c <" .. q(output))))
  local _, same = sh("cmp -s " .. q(input) .. " " .. q(output))
  assert.are.equal(0, same, "the blob came back changed")
  os.remove(input)
  os.remove(output)
end

-- The pids of the processes whose command line names 'dir' (a daemon's
-- config, pid or log there).
local function processes_of(dir)
  local out = sh("grep -lF -- " .. q(dir) .. " /proc/[0-9]*/cmdline " ..
                 "2>/dev/null | sed 's|/proc/\\([0-9]*\\)/cmdline|\\1|'")
  local t = {}
  for pid in out:gmatch("%d+") do
    if H.alive(tonumber(pid)) then t[#t + 1] = tonumber(pid) end
  end
  return t
end

-- Whether something listens on 127.0.0.1:port (/proc/net/tcp, state 0A).
local function listening(port)
  local s = H.read_file("/proc/net/tcp") or ""
  return s:find((":%04X 00000000:0000 0A"):format(port)) ~= nil and
         s:find(("0100007F:%04X 00000000:0000 0A"):format(port)) ~= nil
end

-- The pids of the processes with an argument 'arg' (a word of no other
-- process: the pattern in the scan's own command line is not that word).
local function processes_with_arg(arg)
  local pattern = "^" .. arg:gsub("%.", "[.]") .. "$"
  local out = sh("grep -lz -- " .. q(pattern) .. " /proc/[0-9]*/cmdline " ..
                 "2>/dev/null | sed 's|/proc/\\([0-9]*\\)/cmdline|\\1|'")
  local t = {}
  for pid in out:gmatch("%d+") do
    if H.alive(tonumber(pid)) then t[#t + 1] = tonumber(pid) end
  end
  return t
end

-- After a stop: the daemons' pids are gone, and so is every process that
-- names the dir or runs the command 'arg' marks (the task and its
-- client); this process has no new child and no new descriptor.
local function check_stopped(d, arg)
  for name, pid in pairs(d.pids) do
    assert.is_true(H.wait_until(function() return not H.alive(pid) end, 10),
                   name .. " (pid " .. pid .. ") still running")
  end
  H.wait_until(function() return #processes_of(d.dir) == 0 end, 10)
  assert.are.same({}, processes_of(d.dir))
  H.wait_until(function() return #processes_with_arg(arg) == 0 end, 10)
  assert.are.same({}, processes_with_arg(arg))
  local kids = H.children(ME)
  for pid in pairs(kids) do
    assert.is_truthy(children_before[pid], "new child " .. pid .. " " ..
                     tostring(kids[pid]))
  end
  assert.are.equal("", H.new_fds(fds_before, H.fds(ME)))
end

describe("tools/sshd.sh #novalgrind", function()
  it("starts a private sshd listening on 127.0.0.1 only", function()
    local d = L.require_or_pending("sshd")
    assert.is_true(H.alive(d.pids.sshd))
    local port = tonumber(d.vars.SSHD_PORT)
    assert.is_true(port >= 1024 and port < 65536)
    assert.is_true(listening(port))
    assert.are.equal("ssh", d.launcher[1])
    assert.are.equal("127.0.0.1", d.launcher[#d.launcher])
    print(("\nsshd up in %.2f s"):format(d.start_seconds))
  end)

  it("runs a command through the launcher argv: 'echo hi' gives hi",
     function()
    local d = L.require_or_pending("sshd")
    local out, rc = sh(L.command(d, { "echo", "hi" }) .. " </dev/null")
    assert.are.equal(0, rc)
    assert.are.equal("hi\n", out)
  end)

  it("passes the far command's exit code back", function()
    local d = L.require_or_pending("sshd")
    local _, rc = sh(L.command(d, { "sh", "-c", "'exit 7'" }) .. " </dev/null")
    assert.are.equal(7, rc)
  end)

  it("carries 1 MiB of all 256 byte values through 'cat' byte-exact",
     function()
    round_trip(L.require_or_pending("sshd"))
  end)

  it("stops by pid and leaves no process, child or descriptor", function()
    local d = L.require_or_pending("sshd")
    -- A session still running when the server stops goes with it.
    local _, rc = sh(L.command(d, { "sleep", "300.123" }) ..
                     " </dev/null >/dev/null 2>&1 &")
    assert.are.equal(0, rc)
    -- ssh and sleep
    H.wait_until(function() return #processes_with_arg("300.123") == 2 end, 10)
    assert.are.equal(2, #processes_with_arg("300.123"))
    local ok, secs = L.stop("sshd")
    assert.is_true(ok, secs)
    print(("\nsshd stopped in %.2f s"):format(secs))
    check_stopped(d, "300.123")
  end)
end)

describe("tools/slurm.sh #novalgrind", function()
  it("starts munged, slurmctld and slurmd; the node is idle", function()
    local d = L.require_or_pending("slurm")
    for name, pid in pairs(d.pids) do
      assert.is_true(H.alive(pid), name .. " not running")
    end
    local out = sh("SLURM_CONF=" .. q(d.env.SLURM_CONF) ..
                   " sinfo -h -o %t </dev/null")
    assert.are.equal("idle\n", out)
    assert.are.equal("env", d.launcher[1])
    assert.are.equal("srun", d.launcher[3])
    print(("\nslurm up in %.2f s"):format(d.start_seconds))
  end)

  it("runs a command through srun: 'echo hi' gives hi", function()
    local d = L.require_or_pending("slurm")
    local out, rc = sh(L.command(d, { "echo", "hi" }) .. " </dev/null")
    assert.are.equal(0, rc)
    assert.are.equal("hi\n", out)
  end)

  it("passes the task's exit code back through srun", function()
    local d = L.require_or_pending("slurm")
    local _, rc = sh(L.command(d, { "sh", "-c", "exit 7" }) ..
                     " </dev/null 2>/dev/null")
    assert.are.equal(7, rc)
  end)

  it("carries 1 MiB of all 256 byte values through 'srun cat' byte-exact",
     function()
    round_trip(L.require_or_pending("slurm"))
  end)

  it("stops by pid and leaves no process, child or descriptor", function()
    local d = L.require_or_pending("slurm")
    -- A job step still running when the cluster stops goes with it.
    local _, rc = sh(L.command(d, { "sleep", "301.456" }) ..
                     " </dev/null >/dev/null 2>&1 &")
    assert.are.equal(0, rc)
    -- srun (two of them: it forks a helper) and sleep
    H.wait_until(function() return #processes_with_arg("301.456") == 3 end, 10)
    assert.are.equal(3, #processes_with_arg("301.456"))
    local ok, secs = L.stop("slurm")
    assert.is_true(ok, secs)
    print(("\nslurm stopped in %.2f s"):format(secs))
    check_stopped(d, "301.456")
  end)
end)
