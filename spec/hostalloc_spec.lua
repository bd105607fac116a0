-- The caller's allocator: 'require "ppe"' lets ppe's kept mappings serve
-- the large blocks of a PUC Lua state that has the stock allocator, unless
-- PPE_HOST_ALLOC=0 or the host's ppe_set_host_alloc(0) said no; LuaJIT's
-- states are never touched. Each case is a fresh interpreter: the choice
-- is made when the module is loaded.
local U = require "fixtures.bad_util"  -- first: puts spec/fixtures on cpath
local H = require "helpers"

local JIT = rawget(_G, "jit") ~= nil
local SO = assert(H.searchpath("ppe", package.cpath))

-- Loads 'evil', runs 'before', then requires ppe and has a worker return
-- a 5 MiB string (a block ppe serves, when it does). Writes the
-- allocator before and after the require and the length, or the error.
local SCRIPT = [[
package.cpath = %q
local evil = require "evil"
%s
local before = evil.allocator()
local ok, ppe = pcall(require, "ppe")
if not ok then
  io.write("error: ", tostring(ppe), "\n")
  return
end
local after = evil.allocator()
local ex = ppe.executor { max_workers = 1 }
local s = ex:submit(string.rep, "x", 5 * 1048576):result(60)
ex:close()
io.write(before, " ", after, " ", #s, "\n")
]]

-- The output of a Lua script in a new interpreter, whose environment has
-- PPE_HOST_ALLOC set to 'value' (nil: not set at all).
local function lua(script, value)
  local env = value and "PPE_HOST_ALLOC=" .. U.quote(value) .. " exec "
    or "unset PPE_HOST_ALLOC; exec "
  local h = assert(io.popen(env .. H.interpreter() .. " -e " ..
                            U.quote(script) .. " 2>&1"))
  local out = h:read("*a")
  h:close()
  return out
end

local function run(value, before)
  return lua(SCRIPT:format(package.cpath, before or ""), value)
end

local function switch(on)
  return ("evil.cswitch(%q, 'ppe_set_host_alloc', %d)"):format(SO, on)
end

-- With the wrapping on, what a PUC Lua state has after the require.
local ON = JIT and "stock stock 5242880\n" or "stock other 5242880\n"
local OFF = "stock stock 5242880\n"

describe("the caller's allocator", function()
  it("is ppe's after require by default (PUC Lua), and large results "
     .. "arrive", function()
    assert.are.equal(ON, run(nil))
  end)

  it("is ppe's with PPE_HOST_ALLOC=1 (PUC Lua)", function()
    assert.are.equal(ON, run("1"))
  end)

  it("is left as it was with PPE_HOST_ALLOC=0", function()
    assert.are.equal(OFF, run("0"))
  end)

  it("is left as it was after ppe_set_host_alloc(0)", function()
    assert.are.equal(OFF, run(nil, switch(0)))
  end)

  it("is left as it was with PPE_HOST_ALLOC=0 even after "
     .. "ppe_set_host_alloc(1)", function()
    assert.are.equal(OFF, run("0", switch(1)))
  end)

  it("is ppe's again after ppe_set_host_alloc(0) then (1)", function()
    assert.are.equal(ON, run(nil, switch(0) .. "\n" .. switch(1)))
  end)

  -- One process tries them all: a module whose loader raised is loaded
  -- afresh by the next 'require' (5.1 needs its package.loaded cleared).
  it("makes require raise, naming it, for a PPE_HOST_ALLOC that is not "
     .. "0 or 1", function()
    local bad = { "", "2", "on", "off", "0 ", "yes", "01" }
    local out = lua(([[
      package.cpath = %q
      local evil = require "evil"
      for _, v in ipairs { %s } do
        evil.setenv("PPE_HOST_ALLOC", v)
        local ok, e = pcall(require, "ppe")
        package.loaded.ppe = nil
        io.write(tostring(ok), " ", tostring(e), "\n")
      end
      io.write(evil.allocator(), "\n")
    ]]):format(package.cpath, ("%q, "):rep(#bad):format(H.unpack(bad))))
    local want = {}
    for i, v in ipairs(bad) do
      want[i] = "false environment variable PPE_HOST_ALLOC must be 0 or 1, "
        .. "got '" .. v .. "'\n"
    end
    assert.are.equal(table.concat(want) .. "stock\n", out)
  end)
end)
