/* runner.c - the worker's Lua side (see runner.h). */
#include <stdio.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "compat.h"

#include "ppe.h"
#include "bigblock.h"
#include "chunk.h"
#include "runner.h"
#include "transport.h"
#include "vm.h"
#include "wire.h"

static ppe_hook host_init = NULL;
static void *host_ud = NULL;

PPE_API void ppe_set_worker_init(void (*init)(lua_State *L, void *ud),
                                 void *ud) {
  host_init = init;
  host_ud = init != NULL ? ud : NULL;
}

/* Registry keys. */
static const char tb_key = 't';      /* traceback of the last error */
static const char names_key = 'n';   /* dotted name -> resolved function */
static const char sethook_key = 'h'; /* debug.sethook, as the state began */


/*
** {======================================================
** The fresh state
** =======================================================
*/

/* package.path and cpath from light userdata 1 and 2, each unless NULL. */
static int set_paths(lua_State *L) {
  const char *path = (const char *)lua_touserdata(L, 1);
  const char *cpath = (const char *)lua_touserdata(L, 2);
  lua_getglobal(L, "package");
  if (path != NULL) {
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
  }
  if (cpath != NULL) {
    lua_pushstring(L, cpath);
    lua_setfield(L, -2, "cpath");
  }
  return 0;
}

static int build_state(lua_State *L) {
  luaL_openlibs(L);
  lua_getglobal(L, "debug");  /* for unhook, whatever a task does to it */
  lua_getfield(L, -1, "sethook");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &sethook_key);
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  /* A host that linked ppe statically has no ppe.so for 'require' to find:
  ** the worker's state gets it from here. */
  lua_getfield(L, -1, "preload");  /* package.preload, on every Lua */
  lua_pushcfunction(L, luaopen_ppe);
  lua_setfield(L, -2, "ppe");
  return 0;
}

/* The worker's allocator: big blocks (large strings, mostly) come from
** ppe's mappings, reused, so a large message does not fault its pages in
** afresh each time; small ones from malloc, as luaL_newstate's do. */
static void *worker_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud;
  if (p == NULL) osize = 0;  /* osize then tells the type, not a size */
  if (nsize == 0) {
    ppe_big_free(p, osize);
    return NULL;
  }
  return ppe_big_resize(p, osize, nsize);
}

lua_State *ppe_runner_state(void) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return NULL;
  /* Everything allocated so far is small, so malloc'd: worker_alloc frees
  ** it as luaL_newstate's allocator would. Not LuaJIT's: its allocator is
  ** its own (the same build may run on either VM). */
  if (!ppe_luajit()) lua_setallocf(L, worker_alloc, NULL);
  lua_pushcfunction(L, build_state);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}

int ppe_runner_paths(lua_State *L, const char *path, const char *cpath) {
  int r;
  lua_pushcfunction(L, set_paths);
  lua_pushlightuserdata(L, (void *)path);
  lua_pushlightuserdata(L, (void *)cpath);
  r = lua_pcall(L, 2, 0, 0);
  if (r != LUA_OK) lua_pop(L, 1);
  return r == LUA_OK ? 0 : -1;
}

ppe_hook ppe_runner_host_hook(void **ud) {
  *ud = host_ud;
  return host_init;
}

static int call_hook(lua_State *L) {
  host_init(L, host_ud);
  return 0;
}

