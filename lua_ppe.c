/* lua_ppe.c - the Lua binding of ppe: arguments, userdata, metatables. */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "ppe.h"
#include "src/mac.h"
#include "src/worker.h"
#include "src/wire.h"

#define PPE_VERSION "ppe 0.1.0"
#define PPE_ERROR "ppe.Error"
#define PPE_BUFBOX "ppe.Buffer"


/*
** {======================================================
** Errors: tables sharing the metatable ppe.Error
** =======================================================
*/

/* Pushes a new error {kind=kind, message=msg}. */
static void pusherror(lua_State *L, const char *kind, const char *msg) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, PPE_ERROR);
}

static int raiseerror(lua_State *L, const char *kind, const char *msg) {
  pusherror(L, kind, msg);
  return lua_error(L);
}

static int error_tostring(lua_State *L) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_getfield(L, 1, "kind");
  luaL_addvalue(&b);
  luaL_addstring(&b, ": ");
  lua_getfield(L, 1, "message");
  luaL_addvalue(&b);
  if (lua_getfield(L, 1, "traceback") == LUA_TSTRING) {
    luaL_addchar(&b, '\n');
    luaL_addvalue(&b);
  }
  else lua_pop(L, 1);
  luaL_pushresult(&b);
  return 1;
}

static const luaL_Reg error_meta[] = {
  {"__tostring", error_tostring},
  {NULL, NULL}
};

/* }====================================================== */


/*
** {======================================================
** Buffers owned by Lua, so an error never leaks one
** =======================================================
*/

static ppe_buf *newbuf(lua_State *L) {
  ppe_buf *b = (ppe_buf *)lua_newuserdatauv(L, sizeof(ppe_buf), 0);
  b->p = NULL; b->len = b->cap = 0;
  luaL_setmetatable(L, PPE_BUFBOX);
  return b;
}

static int buf_gc(lua_State *L) {
  ppe_buf_free((ppe_buf *)luaL_checkudata(L, 1, PPE_BUFBOX));
  return 0;
}

static const luaL_Reg buf_meta[] = {
  {"__gc", buf_gc},
  {NULL, NULL}
};

/* }====================================================== */


/*
** {======================================================
** Module functions
** =======================================================
*/

static int l_encode(lua_State *L) {
  char err[PPE_ERRSZ];
  int n = lua_gettop(L);
  ppe_buf *b = newbuf(L);
  if (ppe_encode(L, b, 1, n, "argument", 1, err) != 0)
    return raiseerror(L, "SerializationError", err);
  lua_pushlstring(L, b->p, b->len);
  ppe_buf_free(b);
  return 1;
}

static int l_decode(lua_State *L) {
  char err[PPE_ERRSZ];
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int n = ppe_decode(L, s, len, 0, err);
  if (n < 0) return raiseerror(L, "SerializationError", err);
  return n;
}

static int l_cpu_count(lua_State *L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

static int l_worker_id(lua_State *L) {
  int id = ppe_worker_id();
  if (id > 0) lua_pushinteger(L, id);
  else lua_pushnil(L);
  return 1;
}

static const luaL_Reg ppe_funcs[] = {
  {"encode", l_encode},
  {"decode", l_decode},
  {"cpu_count", l_cpu_count},
  {"worker_id", l_worker_id},
  {NULL, NULL}
};

/* }====================================================== */


static void newmeta(lua_State *L, const char *name, const luaL_Reg *l) {
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, l, 0);
}

PPE_API int luaopen_ppe(lua_State *L) {
  int r = ppe_mac_init();
  if (r < 0)
    return luaL_error(L, "ppe: cannot draw a random key (%s)", strerror(-r));
  newmeta(L, PPE_BUFBOX, buf_meta);
  lua_pop(L, 1);
  luaL_newlib(L, ppe_funcs);
  newmeta(L, PPE_ERROR, error_meta);
  lua_setfield(L, -2, "Error");
  lua_pushliteral(L, PPE_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushinteger(L, PPE_MAXDEPTH);
  lua_setfield(L, -2, "MAX_DEPTH");
  return 1;
}
