-- A frame loop that hands work to ppe and never blocks on it: each frame
-- does its own work, then ex:poll() runs the callbacks of whatever has
-- finished since the last frame. Run: lua5.4 examples/game_loop.lua
package.cpath = "./?.so;" .. package.cpath
local ppe = require "ppe"

-- Path finding, say: expensive enough to keep off the frame.
local function find_path(from, to)
  local steps, x = 0, from
  while x ~= to do
    x = x < to and x + 1 or x - 1
    for _ = 1, 20000 do steps = steps + 1 end
  end
  return ("path %d -> %d (%d steps)"):format(from, to, steps)
end

local ex = ppe.executor { max_workers = 2 }
local pending, frame = 0, 0

for i = 1, 6 do
  local f = ex:submit(find_path, 0, i * 20)
  pending = pending + 1
  f:add_done_callback(function(done)
    pending = pending - 1
    print(("frame %3d: %s"):format(frame, done:result()))
  end)
end

local function frame_work()  -- about 4 ms of "rendering"
  local t = os.clock()
  while os.clock() - t < 0.004 do end
end

while pending > 0 do
  frame = frame + 1
  frame_work()
  ex:poll()  -- never blocks: runs the callbacks of finished futures
end
print(("all paths found after %d frames; the loop never waited"):format(frame))
ex:close()
