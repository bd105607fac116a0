/* lua_ppe.c - luaopen_ppe and the module table. The classes are in
** src/lua/ (lppe.h), the engine they call in src/ (engine.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/lua/lppe.h"

#include "ppe.h"
#include "src/hostalloc.h"
#include "src/loaded.h"
#include "src/mac.h"
#include "src/serve.h"
#include "src/vm.h"
#include "src/wire.h"
#include "src/worker.h"

/*
** {======================================================
** Module functions
** =======================================================
*/

static int l_encode(lua_State *L) {
  char err[PPE_ERRSZ];
  int n = lua_gettop(L);
  ppe_buf *b = lppe_newbuf(L);
  if (ppe_encode(L, b, 1, n, "argument", 1, err) != 0)
    return lppe_raise(L, "SerializationError", err);
  lua_pushlstring(L, b->p, b->len);
  ppe_buf_free(b);
  return 1;
}

static const char *const decode_options[] = { "functions", NULL };

/* The decoder flags of ppe.decode's options table at arg: { functions =
** false } takes plain data only, for bytes from anyone but ourselves. */
static int decodeflags(lua_State *L, int arg) {
  lppe_options(L, arg, decode_options, "decode");
  return lppe_optbool(L, arg, "functions", 1) ? 0 : PPE_DEC_DATA;
}

static int l_decode(lua_State *L) {
  char err[PPE_ERRSZ];
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int n = ppe_decode(L, s, len, decodeflags(L, 2), err);
  if (n < 0) return lppe_raise(L, "SerializationError", err);
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

/* ppe.serve(): this process becomes a worker of the executor at the other
** end of its stdin and stdout, until that channel closes. */
static int l_serve(lua_State *L) {
  char why[200];
  if (ppe_serve(L, why, sizeof(why)) != 0)
    return luaL_error(L, "ppe.serve: %s", why);
  return 0;
}

/* require "ppe.serve" (lua -lppe.serve, a command with nothing for a
** remote shell to mangle): serves, then ends the process once the
** channel has closed. */
PPE_API int luaopen_ppe_serve(lua_State *L) {
  luaopen_ppe(L);
  l_serve(L);
  fflush(stdout);
  exit(0);
}

static const luaL_Reg ppe_funcs[] = {
  {"serve", l_serve},
  {"executor", lppe_executor},
  {"encode", l_encode},
  {"decode", l_decode},
  {"cpu_count", l_cpu_count},
  {"worker_id", l_worker_id},
  {"wait", lppe_wait},
  {"as_completed", lppe_as_completed},
  {NULL, NULL}
};

/* }====================================================== */


/* PPE_HOST_ALLOC: 0 leaves the caller's allocator as the host made it; 1,
** the default, lets ppe serve the state's large blocks (hostalloc.c). */
static int hostallocenv(lua_State *L) {
  const char *s = getenv("PPE_HOST_ALLOC");
  if (s == NULL) return 1;
  if (strcmp(s, "0") != 0 && strcmp(s, "1") != 0)
    luaL_error(L, "environment variable PPE_HOST_ALLOC must be 0 or 1, "
               "got '%s'", s);
  return s[0] == '1';
}

PPE_API int luaopen_ppe(lua_State *L) {
  int i, mts, host = hostallocenv(L), r = ppe_mac_init();
  if (r < 0)
    return luaL_error(L, "ppe: cannot draw a random key (%s)", strerror(-r));
  ppe_stay_loaded();
  ppe_luajit();  /* told now, before the zygote forks with the answer */
  if (host) ppe_host_alloc(L);  /* large results land in reused mappings */
  /* The upvalues, in their order (lppe.h). */
  luaL_newmetatable(L, PPE_FUTURE);
  mts = lua_gettop(L);
  luaL_newmetatable(L, PPE_EXECUTOR);
  lppe_push_taskrefs(L);
  lppe_open_futures(L, mts);
  lppe_open_buffers(L, mts);
  lppe_open_executors(L, mts);
  lppe_open_maps(L, mts);
  lppe_open_waits(L, mts);
  lua_createtable(L, 0, sizeof(ppe_funcs) / sizeof(ppe_funcs[0]) - 1);
  lppe_setfuncs(L, ppe_funcs, mts);
  lppe_open_errors(L, mts);
  lua_pushliteral(L, PPE_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushinteger(L, PPE_MAXDEPTH);
  lua_setfield(L, -2, "MAX_DEPTH");
  for (i = 0; lppe_return_when[i]; i++) {
    lua_pushstring(L, lppe_return_when[i]);
    lua_setfield(L, -2, lppe_return_when[i]);
  }
  return 1;
}
