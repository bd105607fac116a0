/* compat.h - the Lua 5.4 API ppe is written against, on Lua 5.1, 5.2, 5.3
** and LuaJIT 2.1.
**
** ppe is written for Lua 5.4; this header supplies, for older versions, the
** parts of that API it uses, with 5.4's meaning. Include it after lua.h and
** lauxlib.h. Where an older Lua lacks the concept itself (the integer
** subtype before 5.3), the stand-in is documented here and in the README.
*/
#ifndef ppe_compat_h
#define ppe_compat_h

#include <math.h>
#include <stdio.h>
#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#ifndef LUA_LOADED_TABLE
#define LUA_LOADED_TABLE "_LOADED"
#endif

/*
** {======================================================
** 5.1 and LuaJIT (LUA_VERSION_NUM 501)
** =======================================================
*/
#if LUA_VERSION_NUM < 502

/* One build serves PUC Lua 5.1 and LuaJIT alike: Debian's lua5.1 and
** luajit search the same module directories, so a module built with
** either's headers meets the other. It may therefore call only what both
** export: the functions below that LuaJIT has and PUC 5.1 lacks are ppe's
** own, under names of their own, whichever headers the build used (and
** ppe_luajit() tells the VM at run time, where it matters). */

#ifndef LUA_OK
#define LUA_OK 0
#endif
#define lua_rawlen(L, i) lua_objlen((L), (i))
#define lua_pushglobaltable(L) lua_pushvalue((L), LUA_GLOBALSINDEX)
/* 5.1 has no load modes; every chunk ppe loads carries its MAC first. */
#define lua_load(L, r, d, name, mode) (lua_load)((L), (r), (d), (name))

static inline int lua_absindex(lua_State *L, int i) {
  return (i > 0 || i <= LUA_REGISTRYINDEX) ? i : lua_gettop(L) + 1 + i;
}

static inline void lua_rawgetp(lua_State *L, int t, const void *p) {
  t = lua_absindex(L, t);
  lua_pushlightuserdata(L, (void *)p);
  lua_rawget(L, t);
}

static inline void lua_rawsetp(lua_State *L, int t, const void *p) {
  t = lua_absindex(L, t);
  lua_pushlightuserdata(L, (void *)p);
  lua_insert(L, -2);
  lua_rawset(L, t);
}

/* The length operator as 5.2 has it: __len first, for tables too. */
static inline lua_Integer luaL_len(lua_State *L, int i) {
  lua_Integer n;
  if (!luaL_callmeta(L, i, "__len")) return (lua_Integer)lua_objlen(L, i);
  if (lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "object length is not an integer");
  n = (lua_Integer)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return n;
}

static inline const char *luaL_tolstring(lua_State *L, int i, size_t *len) {
  if (!luaL_callmeta(L, i, "__tostring")) {
    switch (lua_type(L, i)) {
      case LUA_TNUMBER: case LUA_TSTRING:
        lua_pushvalue(L, i);
        break;
      case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, i) ? "true" : "false");
        break;
      case LUA_TNIL: lua_pushliteral(L, "nil"); break;
      default:
        lua_pushfstring(L, "%s: %p", luaL_typename(L, i),
                        lua_topointer(L, i));
    }
  }
  return lua_tolstring(L, -1, len);
}

static inline void luaL_getsubtable(lua_State *L, int i, const char *name) {
  i = lua_absindex(L, i);
  lua_getfield(L, i, name);
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, i, name);
}

#ifndef luaL_newlib
#define luaL_newlib(L, l) \
  (lua_createtable((L), 0, sizeof(l) / sizeof((l)[0]) - 1), \
   luaL_setfuncs((L), (l), 0))
#endif

#define luaL_setfuncs(L, l, nup) ppe_setfuncs((L), (l), (nup))
#define luaL_testudata(L, i, name) ppe_testudata((L), (i), (name))
#define luaL_setmetatable(L, name) ppe_setmetatable((L), (name))
#define luaL_traceback(L, L1, msg, level) \
  ppe_traceback((L), (L1), (msg), (level))

static inline void ppe_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

static inline void *ppe_testudata(lua_State *L, int i, const char *name) {
  void *p = lua_touserdata(L, i);
  int same;
  if (p == NULL || !lua_getmetatable(L, i)) return NULL;
  lua_getfield(L, LUA_REGISTRYINDEX, name);
  same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? p : NULL;
}

static inline void ppe_setmetatable(lua_State *L, const char *name) {
  lua_getfield(L, LUA_REGISTRYINDEX, name);
  lua_setmetatable(L, -2);
}

