-- ppe inside a libuv event loop (Debian's lua-luv): the executor's
-- fileno() is watched by uv.new_poll; when it turns readable, ex:poll()
-- runs the done-callbacks. Nothing blocks the loop.
-- Run: lua5.4 examples/luv_loop.lua
package.cpath = "./?.so;" .. package.cpath
local ppe = require "ppe"
local ok, uv = pcall(require, "luv")
if not ok then
  print("this example needs luv: apt-get install lua-luv")
  return
end

local ex = ppe.executor { max_workers = 2 }

local function fib(n)
  if n < 2 then return n end
  return fib(n - 1) + fib(n - 2)
end

local left = 0
for n = 25, 30 do
  left = left + 1
  ex:submit(fib, n):add_done_callback(function(f)
    print(("fib(%d) = %d"):format(n, f:result()))
    left = left - 1
  end)
end

local poller = uv.new_poll(ex:fileno())
poller:start("r", function()
  ex:poll()
  if left == 0 then
    poller:stop()
    poller:close()
  end
end)

-- The loop stays responsive meanwhile: a timer ticks while workers compute.
local ticks = 0
local timer = uv.new_timer()
timer:start(0, 10, function()
  ticks = ticks + 1
  if left == 0 then timer:stop(); timer:close() end
end)

uv.run()
print(("done; the event loop ticked %d times while waiting"):format(ticks))
ex:close()
