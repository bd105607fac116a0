-- The seam between the pool and its workers: pool.c reaches a worker only
-- through channel.h, so that another kind of channel (a byte stream to a
-- worker elsewhere) needs no change to the scheduler; and the channels,
-- like the rest of the engine, know nothing of Lua.

local H = require "helpers"

-- The ppe headers a file includes, as a set of their names.
local function includes(path)
  local text = "\n" .. assert(H.read_file(path))
  local set = {}
  for inc in text:gmatch('\n%s*#%s*include%s+["<]([^">]+)[">]') do
    set[inc:match("([^/]+)$")] = true
  end
  return set
end

describe("the pool's channel to a worker", function()
  it("is all pool.c knows of the arenas and the reply ring", function()
    local inc = includes("src/pool.c")
    assert.is_true(inc["channel.h"])
    assert.is_nil(inc["shm.h"])
    assert.is_nil(inc["ring.h"])
  end)

  it("knows nothing of Lua", function()
    for _, path in ipairs({ "src/channel.h", "src/channel.c",
                            "src/chan_local.h", "src/chan_local.c" }) do
      local inc = includes(path)
      for _, h in ipairs({ "lua.h", "lauxlib.h", "lualib.h", "compat.h" }) do
        assert.is_nil(inc[h], path .. " includes " .. h)
      end
    end
  end)
end)
