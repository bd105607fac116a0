-- examples/love run as a player would, but headless: LÖVE 11 (its LuaJIT)
-- under a virtual X server, for a fixed number of frames, twice. The game
-- as written polls its pool in love.update; with --wait each frame waits
-- for the chunks in view instead, the peer its frame times are held
-- against. The first run's report says how many frames it drew, how long
-- the longest took, which workers made the chunks, and whether each chunk
-- matched the same computation made again in the game, one after the other;
-- and it names the pool's processes, which must be gone once LÖVE is.
local H = require "helpers"

local FRAMES = 300

local function in_ci()
  local ci = os.getenv("CI")
  return ci ~= nil and ci ~= "" and ci ~= "false" and ci ~= "0"
end

-- What is missing to run the game: nil, or why not.
local function missing()
  local found = H.output("for c in love xvfb-run xauth; do command -v $c; done "
                      .. "2>/dev/null")
  local lacking = {}
  for _, c in ipairs({ "love", "xvfb-run", "xauth" }) do
    if not found:find("/" .. c .. "\n", 1, true) then
      lacking[#lacking + 1] = c
    end
  end
  local f = io.open("/usr/include/luajit-2.1/lua.h")
  if f then f:close() else lacking[#lacking + 1] = "LuaJIT's headers" end
  if #lacking == 0 then return nil end
  return table.concat(lacking, ", ") .. " missing ('tools/deps.sh love' "
         .. "installs them)"
end

-- The children run with ppe's defaults, without this process's
-- sanitizers or make's jobs.
local CLEAN_ENV = "env -u LD_PRELOAD -u PPE_HOST_ALLOC -u PPE_KEEP_SECONDS "
  .. "-u MAKEFLAGS -u MFLAGS -u MAKELEVEL "

-- The game for 'frames' frames, with more arguments: its report as a table
-- of its "key value" lines, its whole output, and LÖVE's exit status.
-- The time limit is LÖVE's own (xvfb-run stops its X server only when it
-- ends by itself): SIGTERM, which LÖVE takes for a quit, then SIGKILL;
-- the outer one is for an X server that never starts.
local function play(frames, more)
  local out = H.output(CLEAN_ENV .. "timeout -k 10 300 xvfb-run -a "
                    .. "timeout -k 10 240 love examples/love --frames "
                    .. frames .. (more or "") .. " 2>&1; echo \"exit=$?\"")
  local report = {}
  for line in out:gmatch("[^\n]+") do
    local k, v = line:match("^([%w_]+) (.*)$")
    if k then report[k] = v end
  end
  return report, out, tonumber(out:match("exit=(%d+)\n$"))
end

describe("examples/love, headless", function()
  it("#slow #novalgrind draws its frames while the pool works, never "
     .. "waiting as a game that waits for its view does; its chunks are "
     .. "right, and no worker outlives it", function()
    if _VERSION ~= "Lua 5.4" or rawget(_G, "jit") then
      return pending("LÖVE runs its own LuaJIT: checked once, by the Lua "
                     .. "5.4 suite")
    end
    local why = missing()
    if why then
      assert(not in_ci(), why)
      return pending(why)
    end
    local made = H.output(CLEAN_ENV .. "make -s --no-print-directory "
                       .. "build/luajit/ppe.so 2>&1; echo \"exit=$?\"")
    assert(made:match("exit=0\n$"), "make failed:\n" .. made)

    local r, out, status = play(FRAMES)
    assert.are.equal(0, status, out)
    assert.are.equal(tostring(FRAMES), r.frames, out)
    -- The pool had work for some of those frames: their times were
    -- measured under its load.
    assert.is_true(tonumber(r.frames_busy) >= 10, out)
    -- Its work was spread: two workers at least made chunks.
    local workers = 0
    for _ in (r.made_by or ""):gmatch("%d+:%d+") do workers = workers + 1 end
    assert.is_true(workers >= 2, out)
    -- Each chunk a worker made is the one made here again.
    assert.is_true(tonumber(r.checked) >= 10, out)
    assert.are.equal("0", r.wrong, out)
    -- The pool's processes: the fork server and its workers, all gone.
    local pids = {}
    for p in (r.pids or ""):gmatch("%d+") do pids[#pids + 1] = tonumber(p) end
    assert.is_true(#pids >= 3, out)
    assert.is_true(H.none_alive(pids, 10), "left behind: " .. r.pids)

    -- The peer: a game whose first frame waits for the chunks in view. The
    -- game that polls never had a frame anywhere near that long.
    local w, wout, wstatus = play(3, " --wait")
    assert.are.equal(0, wstatus, wout)
    local poll_max, wait_max = tonumber(r.frame_ms_max), tonumber(w.frame_ms_max)
    assert.is_true(poll_max * 4 < wait_max,
                   ("the longest frame polling: %.1f ms; waiting: %.1f ms\n%s%s")
                   :format(poll_max, wait_max, out, wout))
  end)
end)
