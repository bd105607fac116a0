-- Real launchers for the specs: a private sshd and a single-node Slurm on
-- 127.0.0.1, started through tools/sshd.sh and tools/slurm.sh in a temp
-- dir, at most once per busted run, and stopped by L.stop_all() (the specs
-- call it in a teardown), at the end of the run, or by the scripts' own
-- watcher when this process is gone without either.
--
--   local L = require "launchers"
--   local d = L.require_or_pending("sshd")   -- or "slurm"
--   -- d.launcher: argv prefix ({ "ssh", "-p", ... } or { "env",
--   -- "SLURM_CONF=...", "srun", ... }); d.env: what the launcher needs in
--   -- its environment (already in d.launcher); d.vars: all of DIR/env;
--   -- d.pids: the daemons' pids; d.dir; d.start_seconds.
--
-- Lua 5.1 to 5.4 and LuaJIT: no to-be-closed variables, no goto.
local H = require "helpers"

local L = {}

-- The scripts, beside spec/ in the tree this file is in.
local TOOLS = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".")
              .. "/../tools/"

-- What the daemons are started with. The sanitizers' and valgrind's
-- preloads stay out of the scripts and the daemons: 'env' is left
-- untraced by the valgrind run (see the Makefile's VALGRIND).
local CLEAN_ENV = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS"

-- The longest a start may take, installs from Debian included.
local START_TIMEOUT = 600

-- State of the run, kept where busted's insulation of each spec file does
-- not reach (it unloads this module between files): the registry.
local KEY = "ppe.spec.launchers"

local function state()
  local reg = debug.getregistry()
  local s = reg[KEY]
  if s then return s end
  s = { daemons = {}, failed = {}, owner = H.pid() }
  reg[KEY] = s
  -- At the end of the run, when the interpreter closes its state (all
  -- versions after a normal end, 5.2+ after busted's os.exit too), the
  -- daemons still up are stopped. A state cut short otherwise (5.1's
  -- os.exit, a signal) leaves them to the scripts' watcher. A forked copy
  -- of this process that closes its copy of the state stops nothing.
  local function at_close()
    if H.pid() == s.owner then L.stop_all() end
  end
  if newproxy then  -- luacheck: ignore 113 (5.1 and LuaJIT)
    s.sentinel = newproxy(true)  -- luacheck: ignore 113
    getmetatable(s.sentinel).__gc = at_close
  else
    s.sentinel = setmetatable({}, { __gc = at_close })
  end
  return s
end

-- Runs shell command 'cmd'; true if it exited with status 0.
local function run(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

-- Single quotes for the shell.
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
L.quote = q

-- The output of shell command 'cmd', its trailing newline cut.
local function read(cmd)
  local h = assert(io.popen(cmd))
  local s = h:read("*a")
  h:close()
  return (s:gsub("\n$", ""))
end

-- The assignments NAME=value and NAME='value' of a file written by the
-- scripts, as a table.
local function parse_env(path)
  local t = {}
  local text = H.read_file(path) or ""
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^([%w_]+)='(.*)'$")
    if not k then k, v = line:match("^([%w_]+)=(.*)$") end
    if k then t[k] = v end
  end
  return t
end

local function words(s)
  local t = {}
  for w in s:gmatch("%S+") do t[#t + 1] = w end
  return t
end

-- The last line of a file, for reasons.
local function last_line(path)
  local s = H.read_file(path) or ""
  local line
  for l in s:gmatch("[^\n]+") do line = l end
  return line or "(no output)"
end

-- What each kind needs: its script, and how the table is made from the
-- env file.
local KINDS = {
  sshd = {
    script = "sshd.sh",
    make = function(v)
      return {
        launcher = words(v.SSH_LAUNCHER),
        env = {},
        pids = { sshd = tonumber(v.SSHD_PID) },
      }
    end,
  },
  slurm = {
    script = "slurm.sh",
    make = function(v)
      local launcher = { "env", "SLURM_CONF=" .. v.SLURM_CONF }
      for _, w in ipairs(words(v.SRUN_LAUNCHER)) do launcher[#launcher + 1] = w end
      return {
        launcher = launcher,
        env = { SLURM_CONF = v.SLURM_CONF },
        pids = {
          munged = tonumber(v.MUNGED_PID),
          slurmctld = tonumber(v.SLURMCTLD_PID),
          slurmd = tonumber(v.SLURMD_PID),
        },
      }
    end,
  },
}

local function all_alive(d)
  for _, pid in pairs(d.pids) do
    if not H.alive(pid) then return false end
  end
  return true
end

-- Starts daemon 'kind' ("sshd" or "slurm") unless it runs already; the
-- table described at the top, or nil and the reason it could not start.
-- A failure is remembered for the rest of the run.
local function get(kind)
  local k = assert(KINDS[kind], "unknown launcher kind")
  local s = state()
  local d = s.daemons[kind]
  if d and all_alive(d) then return d end
  if d then L.stop(kind) end
  if s.failed[kind] then return nil, s.failed[kind] end

  local dir = read("mktemp -d /tmp/ppe-" .. kind .. ".XXXXXX")
  local log = dir .. "/start.log"
  local t0 = H.now()
  local ok = run(("%s OWNER_PID=%d timeout %d sh %s start %s </dev/null " ..
                  ">%s 2>&1"):format(CLEAN_ENV, H.pid(), START_TIMEOUT,
                                     q(TOOLS .. k.script), q(dir), q(log)))
  local seconds = H.now() - t0
  if not ok then
    local reason = kind .. " could not start: " .. last_line(log)
    run(("%s sh %s stop %s >/dev/null 2>&1; rm -rf %s"):format(
      CLEAN_ENV, q(TOOLS .. k.script), q(dir), q(dir)))
    s.failed[kind] = reason
    return nil, reason
  end
  local vars = parse_env(dir .. "/env")
  d = k.make(vars)
  d.kind, d.dir, d.vars, d.start_seconds = kind, dir, vars, seconds
  s.daemons[kind] = d
  return d
end

function L.sshd() return get("sshd") end
function L.slurm() return get("slurm") end

-- Stops daemon 'kind' if this run started it, and removes its dir. True
-- and the seconds it took, or false and the reason (the dir then stays,
-- for a look and for the watcher's stop).
function L.stop(kind)
  local s = state()
  local d = s.daemons[kind]
  if not d then return true, 0 end
  s.daemons[kind] = nil
  local log = d.dir .. "/stop.log"
  local t0 = H.now()
  local ok = run(("%s timeout 60 sh %s stop %s </dev/null >%s 2>&1"):format(
    CLEAN_ENV, q(TOOLS .. KINDS[kind].script), q(d.dir), q(log)))
  local seconds = H.now() - t0
  if not ok then
    return false, kind .. " stop failed: " .. last_line(log) .. " (see " ..
                  d.dir .. ")"
  end
  run("rm -rf " .. q(d.dir))
  return true, seconds
end

-- Stops every daemon this run started. True, or false and the reasons.
function L.stop_all()
  local reasons = {}
  for _, kind in ipairs({ "sshd", "slurm" }) do
    local ok, why = L.stop(kind)
    if not ok then reasons[#reasons + 1] = why end
  end
  if #reasons > 0 then return false, table.concat(reasons, "; ") end
  return true
end

-- True when running in CI (CI set, as CI services and .ci/run do).
function L.in_ci()
  local ci = os.getenv("CI")
  return ci ~= nil and ci ~= "" and ci ~= "false" and ci ~= "0"
end

-- busted's 'pending' of the running spec lives in the environment busted
-- gives the spec file's functions, not in this module's: a proxy that
-- looks names up in the context running at the time (in a test, its own
-- 'pending', which marks it so). The environment of a function on the
-- stack: 5.1's getfenv, or its _ENV upvalue (none if it names no global).
local getenv_of = getfenv or function(f)  -- luacheck: ignore 113
  local i = 1
  while true do
    local name, value = debug.getupvalue(f, i)
    if name == nil then return nil end
    if name == "_ENV" then return value end
    i = i + 1
  end
end

-- The nearest environment from stack level 'level' up that is not the
-- globals table, or nil.
local function spec_env(level)
  for l = level + 1, level + 30 do
    local info = debug.getinfo(l, "f")
    if not info then break end
    local ok, env = pcall(getenv_of, info.func)
    if ok and type(env) == "table" and env ~= _G then return env end
  end
  return nil
end

-- The one of the spec file that requires this module, while it does: its
-- main chunk names globals, whereas a test function may name none.
local SPEC_ENV = spec_env(1)

local function spec_pending()
  local env = spec_env(2) or SPEC_ENV
  local p = env and env.pending
  return type(p) == "function" and p or nil
end

-- Daemon 'what' ("sshd" or "slurm"), started if need be. When it cannot
-- start: outside CI the calling spec is marked pending with the reason
-- (nothing else of it runs); in CI it fails with the reason, as the
-- daemons must run there.
function L.require_or_pending(what)
  local d, reason = get(what)
  if d then return d end
  if L.in_ci() then error(reason .. " (CI is set: daemons must run)", 2) end
  local pending = spec_pending()
  if pending then pending(reason) end
  error(reason .. " (and no busted 'pending' found to mark it)", 2)
end

-- A shell command that runs argv 'args' through daemon 'd': its launcher,
-- each word quoted, the preloads left out (see CLEAN_ENV).
function L.command(d, args)
  local t = { CLEAN_ENV }
  for _, w in ipairs(d.launcher) do t[#t + 1] = q(w) end
  for _, w in ipairs(args) do t[#t + 1] = q(w) end
  return table.concat(t, " ")
end

return L