/* The text of the error on the top, whatever it is: a hook may raise a
** table, or a value whose __tostring raises. */
static int error_text(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

int ppe_runner_hook(lua_State *L, char *why, size_t n) {
  const char *s;
  if (host_init == NULL) return 0;
  lua_pushcfunction(L, call_hook);
  if (lua_pcall(L, 0, 0, 0) == LUA_OK) return 0;
  lua_pushcfunction(L, error_text);
  lua_insert(L, -2);
  s = lua_pcall(L, 1, 1, 0) == LUA_OK ? lua_tostring(L, -1) : NULL;
  snprintf(why, n, "%s", s != NULL ? s : "(an error value without text)");
  lua_pop(L, 1);
  return -1;
}

/* }====================================================== */


/*
** {======================================================
** Resolving a dotted name
** =======================================================
*/

static int callable(lua_State *L, int idx) {
  if (lua_isfunction(L, idx)) return 1;
  if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

/* Walks fields name[from..] (dot-separated) from the value on the top,
** replacing it with the result, or nil where a step is not a table. */
static void walk(lua_State *L, const char *name, size_t from, size_t len) {
  while (from < len && !lua_isnil(L, -1)) {
    const char *dot = memchr(name + from, '.', len - from);
    size_t end = dot ? (size_t)(dot - name) : len;
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_pushnil(L);
      return;
    }
    lua_pushlstring(L, name + from, end - from);
    lua_gettable(L, -2);
    lua_remove(L, -2);
    from = end + 1;
  }
}

/* Resolves the name at index 1: the global path if callable, else the
** longest prefix 'require' loads. Leaves the function; raises if none. */
static int resolve(lua_State *L) {
  size_t len, cut;
  const char *name = luaL_checklstring(L, 1, &len);
  lua_settop(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &names_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &names_key);
  }
  lua_pushvalue(L, 1);
  if (lua_rawget(L, 2) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  lua_pushglobaltable(L);
  walk(L, name, 0, len);
  if (callable(L, -1)) goto found;
  lua_pop(L, 1);
  lua_pushnil(L);  /* the last 'require' error, to explain a failure */
  for (cut = len; cut > 0; cut--) {
    if (name[cut - 1] != '.') continue;
    lua_getglobal(L, "require");
    lua_pushlstring(L, name, cut - 1);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      lua_replace(L, 3);
      continue;
    }
    walk(L, name, cut, len);
    if (callable(L, -1)) goto found;
    lua_pop(L, 1);
  }
  return luaL_error(L, "function '%s' not found: no callable global of "
                    "that path, nor a module prefix of it to require%s%s",
                    name, lua_isstring(L, 3) ? "\n" : "",
                    lua_isstring(L, 3) ? lua_tostring(L, 3) : "");
found:
  /* Names resolve once per worker: later tasks skip the walk. */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -2);
  lua_rawset(L, 2);
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** Running a task
** =======================================================
*/

/* A debug hook a task sets (debug.sethook) lasts until the task returns:
** the worker's own code, which calls C functions and encodes the reply,
** must not run under it (a hook that raises there would fail every later
** task), and the next task starts as if it had never been set. */
static void unhook(lua_State *L) {
  if (lua_gethook(L) == NULL) return;
  lua_sethook(L, NULL, 0, 0);
  /* The debug library's record of it too (Lua 5.1 and 5.2, LuaJIT, still
  ** show it to debug.gethook): debug.sethook(), with no hook left to run
  ** at its call. Results may fill the stack: the record then stays, and
  ** the hook is gone all the same. */
  if (!lua_checkstack(L, 2)) return;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &sethook_key);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) lua_pop(L, 1);
}

/* Keeps the worker's traceback apart from the error value, so the value
** itself travels unchanged. */
static int msgh(lua_State *L) {
  luaL_traceback(L, L, NULL, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tb_key);
  return 1;
}

static int call_tostring(lua_State *L) {
  luaL_callmeta(L, 1, "__tostring");
  return 1;
}

/* Pushes a readable message for any error value, as lua.c makes one. A
** __tostring that raises or returns no string is not believed. */
static void error_message(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    lua_tolstring(L, -1, NULL);  /* converts the copy: the value travels */
    return;
  }
  if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushcfunction(L, call_tostring);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
      return;
    lua_pop(L, 1);
  }
  lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
}

/* Calls the user's function with nargs arguments under the message
** handler at 'base', as lua_pcall does, then removes any hook it set. A
** failure that did not go through the handler (out of memory, an error
** in the handler) has no traceback, rather than an earlier task's. */
static int call_user(lua_State *L, int nargs, int base) {
  int status;
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tb_key);
  status = lua_pcall(L, nargs, LUA_MULTRET, base);
  unhook(L);
  return status;
}

