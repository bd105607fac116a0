-- A long map with a live progress line on stderr: done/total, rate and
-- time left, built on ppe.as_completed. Run: lua5.4 examples/progress.lua
package.cpath = "./?.so;" .. package.cpath
local ppe = require "ppe"

local function now()  -- wall clock, in seconds
  local f = assert(io.open("/proc/uptime"))
  local t = f:read("*n")
  f:close()
  return t
end

local function is_prime(n)
  if n < 2 then return false end
  for d = 2, math.floor(math.sqrt(n)) do
    if n % d == 0 then return false end
  end
  return true
end

local function count_primes(lo, hi)
  local c = 0
  for n = lo, hi do if is_prime(n) then c = c + 1 end end
  return c
end

local ex = ppe.executor {}
local N, STEP = 1000000, 25000
local fs = {}
for lo = 1, N, STEP do
  fs[#fs + 1] = ex:submit(count_primes, lo, math.min(lo + STEP - 1, N))
end

local total, done, primes, t0 = #fs, 0, 0, now()
for f in ppe.as_completed(fs) do
  done = done + 1
  primes = primes + f:result()
  local elapsed = now() - t0
  local rate = done / math.max(elapsed, 1e-3)
  io.stderr:write(("\r%d/%d chunks  %.1f chunks/s  ETA %.1f s   ")
                  :format(done, total, rate, (total - done) / rate))
end
io.stderr:write("\n")
print(("%d primes below %d, on %d workers"):format(primes, N,
                                                 ppe.cpu_count()))
ex:close()
