-- The layout of the C sources: which unit uses which. A unit is a name
-- with its .c and .h (lua_ppe.c, src/pool.c and src/pool.h, ...); unit A
-- uses unit B when a file of A includes B's header. Units that use each
-- other, directly or around a longer loop, cannot be read, tested or
-- replaced one at a time: the graph must have no cycle.

local H = require "helpers"

-- Every C file of ppe.
local SOURCES = "lua_ppe.c ppe.h src/*.c src/*.h src/lua/*.c src/lua/*.h"

-- The files of the Lua binding: luaopen_ppe's, and the classes'.
local BINDING = "lua_ppe.c src/lua/*.c src/lua/*.h"

local function files(pattern)
  local ls = assert(io.popen("ls " .. pattern))
  local list = {}
  for path in ls:lines() do list[#list + 1] = path end
  ls:close()
  return list
end

-- The text of a C file without its comments, so that a word in a comment
-- is not taken for a call.
local function code(path)
  return (assert(H.read_file(path)):gsub("/%*.-%*/", " "))
end

-- The unit graph: uses[a][b] is true when a uses b. Only ppe's own
-- headers make edges (lua.h and the system's are no units of ppe).
local function graph()
  local paths, units, uses = files(SOURCES), {}, {}
  local function unit(path) return (path:match("([^/]+)%.[ch]$")) end
  for _, path in ipairs(paths) do units[unit(path)] = true end
  for _, path in ipairs(paths) do
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
    assert.is_truthy(uses.lexecutor and uses.lexecutor.lppe)
    assert.is_truthy(uses.lppe and uses.lppe.engine)
    assert.is_truthy(uses.engine and uses.engine.pool)
    assert.is_nil(cycle({ a = { b = true }, b = { c = true }, c = {} }))
    assert.are.same({ "b", "c", "b" },
                    cycle({ a = { b = true }, b = { c = true },
                            c = { b = true } }))
  end)
end)

describe("the Lua binding", function()
  it("keeps lua_ppe.c to the module table: at most 500 lines", function()
    local n = select(2, assert(H.read_file("lua_ppe.c")):gsub("\n", ""))
    assert.is_true(n <= 500, "lua_ppe.c has " .. n .. " lines")
  end)

  -- The engine's lock, its condition and the threads are the engine's
  -- own: a file that defines Lua functions asks the engine (engine.h).
  it("never locks, waits on a condition or uses a thread", function()
    local seen = 0
    for _, path in ipairs(files(BINDING)) do
      local text = code(path)
      if text:find("luaL_Reg") or text:find("luaL_checkudata") or
         text:find("lua_State") then
        seen = seen + 1
        for _, word in ipairs { "ppe_lock", "ppe_unlock", "ppe_trylock",
                                "ppe_wait_completion", "pthread_" } do
          assert.is_nil(text:find(word, 1, true), path .. " uses " .. word)
        end
      end
    end
    assert.is_true(seen >= 7, "binding files found: " .. seen)
  end)

  -- A task is opaque to the binding: the headers that define it, the
  -- lock, and the channel to a worker are not included there, so the
  -- compiler refuses any read of a task's fields.
  it("includes none of the engine's insides", function()
    for _, path in ipairs(files(BINDING)) do
      local text = "\n" .. code(path)
      for inc in text:gmatch('\n%s*#%s*include%s+"([^"]+)"') do
        local name = inc:match("([^/]+)$")
        for _, inside in ipairs { "future.h", "lock.h", "ring.h", "shm.h",
                                  "transport.h", "frame.h" } do
          assert.are_not.equal(inside, name, path .. " includes " .. inc)
        end
      end
    end
  end)

  it("has its checks see what they look for", function()
    assert.is_truthy(code("src/lock.c"):find("pthread_", 1, true))
    assert.is_nil(code("lua_ppe.c"):find("/*", 1, true))
  end)
end)