typedef struct Run {
  int type;
  unsigned long long id;
  const char *p;
  size_t len;
  ppe_buf *out;
  int reply;
} Run;

static void reply_start(lua_State *L, Run *r) {
  ppe_frame f;
  memset(&f, 0, sizeof(f));
  r->out->len = 0;
  if (ppe_buf_add(r->out, &f, sizeof(f)) != 0)
    luaL_error(L, "not enough memory");
}

static void reply_serr(lua_State *L, Run *r, const char *msg);

/* Sends the failure of the call as (message, traceback, value). An error
** value that cannot be sent fails the future with SerializationError
** instead, whose message still tells what the task raised. */
static void reply_error(lua_State *L, Run *r, int err) {
  char ebuf[PPE_ERRSZ];
  int top = lua_gettop(L);
  error_message(L, err);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &tb_key);
  lua_pushvalue(L, err);
  r->reply = PPE_F_ERR;
  /* Numbered from -3: the value is the only one that can fail, and is
  ** named "error value" alone. */
  if (ppe_encode(L, r->out, top + 1, 3, "error value", -3, ebuf) != 0) {
    lua_pushfstring(L, "%s (the task raised %s)", ebuf,
                    lua_tostring(L, top + 1));
    reply_serr(L, r, lua_tostring(L, -1));
  }
}

static void reply_serr(lua_State *L, Run *r, const char *msg) {
  char ebuf[PPE_ERRSZ];
  reply_start(L, r);
  lua_pushstring(L, msg);
  r->reply = PPE_F_SERR;
  if (ppe_encode(L, r->out, lua_gettop(L), 1, "message", 1, ebuf) != 0)
    luaL_error(L, "%s", ebuf);
}

/* Pushes the arguments of one map item: the item, or with 'spread' the
** elements of a table item (1..n, or 1..#item). Returns how many. */
static int push_item(lua_State *L, int item, int spread) {
  lua_Integer i, n;
  if (!spread || !lua_istable(L, item)) {
    lua_pushvalue(L, item);
    return 1;
  }
  if (lua_getfield(L, item, "n") == LUA_TNUMBER) n = lua_tointeger(L, -1);
  else n = (lua_Integer)lua_rawlen(L, item);
  lua_pop(L, 1);
  if (n < 0 || n > 100000 || !lua_checkstack(L, (int)n + 8))
    luaL_error(L, "map item with too many values to spread");
  for (i = 1; i <= n; i++) lua_rawgeti(L, item, i);
  return (int)n;
}

/* Runs fn on every item of a chunk, leaving on the stack per item what
** chunk.h says: one item's error does not lose the others. */
static void run_chunk(lua_State *L, int base, int nitems, int spread) {
  int fn = base + 1, first = base + 3, i;
  for (i = 0; i < nitems; i++) {
    int slot, nargs;
    luaL_checkstack(L, 16, "map chunk too large");
    lua_pushinteger(L, 0);  /* the count, set below */
    slot = lua_gettop(L);
    lua_pushvalue(L, fn);
    nargs = push_item(L, first + i, spread);
    if (call_user(L, nargs, base) == LUA_OK) ppe_chunk_ok(L, slot);
    else {
      int err = lua_gettop(L);
      ppe_chunk_failed(L, slot);
      error_message(L, err);
      lua_rawgetp(L, LUA_REGISTRYINDEX, &tb_key);
      /* Only plain values travel as an item's error value here: one that
      ** cannot be sent must not fail the whole chunk. */
      if (lua_type(L, err) <= LUA_TSTRING &&
          lua_type(L, err) != LUA_TLIGHTUSERDATA)
        lua_pushvalue(L, err);
      else lua_pushnil(L);
      lua_remove(L, err);
    }
  }
}

