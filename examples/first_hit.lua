-- A search that stops at its first hit: many candidates are tried in
-- parallel, the first good one is taken, and the rest is force-cancelled
-- (their workers killed and replaced, not left to finish). Between two
-- searches the pool is resized, as a program that gets more or fewer
-- cores would do.
-- Run from the repository root: lua5.4 examples/first_hit.lua
package.cpath = "./?.so;" .. package.cpath
local ppe = require "ppe"

-- Tries a candidate: a slow check (a random length of CPU time) that
-- accepts only one seed in 'rare'. Returns the seed when it is a hit.
local function try(seed, rare)
  local t, spin = os.clock(), 0.05 + (seed * 7919 % 13) / 100
  while os.clock() - t < spin do end
  if seed % rare == 0 then return seed end
end

-- Submits seeds from..to, and returns the first hit with its wall time;
-- every other candidate is force-cancelled at once.
local function search(ex, from, to, rare)
  local fs = {}
  for seed = from, to do fs[#fs + 1] = ex:submit(try, seed, rare) end
  local hit
  for f in ppe.as_completed(fs, 60) do
    hit = f:result()
    if hit then break end
  end
  local cancelled = 0
  for _, f in ipairs(fs) do
    if f:cancel { force = true } then cancelled = cancelled + 1 end
  end
  return hit, cancelled, #fs
end

local ex = ppe.executor { max_workers = 2 }
for round, workers in ipairs({ 2, 4, 1 }) do
  ex:resize(workers)
  local t0 = os.time()
  local hit, cancelled, n = search(ex, round * 100, round * 100 + 40, 17)
  print(("search %d on %d workers: hit %s; %d of %d candidates "
         .. "cancelled (%d s)"):format(round, workers, tostring(hit),
                                      cancelled, n, os.time() - t0))
end
local st = ex:stats()
print(("%d completed, %d workers replaced after force-cancels")
      :format(st.completed, st.restarts))
ex:close()
