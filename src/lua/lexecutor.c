/* lexecutor.c - ppe.executor and its methods: options read once, then
** each method handed to the pool (pool.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/lua/lppe.h"
#include "src/hello.h"

Executor *lppe_toexecutor(lua_State *L, int arg) {
  return (Executor *)lppe_checkclass(L, arg, EXECUTOR_MT, PPE_EXECUTOR);
}

/* An executor whose workers still exist: what signals and fileno need. */
static Executor *checkexecutor(lua_State *L) {
  Executor *e = lppe_toexecutor(L, 1);
  if (e->pool == NULL) luaL_error(L, "attempt to use a closed executor");
  return e;
}

/* Pushes stats().groups: a row per group, in the order of 'workers'. */
static void push_groups(lua_State *L, ppe_pool *p) {
  int i, n = ppe_pool_ngroups(p);
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    ppe_group_stats gs;
    ppe_pool_group_stats(p, i, &gs);
    lua_createtable(L, 0, 7);
    lua_pushstring(L, gs.name); lua_setfield(L, -2, "name");
    lua_pushinteger(L, gs.workers); lua_setfield(L, -2, "workers");
    lua_pushinteger(L, gs.running); lua_setfield(L, -2, "running");
    lua_pushinteger(L, gs.completed); lua_setfield(L, -2, "completed");
    lua_pushinteger(L, gs.failed); lua_setfield(L, -2, "failed");
    lua_pushinteger(L, gs.restarts); lua_setfield(L, -2, "restarts");
    lua_pushboolean(L, gs.given_up); lua_setfield(L, -2, "given_up");
    lua_rawseti(L, -2, i + 1);
  }
}

/* Pushes stats().per_worker: a row per worker, by its id. */
static void push_workers(lua_State *L, ppe_pool *p) {
  int i, n = ppe_pool_nslots(p);
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    ppe_worker_stats ws;
    ppe_pool_worker_stats(p, i, &ws);
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, i + 1); lua_setfield(L, -2, "id");
    if (ws.pid > 0) {
      lua_pushinteger(L, ws.pid);
      lua_setfield(L, -2, "pid");
    }
    if (ws.far) {
      lua_pushstring(L, ws.group);
      lua_setfield(L, -2, "host");
    }
    lua_pushstring(L, ws.state); lua_setfield(L, -2, "state");
    lua_pushinteger(L, ws.done); lua_setfield(L, -2, "done");
    if (ws.age > 0) {
      lua_pushnumber(L, ws.age);
      lua_setfield(L, -2, "age");
    }
    lua_rawseti(L, -2, i + 1);
  }
}

/* Waits for all work, reaps the workers and releases every resource; the
** figures stay, for stats() afterwards (the groups' in user value 1 of
** the executor at 1). */
static void release(lua_State *L, Executor *e) {
  if (e->pool == NULL) return;
  e->shut = 1;
  ppe_pool_shutdown(e->pool, 1, 0, -1);
  ppe_pool_stats(e->pool, &e->last);
  push_groups(L, e->pool);
  lua_setiuservalue(L, 1, 1);
  ppe_pool_free(e->pool);
  e->pool = NULL;
}

/* Submits the request in b (lppe_request) as a task of 'kind', of
** 'items' items (a map's chunk), and pushes its future, which holds it;
** 'what' names the call for the error after a shutdown. */
ppe_task *lppe_submit(lua_State *L, Executor *e, ppe_buf *b, int kind,
                      int items, const char *what) {
  ppe_task *t = ppe_request_task(b, kind, items);
  int r;
  if (t == NULL) luaL_error(L, "not enough memory");
  if ((r = ppe_pool_submit(e->pool, t)) == -EPIPE) {
    lppe_raise_outcome(L, t);  /* broken: why, as Python's pool raises */
  }
  if (r < 0) {
    ppe_release(t, 0);
    lua_pushfstring(L, "cannot %s after shutdown", what);
    lppe_raise(L, "ShutdownError", lua_tostring(L, -1));
  }
  lppe_newfuture(L, t, kind == PPE_REQ_CHUNK);
  return t;
}

