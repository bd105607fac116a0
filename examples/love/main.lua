-- Terrain made while you watch: a LÖVE game whose world scrolls by at 60
-- frames a second while a ppe pool makes the chunks coming into view, in
-- worker processes. love.update never waits for the pool: it submits the
-- chunks it will need, calls ex:poll(), and takes each chunk in its
-- future's done-callback, which poll runs. A chunk not made yet is drawn
-- as a grey square; each made one is outlined in the colour of the worker
-- that made it.
--
-- Build ppe for LuaJIT (LÖVE's Lua) first, then run from the repository
-- root:
--   make build/luajit/ppe.so
--   love examples/love
--   love examples/love --frames 300   -- quits after 300 frames, reports
--                                     -- frame times and checks the chunks
--
-- The workers are forked from this process (through ppe's fork server),
-- but each runs its tasks in a fresh plain LuaJIT state: no love.*, no
-- globals of the game. A task is sent by value, its upvalues with it:
-- terrain.lua is plain Lua for that reason.

-- ppe for LuaJIT: this repository's build, then the usual places (where
-- 'luarocks --lua-version=5.1 make' installs it).
package.cpath = love.filesystem.getSource() .. "/../../build/luajit/?.so;"
  .. package.cpath
local ppe = require "ppe"
local terrain = require "terrain"

local SEED = 7
local SIZE = terrain.SIZE
local FRAME = 1 / 60                -- seconds a frame, at most 60 a second
local AHEAD = 2                     -- columns of chunks made before they show
local WORKER_COLOURS = {
  { 1, 0.3, 0.3 }, { 0.3, 0.6, 1 }, { 1, 0.9, 0.2 }, { 0.8, 0.4, 1 },
  { 0.3, 1, 0.6 }, { 1, 0.6, 0.2 }, { 1, 1, 1 }, { 0.5, 1, 1 },
}

-- The task: runs in a worker. It is sent by value with its upvalues,
-- which are functions (sent by value, or as C functions by name), never
-- the terrain module itself: a module would go by name, and the worker
-- could not require a file of the game.
local make, worker_id, clock = terrain.chunk, ppe.worker_id, os.clock
local function task(seed, cx, cy)
  local t = clock()
  local rgba = make(seed, cx, cy)
  return rgba, worker_id(), clock() - t
end

local ex                 -- the pool
local chunks = {}        -- "cx,cy" -> { cx, cy, future, image, worker, ... }
local failure            -- a task's error, raised in love.update
local camera = 0         -- world pixels scrolled so far
local frame = 0
local made = {}          -- worker id -> chunks made
local next_frame         -- when the next frame may start
-- --frames N: the run's end, and what it reports.
-- --wait: each frame waits for the chunks in view, for comparison.
local frames_wanted, waits
local run = { dts = {}, busy = 0, task_s = {}, made = {} }

-- The chunk whose future has just finished (in ex:poll, in this thread:
-- love.graphics may be used here).
local function arrived(c, f)
  if c.dropped or f:cancelled() then return end
  local err = f:exception(0)
  if err then failure = failure or err; return end
  local rgba, worker, secs = f:result(0)
  local data = love.image.newImageData(SIZE, SIZE, "rgba8", rgba)
  c.image, c.worker, c.frame = love.graphics.newImage(data), worker, frame
  made[worker] = (made[worker] or 0) + 1
  if frames_wanted then
    run.made[#run.made + 1] = { cx = c.cx, cy = c.cy, rgba = rgba }
    run.task_s[#run.task_s + 1] = secs
  end
end

-- Submits the chunks that are (or will soon be) in view and not asked
-- for yet, and lets go of those that have scrolled out: a chunk not
-- started yet is cancelled, and never made.
local function plan()
  local w, h = love.graphics.getDimensions()
  local first = math.floor(camera / SIZE)
  local last = math.floor((camera + w - 1) / SIZE) + AHEAD
  for cx = first, last do
    for cy = 0, math.ceil(h / SIZE) - 1 do
      local key = cx .. "," .. cy
      if not chunks[key] then
        local c = { cx = cx, cy = cy }
        c.future = ex:submit(task, SEED, cx, cy)
        c.future:add_done_callback(function(f) arrived(c, f) end)
        chunks[key] = c
      end
    end
  end
  for key, c in pairs(chunks) do
    if c.cx < first then
      c.dropped = true
      c.future:cancel()
      chunks[key] = nil
    end
  end
end

-- The chunks in view, made or not (plan has asked for them all).
local function in_view()
  local w, h = love.graphics.getDimensions()
  local list = {}
  for cx = math.floor(camera / SIZE), math.floor((camera + w - 1) / SIZE) do
    for cy = 0, math.ceil(h / SIZE) - 1 do
      list[#list + 1] = chunks[cx .. "," .. cy]
    end
  end
  return list
end

function love.load(args)
  for i = 1, #args do
    if args[i] == "--frames" then frames_wanted = tonumber(args[i + 1]) end
    if args[i] == "--wait" then waits = true end
  end
  -- One core is left to the game, but two workers at least.
  ex = ppe.executor { max_workers = math.max(2, ppe.cpu_count() - 1) }
  love.graphics.setBackgroundColor(0.08, 0.08, 0.1)
  -- What a frame draws, drawn once and shown before the first frame: a
  -- renderer may compile its shaders at their first use, and the font
  -- makes each glyph at its first use (llvmpipe, under xvfb-run, takes
  -- most of a second for it all), which would stall the first frames.
  local glyphs = {}
  for b = 32, 126 do glyphs[#glyphs + 1] = string.char(b) end
  love.graphics.clear(love.graphics.getBackgroundColor())
  love.graphics.draw(love.graphics.newImage(love.image.newImageData(SIZE, SIZE)))
  love.graphics.rectangle("fill", 0, 0, 8, 8)
  love.graphics.rectangle("line", 0, 0, 8, 8)
  love.graphics.circle("fill", 8, 8, 4)
  love.graphics.print(table.concat(glyphs), 0, 0)
  love.graphics.present()
end

function love.update(dt)
  -- At most 60 frames a second; a frame that came late is not made up.
  local now = love.timer.getTime()
  next_frame = math.max((next_frame or now) + FRAME, now)
  if next_frame > now then love.timer.sleep(next_frame - now) end

  camera = camera + 1       -- a pixel a frame: 60 pixels a second
  plan()
  if waits then
    -- How not to do it: the frame waits until the chunks in view are made.
    local fs = {}
    for _, c in ipairs(in_view()) do fs[#fs + 1] = c.future end
    ppe.wait(fs)
  end
  ex:poll()                 -- never blocks: runs the callbacks due
  if failure then error(failure, 0) end  -- LÖVE shows tostring(failure)

  if frames_wanted then
    if frame > 0 then run.dts[#run.dts + 1] = dt end
    local s = ex:stats()
    if s.pending + s.running > 0 then run.busy = run.busy + 1 end
  end
end

local function draw_chunk(c)
  local x, y = c.cx * SIZE - camera, c.cy * SIZE
  if not c.image then
    -- Waiting: a grey square that pulses.
    local a = 0.15 + 0.05 * math.sin(frame / 8 + c.cx + c.cy)
    love.graphics.setColor(a, a, a + 0.03)
    love.graphics.rectangle("fill", x + 1, y + 1, SIZE - 2, SIZE - 2)
    return
  end
  -- Made: faded in over half a second, outlined in its worker's colour.
  local fade = math.min(1, (frame - c.frame) / 30)
  love.graphics.setColor(1, 1, 1, fade)
  love.graphics.draw(c.image, x, y)
  local col = WORKER_COLOURS[(c.worker - 1) % #WORKER_COLOURS + 1]
  love.graphics.setColor(col[1], col[2], col[3], 0.6 * (1 - fade) + 0.25)
  love.graphics.rectangle("line", x + 0.5, y + 0.5, SIZE - 1, SIZE - 1)
end

function love.draw()
  frame = frame + 1
  for _, c in pairs(chunks) do draw_chunk(c) end

  -- Something that moves every frame: a stall would show at once.
  local w, h = love.graphics.getDimensions()
  love.graphics.setColor(1, 1, 1)
  love.graphics.circle("fill", w / 3, h / 2 + 60 * math.sin(frame / 20), 10)

  local s = ex:stats()
  local lines = {
    ("frame %d   %d fps   %.1f ms"):format(frame, love.timer.getFPS(),
                                            1000 * love.timer.getDelta()),
    ("%d workers: %d chunks queued, %d being made, %d made"):format(
      s.workers, s.pending, s.running, s.completed),
  }
  for id = 1, s.workers do
    lines[#lines + 1] = ("worker %d: %d chunks"):format(id, made[id] or 0)
  end
  love.graphics.setColor(0, 0, 0, 0.6)
  love.graphics.rectangle("fill", 4, 4, 330, 8 + 16 * #lines)
  for i, line in ipairs(lines) do
    local col = WORKER_COLOURS[(i - 3) % #WORKER_COLOURS + 1]
    if i <= 2 then col = { 1, 1, 1 } end
    love.graphics.setColor(col)
    love.graphics.print(line, 10, 8 + 16 * (i - 1))
  end

  if frames_wanted and frame >= frames_wanted then love.event.quit() end
end

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The pids of the children of process 'pid' (its main thread's).
local function children(pid)
  local list = {}
  local s = read(("/proc/%d/task/%d/children"):format(pid, pid)) or ""
  for p in s:gmatch("%d+") do list[#list + 1] = tonumber(p) end
  return list
end

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)] or 0
end

-- --frames N: what the run did, then (but for a --wait run, which is
-- there for its frame times) each chunk made again here, one after the
-- other, and compared with the workers' bytes.
local function report()
  local dts, out = run.dts, {}
  local function say(fmt, ...) out[#out + 1] = fmt:format(...) end
  local max = 0
  for _, dt in ipairs(dts) do max = math.max(max, dt) end
  say("frames %d", frame)
  say("frames_busy %d", run.busy)
  say("frame_ms_max %.1f", 1000 * max)
  say("frame_ms_median %.1f", 1000 * median(dts))
  local ids = {}
  for id, n in pairs(made) do ids[#ids + 1] = ("%d:%d"):format(id, n) end
  table.sort(ids)
  say("made_by %s", table.concat(ids, " "))
  say("task_ms_median %.1f", 1000 * median(run.task_s))
  if waits then return print(table.concat(out, "\n")) end
  local checked, wrong, seq = 0, 0, {}
  for _, c in ipairs(run.made) do
    local t = os.clock()
    local rgba = terrain.chunk(SEED, c.cx, c.cy)
    seq[#seq + 1] = os.clock() - t
    checked = checked + 1
    if rgba ~= c.rgba then wrong = wrong + 1 end
  end
  say("checked %d", checked)
  say("wrong %d", wrong)
  say("sequential_ms_median %.1f", 1000 * median(seq))
  print(table.concat(out, "\n"))
end

-- LÖVE's exit path: the pool is shut down here, the work it still has
-- cancelled, and its workers reaped before the game ends.
function love.quit()
  local pids
  if frames_wanted then
    -- ppe's processes, to be gone once the game has ended: the fork
    -- server (a child named "ppe zygote") and the workers it forked.
    local me = tonumber(read("/proc/self/stat"):match("^%d+"))
    pids = {}
    for _, z in ipairs(children(me)) do
      if read("/proc/" .. z .. "/comm") == "ppe zygote\n" then
        pids[#pids + 1] = z
        for _, w in ipairs(children(z)) do pids[#pids + 1] = w end
      end
    end
  end
  ex:shutdown { wait = true, cancel_futures = true }
  if frames_wanted then
    report()
    print("pids " .. table.concat(pids, " "))
    io.stdout:flush()
  end
  return false
end
