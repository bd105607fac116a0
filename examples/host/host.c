/* host.c - a C program that embeds Lua and ppe.
**
** It registers its own C function host.scale(x) in its state and, through
** ppe_set_worker_init, in every worker's state, so tasks can call it by
** name. A second thread churns malloc and a mutex the whole time, while
** workers are replaced every two tasks: the replacements are forked by
** ppe's single-threaded fork server, so no lock held by the host's threads
** can deadlock them. Then it installs a newer library: the executors made
** after that have it in their workers. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "ppe.h"

static int host_scale(lua_State *L) {
  lua_pushnumber(L, luaL_checknumber(L, 1) * 2.5);
  return 1;
}

static const luaL_Reg host_funcs[] = {
  {"scale", host_scale},
  {NULL, NULL}
};

/* The host's library, as a global and as a loaded module, with the
** version it is given. */
static void open_host(lua_State *L, int version) {
  luaL_newlib(L, host_funcs);
  lua_pushinteger(L, version);
  lua_setfield(L, -2, "version");
  lua_pushvalue(L, -1);
  lua_setglobal(L, "host");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_insert(L, -2);
  lua_setfield(L, -2, "host");
  lua_pop(L, 1);
}

static pthread_mutex_t churn_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop = 0;

static void *churn(void *arg) {
  (void)arg;
  while (!stop) {
    void *p;
    pthread_mutex_lock(&churn_lock);
    p = malloc(4096);
    free(p);
    pthread_mutex_unlock(&churn_lock);
  }
  return NULL;
}

static const char script[] =
  "local ppe = require 'ppe'\n"
  "local ex <close> = ppe.executor { max_workers = 2,\n"
  "                                  max_tasks_per_child = 2 }\n"
  "local fs = {}\n"
  "for i = 1, 40 do fs[i] = ex:submit('host.scale', i) end\n"
  "for i = 1, 40 do assert(fs[i]:result(10) == i * 2.5) end\n"
  "local by_value = ex:submit(function(x) return host.scale(x) end, 4)\n"
  "assert(by_value:result(10) == 10.0)\n"
  "print(('host.scale ran in workers: 41 tasks, %d workers replaced')\n"
  "      :format(ex:stats().restarts))\n"
  "return ex:submit(function() return host.version end):result(10)\n";

/* The worker-init hook: its user data says which version to open. */
static void open_in_worker(lua_State *L, void *ud) {
  open_host(L, *(const int *)ud);
}

static const int v1 = 1, v2 = 2;

static const char script2[] =
  "local ppe = require 'ppe'\n"
  "local ex <close> = ppe.executor { max_workers = 1 }\n"
  "local v = ex:submit(function() return host.version end):result(10)\n"
  "print(('a newer hook: version %d in the workers'):format(v))\n"
  "return v\n";

/* Runs a script that returns the host library's version its workers saw;
** 0 if that is the one expected. */
static int run(lua_State *L, const char *s, int expected) {
  int ok = luaL_dostring(L, s) == LUA_OK;
  if (!ok) fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
  else if (lua_tointeger(L, -1) != expected) {
    fprintf(stderr, "host: workers saw version %d, not %d\n",
            (int)lua_tointeger(L, -1), expected);
    ok = 0;
  }
  lua_settop(L, 0);
  return ok ? 0 : 1;
}

int main(void) {
  lua_State *L = luaL_newstate();
  pthread_t th;
  int status;
  if (L == NULL) return 1;
  luaL_openlibs(L);
  open_host(L, 1);
  ppe_set_worker_init(open_in_worker, (void *)&v1);
  luaL_requiref(L, "ppe", luaopen_ppe, 0);
  lua_pop(L, 1);
  if (pthread_create(&th, NULL, churn, NULL) != 0) return 1;
  status = run(L, script, 1);
  stop = 1;
  pthread_join(th, NULL);
  ppe_set_worker_init(open_in_worker, (void *)&v2);
  if (status == 0) status = run(L, script2, 2);
  lua_close(L);
  return status;
}
