-- Far workers, started through a launcher: here the plainest one, env,
-- which runs the worker's command on this machine over the same pipe an
-- ssh or srun would give (spec/launchers_spec.lua has the real ones).
-- Every executor is closed and every wait has a timeout.
local ppe = require "ppe"
local H = require "helpers"

local T = 30  -- seconds: a loose bound for work that takes a moment

local command, far = H.far_command, H.far

describe("far workers through a launcher", function()
  it("run functions by value and by name, with their results",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = { far(2) } })
    local f = ex:submit(function(a, b) return a + b, a * b end, 6, 7)
    local s, p = f:result(T)
    assert.are.equal(13, s)
    assert.are.equal(42, p)
    assert.are.equal("ababab", ex:submit("string.rep", "ab", 3):result(T))
    local t = ex:submit(function() return { x = { 1, 2, 3 }, y = "z" } end)
    assert.are.same({ x = { 1, 2, 3 }, y = "z" }, t:result(T))
  end))

  it("are other processes, numbered 1..n with the local ones",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = { { n = 1 }, far(2) } })
    local ids, pids = {}, {}  -- ids seen, and the processes they ran in
    local fs = {}
    for i = 1, 60 do
      fs[i] = ex:submit(function() H.spin(0.01) return H.whoami() end)
    end
    for i = 1, 60 do
      local pid, id = fs[i]:result(T)
      ids[id] = true
      pids[pid] = true
      assert.are_not.equal(H.pid(), pid)
    end
    for id in pairs(ids) do
      assert.is_true(id >= 1 and id <= 3, "worker id " .. id)
    end
    assert.is_true(H.count(pids) >= 2, "one process ran everything")
    local s = ex:stats()
    assert.are.equal(2, #s.groups)
    assert.are.equal("local", s.groups[1].name)
    assert.are.equal("env", s.groups[2].name)
    assert.are.equal(60, s.groups[1].completed + s.groups[2].completed)
    assert.is_true(s.groups[2].completed > 0, "no task ran far")
  end))

  it("give errors with the far pid and the group's name as host",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = { far(1, { name = "box" }) } })
    local pid = ex:submit(H.whoami):result(T)
    local e = H.failure(ex:submit(function() error("boom") end))
    assert.are.equal("RemoteError", e.kind)
    assert.matches("boom", e.message)
    assert.are.equal("box", e.host)
    assert.are.equal(pid, e.pid)
  end))

  it("map in chunks, in order and as completed, with buffersize",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = { far(2) } })
    local items = {}
    for i = 1, 1000 do items[i] = i end
    local got = {}
    for i, v in ex:map(function(x) return x * 2 end, items,
                       { chunksize = 37 }) do
      got[#got + 1] = v
      assert.are.equal(2 * i, v)
    end
    assert.are.equal(1000, #got)
    local sum, n = 0, 0
    for _, v in ex:map(function(x) return x + 1 end, items,
                       { chunksize = 10, ordered = false, buffersize = 50 }) do
      sum, n = sum + v, n + 1
    end
    assert.are.equal(1000, n)
    assert.are.equal(500500 + 1000, sum)
    local ok, e = pcall(function()
      for _ in ex:map(function(x) if x == 2 then error("two") end end,
                      { 1, 2, 3 }) do end
    end)
    assert.is_false(ok)
    assert.are.equal("RemoteError", e.kind)
    assert.are.equal("env", e.host)
  end))

  it("take back tasks queued behind a long one, to run elsewhere",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = { far(2) } })
    for _ = 1, 3 do  -- short tasks: the pipelines deepen
      local fs = {}
      for i = 1, 200 do fs[i] = ex:submit(function(x) return x end, i) end
      for i = 1, 200 do assert.are.equal(i, fs[i]:result(T)) end
    end
    local long = ex:submit(function() os.execute("sleep 3") return "long" end)
    local fs = {}
    for i = 1, 200 do fs[i] = ex:submit(function(x) return x end, i) end
    local t0 = H.now()
    for i = 1, 200 do assert.are.equal(i, fs[i]:result(T)) end
    assert.is_true(H.now() - t0 < 2.5, "short tasks waited for the long one")
    assert.is_false(long:done())
    assert.are.equal("long", long:result(T))
  end))

  it("run the initializer, and honour max_tasks_per_child",
     H.scoped(function(scope)
    local ex = scope(ppe.executor {
      workers = { far(1) },
      initializer = function(v) _G.SEEN = v end, initargs = { "init" },
      max_tasks_per_child = 2,
    })
    local pids = {}
    for _ = 1, 6 do
      local seen, pid = ex:submit(function()
        local f = io.open("/proc/self/stat")
        local p = f:read("*n")
        f:close()
        return _G.SEEN, p
      end):result(T)
      assert.are.equal("init", seen)
      pids[pid] = (pids[pid] or 0) + 1
    end
    assert.are.equal(3, H.count(pids))
    for _, n in pairs(pids) do assert.are.equal(2, n) end
  end))

  it("fail only the task whose worker died, and replace the worker",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = { far(1) } })
    local before = ex:submit(H.whoami):result(T)
    local e = H.failure(ex:submit(function() os.exit(7) end))
    assert.are.equal("WorkerDied", e.kind)
    assert.are.equal(7, e.exit_code)
    assert.are.equal("env", e.host)
    local after = ex:submit(H.whoami):result(T)
    assert.are_not.equal(before, after)
    assert.are.equal(1, ex:stats().groups[1].restarts)
  end))

  it("stop a task past task_timeout", H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = { far(1) }, task_timeout = 0.5 })
    local t0 = H.now()
    local e = H.failure(ex:submit(function() while true do end end))
    assert.are.equal("TaskTimeout", e.kind)
    assert.are.equal("env", e.host)
    assert.is_true(H.now() - t0 < 10)
    assert.are.equal(4, ex:submit(function() return 4 end):result(T))
  end))

  it("stop a task past task_timeout whose worker went silent (stopped), "
     .. "and replace that worker", H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = { far(1) }, task_timeout = 1 })
    local before = ex:submit(H.whoami):result(T)
    -- Every thread of the far worker stops: no reply, no take-back.
    local e = H.failure(ex:submit(function()
      os.execute("kill -STOP " .. require("helpers").whoami())
    end))
    assert.are.equal("TaskTimeout", e.kind)
    assert.are.equal("env", e.host)
    assert.are.equal(before, e.pid)
    assert.is_false(H.alive(before))
    assert.are_not.equal(before, ex:submit(H.whoami):result(T))
  end))

  it("#slow carry a 256 MiB argument and result", H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = { far(1) } })
    local s = ("0123456789abcdef"):rep(16 * 1024 * 1024)
    local n, r = ex:submit(function(x) return #x, x:upper() end, s):result(120)
    assert.are.equal(256 * 1024 * 1024, n)
    assert.are.equal(#s, #r)
    assert.is_true(r == s:upper())
  end))

  it("forward what tasks print, in whole lines, before their results",
     function()
    local prog = os.tmpname()
    local f = assert(io.open(prog, "w"))
    f:write(([[
      package.cpath = %q
      package.path = %q
      local ppe = require "ppe"
      local ex = ppe.executor { workers = { { n = 1, launcher = { "env" },
        command = { %q, "-e", %q } } } }
      local r = ex:submit(function()
        for i = 1, 3 do io.write("line ", i, "\n") end
        io.write("no newline")
        return "done"
      end):result(30)
      io.write("[", r, "]\n")
      ex:close()
    ]]):format(package.cpath, package.path, H.interpreter(),
               command()[3]))
    f:close()
    local h = assert(io.popen(H.interpreter() .. " " .. prog))
    local out = h:read("*a")
    h:close()
    os.remove(prog)
    assert.are.equal("line 1\nline 2\nline 3\nno newline[done]\n", out)
  end)

  -- Runs a program whose stdout and stderr are pipes that nobody reads
  -- until it creates the file GO (the path is its global); its own words
  -- go to the file REPORT. Returns them, and what came out on each pipe.
  local function unread(body)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    local prog = dir .. "/prog.lua"
    local f = assert(io.open(prog, "w"))
    f:write(([[
      package.cpath = %q
      package.path = %q
      GO, REPORT = %q, %q
      local ppe = require "ppe"
      FAR = { n = 1, launcher = { "env" }, command = { %q, "-e", %q } }
    ]]):format(package.cpath, package.path, dir .. "/go",
               dir .. "/report", H.interpreter(), command()[3]), body)
    f:close()
    local wait = "while [ ! -e %s/go ]; do sleep 0.05; done; exec cat >"
    os.execute((("{ { timeout 60 %s %s; touch %s/go; } 2>&1 1>&3 | "
      .. "{ WAIT %s/err; }; } 3>&1 | { WAIT %s/out; }")
      :gsub("WAIT", function() return wait end)):format(H.interpreter(), prog, dir, dir, dir, dir,
                                  dir))
    local report = H.read_file(dir .. "/report")
    local out = H.read_file(dir .. "/out") or ""
    local err = H.read_file(dir .. "/err") or ""
    os.execute("rm -rf " .. dir)
    return report, out, err
  end

  -- How many lines 'text' has, each 'line' (with %06d for its number);
  -- it fails at the first that differs.
  local function lines(text, line)
    local n = 0
    for l in text:gmatch("[^\n]*\n") do
      n = n + 1
      if l ~= line:format(n) .. "\n" then
        error("line " .. n .. " is " .. ("%q"):format(l))
      end
    end
    return n
  end

  -- Two executors that print nothing, a far one and a local one: what
  -- each returns at once, and the line the program reports.
  local QUIET = [[
      local quiet = ppe.executor { workers = { FAR } }
      local here = ppe.executor { max_workers = 1 }
      local a = quiet:submit(function(x) return x + 1 end, 1):result(20)
      local b = here:submit(function(x) return x + 2 end, 1):result(20)
      local function report(...)
        local f = assert(io.open(REPORT, "w"))
        f:write(a, " ", b, " ", ...)
        f:close()
      end
  ]]

  it("#novalgrind keep every executor going while the caller's stdout is "
     .. "full, and complete a task once its lines are out", function()
    local report, out = unread([[
      local loud = ppe.executor { workers = { FAR } }
      local f = loud:submit(function(n)
        for i = 1, n do io.write(("line %06d "):format(i), ("x"):rep(52), "\n") end
        return "loud done"
      end, 8000)
      os.execute("sleep 1")  -- (its lines fill the pipe by then)
    ]] .. QUIET .. [[
      local held = not f:done()
      assert(io.open(GO, "w")):close()
      report(tostring(held), " ", f:result(60))
      loud:close(); quiet:close(); here:close()
    ]])
    assert.are.equal("2 3 true loud done", report)
    assert.are.equal(8000, lines(out, "line %06d " .. ("x"):rep(52)))
  end)

  it("#novalgrind keep every executor going while the caller's stderr is "
     .. "full", function()
    -- A launcher that writes more than a pipe holds before it starts the
    -- worker.
    local report, _, err = unread([[
      local noisy = ppe.executor { workers = { { n = 1, command = FAR.command,
        launcher = { "sh", "-c", 'i=0; while [ $i -lt 6000 ]; do i=$((i+1)); '
          .. 'printf "err %06d ' .. ("e"):rep(68) .. '\\n" $i; done >&2; '
          .. 'exec "$@"', "sh" } } } }
      local f = noisy:submit(function() return "noisy done" end)
      os.execute("sleep 1")
    ]] .. QUIET .. [[
      local held = not f:done()
      assert(io.open(GO, "w")):close()
      report(tostring(held), " ", f:result(60))
      noisy:close(); quiet:close(); here:close()
    ]])
    assert.are.equal("2 3 true noisy done", report)
    assert.are.equal(6000, lines(err, "err %06d " .. ("e"):rep(68)))
  end)

  it("end, even mid-task, once their channel closes: nothing is left",
     H.scoped(function(scope)
    -- sh stays the launcher, the worker its child: killing the launcher
    -- leaves the worker to see its channel end.
    local ex = scope(ppe.executor { workers = { {
      n = 1, launcher = { "sh", "-c", '"$@"; exit 0', "sh" },
      command = command() } } })
    local pid = ex:submit(H.whoami):result(T)
    local f = ex:submit(function() while true do end end)
    assert.is_true(H.wait_until(function() return f:running() end, T))
    ex:kill_workers()
    -- (Its parent gone, a zombie is the system's to reap: not counted.)
    assert.is_true(H.wait_until(function() return not H.alive(pid) end,
                                1.5), "the far worker lives on")
    assert.are.equal("WorkerDied", H.failure(f).kind)
  end))

  it("end with their launchers when the caller is killed", function()
    -- A program with two far workers, each under a launcher (sh) that
    -- stays its parent, prints their pids and their launchers', then
    -- waits in a task until it is killed.
    local prog = os.tmpname()
    local f = assert(io.open(prog, "w"))
    f:write(([[
      package.cpath = %q
      package.path = %q
      local ppe = require "ppe"
      local ex = ppe.executor { workers = { { n = 2,
        launcher = { "sh", "-c", '"$@"; exit 0', "sh" },
        command = { %q, "-e", %q } } } }
      local fs = {}
      for i = 1, 2 do
        fs[i] = ex:submit(function()
          local h = io.open("/proc/self/stat")
          local s = h:read("*a")
          h:close()
          local pid, ppid = s:match("^(%%d+) %%(.-%%) %%S (%%d+)")
          os.execute("sleep 0.3")
          return pid .. " " .. ppid
        end)
      end
      for i = 1, 2 do io.write(fs[i]:result(30), " ") end
      io.write("\n")
      io.flush()
      ex:submit(function() while true do end end)
      ex:submit(function() while true do end end)
      while true do end
    ]]):format(package.cpath, package.path, H.interpreter(),
               command()[3]))
    f:close()
    local h = assert(io.popen("exec " .. H.interpreter() .. " " .. prog
                              .. " & echo $!; wait"))
    local caller = tonumber(h:read("*l"))
    local line = h:read("*l")
    local pids = {}
    for p in line:gmatch("%d+") do pids[#pids + 1] = tonumber(p) end
    assert.are.equal(4, #pids, line)
    H.sleep_pid(0.3)  -- (the busy tasks under way)
    os.execute("kill -9 " .. caller)
    h:close()
    os.remove(prog)
    assert.is_true(H.none_alive(pids, 1.5), "left alive of " .. line)
  end)

  it("hold none of the caller's descriptors, and block no signal",
     H.scoped(function(scope)
    local tmp = os.tmpname()
    local held = assert(io.open(tmp, "w"))  -- not close-on-exec
    local ex = scope(ppe.executor { workers = { far(1) } })
    local function fds_and_mask()
      local h = io.popen("ls -l /proc/" .. H.whoami() .. "/fd; "
                         .. "grep SigBlk /proc/" .. H.whoami() .. "/status")
      local s = h:read("*a")
      h:close()
      return s
    end
    local first = ex:submit(fds_and_mask):result(T)
    -- The next one is started by the I/O thread, which blocks signals.
    H.failure(ex:submit(function() os.exit(3) end))
    local second = ex:submit(fds_and_mask):result(T)
    held:close()
    os.remove(tmp)
    for _, s in ipairs { first, second } do
      assert.is_nil(s:find(tmp, 1, true), s)
      assert.matches("SigBlk:%s+0+\n", s)
    end
  end))

  it("end at once when their channel closes, whatever holds their stdout",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { workers = { far(1) } })
    local tmp = os.tmpname()
    local pid = ex:submit(function(file)
      -- A child that keeps the worker's stdout, and outlives the task.
      os.execute("sh -c 'echo $$ > " .. file .. "; exec sleep 30' &")
      local f = io.open("/proc/self/stat")
      local p = f:read("*n")
      f:close()
      return p
    end, tmp):result(T)
    assert.is_true(H.wait_until(function()
      local f = io.open(tmp)
      local s = f and f:read("*a") or ""
      if f then f:close() end
      return s:match("%d") ~= nil
    end, T))
    local t0 = H.now()
    ex:close()
    local took = H.now() - t0
    local f = io.open(tmp)
    local sleeper = f:read("*n")
    f:close()
    os.remove(tmp)
    os.execute("kill " .. sleeper)
    assert.is_false(H.alive(pid))
    assert.is_true(took < 3, ("close took %.1f s"):format(took))
  end))

  -- (#novalgrind: under valgrind the scan of /proc is a traced process.)
  it("leave no process and no descriptor behind #novalgrind", function()
    H.zygote_up(ppe)
    local before = H.children(H.pid())
    local fds = H.fds(H.pid())
    local ex = ppe.executor { workers = { far(3) } }
    local pids = {}
    for i = 1, 9 do
      pids[ex:submit(function() H.spin(0.02) return H.whoami() end)
        :result(T)] = i
    end
    ex:close()
    for pid in pairs(pids) do assert.is_false(H.exists(pid)) end
    assert.are.same(before, H.children(H.pid()))
    assert.are.equal("", H.new_fds(fds, H.fds(H.pid())))
  end)
end)

describe("far workers that cannot start", function()
  it("give a group up after host_failures failed starts, naming why",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { host_failures = 2, workers = {
      { n = 1, launcher = { "sh", "-c", "echo no route to box >&2; exit 255" },
        name = "box" } } })
    local e = H.submit_failure(ex, function() return 1 end)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.matches("'box' exited with code 255", e.message)
    assert.matches("no route to box", e.message)
    local g = ex:stats().groups[1]
    assert.is_true(g.given_up)
  end))

  it("make submit and map raise BrokenExecutor at once when every group "
     .. "is given up", H.scoped(function(scope)
    local ex = scope(ppe.executor { host_failures = 1, workers = {
      { n = 2, launcher = { "sh", "-c", "echo no route >&2; exit 255" },
        name = "box" } } })
    assert.is_true(H.wait_until(function()
      return ex:stats().groups[1].given_up end, T))
    local ok, e = pcall(ex.submit, ex, function() return 1 end)
    assert.is_false(ok)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.matches("'box' exited with code 255", e.message)
    assert.matches("no route", e.message)
    ok, e = pcall(ex.map, ex, function(x) return x end, { 1, 2, 3 })
    assert.is_false(ok)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.matches("'box' exited with code 255", e.message)
  end))

  it("stay given up, though a start waiting then would work",
     H.scoped(function(scope)
    -- The group's starts fail until a file exists, and work after; the
    -- executor has a local group too, so it is not broken. The first two
    -- wait (napping in the shell: nothing it starts) until both run, then
    -- end together: the first's next start is then still waiting out its
    -- back-off when the second's failure gives the group up, and the file
    -- is made. A machine too slow for that (the next start was launched
    -- before the group was given up, and may be under way still) tries
    -- again. (Through env, which valgrind leaves untraced: the shells end
    -- at native speed.)
    for _ = 1, 3 do
      local base = os.tmpname()
      local ex = scope(ppe.executor { host_failures = 2, workers = {
        { n = 1 },
        { n = 2, name = "flaky", command = command(), launcher = {
          "env", "sh", "-c", 'echo x >> "$0.up"; [ -e "$0.ok" ] && exec "$@"; '
          .. 'while [ ! -e "$0.go" ]; do sleep 0.01; done; exit 1', base } } } })
      local function starts()
        return math.floor(#(H.read_file(base .. ".up") or "") / 2)
      end
      local n, under_way
      assert.is_true(H.wait_until(function() return starts() == 2 end, T))
      assert(io.open(base .. ".go", "w")):close()
      assert.is_true(H.wait_until(function()
        local st = ex:stats()
        if not st.groups[2].given_up then return false end
        under_way = false
        for _, w in ipairs(st.per_worker) do
          if w.host == "flaky" and w.state == "starting" then
            under_way = true
          end
        end
        n = starts()  -- at once: a start after this is one too many
        return true
      end, T))
      local fair = n == 2 and not under_way
      if fair then assert(io.open(base .. ".ok", "w")):close() end
      H.sleep_pid(1)  -- (a waiting start would be due by then, and work)
      local g = ex:stats().groups[2]
      local later = starts()
      for _, ext in ipairs({ "", ".up", ".ok", ".go" }) do
        os.remove(base .. ext)
      end
      if fair then
        assert.are.equal(2, later)
        assert.are.equal(0, g.workers)
        assert.are.equal(5, ex:submit(function() return 5 end):result(T))
        return
      end
      ex:close()
    end
    pending("each of 3 tries had a start under way as its group was given up")
  end))

  it("give up on a far side that never says hello, after start_timeout",
     H.scoped(function(scope)
    -- cat: it says nothing until told something, and nothing is said to
    -- a worker before its hello.
    local t0 = os.time()
    local ex = scope(ppe.executor { host_failures = 2, workers = {
      { n = 1, launcher = { "env" }, command = { "cat" }, name = "mute",
        start_timeout = 0.3 } } })
    local e = H.submit_failure(ex, function() return 1 end)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.matches("no worker of 'mute' said hello within 0.3 s", e.message,
                   1, true)
    assert.is_true(os.time() - t0 < 10)
    assert.is_true(ex:stats().groups[1].given_up)
  end))

  -- A far side that says a real worker's hello (this one's, taken from a
  -- worker given no channel) and then what sh 'script' does.
  local function liar(scope, script)
    local hello = os.tmpname()
    local words = {}
    for i, w in ipairs(command()) do
      words[i] = "'" .. w:gsub("'", "'\\''") .. "'"
    end
    local h = assert(io.popen("exec " .. table.concat(words, " ")
                              .. " </dev/null"))
    local bytes = h:read("*a")
    h:close()
    local f = assert(io.open(hello, "wb"))
    f:write(bytes)
    f:close()
    local ex = scope(ppe.executor { host_failures = 2, workers = {
      { n = 1, launcher = { "env" }, name = "liar", command = {
        "sh", "-c", 'cat "$0"; ' .. script, hello } } } })
    return ex, hello
  end

  -- The error of a task submitted once ex's only group is given up. A
  -- task sent meanwhile to a worker that then fails fails with it.
  local function given_up(ex)
    local e = H.submit_failure(ex, function() return 1 end)
    if e.kind == "WorkerDied" then
      assert.are.equal("liar", e.host)
      assert.is_true(H.wait_until(function()
        return ex:stats().groups[1].given_up end, T))
      -- (known broken now: submit raises)
      local ok
      ok, e = pcall(ex.submit, ex, function() return 1 end)
      assert.is_false(ok)
    end
    return e
  end

  it("give up on a far side that sends garbage after its hello, without "
     .. "starting it again at once", H.scoped(function(scope)
    local ex, hello = liar(scope, "printf '%064d'; exec cat >/dev/null")
    local e = given_up(ex)
    os.remove(hello)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.matches("workers of 'liar' cannot start: one sent what no ppe "
                   .. "worker sends, after its hello", e.message, 1, true)
    local g = ex:stats().groups[1]
    assert.is_true(g.given_up)
    assert.are.equal(0, g.workers)
  end))

  it("give up on a far side that ends after its hello, before any reply",
     H.scoped(function(scope)
    local ex, hello = liar(scope, "echo gone now >&2; exit 3")
    local e = given_up(ex)
    os.remove(hello)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.matches("the launcher of 'liar' exited with code 3 after its "
                   .. "worker's hello, before any reply", e.message, 1, true)
    assert.matches("gone now", e.message, 1, true)
  end))

  it("fail only the task that ends a fresh worker: the group goes on",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { host_failures = 1, workers = {
      { n = 1, launcher = { "env" }, command = command(), name = "far" } } })
    for _ = 1, 3 do
      local e = H.failure(ex:submit(function() os.exit(3) end))
      assert.are.equal("WorkerDied", e.kind)
      assert.are.equal("far", e.host)
    end
    assert.are.equal(5, ex:submit(function() return 5 end):result(T))
    assert.is_false(ex:stats().groups[1].given_up)
    assert.are.equal(3, ex:stats().groups[1].restarts)
  end))

  it("say so when the launcher is no command at all",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { host_failures = 1, workers = {
      { n = 1, launcher = { "/nonexistent/ssh" } } } })
    local e = H.submit_failure(ex, function() return 1 end)
    assert.are.equal("BrokenExecutor", e.kind)
    -- (Under valgrind, whose spawn cannot tell, the shell's 127 says it.)
    if not e.message:find("exited with code 127", 1, true) then
      assert.matches("cannot start the launcher", e.message)
      assert.matches("No such file", e.message)
    end
  end))

  it("refuse a far side that is no ppe worker, and one that differs",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { host_failures = 1, workers = {
      { n = 1, launcher = { "env" }, command = { "echo", "hello" } } } })
    local e = H.submit_failure(ex, function() return 1 end)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.matches("did not answer as a ppe worker", e.message)
    assert.matches('it said "hello/"', e.message, 1, true)
  end))

  -- Another Lua on the far side: its ppe says hello, and is refused.
  it("refuse a far side of another Lua, naming both versions",
     H.scoped(function(scope)
    local mine = rawget(_G, "jit") and "luajit" or
                 "lua" .. _VERSION:match("%d+%.%d+")
    local other = mine == "lua5.3" and "lua5.4" or "lua5.3"
    local h = io.popen(("command -v %s >/dev/null && env -u LD_PRELOAD "
      .. "-u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory "
      .. "build/%s/ppe.so >/dev/null 2>&1 && echo ok"):format(other, other))
    local built = h:read("*a"):match("ok")
    h:close()
    if not built then
      pending(other .. " or its headers are not installed")
      return
    end
    local cwd = assert(os.getenv("PWD"))
    local ex = scope(ppe.executor { host_failures = 1, workers = { {
      n = 1, launcher = { "env", "-u", "LD_PRELOAD" }, name = "other",
      command = { "env", "LUA_CPATH=" .. cwd .. "/build/" .. other .. "/?.so",
                  other, "-lppe.serve" } } } })
    local e = H.submit_failure(ex, function() return 1 end)
    assert.are.equal("BrokenExecutor", e.kind)
    assert.matches("versions differ", e.message)
    assert.matches("far side ppe [%d.]+ on Lua " .. other:match("%d.%d"),
                   e.message)
  end))

  it("keep the local group working when a far one is given up",
     H.scoped(function(scope)
    local ex = scope(ppe.executor { host_failures = 1, workers = {
      { n = 1 }, { n = 1, launcher = { "false" } } } })
    for i = 1, 5 do
      assert.are.equal(i, ex:submit(function(x) return x end, i):result(T))
    end
    assert.is_true(H.wait_until(function()
      return ex:stats().groups[2].given_up end, T))
  end))
