-- bench/run.lua - runs every benchmark in turn (make bench). A benchmark
-- is a Lua file run from the top of the tree that prints its figures and
-- returns false when it misses a target; add new ones to the list.
package.cpath = "./?.so;" .. package.cpath

local benches = {
  "bench/serializer.lua",
  "bench/executor.lua",
}

local missed = {}
for _, file in ipairs(benches) do
  print("== " .. file)
  if dofile(file) == false then missed[#missed + 1] = file end
end
if #missed > 0 then
  print("missed a target: " .. table.concat(missed, ", "))
  os.exit(1)
end