static int e_submit(lua_State *L) {
  Executor *e = lppe_toexecutor(L, 1);
  ppe_buf *b;
  lppe_checkcallable(L, 2);
  if (e->shut || e->pool == NULL)
    return lppe_raise(L, "ShutdownError", "cannot submit after shutdown");
  b = lppe_request(L, 2, lua_gettop(L) - 1, "argument", 1);
  lppe_submit(L, e, b, PPE_REQ_TASK, 1, "submit");
  lppe_run_callbacks(L);
  return 1;
}

static const char *const shutdown_options[] = {
  "wait", "cancel_futures", "timeout", NULL
};

/* true if all work finished (in time, with a timeout); false if some was
** cut short. */
static int e_shutdown(lua_State *L) {
  Executor *e = lppe_toexecutor(L, 1);
  int wait, cancel, ok = 1;
  double timeout;
  lppe_options(L, 2, shutdown_options, "shutdown");
  wait = lppe_optbool(L, 2, "wait", 1);
  cancel = lppe_optbool(L, 2, "cancel_futures", 0);
  timeout = lppe_optseconds(L, 2, "timeout", 0, -1);
  e->shut = 1;
  if (e->pool != NULL) {  /* (idempotent) */
    ok = ppe_pool_shutdown(e->pool, wait, cancel, wait ? timeout : -1);
    if (wait) release(L, e);
  }
  lua_pushboolean(L, ok);
  return 1;
}

/* close, __close and __gc: finish pending work, reap every worker, and
** release all the executor holds. Copes with a closed executor. */
static int e_close(lua_State *L) {
  release(L, lppe_toexecutor(L, 1));
  return 0;
}

static int e_signal(lua_State *L, int sig) {
  Executor *e = lppe_toexecutor(L, 1);
  e->shut = 1;
  if (e->pool == NULL) return 0;  /* nothing left to signal */
  ppe_pool_signal(e->pool, sig);
  release(L, e);
  return 0;
}

static int e_terminate(lua_State *L) { return e_signal(L, SIGTERM); }
static int e_kill(lua_State *L) { return e_signal(L, SIGKILL); }

/* A group size given to resize, the value at idx ('what' names it). */
static int checksize(lua_State *L, int idx, const char *what) {
  int isint;
  lua_Integer n = lua_tointegerx(L, idx, &isint);
  if (!isint || lua_type(L, idx) != LUA_TNUMBER || n < 0 || n > MAX_WORKERS)
    luaL_error(L, "resize: %s must be an integer from 0 to %d, got %s", what,
               MAX_WORKERS, luaL_tolstring(L, idx, NULL));
  return (int)n;
}

/* The group named by the string at idx. */
static int group_named(lua_State *L, ppe_pool *p, int idx) {
  int g, ng = ppe_pool_ngroups(p);
  ppe_group_stats gs;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "resize: a group is named by a string, got %s",
               luaL_typename(L, idx));
  for (g = 0; g < ng; g++) {
    ppe_pool_group_stats(p, g, &gs);
    if (strcmp(gs.name, lua_tostring(L, idx)) == 0) return g;
  }
  return luaL_error(L, "resize: this executor has no group named '%s'",
                    lua_tostring(L, idx));
}

/* ex:resize(n), of an executor of one group, or ex:resize{ [name] = n }.
** Every size is checked before any is set. */
static int e_resize(lua_State *L) {
  Executor *e = lppe_toexecutor(L, 1);
  int g, ng, total = 0, size[MAX_WORKERS];  /* (a group has a worker) */
  if (e->shut || e->pool == NULL)
    return lppe_raise(L, "ShutdownError", "cannot resize after shutdown");
  ng = ppe_pool_ngroups(e->pool);
  for (g = 0; g < ng; g++) size[g] = -1;
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_settop(L, 2);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      g = group_named(L, e->pool, 3);
      lua_pushfstring(L, "the size of '%s'", lua_tostring(L, 3));
      size[g] = checksize(L, 4, lua_tostring(L, -1));
      lua_pop(L, 2);
    }
  }
  else if (ng > 1)
    return luaL_error(L, "resize: this executor has %d groups; give their "
                      "sizes by name, as resize{ [name] = n }", ng);
  else size[0] = checksize(L, 2, "the size");
  for (g = 0; g < ng; g++) {
    ppe_group_stats gs;
    ppe_pool_group_stats(e->pool, g, &gs);
    total += size[g] >= 0 ? size[g] : (int)gs.size;
  }
  if (total > MAX_WORKERS)
    return luaL_error(L, "resize: %d workers in all, more than %d", total,
                      MAX_WORKERS);
  for (g = 0; g < ng; g++)
    if (size[g] >= 0) ppe_pool_resize(e->pool, g, size[g]);
  return 0;
}

