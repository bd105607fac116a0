-- make_corpus.lua - writes the fuzzer's seed corpus: one small message per
-- file in fuzz/corpus/, each made by ppe.encode of a different shape of
-- value, so the fuzzer starts from every tag of the wire format.
--
-- Run from the top of the tree after make: lua5.4 fuzz/make_corpus.lua
-- (Lua functions are seeds too, though their bytecode tag only holds in
-- the process that made them: the fuzzer meets the refusal path.)
package.cpath = "./?.so;" .. package.cpath
local ppe = require "ppe"

local dir = arg[1] or "fuzz/corpus"
os.execute("mkdir -p '" .. dir .. "'")

local function cycle()
  local t = {name = "loop"}
  t.self = t
  return t
end

local function shared()
  local s = {1, 2}
  return {a = s, b = s, c = {s}}
end

local function nested(n)
  local t = {}
  for _ = 2, n do t = {t} end
  return t
end

local function key_and_value()
  local k = {"k"}
  return {[k] = k}
end

local function sparse()
  local t = {}
  for k = 12, 0, -1 do t[1 << k] = k end
  return t
end

local counter = 0
local function closure()
  local up = {step = 2}
  return function() counter = counter + up.step return counter end
end

local function recursive()
  local function fib(n) return n < 2 and n or fib(n - 1) + fib(n - 2) end
  return fib
end

local bytes = {}
for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
bytes = table.concat(bytes)

-- name -> function returning the values of one message
local seeds = {
  {"empty", function() end},
  {"nil", function() return nil end},
  {"nils", function() return nil, nil, nil end},
  {"booleans", function() return true, false end},
  {"fixints", function() return 0, 1, 100, 127 end},
  {"int8", function() return -1, -128, 128 end},
  {"int16", function() return -129, 32767, -32768 end},
  {"int32", function() return 32768, 2147483647, -2147483648 end},
  {"int64", function() return math.maxinteger, math.mininteger, 1 << 40 end},
  {"floats", function() return 0.5, -0.0, 2.0, 2^53, 1/3 end},
  {"float-specials", function() return 0/0, math.huge, -math.huge end},
  {"short-strings", function() return "", "a", string.rep("x", 31) end},
  {"long-string", function() return string.rep("y", 32) end},
  {"binary-string", function() return bytes end},
  {"nul-string", function() return "a\0b\0" end},
  {"empty-table", function() return {} end},
  {"array", function() return {1, 2, 3, "four", 5.5} end},
  {"hash", function() return {x = 1, y = "two", [true] = false} end},
  {"mixed", function() return {1, 2, k = "v", [2.5] = 3, [-1] = 0} end},
  {"holes", function() return {1, nil, 3, nil, 5} end},
  {"nested", function() return {a = {b = {c = {d = {}}}}} end},
  {"deep", function() return nested(60) end},
  {"cycle", cycle},
  {"shared", shared},
  {"shared-across-values", function() local t = {1} return t, t, {t} end},
  {"table-key", key_and_value},
  {"sparse", sparse},
  {"globals", function() return {g = _G} end},
  {"cfunctions", function() return string.rep, print, math.floor end},
  {"cfunction-in-table", function() return {f = table.concat} end},
  {"lfunction", function() return function(a, b) return a + b end end},
  {"closure", closure},
  {"recursive", recursive},
  {"env-function", function()
    return function() return os.getenv("HOME") end
  end},
  {"module-upvalue", function()
    local str = string
    return function(s) return str.upper(s) end
  end},
  {"many-values", function()
    local t = {}
    for i = 1, 40 do t[i] = i % 3 == 0 and "s" .. i or i end
    return table.unpack(t, 1, 40)
  end},
  {"records", function()
    local t = {}
    for i = 1, 8 do
      t[i] = {id = i, name = "item" .. i, tags = {"a", "b"}, score = i * 0.5}
    end
    return t
  end},
  -- Strings seen once, kept in a slot, then taken from it; more strings
  -- than slots.
  {"string-slots", function()
    local t = {}
    for i = 1, 6 do t[i] = {key = "v", ["k" .. i % 2] = "w" .. i % 3} end
    return t, "v", string.rep("long", 10), string.rep("long", 10), "v"
  end},
  {"many-strings", function()
    local t = {}
    for i = 1, 200 do t[i] = "s" .. i % 80 end
    return t
  end},
  -- Over 127 pairs: the table's pairs end with a nil key.
  {"wide-table", function()
    local t = {1, 2}
    for i = 1, 130 do t["f" .. i] = i end
    return t
  end},
  {"shared-function", function()
    local f = function(x) return x end
    return f, {f, f}
  end},
  {"float32", function() return 0.5, -0.0, 3.0, 2^-149, 1e6 + 0.5 end},
  {"everything", function()
    return nil, true, -5, 1e300, "str", {1, {2}, k = cycle()}, math.max
  end},
}

-- The fuzzer also decodes each input behind the bytecode of a function
-- with five upvalues (see fuzz_decode.c: a number, a table, print, the
-- string module and _ENV): seeds for that are the upvalue layout and data
-- upvalues of functions of that shape, which do not depend on the key.
local function shaped(x, y)
  local a, b, c, str = x, y, print, string
  return function() return a, b, c, str.rep, tostring end
end

local upvalue_seeds = {
  {"upvalues-plain", function() return shaped(1, {}) end},
  {"upvalues-shared", function()
    local t = {1}
    return shaped(t, {t, t})
  end},
  {"upvalues-nils", function() return shaped(nil, nil) end},
}

-- A function's message from its layout on: after the header, the count,
-- T_LFUNC, the bytecode's length (4 bytes), the tag (8) and the bytecode.
local function upvalues_of(s)
  return s:sub(22 + string.unpack("=I4", s, 10))
end

local function write(name, data)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(data)
  f:close()
end

for _, seed in ipairs(seeds) do
  write(seed[1], ppe.encode(seed[2]()))
end
for _, seed in ipairs(upvalue_seeds) do
  write(seed[1], upvalues_of(ppe.encode(seed[2]())))
end
print(("wrote %d seeds to %s"):format(#seeds + #upvalue_seeds, dir))
