/* largs.c - what every class of the binding checks and builds the same
** way: classes by metatable upvalue, option tables, seconds, and the
** Lua-owned buffers requests are encoded in. */
#include <stdarg.h>
#include <string.h>

#include "src/lua/lppe.h"
#include "src/bigblock.h"
#include "src/wire.h"

/*
** {======================================================
** Classes
** =======================================================
*/

/* luaL_testudata, with the metatable at index mt. */
void *lppe_testclass(lua_State *L, int arg, int mt) {
  void *p = lua_touserdata(L, arg);
  if (p != NULL && lua_getmetatable(L, arg)) {
    int same = lua_rawequal(L, -1, mt);
    lua_pop(L, 1);
    if (same) return p;
  }
  return NULL;
}

/* luaL_checkudata, with the metatable at index mt. */
void *lppe_checkclass(lua_State *L, int arg, int mt, const char *tname) {
  void *p = lppe_testclass(L, arg, mt);
  if (p == NULL) luaL_typeerror(L, arg, tname);
  return p;
}

/* luaL_setmetatable, with the metatable at index mt. */
void lppe_setclass(lua_State *L, int mt) {
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
}

/* Registers l in the table on the top, each function with the upvalues
** (FUTURE_MT and on: NUPS values from index mts on). */
void lppe_setfuncs(lua_State *L, const luaL_Reg *l, int mts) {
  int i;
  for (i = 0; i < NUPS; i++) lua_pushvalue(L, mts + i);
  luaL_setfuncs(L, l, NUPS);
}

void lppe_newmeta(lua_State *L, const char *name, const luaL_Reg *l,
                  int mts) {
  luaL_newmetatable(L, name);
  lppe_setfuncs(L, l, mts);
}

/* A metatable whose __index is the table of methods. */
void lppe_newclass(lua_State *L, const char *name, const luaL_Reg *meta,
                   const luaL_Reg *methods, int mts) {
  lppe_newmeta(L, name, meta, mts);
  lua_newtable(L);
  lppe_setfuncs(L, methods, mts);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* }====================================================== */


/*
** {======================================================
** Options: tables of named settings
** =======================================================
*/

/* Raises a ppe.Error ValueError with the message on the top of the
** stack, naming option 'key' (err.option) and the value at the absolute
** index idx (err.value), if idx is not 0. */
static int option_error(lua_State *L, const char *key, int idx) {
  lppe_pusherror(L, "ValueError", lua_tostring(L, -1));
  lua_pushstring(L, key);
  lua_setfield(L, -2, "option");
  if (idx != 0) {
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "value");
  }
  return lua_error(L);
}

int lppe_option_error(lua_State *L, const char *key, int idx,
                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return option_error(L, key, idx);
}

/* The edits (insert, delete, change, swap of two) from a to b, up to 3:
** keys are short. */
static int distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b), i, j;
  int d[32][32];
  if (n >= 32 || m >= 32) return 3;
  for (i = 0; i <= n; i++) d[i][0] = (int)i;
  for (j = 0; j <= m; j++) d[0][j] = (int)j;
  for (i = 1; i <= n; i++)
    for (j = 1; j <= m; j++) {
      int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < c)
        c = d[i - 2][j - 2] + 1;
      d[i][j] = c;
    }
  return d[n][m] < 3 ? d[n][m] : 3;
}

/* The key of keys nearest to s, if it is near enough to be a slip. */
static const char *nearest(const char *s, const char *const keys[]) {
  const char *best = NULL;
  int i, bestd = 3;
  for (i = 0; keys[i] != NULL; i++) {
    int d = distance(s, keys[i]);
    if (d < bestd || (d == bestd && best == NULL && d < 3)) {
      bestd = d;
      best = keys[i];
    }
  }
  return strlen(s) > 2 || bestd < 2 ? best : NULL;
}

/* Every key of the table at arg must be one of keys: a misspelt option
** is a mistake, not a wish to be ignored. */
void lppe_checkkeys(lua_State *L, int arg, const char *const keys[],
                    const char *what) {
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    int i = 0;
    const char *near;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING)
      for (; keys[i] != NULL; i++)
        if (strcmp(lua_tostring(L, -1), keys[i]) == 0) break;
    if (lua_type(L, -1) == LUA_TSTRING && keys[i] != NULL) continue;
    near = lua_type(L, -1) == LUA_TSTRING
             ? nearest(lua_tostring(L, -1), keys) : NULL;
    lua_pushfstring(L, "unknown %s option '%s'", what,
                    luaL_tolstring(L, -1, NULL));
    if (near != NULL) {
      lua_pushfstring(L, " (did you mean '%s'?)", near);
      lua_concat(L, 2);
    }
    option_error(L, lua_tostring(L, -2), 0);
  }
}

/* The options table at arg, an empty one when it is absent, with every
** key checked; the stack ends there. */
void lppe_options(lua_State *L, int arg, const char *const keys[],
                  const char *what) {
  if (lua_isnoneornil(L, arg)) {
    lua_settop(L, arg - 1);
    lua_newtable(L);
  }
  if (!lua_istable(L, arg)) luaL_typeerror(L, arg, "options table");
  lua_settop(L, arg);
  lppe_checkkeys(L, arg, keys, what);
}