static int e_stats(lua_State *L) {
  Executor *e = lppe_toexecutor(L, 1);
  ppe_stats st = e->last;
  if (e->pool != NULL) ppe_pool_stats(e->pool, &st);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, st.workers); lua_setfield(L, -2, "workers");
  lua_pushinteger(L, st.pending); lua_setfield(L, -2, "pending");
  lua_pushinteger(L, st.running); lua_setfield(L, -2, "running");
  lua_pushinteger(L, st.completed); lua_setfield(L, -2, "completed");
  lua_pushinteger(L, st.failed); lua_setfield(L, -2, "failed");
  lua_pushinteger(L, st.restarts); lua_setfield(L, -2, "restarts");
  if (e->pool != NULL) push_groups(L, e->pool);
  else if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_setfield(L, -2, "groups");
  if (e->pool != NULL) push_workers(L, e->pool);
  else lua_newtable(L);  /* no worker is left */
  lua_setfield(L, -2, "per_worker");
  return 1;
}

static int e_tostring(lua_State *L) {
  Executor *e = lppe_toexecutor(L, 1);
  lua_pushfstring(L, "ppe.executor: %p%s", (void *)e,
                  e->pool == NULL ? " (closed)"
                  : e->shut ? " (shut down)" : "");
  return 1;
}

/* Runs the callbacks of what completed, and quiets fileno's descriptor. */
static int e_poll(lua_State *L) {
  Executor *e = lppe_toexecutor(L, 1);
  if (e->pool != NULL) ppe_pool_drain_notify(e->pool);
  lua_pushinteger(L, lppe_run_callbacks(L));
  return 1;
}

static int e_fileno(lua_State *L) {
  Executor *e = checkexecutor(L);
  lua_pushinteger(L, ppe_pool_fileno(e->pool));
  return 1;
}


/*
** {======================================================
** ppe.executor: its options
** =======================================================
*/

static const char *const executor_options[] = {
  "max_workers", "initializer", "initargs", "max_tasks_per_child",
  "task_timeout", "workers", "host_failures", "idle_timeout", "retries",
  "max_memory_per_child", NULL
};

static const char *const group_options[] = {
  "n", "launcher", "command", "name", "start_timeout", NULL
};

/* The strings of the sequence field 'key' of the group at idx, pushed,
** appended to argv from *n on (room permitting); how many. */
static int strings(lua_State *L, int idx, const char *key, int gi) {
  int i, len = 0, top = lua_gettop(L);
  if (lua_getfield(L, idx, key) == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1) || (len = (int)luaL_len(L, -1)) < 1)
    lppe_option_error(L, "workers", 0, "workers[%d].%s must be a "
                      "non-empty list of strings (an argv), got %s", gi, key,
                      luaL_typename(L, -1));
  luaL_checkstack(L, len, "argv too long");
  for (i = 1; i <= len; i++)
    if (lua_geti(L, top + 1, i) != LUA_TSTRING)
      lppe_option_error(L, "workers", 0, "workers[%d].%s[%d] must be a "
                        "string, got %s", gi, key, i, luaL_typename(L, -1));
  lua_remove(L, top + 1);
  return len;
}

/* The command of a far worker when its group gives none: this Lua by its
** usual name, loading ppe.serve, in words no remote shell changes (ssh
** hands its command to one). */
static int default_command(lua_State *L) {
#if LUA_VERSION_NUM == 501
  lua_getglobal(L, "jit");
  lua_pushstring(L, lua_istable(L, -1) ? "luajit" : "lua5.1");
  lua_remove(L, -2);
#else
  lua_pushfstring(L, "lua%d.%d", LUA_VERSION_NUM / 100,
                  LUA_VERSION_NUM % 100);
#endif
  lua_pushliteral(L, "-lppe.serve");
  return 2;
}

