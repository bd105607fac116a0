-- A release: the version written once (ppe.h) and named alike by
-- ppe._VERSION, the versioned rockspec and its tag, CHANGELOG.md and the
-- docs; LICENSE is MIT, as the rockspecs say; both rockspecs pass
-- luarocks lint, and luarocks pack makes a source rock of each from this
-- repository, with no network: git is told to fetch the public address
-- from a local clone (the versioned rockspec's tag made in that clone).

local H = require "helpers"
local ppe = require "ppe"

-- The commands run here are not ppe's: no sanitizer's runtime preloaded,
-- and nothing traced (valgrind leaves what env starts alone).
local CLEAN_ENV = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS"

local PUBLIC_URL = "https://github.com/ppe-lua/ppe.git"

local function read(path) return assert(H.read_file(path), path) end

-- The version as ppe.h writes it: "0.2.0".
local function version()
  return assert(read("ppe.h"):match('\n#define PPE_VERSION "ppe ([^"]+)"'),
                "no PPE_VERSION in ppe.h")
end

-- A command's output and whether it succeeded.
local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok = p:close()
  return ok == true or ok == 0, out
end

local function have(cmd) return (run("command -v " .. cmd)) end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- The table a rockspec file makes.
local function rockspec(path)
  local env = {}
  local chunk
  if setfenv then  -- Lua 5.1, LuaJIT
    chunk = assert(loadfile(path))
    setfenv(chunk, env)
  else
    chunk = assert(loadfile(path, "t", env))
  end
  chunk()
  return env
end

-- The versioned rockspecs in rockspec/, by version: { "0.2.0-1", ... }.
local function versioned()
  local list = {}
  local ls = assert(io.popen("ls rockspec"))
  for name in ls:lines() do
    local v = name:match("^ppe%-(%d+%.%d+%.%d+%-%d+)%.rockspec$")
    if v then list[#list + 1] = v end
  end
  ls:close()
  return list
end

local function newer(a, b)
  local x, y = {}, {}
  for n in a:gmatch("%d+") do x[#x + 1] = tonumber(n) end
  for n in b:gmatch("%d+") do y[#y + 1] = tonumber(n) end
  for i = 1, math.max(#x, #y) do
    if (x[i] or 0) ~= (y[i] or 0) then return (x[i] or 0) > (y[i] or 0) end
  end
  return false
end

local function release_rockspec()
  local list = versioned()
  assert.is_true(#list >= 1, "no versioned rockspec in rockspec/")
  table.sort(list, newer)
  return "rockspec/ppe-" .. list[1] .. ".rockspec", list[1]
end

describe("the release", function()
  local V = version()

  it("has a semantic version in ppe.h, which ppe._VERSION gives", function()
    assert.is_truthy(V:match("^%d+%.%d+%.%d+$"), "not semantic: " .. V)
    assert.are.equal("ppe " .. V, ppe._VERSION)
  end)

  it("has a rockspec of that version, for its tag", function()
    local path, rv = release_rockspec()
    assert.are.equal(V, rv:match("^(.*)%-%d+$"), path)
    local r = rockspec(path)
    assert.are.equal("ppe", r.package)
    assert.are.equal(rv, r.version)
    assert.are.equal("v" .. V, r.source.tag)
    assert.are.equal("git+" .. PUBLIC_URL, r.source.url)
  end)

  it("has rockspecs with a homepage, a maintainer, MIT, and CC passed",
     function()
    for _, path in ipairs { (release_rockspec()), "rockspec/ppe-scm-1.rockspec" } do
      local r = rockspec(path)
      assert.is_truthy(r.description.homepage:match("^https://"), path)
      assert.is_truthy(r.description.maintainer, path)
      assert.are.equal("MIT", r.description.license, path)
      assert.are.equal("$(CC)", r.build.build_variables.CC, path)
      assert.are.equal("git+" .. PUBLIC_URL, r.source.url, path)
    end
    assert.are.equal("scm-1", rockspec("rockspec/ppe-scm-1.rockspec").version)
  end)

  it("is the newest release of CHANGELOG.md, under Unreleased", function()
    local log = read("CHANGELOG.md")
    local heads = {}
    for h in log:gmatch("\n## %[([^%]]+)%]") do heads[#heads + 1] = h end
    assert.are.equal("Unreleased", heads[1], "the first section")
    assert.are.equal(V, heads[2], "the newest release")
    assert.is_truthy(log:find("\n## %[" .. V:gsub("%.", "%%.") ..
                              "%] %- %d%d%d%d%-%d%d%-%d%d\n"),
                     "the release's heading has no date")
    assert.is_truthy(log:find("\n%[" .. V:gsub("%.", "%%.") .. "%]: http"),
                     "the release has no link")
  end)

  it("is the only version the README and the reference name", function()
    for _, path in ipairs { "README.md", "doc/reference.md" } do
      local n = 0
      for v in read(path):gmatch("ppe (%d+%.%d+%.%d+)") do
        assert.are.equal(V, v, path .. " names ppe " .. v)
        n = n + 1
      end
      assert.is_true(n > 0, path .. " names no version")
    end
  end)

  it("is under the MIT license, with a copyright line", function()
    local text = read("LICENSE")
    assert.is_truthy(text:find("^MIT License\n"), "LICENSE: not MIT")
    assert.is_truthy(text:find("\nCopyright %(c%) %d%d%d%d %S"),
                     "LICENSE: no copyright line")
    for _, words in ipairs {
      "Permission is hereby granted, free of charge, to any person",
      "The above copyright notice and this permission notice shall be",
      'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND',
    } do
      assert.is_truthy(text:find(words, 1, true), "LICENSE lacks: " .. words)
    end
  end)

  describe("with luarocks", function()
    local function luarocks_or_pending()
      if not have("luarocks") then
        pending("luarocks is not installed")
        return false
      end
      return true
    end

    it("passes luarocks lint", function()
      if not luarocks_or_pending() then return end
      for _, path in ipairs { (release_rockspec()), "rockspec/ppe-scm-1.rockspec" } do
        local ok, out = run(CLEAN_ENV .. " timeout 120 luarocks lint " .. path)
        assert.is_true(ok, path .. ": " .. out)
      end
    end)

    -- What HEAD holds (committed work, as a clone of the public address
    -- would), packed from a clone of this repository.
    it("packs both rockspecs into source rocks of this repository",
       function()
      if not luarocks_or_pending() then return end
      if not (have("git") and have("unzip")) or
         not run("git rev-parse --is-inside-work-tree") then
        pending("not a git checkout, or no git or unzip")
        return
      end
      local cwd = assert(os.getenv("PWD"))
      local mk = assert(io.popen("mktemp -d"))
      local tmp = assert(mk:read("*l"))
      mk:close()
      local function sh(cmd)
        local ok, out = run(cmd)
        assert.is_true(ok, cmd .. ": " .. out)
        return out
      end
      local ok, err = pcall(function()
        sh(("%s git clone -q --no-local %s %s/repo && git -C %s/repo tag v%s")
           :format(CLEAN_ENV, shell_quote(cwd), tmp, tmp, V))
        local redirect = ("GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=%s " ..
                          "GIT_CONFIG_VALUE_0=%s")
                         :format(shell_quote("url.file://" .. tmp ..
                                             "/repo.insteadOf"), PUBLIC_URL)
        local path, rv = release_rockspec()
        for _, r in ipairs { { path, rv }, { "rockspec/ppe-scm-1.rockspec",
                                             "scm-1" } } do
          sh(("cd %s && %s %s timeout 120 luarocks pack %s/%s")
             :format(tmp, CLEAN_ENV, redirect, shell_quote(cwd), r[1]))
          local rock = ("%s/ppe-%s.src.rock"):format(tmp, r[2])
          local h = sh(("unzip -p %s ppe/ppe.h"):format(rock))
          assert.is_truthy(h:find('"ppe ' .. V .. '"', 1, true),
                           rock .. ": its ppe.h is not of " .. V)
          sh(("unzip -l %s ppe/LICENSE ppe/Makefile ppe-%s.rockspec")
             :format(rock, r[2]))
        end
      end)
      os.execute("rm -rf " .. tmp)
      assert(ok, err)
    end)
  end)
end)