/* The boolean option key of the table at arg (which may be absent). */
int lppe_optbool(lua_State *L, int arg, const char *key, int def) {
  int v, at = lua_gettop(L) + 1;  /* where the value goes */
  if (lua_isnoneornil(L, arg)) return def;
  luaL_checktype(L, arg, LUA_TTABLE);
  if (lua_getfield(L, arg, key) == LUA_TNIL) v = def;
  else if (lua_isboolean(L, -1)) v = lua_toboolean(L, -1);
  else
    return lppe_option_error(L, key, at, "option '%s' must be a boolean, "
                             "got %s", key, luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

/* An integer option from min (0 or 1) to max, or def when absent. */
static lua_Integer optint(lua_State *L, int arg, const char *key,
                          lua_Integer def, lua_Integer min, lua_Integer max) {
  lua_Integer v;
  int isint, at = lua_gettop(L) + 1;  /* where the value goes */
  if (lua_getfield(L, arg, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  v = lua_tointegerx(L, -1, &isint);
  if (!isint || lua_type(L, -1) != LUA_TNUMBER || v < min || v > max) {
    if (max >= INT32_MAX)
      lppe_option_error(L, key, at, "option '%s' must be %s integer, got %s",
                        key, min > 0 ? "a positive" : "a non-negative",
                        luaL_tolstring(L, -1, NULL));
    lppe_option_error(L, key, at, "option '%s' must be an integer from %d "
                      "to %d, got %s", key, (int)min, (int)max,
                      luaL_tolstring(L, -1, NULL));
  }
  lua_pop(L, 1);
  return v;
}

/* An integer option from 1 to max, or def when absent. */
lua_Integer lppe_optint(lua_State *L, int arg, const char *key,
                        lua_Integer def, lua_Integer max) {
  return optint(L, arg, key, def, 1, max);
}

/* A count, from 0 to max, or def when absent. */
lua_Integer lppe_optcount(lua_State *L, int arg, const char *key,
                          lua_Integer def, lua_Integer max) {
  return optint(L, arg, key, def, 0, max);
}

/* Seconds, the value at idx: a number >= 0, or > 0 when 'positive'; -1
** if it is none. */
static double seconds(lua_State *L, int idx, int positive) {
  double v;
  if (lua_type(L, idx) != LUA_TNUMBER) return -1;
  v = (double)lua_tonumber(L, idx);
  return (positive ? v > 0 : v >= 0) ? v : -1;  /* NaN is neither */
}

/* A seconds option of the table at arg, or def when absent. */
double lppe_optseconds(lua_State *L, int arg, const char *key, int positive,
                       double def) {
  double v;
  int at = lua_gettop(L) + 1;  /* where the value goes */
  if (lua_getfield(L, arg, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if ((v = seconds(L, -1, positive)) < 0)
    lppe_option_error(L, key, at, "option '%s' must be a number of seconds "
                      "%s 0, got %s", key, positive ? ">" : ">=",
                      luaL_tolstring(L, -1, NULL));
  lua_pop(L, 1);
  return v;
}

/* The deadline of an optional timeout argument, in seconds (a numeric
** string too, as for any number argument); < 0, none: nil waits for
** ever. */
double lppe_deadline(lua_State *L, int arg) {
  double secs;
  if (lua_isnoneornil(L, arg)) return -1;
  luaL_checknumber(L, arg);
  lua_pushnumber(L, lua_tonumber(L, arg));
  secs = seconds(L, -1, 0);
  lua_pop(L, 1);
  luaL_argcheck(L, secs >= 0, arg, "timeout must be >= 0");
  return ppe_deadline(secs);
}

void lppe_checkcallable(lua_State *L, int arg) {
  int t = lua_type(L, arg);
  if (t != LUA_TSTRING && t != LUA_TFUNCTION)
    luaL_typeerror(L, arg, "function or function name");
}

/* }====================================================== */


/*
** {======================================================
** Buffers owned by Lua, so an error never leaks one
** =======================================================
*/

ppe_buf *lppe_newbuf(lua_State *L) {
  ppe_buf *b = (ppe_buf *)lua_newuserdatauv(L, sizeof(ppe_buf), 0);
  b->p = NULL;
  b->len = b->cap = 0;
  b->shared = 0;
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

void lppe_open_buffers(lua_State *L, int mts) {
  lppe_newmeta(L, PPE_BUFBOX, buf_meta, mts);
  lua_pop(L, 1);
}

static const char scratch_key = 's';

/* A buffer for a request (built to be sent: see buf.h's 'shared'),
** pushed: one kept in the registry and reused, unless it is in use
** already (a finalizer run by an allocation during an encode may submit
** too), then a new one. */
static ppe_buf *scratch(lua_State *L) {
  ppe_buf *b;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &scratch_key) == LUA_TUSERDATA) {
    b = (ppe_buf *)lua_touserdata(L, -1);
    if (b->len == 0) return b;
    lua_pop(L, 1);
    (b = lppe_newbuf(L))->shared = 1;
    return b;
  }
  lua_pop(L, 1);
  (b = lppe_newbuf(L))->shared = 1;
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &scratch_key);
  return b;
}

/* Encodes values first..first+n-1 as a request, into a buffer Lua owns,
** whose box is pushed. The caller hands the buffer to the engine
** (ppe_request_task), which empties it for reuse. Raises
** SerializationError (the buffer emptied too). */
ppe_buf *lppe_request(lua_State *L, int first, int n, const char *label,
                      int base) {
  char err[PPE_ERRSZ];
  ppe_buf *b = scratch(L);
  if (ppe_request_begin(b) != 0) luaL_error(L, "not enough memory");
  if (ppe_encode(L, b, first, n, label, base, err) != 0) {
    /* A large block goes back: kept, it would be in the arena, which a
    ** child of fork could not write. */
    if (b->cap >= PPE_BIG_MIN) ppe_buf_free(b);
    b->len = 0;
    lppe_raise(L, "SerializationError", err);
  }
  return b;
}

/* }====================================================== */
