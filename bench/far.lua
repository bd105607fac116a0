-- bench/far.lua - ppe's far workers, started through a launcher, beside
-- its local forked pool and beside dask's distributed scheduler, measured
-- in the same run. Two workers on every side: "local", the forked pool;
-- "env", far workers through the launcher 'env' (the stream channel over a
-- pipe, on this machine); "ssh", far workers through 'ssh 127.0.0.1' to a
-- private sshd (tools/sshd.sh, started and stopped through
-- spec/launchers.lua); "dask", a LocalCluster of two worker processes
-- (bench/dask_peer.py). Each figure runs REPS times, alternating the
-- sides; medians are compared. When sshd cannot start or dask is not
-- installed, the reason and the command that installs it are printed and
-- their sides are left out: a target that needs them is not counted.
-- Returns false when a target is missed.
package.cpath = "./?.so;" .. package.cpath
package.path = "./?.lua;./spec/?.lua;" .. package.path
local ppe = require "ppe"
local B = require "bench.lib"
local L = require "launchers"

local figure, now = B.figure, B.now
local MiB = 1024 * 1024
local TREE = B.output("pwd -P"):gsub("\n$", "")

-- Where this tree's ppe.so is, as the far side's LUA_CPATH: it starts
-- elsewhere (ssh: in the home directory) and has none of our paths.
local CPATH = TREE .. "/?.so;;"

-- The dask peer, its processes marked in their environment (what they
-- start inherits it), so that any one left behind is found.
local DASK_MARK = "PPE_BENCH_DASK=" .. TREE
local DASK = ("env %s %s bench/dask_peer.py"):format(L.quote(DASK_MARK), B.PY)

-- The far command: this interpreter serving, with CPATH. 'shell': the
-- words go through the remote shell that ssh hands them to, and ';' must
-- be quoted there; 'env' as a launcher passes them as they are.
local function command(shell)
  local cpath = shell and L.quote(CPATH) or CPATH
  return { "env", "LUA_CPATH=" .. cpath, B.LUA, "-lppe.serve" }
end

local function install_hint(pkgs)
  return ("to install: sudo apt-get install -y %s (or, as root, "
          .. "sh tools/deps.sh bench)"):format(pkgs)
end

-- nil when dask's distributed imports in the peer's Python, else why not.
local function dask_missing()
  local ok = os.execute(B.PY .. " -c 'import distributed' 2>/dev/null")
  if ok then return nil end
  return B.PY .. " has no module 'distributed'; "
         .. install_hint("python3-distributed")
end

