-- The wire format through ppe.encode / ppe.decode.
local ppe = require "ppe"

local function rt(...)
  return ppe.decode(ppe.encode(...))
end

describe("ppe.encode/decode", function()
  it("keeps the count of values, trailing nils included", function()
    assert.are.equal(3, select("#", rt(nil, nil, nil)))
    assert.are.equal(0, select("#", rt()))
  end)

  it("keeps integer and float subtypes", function()
    local a, b, c = rt(3, 3.0, math.mininteger)
    assert.are.equal("integer", math.type(a))
    assert.are.equal("float", math.type(b))
    assert.are.equal(math.mininteger, c)
  end)
end)