end)

describe("the workers option", function()
  local cases = {
    { { workers = {} }, "non-empty list" },
    { { workers = 3 }, "non-empty list" },
    { { workers = { { n = 1 } }, max_workers = 2 }, "given both" },
    { { workers = { 5 } }, "workers[1] must be a table" },
    { { workers = { {} } }, "needs n" },
    { { workers = { { n = 0 } } }, "'n'" },
    { { workers = { { n = 1, bogus = 1 } } }, "unknown workers[1] option" },
    { { workers = { { n = 1, launcher = {} } } }, "workers[1].launcher" },
    { { workers = { { n = 1, launcher = { 1 } } } }, "launcher[1]" },
    { { workers = { { n = 1, command = { "x" } } } }, "without a launcher" },
    { { workers = { { n = 1 }, { n = 1 } } }, "both named 'local'" },
    { { workers = { { n = 1, name = 3 } } }, "name must be a string" },
    { { workers = { { n = 1000 }, { n = 100, name = "b" } } }, "more than" },
    { { host_failures = 0 }, "host_failures" },
    { { workers = { { n = 1, launcher = { "env" }, start_timeout = 0 } } },
      "'start_timeout' must be a number of seconds > 0" },
    { { workers = { { n = 1, launcher = { "env" }, start_timeout = "x" } } },
      "'start_timeout' must be a number of seconds > 0, got x" },
    { { workers = { { n = 1, start_timeout = 5 } } },
      "workers[1].start_timeout is given without a launcher" },
  }
  for _, c in ipairs(cases) do
    it("refuses " .. c[2], function()
      local ok, e = pcall(ppe.executor, c[1])
      assert.is_false(ok)
      assert.equal(ppe.Error, getmetatable(e), tostring(e))
      assert.equal("ValueError", e.kind)
      assert.is_string(e.option)
      assert.is_truthy(e.message:find(c[2], 1, true), e.message)
    end)
  end
end)
