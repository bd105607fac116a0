/* preload.c - a C program that embeds Lua and ppe, on every Lua version.
**
** Lua 5.1 and LuaJIT have no luaL_requiref, so the host puts luaopen_ppe
** in package.preload instead, which every version has: the script's
** require "ppe" then opens it, once, as it would open ppe.so. The same
** source builds for 5.1 to 5.4 and LuaJIT ('make release-check' builds it
** against the installed libppe.a, and for lua5.1 and luajit). */
#include <stdio.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "ppe.h"

/* package.preload[name] = open */
static void preload(lua_State *L, const char *name, lua_CFunction open) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, open);
  lua_setfield(L, -2, name);
  lua_pop(L, 2);
}

/* No <close> here: 5.1 to 5.3 have none, so the executor is closed by
** hand. The function sent by value names its VM, as the worker sees it. */
static const char script[] =
  "local ppe = require 'ppe'\n"
  "local ex = ppe.executor { max_workers = 2 }\n"
  "local f = ex:submit(function(a, b)\n"
  "  return a * b, rawget(_G, 'jit') and jit.version or _VERSION\n"
  "end, 6, 7)\n"
  "local n, vm = f:result(30)\n"
  "assert(n == 42, 'the task returned ' .. tostring(n))\n"
  "local sum = 0\n"
  "for _, x in ex:map('math.sqrt', { 1, 4, 9 }) do sum = sum + x end\n"
  "assert(sum == 6, 'the map gave ' .. sum)\n"
  "ex:close()\n"
  "print(('%s, preloaded, in workers of %s: 6 * 7 = %d')\n"
  "      :format(ppe._VERSION, vm, n))\n";

int main(void) {
  lua_State *L = luaL_newstate();
  int status;
  if (L == NULL) return 1;
  luaL_openlibs(L);
  preload(L, "ppe", luaopen_ppe);
  status = luaL_dostring(L, script);
  if (status != 0) fprintf(stderr, "preload: %s\n", lua_tostring(L, -1));
  lua_close(L);
  return status != 0;
}