/* One group, the table at idx (number gi): its options into *go; what its
** strings need kept alive is left in the anchor table at 'anchor'. */
static int read_group(lua_State *L, int idx, int gi, int anchor,
                      ppe_group_opts *go) {
  int nl, nc, i;
  char **argv;
  lua_pushfstring(L, "workers[%d]", gi);
  lppe_checkkeys(L, idx, group_options, lua_tostring(L, -1));
  lua_pop(L, 1);
  go->n = (int)lppe_optint(L, idx, "n", 0, MAX_WORKERS);
  if (go->n == 0)
    lppe_option_error(L, "workers", 0, "workers[%d] needs n, its number of "
                      "workers", gi);
  nl = strings(L, idx, "launcher", gi);
  nc = nl > 0 ? strings(L, idx, "command", gi) : 0;
  if (nl == 0 && lua_getfield(L, idx, "command") != LUA_TNIL)
    lppe_option_error(L, "workers", 0, "workers[%d].command is given "
                      "without a launcher", gi);
  if (nl == 0) lua_pop(L, 1);
  go->start_timeout = lppe_optseconds(L, idx, "start_timeout", 1, 0);
  if (nl == 0 && go->start_timeout > 0)
    lppe_option_error(L, "workers", 0, "workers[%d].start_timeout is given "
                      "without a launcher", gi);
  if (nl > 0 && nc == 0) nc = default_command(L);
  go->argv = NULL;
  if (nl > 0) {
    argv = (char **)lua_newuserdatauv(L, sizeof(char *) * (size_t)(nl + nc
                                      + 1), 0);
    lua_insert(L, -(nl + nc) - 1);
    for (i = 0; i < nl + nc; i++)
      argv[i] = (char *)lua_tostring(L, -(nl + nc) + i);
    argv[nl + nc] = NULL;
    /* Kept alive in the anchor: the argv and its strings. */
    for (i = 0; i <= nl + nc; i++) {
      lua_pushvalue(L, -(nl + nc) - 1 + i);
      lua_rawseti(L, anchor, (lua_Integer)luaL_len(L, anchor) + 1);
    }
    lua_pop(L, nl + nc + 1);
    go->argv = argv;
  }
  if (lua_getfield(L, idx, "name") == LUA_TNIL) {
    lua_pop(L, 1);
    if (nl == 0) lua_pushliteral(L, "local");
    else {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (i = 0; i < nl; i++) {
        if (i > 0) luaL_addchar(&b, ' ');
        luaL_addstring(&b, go->argv[i]);
      }
      luaL_pushresult(&b);
    }
  }
  else if (!lua_isstring(L, -1) || lua_type(L, -1) != LUA_TSTRING)
    lppe_option_error(L, "workers", 0, "workers[%d].name must be a string, "
                      "got %s", gi, luaL_typename(L, -1));
  go->name = lua_tostring(L, -1);
  lua_rawseti(L, anchor, (lua_Integer)luaL_len(L, anchor) + 1);
  return go->n;
}

/* The option workers, a list of groups, into o; what must stay alive
** meanwhile is pushed (one value). Names are unique. */
static void groups_option(lua_State *L, int arg, ppe_pool_opts *o) {
  int i, n = 0, total = 0, anchor, list;
  ppe_group_opts *gs;
  if (lua_getfield(L, arg, "workers") == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return;
  }
  list = lua_gettop(L);
  if (!lua_istable(L, list) || (n = (int)luaL_len(L, list)) < 1)
    lppe_option_error(L, "workers", list, "option 'workers' must be a "
                      "non-empty list of groups, got %s",
                      luaL_typename(L, list));
  if (lua_getfield(L, arg, "max_workers") != LUA_TNIL)
    lppe_option_error(L, "max_workers", list + 1, "options 'workers' and "
                      "'max_workers' are given both: give the number of "
                      "each group's workers as its n");
  lua_pop(L, 1);
  lua_newtable(L);  /* the anchor */
  anchor = lua_gettop(L);
  gs = (ppe_group_opts *)lua_newuserdatauv(L, sizeof(*gs) * (size_t)n, 0);
  lua_rawseti(L, anchor, 1);
  for (i = 1; i <= n; i++) {
    int j;
    if (lua_geti(L, list, i) != LUA_TTABLE)
      lppe_option_error(L, "workers", 0, "workers[%d] must be a table, got "
                        "%s", i, luaL_typename(L, -1));
    total += read_group(L, lua_gettop(L), i, anchor, &gs[i - 1]);
    lua_pop(L, 1);
    if (total > MAX_WORKERS)
      lppe_option_error(L, "workers", list, "option 'workers' asks for %d "
                        "workers, more than %d", total, MAX_WORKERS);
    for (j = 0; j < i - 1; j++)
      if (strcmp(gs[j].name, gs[i - 1].name) == 0)
        lppe_option_error(L, "workers", 0, "workers[%d] and workers[%d] are "
                          "both named '%s'", j + 1, i, gs[j].name);
  }
  o->groups = gs;
  o->ngroups = n;
  lua_replace(L, list);  /* the anchor, in the list's place */
}

