-- The layout of the C sources: which unit uses which. A unit is a name
-- with its .c and .h (lua_ppe.c, src/pool.c and src/pool.h, ...); unit A
-- uses unit B when a file of A includes B's header. Units that use each
-- other, directly or around a longer loop, cannot be read, tested or
-- replaced one at a time: the graph must have no cycle.

local H = require "helpers"

-- The unit graph: uses[a][b] is true when a uses b. Only ppe's own
-- headers make edges (lua.h and the system's are no units of ppe).
local function graph()
  local ls = assert(io.popen("ls lua_ppe.c ppe.h src/*.c src/*.h"))
  local files, units, uses = {}, {}, {}
  for path in ls:lines() do files[#files + 1] = path end
  ls:close()
  local function unit(path) return (path:match("([^/]+)%.[ch]$")) end
  for _, path in ipairs(files) do units[unit(path)] = true end
  for _, path in ipairs(files) do
    local a = unit(path)
    uses[a] = uses[a] or {}
    local text = "\n" .. assert(H.read_file(path))
    for inc in text:gmatch('\n%s*#%s*include%s+"([^"]+)"') do
      local b = unit(inc)
      if b ~= nil and b ~= a and units[b] then uses[a][b] = true end
    end
  end
  return uses
end

-- A cycle of the graph as a list of units (the first again at the end),
-- or nil if there is none: a depth-first search, in a fixed order so
-- that the same cycle is reported each time.
local function cycle(uses)
  local names = {}
  for a in pairs(uses) do names[#names + 1] = a end
  table.sort(names)
  local state, path = {}, {}
  local function visit(a)
    state[a] = "open"
    path[#path + 1] = a
    local outs = {}
    for b in pairs(uses[a] or {}) do outs[#outs + 1] = b end
    table.sort(outs)
    for _, b in ipairs(outs) do
      if state[b] == "open" then
        local c, i = {}, #path
        while path[i] ~= b do i = i - 1 end
        for j = i, #path do c[#c + 1] = path[j] end
        c[#c + 1] = b
        return c
      elseif state[b] == nil then
        local c = visit(b)
        if c then return c end
      end
    end
    path[#path] = nil
    state[a] = "done"
  end
  for _, a in ipairs(names) do
    if state[a] == nil then
      local c = visit(a)
      if c then return c end
    end
  end
end

describe("the C units", function()
  it("use each other without a cycle", function()
    local c = cycle(graph())
    assert.is_nil(c, c and "units in a cycle: " .. table.concat(c, " -> "))
  end)

  it("are found, and a cycle among them is seen", function()
    local uses = graph()
    assert.is_truthy(uses.lua_ppe and uses.lua_ppe.pool)
    assert.is_nil(cycle({ a = { b = true }, b = { c = true }, c = {} }))
    assert.are.same({ "b", "c", "b" },
                    cycle({ a = { b = true }, b = { c = true },
                            c = { b = true } }))
  end)
end)
