-- bench/serializer.lua - ppe.encode+decode beside lua-cjson, in the same
-- run, on three payloads: a million floats, 100,000 small records and a
-- 64 MiB string. Each side runs REPS times (BENCH_REPS, at least 3),
-- alternating; min/median/max of the CPU seconds (os.clock: the process is
-- single-threaded here) are printed, and the ratio of the medians
-- (cjson/ppe) is checked against the target. Each side's round trip is
-- also checked for exactness: ppe must be exact, cjson is not on floats
-- (14 digits) nor integers (it decodes them as floats). For scale, the
-- time plain Lua takes to build the payload is printed too: no decoder
-- that builds it through the C API can be much faster than that.
-- Returns true when ppe is exact and meets every target.
package.cpath = "./?.so;" .. package.cpath
local ppe = require "ppe"
local cjson = require "cjson"

local REPS = math.max(3, tonumber(os.getenv("BENCH_REPS")) or 5)
local TARGET = 3

-- Deep equality: numbers keep their subtype and floats their bits.
local function exact(a, b, seen)
  seen = seen or {}
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return false end
    if math.type(a) == "float" then
      return string.pack("<d", a) == string.pack("<d", b)
    end
    return a == b
  end
  if type(a) ~= "table" then return a == b end
  if seen[a] then return seen[a] == b end
  seen[a] = b
  local n = 0
  for k, v in next, a do
    n = n + 1
    if not exact(v, rawget(b, k), seen) then return false end
  end
  for _ in next, b do n = n - 1 end
  return n == 0
end

local function stats(xs)
  local s = {table.unpack(xs)}
  table.sort(s)
  return s[1], s[(#s + 1) // 2], s[#s]
end

local sides = {
  {name = "ppe", encode = ppe.encode, decode = ppe.decode},
  {name = "cjson", encode = cjson.encode, decode = cjson.decode},
}

-- Times one encode+decode of v; returns the seconds and the copy.
local function roundtrip(side, v)
  collectgarbage()
  local t0 = os.clock()
  local copy = side.decode(side.encode(v))
  return os.clock() - t0, copy
end

local all_ok = true

local function bench(label, make)
  local builds = {}
  for i = 1, REPS do
    collectgarbage()
    local t0 = os.clock()
    make()
    builds[i] = os.clock() - t0
  end
  local v = make()
  local times, copies = {}, {}
  for _, side in ipairs(sides) do times[side.name] = {} end
  for _ = 1, REPS do
    for _, side in ipairs(sides) do
      local t, copy = roundtrip(side, v)
      table.insert(times[side.name], t)
      copies[side.name] = copy
    end
  end
  local med = {}
  for _, side in ipairs(sides) do
    local lo, mid, hi = stats(times[side.name])
    local ok = exact(v, copies[side.name])
    copies[side.name] = nil
    med[side.name] = mid
    print(string.format("serializer  %-12s %-5s  min %.3f  median %.3f  "
                        .. "max %.3f s  exact: %s", label, side.name, lo, mid,
                        hi, ok and "yes" or "no"))
    if side.name == "ppe" and not ok then all_ok = false end
  end
  print(string.format("serializer  %-12s build in plain Lua: median %.3f s",
                      label, select(2, stats(builds))))
  local ratio = med.cjson / med.ppe
  local pass = ratio >= TARGET
  if not pass then all_ok = false end
  print(string.format("serializer  %-12s ppe %.3f s  cjson %.3f s  "
                      .. "ratio %.2fx  (target >= %gx: %s)", label, med.ppe,
                      med.cjson, ratio, TARGET, pass and "PASS" or "MISS"))
end

bench("floats 1M", function()
  local floats = {}
  for i = 1, 1000000 do floats[i] = i * 0.1 + 1 / 3 end
  return floats
end)
collectgarbage()

bench("records 100k", function()
  local records = {}
  for i = 1, 100000 do
    records[i] = {id = i, name = "item" .. i, tags = {"a", "b"},
                  score = i * 0.5}
  end
  return records
end)
collectgarbage()

bench("string 64MiB", function()
  return string.rep("0123456789abcdef", 4 * 1024 * 1024)
end)
collectgarbage()

return all_ok
