/* host.c - a C program that embeds Lua and ppe.
**
** It registers its own C function host.scale(x) in its state and, through
** ppe_set_worker_init, in every worker's state, so tasks can call it by
** name. A second thread churns malloc and a mutex the whole time, while
** workers are replaced every two tasks: the replacements are forked by
** ppe's single-threaded fork server, so no lock held by the host's threads
** can deadlock them. */
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

/* The host's library, as a global and as a loaded module. */
static void open_host(lua_State *L) {
  luaL_newlib(L, host_funcs);
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
  "      :format(ex:stats().restarts))\n";

int main(void) {
  lua_State *L = luaL_newstate();
  pthread_t th;
  int status;
  if (L == NULL) return 1;
  luaL_openlibs(L);
  open_host(L);
  ppe_set_worker_init(open_host);
  luaL_requiref(L, "ppe", luaopen_ppe, 0);
  lua_pop(L, 1);
  if (pthread_create(&th, NULL, churn, NULL) != 0) return 1;
  status = luaL_dostring(L, script);
  if (status != LUA_OK) fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
  stop = 1;
  pthread_join(th, NULL);
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