/* Sizes past this are no memory a machine has: a mistake. */
#define MAX_SIZE ((uint64_t)1 << 60)

/* A size in bytes: digits, then K, M or G for powers of 1024 ("512M");
** 0 if s is none, or 0 bytes. */
static uint64_t tosize(const char *s) {
  uint64_t v = 0;
  const char *p = s;
  int shift = 0;
  for (; *p >= '0' && *p <= '9'; p++) {
    v = 10 * v + (uint64_t)(*p - '0');
    if (v > MAX_SIZE) return 0;
  }
  if (p == s) return 0;
  if (*p == 'K') shift = 10;
  else if (*p == 'M') shift = 20;
  else if (*p == 'G') shift = 30;
  if (shift > 0) p++;
  if (*p != '\0' || v > MAX_SIZE >> shift) return 0;
  return v << shift;
}

/* max_memory_per_child: bytes, an integer > 0, or a size such as "512M";
** 0 when absent. */
static uint64_t memoption(lua_State *L, int arg) {
  static const char key[] = "max_memory_per_child";
  uint64_t v = 0;
  int t = lua_getfield(L, arg, key), at = lua_gettop(L);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if (t == LUA_TNUMBER) {
    int isint;
    lua_Integer n = lua_tointegerx(L, -1, &isint);
    if (isint && n > 0 && (uint64_t)n <= MAX_SIZE) v = (uint64_t)n;
  }
  else if (t == LUA_TSTRING) v = tosize(lua_tostring(L, -1));
  if (v == 0)
    lppe_option_error(L, key, at, "option '%s' must be a number of bytes "
                      "> 0 or a size such as \"512M\" (K, M, G: powers of "
                      "1024), got %s", key, luaL_tolstring(L, -1, NULL));
  lua_pop(L, 1);
  return v;
}

/* The initializer's request, left on the stack in a Lua-owned buffer; an
** empty buffer when there is none. */
static ppe_buf *initoption(lua_State *L, int arg) {
  int top = lua_gettop(L), n = 0, at = top + 1;  /* where values go */
  if (lua_getfield(L, arg, "initializer") == LUA_TNIL) {
    lua_settop(L, top);
    if (lua_getfield(L, arg, "initargs") != LUA_TNIL)
      lppe_option_error(L, "initargs", at, "option 'initargs' given "
                        "without 'initializer'");
    lua_settop(L, top);
    return lppe_newbuf(L);
  }
  if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TFUNCTION)
    lppe_option_error(L, "initializer", at, "option 'initializer' must be "
                      "a function or function name, got %s",
                      luaL_typename(L, -1));
  if (lua_getfield(L, arg, "initargs") != LUA_TNIL) {
    int i;
    if (!lua_istable(L, -1))
      lppe_option_error(L, "initargs", top + 2, "option 'initargs' must be a "
                        "table, got %s", luaL_typename(L, -1));
    n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n, "too many initargs");
    for (i = 1; i <= n; i++) lua_geti(L, top + 2, i);
  }
  lua_remove(L, top + 2);
  lppe_request(L, top + 1, n + 1, "initargs", 0);
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return (ppe_buf *)lua_touserdata(L, top + 1);
}

