-- LÖVE's settings for the terrain example (see main.lua).
function love.conf(t)
  t.identity = "ppe-terrain"
  t.version = "11.4"
  t.window.title = "ppe: terrain made by a process pool"
  t.window.width, t.window.height = 1024, 640
  -- main.lua paces the frames at 60 a second itself, the same on any
  -- display and under a virtual X server, where there is no vertical sync.
  t.window.vsync = 0
  -- Nothing here makes a sound or reads a joystick: without these, LÖVE
  -- starts no audio device (none exists under xvfb-run) and no threads
  -- for them.
  t.modules.audio, t.modules.sound = false, false
  t.modules.joystick, t.modules.physics, t.modules.video = false, false, false
end
