-- bench/serializer.lua - ppe.encode+decode on three payloads (a million
-- floats, 100,000 small records, a 64 MiB string), beside lua-cjson's
-- encode+decode and plain Lua building the same payload, all three sides
-- in the same run, alternating, REPS times (BENCH_REPS, at least 3; 5 by
-- default). Each side's time is CPU seconds (os.clock: the process is
-- single-threaded here) after a full collection, with the payload alive
-- and nothing else kept from the side before.
--
-- The targets: on floats and the string, ppe at least 3x faster than
-- cjson; on records, where the decoder must build the same tables and
-- strings as plain Lua does and so cannot be much faster than building
-- them, ppe within 2x plain Lua building them (cjson is printed beside
-- it for the record). ppe's round trip must also be exact; cjson's is not
-- on floats (14 digits) nor integers (it decodes them as floats).
-- Returns true when ppe is exact and meets every target.
package.cpath = "./?.so;" .. package.cpath
package.path = "./?.lua;" .. package.path
local ppe = require "ppe"
local cjson = require "cjson"
local B = require "bench.lib"

B.REPS = math.max(3, tonumber(os.getenv("BENCH_REPS")) or 5)

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

-- CPU seconds of f(), after a full collection; what f returns is dropped.
local function timed(f)
  collectgarbage()
  local t0 = os.clock()
  f()
  return os.clock() - t0
end

local function bench(label, make, target, target_text)
  local v = make()
  for _, s in ipairs{ {"ppe", ppe}, {"cjson", cjson} } do
    local ok = exact(v, s[2].decode(s[2].encode(v)))
    print(string.format("%-34s  %s exact: %s", "serializer " .. label, s[1],
                        ok and "yes" or "no"))
    if s[1] == "ppe" then B.record("serializer " .. label .. " exact", ok) end
  end
  collectgarbage()
  B.figure("serializer " .. label, "s", "lower", {
    { "ppe", function()
        return timed(function() return ppe.decode(ppe.encode(v)) end)
      end },
    { "cjson", function()
        return timed(function() return cjson.decode(cjson.encode(v)) end)
      end },
    { "lua", function() return timed(make) end },
  }, target, target_text)
end

-- ppe at least 3x faster than cjson.
local function cjson3(m)
  return m.cjson / m.ppe >= 3, string.format("cjson/ppe %.2fx, ppe/lua %.2fx",
                                             m.cjson / m.ppe, m.ppe / m.lua)
end

bench("floats 1M", function()
  local floats = {}
  for i = 1, 1000000 do floats[i] = i * 0.1 + 1 / 3 end
  return floats
end, cjson3, "cjson/ppe >= 3x")
collectgarbage()

bench("records 100k", function()
  local records = {}
  for i = 1, 100000 do
    records[i] = {id = i, name = "item" .. i, tags = {"a", "b"},
                  score = i * 0.5}
  end
  return records
end, function(m)
  return m.ppe <= 2 * m.lua, string.format("ppe/lua %.2fx, cjson/ppe %.2fx",
                                           m.ppe / m.lua, m.cjson / m.ppe)
end, "ppe/lua <= 2x")
collectgarbage()

bench("string 64MiB", function()
  return string.rep("0123456789abcdef", 4 * 1024 * 1024)
end, cjson3, "cjson/ppe >= 3x")
collectgarbage()

return B.report("serializer")