static const char *pkgpath(lua_State *L, const char *field) {
  const char *s;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, field);
  s = lua_tostring(L, -1);
  lua_remove(L, -2);  /* the string stays on the stack, so stays alive */
  return s;
}

/* PPE_KEEP_SECONDS: how long freed large buffers keep their pages; -1,
** the default, when it is not set. Read by every new executor, so a
** program may change it between two. */
static double keepenv(lua_State *L) {
  const char *s = getenv("PPE_KEEP_SECONDS");
  char *end;
  double v;
  if (s == NULL) return -1;
  v = strtod(s, &end);
  /* A day at most: the waits that time it are counted in milliseconds. */
  if (end == s || *end != '\0' || !(v >= 0 && v <= 86400))
    luaL_error(L, "environment variable PPE_KEEP_SECONDS must be a number "
               "of seconds from 0 to 86400, got '%s'", s);
  return v;
}

/* The executor could not start: a BrokenExecutor saying why. */
static int startfailed(lua_State *L, ppe_pool_opts *o, int r) {
  char msg[PPE_CAUSE + 64];
  if (r == -ENAMETOOLONG)  /* a mistake of the caller's, not a fault */
    return luaL_error(L, "%s", o->cause);
  if (o->cause[0] != '\0') snprintf(msg, sizeof(msg), "%s", o->cause);
  else snprintf(msg, sizeof(msg), "cannot start the workers: %s",
                strerror(-r));
  lppe_pusherror(L, "BrokenExecutor", msg);
  lua_pushstring(L, strerror(-r));
  lua_setfield(L, -2, "cause");
  return lua_error(L);
}

int lppe_executor(lua_State *L) {
  ppe_pool_opts o;
  ppe_hello hello;
  ppe_buf *init;
  Executor *e;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int r;
  memset(&o, 0, sizeof(o));
  lppe_options(L, 1, executor_options, "executor");
  o.max_workers = (int)lppe_optint(L, 1, "max_workers", ncpu > 0 ? ncpu : 1,
                                   MAX_WORKERS);
  o.max_tasks_per_child = (int)lppe_optint(L, 1, "max_tasks_per_child", 0,
                                           INT32_MAX);
  o.task_timeout = lppe_optseconds(L, 1, "task_timeout", 1, 0);
  o.idle_timeout = lppe_optseconds(L, 1, "idle_timeout", 1, 0);
  o.host_failures = (int)lppe_optint(L, 1, "host_failures", 3, 1000);
  o.retries = (int)lppe_optcount(L, 1, "retries", 0, INT32_MAX);
  o.max_memory = memoption(L, 1);
  o.keep = keepenv(L);
  init = initoption(L, 1);                  /* stack 2 */
  o.path = pkgpath(L, "path");              /* stack 3 */
  o.cpath = pkgpath(L, "cpath");            /* stack 4 */
  groups_option(L, 1, &o);                  /* stack 5 */
  if (ppe_hello_make(L, &hello) != 0) return luaL_error(L, "not enough memory");
  o.hello = &hello;
  e = (Executor *)lua_newuserdatauv(L, sizeof(Executor), 1);
  memset(e, 0, sizeof(*e));
  lppe_setclass(L, EXECUTOR_MT);
  o.init = *init;  /* moved into the pool, whatever happens */
  init->p = NULL;
  init->len = init->cap = 0;
  r = ppe_pool_new(&e->pool, &o);
  return r < 0 ? startfailed(L, &o, r) : 1;
}

/* }====================================================== */


static const luaL_Reg executor_methods[] = {
  {"submit", e_submit},
  {"shutdown", e_shutdown},
  {"close", e_close},
  {"terminate_workers", e_terminate},
  {"kill_workers", e_kill},
  {"stats", e_stats},
  {"resize", e_resize},
  {"map", lppe_map},
  {"poll", e_poll},
  {"fileno", e_fileno},
  {NULL, NULL}
};

static const luaL_Reg executor_meta[] = {
  {"__gc", e_close},
  {"__close", e_close},
  {"__tostring", e_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

void lppe_open_executors(lua_State *L, int mts) {
  lppe_newclass(L, PPE_EXECUTOR, executor_meta, executor_methods, mts);
}
