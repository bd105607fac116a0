-- Each build of ppe (for Lua 5.4, 5.3, 5.2, 5.1 and LuaJIT, made by the
-- Makefile's build/<lua>/ppe.so targets) loaded into each interpreter
-- there is, each pair in a process of its own: a pair that shares an ABI
-- runs real tasks, the others are refused at 'require' without a crash.
-- Debian's lua5.1 and luajit search the same module directories, so a
-- 5.1 build meets LuaJIT and a LuaJIT build meets lua5.1.
local H = require "helpers"
local LUAS = { "lua5.4", "lua5.3", "lua5.2", "lua5.1", "luajit" }
-- headers(lua): what the Makefile compiles a build against (its
-- compat_inc).
local shell, headers, exists = H.output, H.lua_header, H.file_exists

-- PUC Lua 5.1 and LuaJIT 2.1 share the C API of 5.1, symbol for symbol.
local function abi(lua)
  return (lua == "lua5.1" or lua == "luajit") and "5.1" or lua
end

-- Which interpreters there are, asked once: under valgrind each shell
-- costs a second.
local found
local function installed(lua)
  if not found then
    found = {}
    for path in shell("for l in " .. table.concat(LUAS, " ") .. "; do "
                      .. "command -v $l; done 2>/dev/null"):gmatch("[^\n]+") do
      found[path:match("[^/]+$")] = true
    end
  end
  return found[lua] == true
end

-- The children run without this process's sanitizers (the builds they
-- load are plain ones) and with ppe's defaults.
local CLEAN_ENV = "env -u LD_PRELOAD -u PPE_HOST_ALLOC -u PPE_KEEP_SECONDS "

-- Makes every build the matrix can use, once: ppe.so for each Lua whose
-- headers are there, evil.so for each interpreter there is. nil, or the
-- output of a failed make.
local built
local function build()
  if built ~= nil then return built ~= true and built or nil end
  local targets = {}
  for _, lua in ipairs(LUAS) do
    if exists(headers(lua)) then
      targets[#targets + 1] = "build/" .. lua .. "/ppe.so"
      if installed(lua) then
        targets[#targets + 1] = "build/" .. lua .. "/evil.so"
      end
    end
  end
  -- A make of its own: not the jobs of a make that runs the specs.
  local out = shell(CLEAN_ENV .. "-u MAKEFLAGS -u MFLAGS -u MAKELEVEL "
                    .. "make -s --no-print-directory " ..
                    table.concat(targets, " ") .. " 2>&1; echo \"exit=$?\"")
  built = out:match("exit=0\n$") and true or out
  return built ~= true and built or nil
end

-- What the child runs: it loads 'evil' of its own Lua (from its file: the
-- build's directory has one too), then ppe of build b, and reports on
-- lines of its output.
local SCRIPT = [[
package.cpath = %q
local EVIL = %q
local evil = assert(package.loadlib(EVIL, "luaopen_evil"))()
local ok, ppe = pcall(require, "ppe")
if not ok then
  io.write("refused\n", tostring(ppe), "\n")
  return
end
local function pid()
  local f = assert(io.open("/proc/self/stat"))
  local n = f:read("*n")
  f:close()
  return n
end
local function say(k, v) io.write(k, "=", tostring(v), "\n") end
say("caller_alloc", evil.allocator())
local ex = ppe.executor { max_workers = 2 }
say("rep", ex:submit("string.rep", "ab", 3):result(30))
local k = 10
local sum, wpid = ex:submit(function(a, b) return a + b + k, pid() end, 1, 2)
                    :result(30)
say("sum", sum)
say("worker_pid_differs", type(wpid) == "number" and wpid ~= pid())
say("worker_alloc", ex:submit(function()
  return assert(package.loadlib(EVIL, "luaopen_evil"))().allocator()
end):result(30))
say("big", #ex:submit(string.rep, "x", 5 * 1048576):result(30))
local t = ex:submit(function(x) return { x, { x * 2 } } end, 21):result(30)
say("table", t[1] .. "," .. t[2][1])
local sq = {}
for i, v in ex:map(function(x) return x * x end, { 1, 2, 3 }) do sq[i] = v end
say("map", table.concat(sq, ","))
local f = ex:submit(error, "boom", 0)
local _, e = pcall(f.result, f)
say("error", type(e) == "table" and e.kind .. " " .. tostring(e.value) or e)
ex:close()
say("closed", ex:stats().workers)
]]

-- Runs build b in interpreter i: its output and exit status.
local function run(b, i)
  local script = SCRIPT:format("build/" .. b .. "/?.so",
                               "build/" .. i .. "/evil.so")
  local out = shell(CLEAN_ENV .. "timeout 60 " .. i .. " -e '" ..
                    script:gsub("'", "'\\''") ..
                    "' 2>&1; echo \"exit=$?\"")
  local body, status = out:match("^(.-)exit=(%d+)\n$")
  return body or out, tonumber(status)
end

describe("a build loaded by an interpreter", function()
  for _, b in ipairs(LUAS) do
    for _, i in ipairs(LUAS) do
      local works = abi(b) == abi(i)
      -- (#novalgrind: each runs in an interpreter of its own, untraced.)
      it(("#novalgrind %s build in %s: %s"):format(b, i, works and
         "runs tasks, each in another process" or "refused at require"),
         function()
        if not installed(i) then
          return pending(i .. " is not installed "
                         .. "('tools/deps.sh compat' installs it)")
        end
        if not exists(headers(b)) then
          return pending("no headers for " .. b .. ": " .. headers(b)
                         .. " ('tools/deps.sh compat' installs them)")
        end
        if not exists(headers(i)) then
          return pending("no headers for " .. i .. ": " .. headers(i)
                         .. " (its evil.so reports on the run)")
        end
        local failed = build()
        assert(failed == nil, "make failed:\n" .. tostring(failed))
        local out, status = run(b, i)
        assert.are.equal(0, status, out)
        if works then
          -- LuaJIT's states keep LuaJIT's allocator; PUC Lua's get ppe's.
          local alloc = i == "luajit" and "stock" or "other"
          assert.are.equal(table.concat({
            "caller_alloc=" .. alloc,
            "rep=ababab",
            "sum=13",
            "worker_pid_differs=true",
            "worker_alloc=" .. alloc,
            "big=5242880",
            "table=21,42",
            "map=1,4,9",
            "error=RemoteError boom",
            "closed=0",
          }, "\n") .. "\n", out)
        else
          local so = ("build/%s/ppe.so"):format(b)
          local esc = so:gsub("%p", "%%%0")
          assert.is_truthy(out:match("^refused\nerror loading module 'ppe' "
                                     .. "from file '" .. esc .. "':\n\t"
                                     .. esc .. ": undefined symbol: "
                                     .. "lua[%w_]+\n$"), out)
        end
      end)
    end
  end
end)
