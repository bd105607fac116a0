/* vm.c - which Lua VM ppe's calls reach, told at run time.
** The headers a module was built with do not tell it: a module built for
** Lua 5.1 also loads into LuaJIT, and one built with LuaJIT's headers into
** PUC Lua 5.1 (compat.h keeps their builds to what both export), as
** Debian's lua5.1 and luajit search the same module directories. Nor is
** a symbol lookup enough: a host that links Lua and ppe statically need
** not export any. What the VM itself does is certain: LuaJIT's
** luaL_openlibs opens its 'jit' library in every state, whatever the
** host's own states were given, and PUC Lua has none. LuaJIT's API
** symbols, where the process exports them, still count, for a host that
** built LuaJIT without its jit library. */
#include <dlfcn.h>
#include <pthread.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "compat.h"

#include "vm.h"

static int luajit = 1;  /* until a probe says otherwise */
static pthread_once_t luajit_once = PTHREAD_ONCE_INIT;

static int probe(lua_State *L) {
  luaL_openlibs(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "jit");
  lua_pushboolean(L, !lua_isnil(L, -1));
  return 1;
}

/* Out of memory, the answer stays "LuaJIT": allocators are left alone. */
static void find_vm(void) {
  lua_State *T;
  if (dlsym(RTLD_DEFAULT, "luaJIT_setmode") != NULL) return;
  T = luaL_newstate();
  if (T == NULL) return;
  lua_pushcfunction(T, probe);
  if (lua_pcall(T, 0, 1, 0) == LUA_OK) luajit = lua_toboolean(T, -1);
  lua_close(T);
}

int ppe_luajit(void) {
  pthread_once(&luajit_once, find_vm);
  return luajit;
}
