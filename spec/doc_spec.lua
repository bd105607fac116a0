-- doc/reference.md names everything a user can reach: the module's
-- fields, the methods and metamethods of executors, futures and map
-- iterators, every option and name list of the binding's sources, every
-- error kind and field, environment variable and function of ppe.h. The
-- names come from the running module and from the C sources, so a name
-- added there without a word in the reference fails here.

local H = require "helpers"
local ppe = require "ppe"

local REFERENCE = "doc/reference.md"

-- The binding's sources, where the names a user meets are written.
local BINDING = { "lua_ppe.c", "src/lua/largs.c", "src/lua/lerror.c",
                  "src/lua/lexecutor.c", "src/lua/lfuture.c",
                  "src/lua/lmap.c", "src/lua/lwait.c" }

local function source(path) return assert(H.read_file(path), path) end

-- The text of the reference's code: fenced blocks and `inline` spans,
-- where every name is written, so a word of the prose is no mention.
local function code_of(doc)
  local parts = {}
  local prose = doc:gsub("```[^\n]*\n(.-)```", function(block)
    parts[#parts + 1] = block
    return ""
  end)
  for span in prose:gmatch("`([^`\n]+)`") do parts[#parts + 1] = span end
  return table.concat(parts, "\n")
end

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- Whether 'name' is in the code as a whole word, or right after prefix
-- if one is given ("ex:" and "submit(" make "ex:submit(").
local function mentions(code, name, prefix)
  local p = (prefix and escape(prefix) or "%f[%w_]") .. escape(name)
  if name:find("[%w_]$") then p = p .. "%f[^%w_]" end
  return code:find(p) ~= nil
end

-- The strings of every name array of the binding: options, state names,
-- return_when ("static const char *const x[] = { ... };").
local function name_arrays()
  local arrays = {}
  for _, path in ipairs(BINDING) do
    local text = source(path):gsub("/%*.-%*/", " ")
    for name, body in text:gmatch("const char %*const ([%w_]+)%[%] = (%b{})") do
      local list = {}
      for s in body:gmatch('"([^"]*)"') do list[#list + 1] = s end
      arrays[#arrays + 1] = { where = path .. ": " .. name, names = list }
    end
  end
  return arrays
end

-- Every error kind: the engine's table, and those the binding raises.
local function error_kinds()
  local kinds, seen = {}, {}
  local function add(k)
    if not seen[k] then seen[k] = true; kinds[#kinds + 1] = k end
  end
  local engine = source("src/engine.c")
  local body = assert(engine:match("ppe_error_kinds%[%] = (%b{})"))
  for k in body:gmatch('"([%w]+)"') do add(k) end
  for _, path in ipairs(BINDING) do
    for k in source(path):gmatch('lppe_[a-z]+%(L, "(%u%w+)"') do add(k) end
  end
  return kinds
end

-- The fields set on tables the binding gives out: errors (lerror.c) and
-- stats() with its groups (lexecutor.c).
local function fields(path)
  local list, seen = {}, {}
  local text = source(path)
  for _, p in ipairs { 'lua_setfield%(L, %-2, "([%w_]+)"%)',
                       'setint%(L, "([%w_]+)"' } do
    for f in text:gmatch(p) do
      if not seen[f] then seen[f] = true; list[#list + 1] = f end
    end
  end
  return list
end

local function missing(code, names, prefix)
  local out = {}
  for _, n in ipairs(names) do
    if not mentions(code, n, prefix) then out[#out + 1] = (prefix or "") .. n end
  end
  return out
end

local function keys(t, skip)
  local list = {}
  for k in pairs(t) do
    if type(k) == "string" and not (skip and skip[k]) then list[#list + 1] = k end
  end
  table.sort(list)
  return list
end

-- What Lua itself puts in a metatable, or what a user never reaches.
local NOT_METAMETHODS = { __index = true, __name = true }

local function metamethods(mt)
  local list = {}
  for _, k in ipairs(keys(mt, NOT_METAMETHODS)) do
    if k:sub(1, 2) == "__" then list[#list + 1] = k end
  end
  return list
end

describe("doc/reference.md", function()
  local code = code_of(assert(H.read_file(REFERENCE), REFERENCE))

  local function none_missing(list, what)
    assert.are.same({}, list, what .. " not in " .. REFERENCE .. ": " ..
                    table.concat(list, ", "))
  end

  it("names every field of the module, as ppe.<name>", function()
    local names = keys(ppe)
    assert.is_true(#names >= 12, "module fields: " .. #names)
    none_missing(missing(code, names, "ppe."), "module fields")
  end)

  it("names every method and metamethod of executors, futures and map " ..
     "iterators", function()
    local ex = ppe.executor{ max_workers = 1 }
    local f = ex:submit("tostring", 1)
    local iter = ex:map("tostring", {})
    local classes = {
      { "ex:", getmetatable(ex) }, { "f:", getmetatable(f) },
      { "it:", getmetatable(iter) }, { nil, ppe.Error },
    }
    iter:close()
    assert.is_true(f:wait(30))
    ex:close()
    local count = 0
    for _, c in ipairs(classes) do
      local prefix, mt = c[1], c[2]
      if prefix then
        local methods = keys(mt.__index)
        count = count + #methods
        for i, m in ipairs(methods) do methods[i] = m .. "(" end
        none_missing(missing(code, methods, prefix), prefix .. " methods")
      end
      none_missing(missing(code, metamethods(mt)), "metamethods")
    end
    assert.is_true(count >= 20, "methods found: " .. count)
  end)

  it("names every option and name list of the binding's sources", function()
    local arrays, all = name_arrays(), {}
    for _, a in ipairs(arrays) do
      none_missing(missing(code, a.names), a.where)
      for _, n in ipairs(a.names) do all[n] = true end
    end
    -- What the parse must find, so that a change in how the arrays are
    -- written cannot make this spec check nothing.
    for _, n in ipairs { "max_workers", "start_timeout", "chunksize",
                         "unpack", "ordered", "cancel_futures", "force",
                         "functions", "cancelled", "FIRST_EXCEPTION" } do
      assert.is_true(all[n], n .. " not found in the sources' arrays")
    end
  end)

  it("names every error kind and error field", function()
    local kinds = error_kinds()
    assert.is_true(#kinds >= 8, "error kinds: " .. table.concat(kinds, " "))
    none_missing(missing(code, kinds), "error kinds")
    local f = fields("src/lua/lerror.c")
    for _, n in ipairs { "kind", "message", "traceback", "value", "pid",
                         "signal", "exit_code", "attempts", "host",
                         "cause" } do
      assert.is_truthy(mentions(table.concat(f, " "), n),
                       n .. " not found in lerror.c")
    end
    none_missing(missing(code, f), "error fields")
  end)

  it("names every field of stats() and of its groups", function()
    local f = fields("src/lua/lexecutor.c")
    assert.is_true(#f >= 8, "stats fields: " .. table.concat(f, " "))
    none_missing(missing(code, f), "stats fields")
  end)

  it("names every environment variable ppe reads", function()
    local vars = {}
    for _, path in ipairs(BINDING) do
      for v in source(path):gmatch('getenv%("([%w_]+)"%)') do
        vars[#vars + 1] = v
      end
    end
    local ls = assert(io.popen("ls src/*.c"))
    for path in ls:lines() do
      for v in source(path):gmatch('getenv%("([%w_]+)"%)') do
        vars[#vars + 1] = v
      end
    end
    ls:close()
    assert.is_true(#vars >= 2, "environment variables: " .. #vars)
    none_missing(missing(code, vars), "environment variables")
  end)

  it("names every function and macro of ppe.h", function()
    local names = {}
    local text = source("ppe.h")
    for n in ("\n" .. text):gmatch("\nPPE_API [%w_ ]-%**([%w_]+)%(") do
      names[#names + 1] = n
    end
    assert.is_true(#names >= 4, "ppe.h functions: " .. #names)
    names[#names + 1] = "PPE_VERSION"
    none_missing(missing(code, names), "ppe.h names")
  end)

  it("is linked from the README, which names no file the tree lacks",
     function()
    local readme = assert(H.read_file("README.md"))
    assert.is_truthy(readme:find("(doc/reference.md)", 1, true),
                     "the README does not link doc/reference.md")
    for target in readme:gmatch("%]%(([^)#]+)[^)]*%)") do
      if not target:find("^%a+:") then
        assert.is_truthy(io.open(target), "the README links " .. target ..
                         ", which is not in the tree")
      end
    end
    assert.is_nil(readme:find("API.md", 1, true),
                  "the README names API.md, which is not in the tree")
  end)
end)