/* The protected body of a run: decode, resolve, call, encode. */
static int run(lua_State *L) {
  Run *r = (Run *)lua_touserdata(L, 1);
  char ebuf[PPE_ERRSZ];
  int n, base, fn;
  lua_settop(L, 0);
  lua_pushcfunction(L, msgh);
  base = lua_gettop(L);
  reply_start(L, r);
  n = ppe_decode(L, r->p, r->len, PPE_DEC_FNCACHE | PPE_DEC_REQUIRE, ebuf);
  if (n < 1) {
    reply_serr(L, r, n < 0 ? ebuf : "request without a function");
    return 0;
  }
  fn = base + 1;
  if (lua_type(L, fn) == LUA_TSTRING) {
    lua_pushcfunction(L, resolve);
    lua_pushvalue(L, fn);
    if (lua_pcall(L, 1, 1, base) != LUA_OK) {
      reply_error(L, r, lua_gettop(L));
      return 0;
    }
    lua_replace(L, fn);
  }
  if (r->type == PPE_F_CHUNK) {
    int spread = lua_toboolean(L, base + 2);
    int items = n - 2, first = lua_gettop(L) + 1;
    if (items < 0) {
      reply_serr(L, r, "malformed map request");
      return 0;
    }
    run_chunk(L, base, items, spread);
    if (items > 0) ppe_chunk_pack(L, first, items);
    r->reply = PPE_F_OK;
    if (ppe_encode(L, r->out, first, lua_gettop(L) - first + 1, "result", 1,
                   ebuf) != 0)
      reply_serr(L, r, ebuf);
    return 0;
  }
  if (call_user(L, n - 1, base) != LUA_OK) {
    reply_error(L, r, lua_gettop(L));
    return 0;
  }
  n = lua_gettop(L) - base;
  r->reply = PPE_F_OK;
  if (r->type == PPE_F_INIT) n = 0;  /* an initializer's results are moot */
  if (ppe_encode(L, r->out, base + 1, n, "result", 1, ebuf) != 0)
    reply_serr(L, r, ebuf);
  return 0;
}

/* The reply of a run that failed in the worker's own code: the message
** of the error value at 2. */
static int reply_failure(lua_State *L) {
  Run *r = (Run *)lua_touserdata(L, 1);
  error_message(L, 2);
  reply_serr(L, r, lua_tostring(L, -1));
  return 0;
}

int ppe_runner_run(lua_State *L, int type, unsigned long long id,
                   const char *p, size_t len, ppe_buf *out) {
  Run r;
  ppe_frame f;
  int status;
  r.type = type; r.id = id; r.p = p; r.len = len; r.out = out;
  r.reply = -1;
  unhook(L);  /* one the host's worker-init hook set, say */
  lua_pushcfunction(L, run);
  lua_pushlightuserdata(L, &r);
  status = lua_pcall(L, 1, 0, 0);
  if (status != LUA_OK && status != LUA_ERRMEM) {
    /* Not memory (a map item with too many values to spread, say): the
    ** error's own message goes back. */
    lua_pushcfunction(L, reply_failure);
    lua_pushlightuserdata(L, &r);
    lua_pushvalue(L, -3);
    status = lua_pcall(L, 2, 0, 0);
  }
  unhook(L);
  if (status != LUA_OK) {
    /* Out of memory. An empty SERR reply still tells the parent, and
    ** building it needs no Lua. */
    out->len = 0;
    memset(&f, 0, sizeof(f));
    if (ppe_buf_add(out, &f, sizeof(f)) != 0) return -1;
    r.reply = PPE_F_SERR;
  }
  lua_settop(L, 0);
  if (type == PPE_F_INIT && r.reply != PPE_F_OK) r.reply = PPE_F_INITERR;
  memset(&f, 0, sizeof(f));
  f.type = (uint32_t)r.reply;
  f.id = id;
  f.len = out->len - sizeof(f);
  memcpy(out->p, &f, sizeof(f));
  return r.reply;
}

/* }====================================================== */