-- The pids of live processes whose /proc/PID/<file> holds 'needle' (read
-- here, not by grep, whose own command line would hold it too).
local function pids_with(file, needle)
  local found = {}
  local ls = assert(io.popen("ls /proc"))
  for name in ls:lines() do
    local f = name:match("^%d+$") and io.open("/proc/" .. name .. "/" .. file)
    if f then
      local s = f:read("a") or ""
      f:close()
      if s:find(needle, 1, true) then found[#found + 1] = name end
    end
  end
  ls:close()
  return found
end

-- The processes this benchmark may leave behind: far workers (their
-- environment has our CPATH), dask's (DASK_MARK), and ssh clients or
-- sessions of our sshd (their command line names its directory). Waited
-- for a few seconds: a far worker ends within a second of its channel
-- closing.
local function leftovers(sshd_dir)
  local t0 = now()
  local left
  local function add(pids)
    for _, p in ipairs(pids) do left[#left + 1] = p end
  end
  repeat
    left = pids_with("environ", "LUA_CPATH=" .. CPATH)
    add(pids_with("environ", DASK_MARK))
    if sshd_dir then add(pids_with("cmdline", sshd_dir)) end
    if #left > 0 then B.sleep(100) end
  until #left == 0 or now() - t0 > 5
  return left
end

local ex = {}            -- executors by side name
local PPE = { "local", "env", "ssh" }
local no_dask            -- why dask's sides are left out, or nil
local sshd               -- the private sshd (spec/launchers.lua's), or nil

-- A figure's sides: each ppe executor that started, measured by
-- 'measure(ex)', then dask running 'dask_args' if given and installed.
local function sides(measure, dask_args)
  local t = {}
  for _, name in ipairs(PPE) do
    local e = ex[name]
    if e then t[#t + 1] = { name, function() return measure(e) end } end
  end
  if dask_args and not no_dask then
    t[#t + 1] = { "dask",
                  function() return B.run(DASK .. " " .. dask_args) end }
  end
  return t
end

-- The ratios of medians a/b, for each pair { a, b } whose sides both ran.
local function ratios(m, pairs)
  local t = {}
  for _, p in ipairs(pairs) do
    if m[p[1]] and m[p[2]] then
      t[#t + 1] = ("%s/%s %.3gx"):format(p[1], p[2], m[p[1]] / m[p[2]])
    end
  end
  return table.concat(t, ", ")
end

-- A target on sides a and b: checked when both ran, else only printed,
-- with the side that is missing.
local function target(a, b, pairs, check)
  return function(m)
    local text = ratios(m, pairs)
    if not (m[a] and m[b]) then
      return nil, ("%s; not checked: %s did not run"):format(text,
                                                             m[a] and b or a)
    end
    return check(m[a], m[b]), text
  end
end

-- A figure for the record: only its ratios.
local function record(pairs)
  return function(m) return nil, ratios(m, pairs) end
end

local VS_LOCAL = { { "env", "local" }, { "ssh", "local" } }

local function far_figures()
  figure("round trip, trivial task", "us", "lower",
         sides(function(e) return B.rtt(e, 2000) end, "rtt 200"),
         record { { "env", "local" }, { "ssh", "local" }, { "dask", "ssh" } },
         "no target; a/b of times")

  -- How the rate holds from 10k tasks to 100k. dask runs 10k, once, in
  -- the second: 100k take it minutes here.
  figure("10k tasks at once", "tasks/s", "higher",
         sides(function(e) return B.many(e, 10000) end),
         record(VS_LOCAL), "no target")
  figure("100k tasks at once (dask 10k)", "tasks/s", "higher",
         sides(function(e) return B.many(e, 100000) end, "many 10000"),
         target("ssh", "dask", { { "env", "local" }, { "ssh", "local" },
                                 { "ssh", "dask" } },
                function(s, d) return s / d >= 10 end),
         "ssh >= 10x dask")

  -- dask: a task per batch of 1000 (the analogue of a chunk), over 100k
  -- items, as 1M take it half a minute here; the figure is a rate.
  local items = B.ints(1000000)
  figure("map 1M ints by 1000 (dask 100k)", "items/s", "higher",
         sides(function(e) return B.map(e, items, 1000) end, "map 100000 1000"),
         target("env", "local", { { "env", "local" }, { "ssh", "local" },
                                  { "ssh", "dask" } },
                function(e, l) return e / l >= 0.5 end),
         "env >= 0.5x local")
  items = nil

  -- How the cost grows with the size: 64 MiB moved each way per
  -- measurement (at least two echoes), dask beside at the largest.
  for _, mib in ipairs { 1, 4, 16, 64 } do
    local s = string.rep("x", mib * MiB)
    local n = math.max(2, 64 // mib)
    figure(("echo of %d MiB, x%d"):format(mib, n), "MB/s", "higher",
           sides(function(e) return B.echo(e, s, n) end,
                 mib == 64 and ("echo %d %d"):format(#s, n) or nil),
           record { { "env", "local" }, { "ssh", "local" }, { "ssh", "dask" } },
           "no target")
    s = nil
    collectgarbage()
  end

  if sshd then
    -- ppe starts a group's far workers at once, so the peer is two plain
    -- logins run at once, until both have ended. "first" is ppe's time to
    -- its first result (one worker up, the other's login still running
    -- beside it); "both", to both workers up.
    local group = { n = 2, launcher = sshd.launcher, command = command(true) }
    local function start(both)
      return function()
        local n, total = 3, 0
        for _ = 1, n do
          local t0 = now()
          local e = ppe.executor { workers = { group } }
          e:submit(B.trivial, 1):result(60)
          if both then B.warm(e, 2) end
          total = total + (now() - t0)
          e:close()
        end
        return total / n * 1e3
      end
    end
    local quoted = {}
    for i, w in ipairs(sshd.launcher) do quoted[i] = L.quote(w) end
    local login = table.concat(quoted, " ") .. " true </dev/null"
    local pair = ("%s & %s & wait"):format(login, login)
    figure("start of 2 ssh workers", "ms", "lower", {
      { "first", start(false) },
      { "both", start(true) },
      { "2 ssh", function()
          local n, total = 3, 0
          for _ = 1, n do
            local t0 = now()
            assert(os.execute(pair))
            total = total + (now() - t0)
          end
          return total / n * 1e3
        end },
    }, function(m)
      return m.first / m["2 ssh"] <= 2,
        ("first/2 ssh %.2fx, both/2 ssh %.2fx"):format(m.first / m["2 ssh"],
                                                      m.both / m["2 ssh"])
    end, "first <= 2x two plain ssh logins at once")
  else
    print(("%-34s  left out: no sshd"):format("start of 2 ssh workers"))
  end
end

local function main()
  no_dask = dask_missing()
  if no_dask then print("dask left out: " .. no_dask) end
  local why
  sshd, why = L.sshd()
  if not sshd then
    print("ssh left out: " .. why .. "; "
          .. install_hint("openssh-server openssh-client"))
  end

  ex["local"] = ppe.executor { max_workers = 2 }
  ex.env = ppe.executor { workers = { { n = 2, launcher = { "env" },
                                        command = command(false) } } }
  if sshd then
    ex.ssh = ppe.executor { workers = { { n = 2, launcher = sshd.launcher,
                                          command = command(true) } } }
  end
  for _, name in ipairs(PPE) do
    if ex[name] then B.warm(ex[name], 2) end
  end
  far_figures()
end

-- Whatever happens in main, the executors are closed and the sshd is
-- stopped (by its pid, through tools/sshd.sh), then nothing of ours may
-- be left running.
local ok, err = xpcall(main, debug.traceback)
for _, name in ipairs(PPE) do
  if ex[name] then pcall(ex[name].close, ex[name]) end
end
local stopped, stop_why = L.stop_all()
if not stopped then print("sshd: " .. stop_why) end
local left = leftovers(sshd and sshd.dir)
print(("%-34s  %s"):format("processes left behind",
      #left == 0 and "none" or table.concat(left, " ")))
B.record("nothing left behind", #left == 0 and stopped)
if not ok then  -- after the cleanup, the error with its whole traceback
  io.stderr:write("bench/far.lua: ", err, "\n")
  os.exit(1, true)
end
return B.report("far")
