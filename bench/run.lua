-- bench/run.lua - runs every benchmark in turn (make bench). A benchmark
-- is a Lua file run from the top of the tree that prints its figures and
-- returns false when it misses a target; add new ones to the list.
package.cpath = "./?.so;" .. package.cpath

local benches = {
  "bench/serializer.lua",
  "bench/executor.lua",
  "bench/far.lua",
  "bench/scaling.lua",
}

-- Each in a process of its own: a benchmark's memory must not weigh on
-- the next one's figures (forking a large process costs more).
local lua = arg and arg[-1] or "lua5.4"
local missed = {}
for _, file in ipairs(benches) do
  print("== " .. file)
  local ok = os.execute(("%s -e 'os.exit(dofile(%q) ~= false)'")
                        :format(lua, file))
  if not ok then missed[#missed + 1] = file end
end
if #missed > 0 then
  print("missed a target: " .. table.concat(missed, ", "))
  os.exit(1)
end