/* Through debug.traceback, one level further down: the call adds one. */
static inline void ppe_traceback(lua_State *L, lua_State *L1,
                                 const char *msg, int level) {
  (void)L1;  /* ppe asks only for its own thread's */
  lua_getglobal(L, "debug");
  if (lua_istable(L, -1)) lua_getfield(L, -1, "traceback");
  else lua_pushnil(L);
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    lua_pushstring(L, msg != NULL ? msg : "");
    return;
  }
  /* 5.1's debug.traceback gives back a nil message as it is, and puts a
  ** newline after an empty one: without a message, that newline goes. */
  lua_pushstring(L, msg != NULL ? msg : "");
  lua_pushinteger(L, level + 1);
  if (lua_pcall(L, 2, 1, 0) != 0 || !lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushstring(L, msg != NULL ? msg : "");
  }
  else if (msg == NULL && *lua_tostring(L, -1) == '\n') {
    lua_pushstring(L, lua_tostring(L, -1) + 1);
    lua_remove(L, -2);
  }
}

#endif  /* LUA_VERSION_NUM < 502 */
/* }====================================================== */


/*
** {======================================================
** 5.1, 5.2 and LuaJIT: no integer subtype, getters return nothing
** =======================================================
*/
#if LUA_VERSION_NUM < 503

#define LUA_MAXINTEGER PTRDIFF_MAX
#define LUA_MININTEGER PTRDIFF_MIN

/* Without a subtype, an "integer" is a number with an integral value that
** a double holds exactly (|n| <= 2^53), -0 excepted: such numbers travel in
** the wire's integer encoding and come back as the same number; every
** other number travels as a float, bit for bit. */
static inline int lua_isinteger(lua_State *L, int i) {
  lua_Number n;
  if (lua_type(L, i) != LUA_TNUMBER) return 0;
  n = lua_tonumber(L, i);
  return n == floor(n) && fabs(n) <= 9007199254740992.0 &&
         !(n == 0 && signbit(n));
}

/* 5.3's meaning: a number (or numeric string) with an integral value. */
static inline lua_Integer ppe_tointegerx(lua_State *L, int i, int *isnum) {
  lua_Number n = lua_tonumber(L, i);
  int ok = lua_isnumber(L, i) && n == floor(n) && n >= -9223372036854775808.0
           && n < 9223372036854775808.0;
  if (isnum != NULL) *isnum = ok;
  return ok ? (lua_Integer)n : 0;
}
#define lua_tointegerx(L, i, isnum) ppe_tointegerx((L), (i), (isnum))

/* The getters return the type of what they pushed, as from 5.3 on. A macro
** naming itself is not expanded again, so these call the real functions. */
#define lua_getfield(L, i, k) (lua_getfield((L), (i), (k)), lua_type((L), -1))
#define lua_rawget(L, i) (lua_rawget((L), (i)), lua_type((L), -1))
#define lua_rawgeti(L, i, n) (lua_rawgeti((L), (i), (n)), lua_type((L), -1))
#define lua_rawgetp(L, i, p) (lua_rawgetp((L), (i), (p)), lua_type((L), -1))

static inline int lua_geti(lua_State *L, int t, lua_Integer n) {
  t = lua_absindex(L, t);
  lua_pushinteger(L, n);
  lua_gettable(L, t);
  return lua_type(L, -1);
}

/* No strip argument: the dump keeps its debug information. */
#define lua_dump(L, w, d, strip) ((void)(strip), (lua_dump)((L), (w), (d)))

#endif  /* LUA_VERSION_NUM < 503 */
/* }====================================================== */


/*
** {======================================================
** Before 5.4: one user value, warnings
** =======================================================
*/
#if LUA_VERSION_NUM < 504

/* A userdata with user values holds them in a table, its single user value
** (5.1: its environment). */
#if LUA_VERSION_NUM < 502
#define ppe_getuv(L, i) lua_getfenv((L), (i))
#define ppe_setuv(L, i) lua_setfenv((L), (i))
#else
#define ppe_getuv(L, i) lua_getuservalue((L), (i))
#define ppe_setuv(L, i) lua_setuservalue((L), (i))
#endif

static inline void *lua_newuserdatauv(lua_State *L, size_t size, int nuv) {
  void *p = lua_newuserdata(L, size);
  if (nuv > 0) {
    lua_createtable(L, nuv, 0);
    ppe_setuv(L, -2);
  }
  return p;
}

static inline int lua_getiuservalue(lua_State *L, int i, int n) {
  int t;
  ppe_getuv(L, i);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNONE;
  }
  lua_rawgeti(L, -1, n);
  t = lua_type(L, -1);
  lua_remove(L, -2);
  return t;
}

static inline int lua_setiuservalue(lua_State *L, int i, int n) {
  i = lua_absindex(L, i);
  ppe_getuv(L, i);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 2);
    return 0;
  }
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
  return 1;
}

/* As 5.4's: a value is named by its metatable's __name, which 5.3 sets
** too, else by its type. */
static inline int luaL_typeerror(lua_State *L, int arg, const char *tname) {
  const char *got = NULL, *msg;
#if LUA_VERSION_NUM >= 503
  if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING)
    got = lua_tostring(L, -1);
#endif
  if (got == NULL) got = luaL_typename(L, arg);
  msg = lua_pushfstring(L, "%s expected, got %s", tname, got);
  return luaL_argerror(L, arg, msg);
}

#endif  /* LUA_VERSION_NUM < 504 */
/* }====================================================== */

#endif
