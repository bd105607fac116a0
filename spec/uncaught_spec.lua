-- A ppe error nobody caught, as each stand-alone interpreter prints it.
-- Lua 5.1's 'lua' prints an error only if it is a string (or a number):
-- its message handler returns any other value untouched, without looking
-- for a __tostring, and its report then says "(error object is not a
-- string)". Nothing a table can carry changes that, so a script that
-- must run there converts the error itself: the README's recipe, checked
-- here on every interpreter. LuaJIT's 'luajit', and 'lua' from 5.2 on,
-- call __tostring.
local H = require "helpers"
local LUAS = { "lua5.4", "lua5.3", "lua5.2", "lua5.1", "luajit" }
local shell, headers, exists = H.output, H.lua_header, H.file_exists

-- The children run plain builds, with ppe's defaults, and a make of
-- their own.
local CLEAN_ENV = "env -u LD_PRELOAD -u PPE_HOST_ALLOC -u PPE_KEEP_SECONDS "
  .. "-u MAKEFLAGS -u MFLAGS -u MAKELEVEL "

-- A task that raises, its result asked for in main(); %s is how main is
-- called.
local SCRIPT = [[
package.cpath = "build/%s/?.so"
local ppe = require "ppe"
local ex = ppe.executor { max_workers = 1 }
local function main()
  local v = ex:submit(error, "no land here", 0):result(30)
  return v
end
%s
]]

-- The README's recipe: the error made a string, with the traceback of
-- where it was raised, and raised again for the interpreter to print.
local RECIPE = [[
local ok, err = xpcall(main, function(e) return debug.traceback(tostring(e), 2) end)
if not ok then error(err, 0) end
]]

-- Interpreter 'lua' runs the script with main called as 'call': its
-- output (stdout and stderr) and exit status.
local function run(lua, call)
  local script = SCRIPT:format(lua, call)
  local out = shell(CLEAN_ENV .. "timeout 60 " .. lua .. " -e '"
                    .. script:gsub("'", "'\\''") .. "' 2>&1; echo \"exit=$?\"")
  local body, status = out:match("^(.-)exit=(%d+)\n$")
  return body or out, tonumber(status)
end

describe("an uncaught ppe error, printed by the interpreter", function()
  for _, lua in ipairs(LUAS) do
    local bare = lua == "lua5.1" and "(error object is not a string)"
                 or "RemoteError: no land here"
    for _, how in ipairs({ "bare", "recipe" }) do
      local shows = how == "bare" and bare or "RemoteError: no land here"
      it(("#novalgrind %s, %s: %s"):format(lua, how == "bare" and "main()"
                                           or "through the README's recipe",
                                           shows), function()
        if not exists(headers(lua)) or shell("command -v " .. lua) == "" then
          return pending(lua .. " or its headers are not installed "
                         .. "('tools/deps.sh compat' installs them)")
        end
        local made = shell(CLEAN_ENV .. "make -s --no-print-directory build/"
                           .. lua .. "/ppe.so 2>&1; echo \"exit=$?\"")
        assert(made:match("exit=0\n$"), "make failed:\n" .. made)
        local out, status = run(lua, how == "bare" and "main()" or RECIPE)
        assert.are.equal(1, status, out)
        assert.are.equal(lua .. ": " .. shows, out:match("^[^\n]*"), out)
        if how == "recipe" then
          -- The worker's traceback, then the caller's, from the line that
          -- asked for the result on.
          local _, tracebacks = out:gsub("stack traceback:", "")
          assert.is_true(tracebacks >= 2, out)
          assert.is_truthy(out:find("\n\t%(command line%):5: in "), out)
        end
      end)
    end
  end
end)
