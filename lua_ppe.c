/* lua_ppe.c - the Lua binding of ppe: arguments, userdata, metatables. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "ppe.h"
#include "src/future.h"
#include "src/mac.h"
#include "src/pool.h"
#include "src/transport.h"
#include "src/wire.h"
#include "src/worker.h"

#define PPE_VERSION "ppe 0.1.0"
#define PPE_ERROR "ppe.Error"
#define PPE_BUFBOX "ppe.Buffer"
#define PPE_EXECUTOR "ppe.Executor"
#define PPE_FUTURE "ppe.Future"

/* Above this many workers, a number is a mistake rather than a wish. */
#define MAX_WORKERS 1024


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
** Requests: a frame header, then the wire message
** =======================================================
*/

/* Encodes values first..first+n-1 after room for a frame header, into a
** buffer Lua owns (left on the stack). Raises SerializationError. */
static ppe_buf *encode_request(lua_State *L, int first, int n,
                               const char *label, int base) {
  char err[PPE_ERRSZ];
  ppe_frame f;
  ppe_buf *b = newbuf(L);
  memset(&f, 0, sizeof(f));
  if (ppe_buf_add(b, &f, sizeof(f)) != 0)
    luaL_error(L, "not enough memory");
  if (ppe_encode(L, b, first, n, label, base, err) != 0)
    raiseerror(L, "SerializationError", err);
  return b;
}

static void checkcallable(lua_State *L, int arg) {
  int t = lua_type(L, arg);
  if (t != LUA_TSTRING && t != LUA_TFUNCTION)
    luaL_typeerror(L, arg, "function or function name");
}

/* }====================================================== */


/*
** {======================================================
** Futures
** =======================================================
*/

/* The future's user value holds what the Lua side made of the outcome:
** [1] = values table (with n) or the error object. */
typedef struct Future {
  ppe_task *t;
} Future;

static Future *checkfuture(lua_State *L, int arg) {
  return (Future *)luaL_checkudata(L, arg, PPE_FUTURE);
}

static void newfuture(lua_State *L, ppe_task *t) {
  Future *f = (Future *)lua_newuserdatauv(L, sizeof(Future), 1);
  f->t = t;
  luaL_setmetatable(L, PPE_FUTURE);
}

static int future_gc(lua_State *L) {
  Future *f = checkfuture(L, 1);
  if (f->t != NULL) {
    ppe_lock();
    ppe_task_unref(f->t);
    ppe_unlock();
    f->t = NULL;
  }
  return 0;
}

static int task_state(ppe_task *t) {
  int s;
  ppe_lock();
  s = t->state;
  ppe_unlock();
  return s;
}

/* Seconds from an optional argument: nil waits for ever. */
static double optdeadline(lua_State *L, int arg) {
  double secs;
  if (lua_isnoneornil(L, arg)) return -1;
  secs = (double)luaL_checknumber(L, arg);
  luaL_argcheck(L, secs >= 0 && secs == secs, arg, "timeout must be >= 0");
  return ppe_now() + secs;
}

/* Waits for t to be final; 1 if it is, 0 if the deadline came first. */
static int await(ppe_task *t, double deadline) {
  int done;
  ppe_lock();
  while (!(done = ppe_task_final(t)))
    if (ppe_wait_completion(deadline) == -ETIMEDOUT) {
      done = ppe_task_final(t);
      break;
    }
  ppe_unlock();
  return done;
}

static const char *signame(int sig) {
  switch (sig) {
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGINT: return "SIGINT";
    default: return "signal";
  }
}

/* Decodes a worker's (message, traceback, value) into a RemoteError. */
static void push_remote(lua_State *L, const ppe_buf *b, pid_t pid) {
  char err[PPE_ERRSZ];
  int top = lua_gettop(L);
  if (ppe_decode(L, b->p, b->len, 0, err) != 3) {
    lua_settop(L, top);
    pusherror(L, "SerializationError", err);
    return;
  }
  pusherror(L, "RemoteError", lua_tostring(L, top + 1));
  lua_pushvalue(L, top + 2);
  lua_setfield(L, -2, "traceback");
  lua_pushvalue(L, top + 3);
  lua_setfield(L, -2, "value");
  lua_pushinteger(L, pid);
  lua_setfield(L, -2, "pid");
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

/* Builds the error object of a failed or cancelled task. */
static void push_failure(lua_State *L, ppe_task *t) {
  char msg[160];
  switch (t->state == PPE_CANCELLED ? -1 : t->err) {
    case -1:
      pusherror(L, "CancelledError", "the future was cancelled");
      break;
    case PPE_E_REMOTE:
      push_remote(L, &t->res, t->pid);
      break;
    case PPE_E_DIED:
      if (t->signal)
        snprintf(msg, sizeof(msg), "worker %d died of signal %d (%s)",
                 (int)t->pid, t->signal, signame(t->signal));
      else
        snprintf(msg, sizeof(msg), "worker %d exited with code %d",
                 (int)t->pid, t->exit_code);
      pusherror(L, "WorkerDied", msg);
      lua_pushinteger(L, t->pid);
      lua_setfield(L, -2, "pid");
      lua_pushinteger(L, t->signal ? t->signal : t->exit_code);
      lua_setfield(L, -2, t->signal ? "signal" : "exit_code");
      break;
    case PPE_E_TIMEOUT:
      snprintf(msg, sizeof(msg), "task ran past task_timeout on worker %d "
               "(killed and replaced)", (int)t->pid);
      pusherror(L, "TaskTimeout", msg);
      lua_pushinteger(L, t->pid);
      lua_setfield(L, -2, "pid");
      break;
    case PPE_E_SERIAL: {
      char err[PPE_ERRSZ];
      int top = lua_gettop(L);
      if (t->res.len == 0)
        pusherror(L, "SerializationError", "the worker ran out of memory");
      else if (ppe_decode(L, t->res.p, t->res.len, 0, err) == 1) {
        pusherror(L, "SerializationError", lua_tostring(L, -1));
        lua_replace(L, top + 1);
      }
      else pusherror(L, "SerializationError", err);
      break;
    }
    default:  /* PPE_E_BROKEN */
      if (t->res_text) {
        lua_pushlstring(L, t->res.p, t->res.len);
        pusherror(L, "BrokenExecutor", lua_tostring(L, -1));
        lua_remove(L, -2);
      }
      else {
        push_remote(L, &t->res, t->pid);
        lua_getfield(L, -1, "message");
        pusherror(L, "BrokenExecutor", "");
        lua_pushfstring(L, "the initializer raised: %s", lua_tostring(L, -2));
        lua_setfield(L, -2, "message");
        lua_pushvalue(L, -3);
        lua_setfield(L, -2, "cause");
        lua_replace(L, -3);
        lua_pop(L, 1);
      }
  }
}

/* Pushes the outcome table of a final task, made once and kept in the
** future's user value: the same values come back on every call. */
static void push_outcome(lua_State *L, int arg, ppe_task *t) {
  if (lua_getiuservalue(L, arg, 1) != LUA_TNIL) return;
  lua_pop(L, 1);
  if (t->state == PPE_FINISHED) {
    char err[PPE_ERRSZ];
    int n, top = lua_gettop(L);
    n = ppe_decode(L, t->res.p, t->res.len, 0, err);
    if (n < 0) pusherror(L, "SerializationError", err);
    else {
      int i;
      lua_createtable(L, n, 1);
      lua_insert(L, top + 1);
      for (i = n; i >= 1; i--) lua_rawseti(L, top + 1, i);
      lua_pushinteger(L, n);
      lua_setfield(L, top + 1, "n");
    }
  }
  else push_failure(L, t);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, arg, 1);
  ppe_lock();
  ppe_buf_free(&t->res);  /* the Lua side holds it now */
  ppe_unlock();
}

/* Raises the error object on the top if the outcome is a failure. */
static int is_failure(lua_State *L) {
  if (!lua_getmetatable(L, -1)) return 0;
  lua_pop(L, 1);
  return 1;
}

static int f_result(lua_State *L) {
  Future *f = checkfuture(L, 1);
  int i, n;
  if (!await(f->t, optdeadline(L, 2)))
    return raiseerror(L, "TimeoutError", "the future is not done in time");
  push_outcome(L, 1, f->t);
  if (is_failure(L)) return lua_error(L);
  n = (int)(lua_getfield(L, -1, "n"), lua_tointeger(L, -1));
  lua_pop(L, 1);
  luaL_checkstack(L, n, "too many results");
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  return n;
}

static int f_exception(lua_State *L) {
  Future *f = checkfuture(L, 1);
  if (!await(f->t, optdeadline(L, 2)))
    return raiseerror(L, "TimeoutError", "the future is not done in time");
  push_outcome(L, 1, f->t);
  if (!is_failure(L)) lua_pushnil(L);
  else if (f->t->state == PPE_CANCELLED) return lua_error(L);
  return 1;
}

static int f_wait(lua_State *L) {
  Future *f = checkfuture(L, 1);
  lua_pushboolean(L, await(f->t, optdeadline(L, 2)));
  return 1;
}

static int f_done(lua_State *L) {
  lua_pushboolean(L, task_state(checkfuture(L, 1)->t) >= PPE_FINISHED);
  return 1;
}

static int f_running(lua_State *L) {
  lua_pushboolean(L, task_state(checkfuture(L, 1)->t) == PPE_RUNNING);
  return 1;
}

static int f_cancelled(lua_State *L) {
  lua_pushboolean(L, task_state(checkfuture(L, 1)->t) == PPE_CANCELLED);
  return 1;
}

static int f_cancel(lua_State *L) {
  Future *f = checkfuture(L, 1);
  int ok;
  ppe_lock();
  ok = ppe_task_cancel(f->t);
  ppe_unlock();
  lua_pushboolean(L, ok);
  return 1;
}

static const char *const state_names[] = {
  "pending", "running", "finished", "failed", "cancelled"
};

static int f_state(lua_State *L) {
  lua_pushstring(L, state_names[task_state(checkfuture(L, 1)->t)]);
  return 1;
}

static int f_tostring(lua_State *L) {
  Future *f = checkfuture(L, 1);
  lua_pushfstring(L, "ppe.future: %p (%s)", (void *)f,
                  state_names[task_state(f->t)]);
  return 1;
}

static const luaL_Reg future_methods[] = {
  {"result", f_result},
  {"exception", f_exception},
  {"wait", f_wait},
  {"done", f_done},
  {"running", f_running},
  {"cancelled", f_cancelled},
  {"cancel", f_cancel},
  {"state", f_state},
  {NULL, NULL}
};

static const luaL_Reg future_meta[] = {
  {"__gc", future_gc},
  {"__tostring", f_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

/* }====================================================== */


/*
** {======================================================
** Executors
** =======================================================
*/

typedef struct Executor {
  ppe_pool *pool;  /* NULL once collected */
  int shut;        /* shutdown was called */
} Executor;

static Executor *checkexecutor(lua_State *L) {
  Executor *e = (Executor *)luaL_checkudata(L, 1, PPE_EXECUTOR);
  if (e->pool == NULL) luaL_error(L, "attempt to use a closed executor");
  return e;
}

static int e_submit(lua_State *L) {
  Executor *e = checkexecutor(L);
  ppe_buf *b;
  ppe_task *t;
  int r;
  checkcallable(L, 2);
  if (e->shut)
    return raiseerror(L, "ShutdownError", "cannot submit after shutdown");
  b = encode_request(L, 2, lua_gettop(L) - 1, "argument", 1);
  t = ppe_task_new(b);
  if (t == NULL) return luaL_error(L, "not enough memory");
  r = ppe_pool_submit(e->pool, t);
  if (r < 0) {
    ppe_lock();
    ppe_task_unref(t);
    ppe_unlock();
    return raiseerror(L, "ShutdownError", "cannot submit after shutdown");
  }
  newfuture(L, t);
  return 1;
}

static int getbool(lua_State *L, int arg, const char *key, int def) {
  int v;
  if (lua_isnoneornil(L, arg)) return def;
  luaL_checktype(L, arg, LUA_TTABLE);
  if (lua_getfield(L, arg, key) == LUA_TNIL) v = def;
  else if (lua_isboolean(L, -1)) v = lua_toboolean(L, -1);
  else
    return luaL_error(L, "option '%s' must be a boolean, got %s", key,
                      luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

static int e_shutdown(lua_State *L) {
  Executor *e = checkexecutor(L);
  int wait = getbool(L, 2, "wait", 1);
  int cancel = getbool(L, 2, "cancel_futures", 0);
  e->shut = 1;
  ppe_pool_shutdown(e->pool, wait, cancel);
  return 0;
}

/* __gc, __close and close: finish pending work, reap every worker. */
static int e_close(lua_State *L) {
  Executor *e = (Executor *)luaL_checkudata(L, 1, PPE_EXECUTOR);
  if (e->pool != NULL) {
    e->shut = 1;
    ppe_pool_shutdown(e->pool, 1, 0);
  }
  return 0;
}

static int e_gc(lua_State *L) {
  Executor *e = (Executor *)luaL_checkudata(L, 1, PPE_EXECUTOR);
  if (e->pool != NULL) {
    ppe_pool_free(e->pool);
    e->pool = NULL;
  }
  return 0;
}

static int e_signal(lua_State *L, int sig) {
  Executor *e = checkexecutor(L);
  e->shut = 1;
  ppe_pool_signal(e->pool, sig);
  return 0;
}

static int e_terminate(lua_State *L) { return e_signal(L, SIGTERM); }
static int e_kill(lua_State *L) { return e_signal(L, SIGKILL); }

static int e_stats(lua_State *L) {
  Executor *e = checkexecutor(L);
  ppe_stats st;
  ppe_pool_stats(e->pool, &st);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, st.workers); lua_setfield(L, -2, "workers");
  lua_pushinteger(L, st.pending); lua_setfield(L, -2, "pending");
  lua_pushinteger(L, st.running); lua_setfield(L, -2, "running");
  lua_pushinteger(L, st.completed); lua_setfield(L, -2, "completed");
  lua_pushinteger(L, st.failed); lua_setfield(L, -2, "failed");
  lua_pushinteger(L, st.restarts); lua_setfield(L, -2, "restarts");
  return 1;
}

static int e_tostring(lua_State *L) {
  Executor *e = (Executor *)luaL_checkudata(L, 1, PPE_EXECUTOR);
  lua_pushfstring(L, "ppe.executor: %p%s", (void *)e,
                  e->pool == NULL ? " (closed)" : e->shut ? " (shut down)" : "");
  return 1;
}

static const luaL_Reg executor_methods[] = {
  {"submit", e_submit},
  {"shutdown", e_shutdown},
  {"close", e_close},
  {"terminate_workers", e_terminate},
  {"kill_workers", e_kill},
  {"stats", e_stats},
  {NULL, NULL}
};

static const luaL_Reg executor_meta[] = {
  {"__gc", e_gc},
  {"__close", e_close},
  {"__tostring", e_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

static const char *const executor_options[] = {
  "max_workers", "initializer", "initargs", "max_tasks_per_child",
  "task_timeout", NULL
};

/* Every key of the options table must be one we know. */
static void checkoptions(lua_State *L, int arg) {
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    int i;
    lua_pop(L, 1);
    for (i = 0; executor_options[i]; i++)
      if (lua_type(L, -1) == LUA_TSTRING &&
          strcmp(lua_tostring(L, -1), executor_options[i]) == 0)
        break;
    if (executor_options[i] == NULL)
      luaL_error(L, "unknown executor option '%s'",
                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                 : luaL_typename(L, -1));
  }
}

/* A positive integer option, or def when absent. */
static lua_Integer intoption(lua_State *L, int arg, const char *key,
                             lua_Integer def, lua_Integer max) {
  lua_Integer v;
  int isint;
  if (lua_getfield(L, arg, key) == LUA_TNIL) { lua_pop(L, 1); return def; }
  v = lua_tointegerx(L, -1, &isint);
  if (!isint || lua_type(L, -1) != LUA_TNUMBER || v < 1 || v > max)
    luaL_error(L, "option '%s' must be an integer from 1 to %d, got %s",
               key, (int)max, luaL_tolstring(L, -1, NULL));
  lua_pop(L, 1);
  return v;
}

static double timeoutoption(lua_State *L, int arg, const char *key) {
  double v = 0;
  if (lua_getfield(L, arg, key) == LUA_TNIL) { lua_pop(L, 1); return 0; }
  if (lua_type(L, -1) != LUA_TNUMBER ||
      !((v = (double)lua_tonumber(L, -1)) > 0))
    luaL_error(L, "option '%s' must be a number of seconds > 0, got %s",
               key, luaL_tolstring(L, -1, NULL));
  lua_pop(L, 1);
  return v;
}

/* The initializer's request, left on the stack in a Lua-owned buffer; an
** empty buffer when there is none. */
static ppe_buf *initoption(lua_State *L, int arg) {
  int top = lua_gettop(L), n = 0;
  ppe_buf *b;
  if (lua_getfield(L, arg, "initializer") == LUA_TNIL) {
    lua_settop(L, top);
    if (lua_getfield(L, arg, "initargs") != LUA_TNIL)
      luaL_error(L, "option 'initargs' given without 'initializer'");
    lua_settop(L, top);
    return newbuf(L);
  }
  if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TFUNCTION)
    luaL_error(L, "option 'initializer' must be a function or function "
               "name, got %s", luaL_typename(L, -1));
  if (lua_getfield(L, arg, "initargs") != LUA_TNIL) {
    int i;
    if (!lua_istable(L, -1))
      luaL_error(L, "option 'initargs' must be a table, got %s",
                 luaL_typename(L, -1));
    n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n, "too many initargs");
    for (i = 1; i <= n; i++) lua_geti(L, top + 2, i);
  }
  lua_remove(L, top + 2);
  b = encode_request(L, top + 1, n + 1, "initargs", 0);
  {
    ppe_frame f;
    memset(&f, 0, sizeof(f));
    f.type = PPE_F_INIT;
    f.len = b->len - sizeof(f);
    memcpy(b->p, &f, sizeof(f));
  }
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return b;
}

static const char *pkgpath(lua_State *L, const char *field) {
  const char *s;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, field);
  s = lua_tostring(L, -1);
  lua_remove(L, -2);  /* the string stays on the stack, so stays alive */
  return s;
}

static int l_executor(lua_State *L) {
  ppe_pool_opts o;
  ppe_buf *init;
  Executor *e;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int r;
  memset(&o, 0, sizeof(o));
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  checkoptions(L, 1);
  o.max_workers = (int)intoption(L, 1, "max_workers", ncpu > 0 ? ncpu : 1,
                                 MAX_WORKERS);
  o.max_tasks_per_child = (int)intoption(L, 1, "max_tasks_per_child", 0,
                                         INT32_MAX);
  o.task_timeout = timeoutoption(L, 1, "task_timeout");
  init = initoption(L, 1);                  /* stack 2 */
  o.path = pkgpath(L, "path");              /* stack 3 */
  o.cpath = pkgpath(L, "cpath");            /* stack 4 */
  e = (Executor *)lua_newuserdatauv(L, sizeof(Executor), 0);
  e->pool = NULL;
  e->shut = 0;
  luaL_setmetatable(L, PPE_EXECUTOR);
  o.init = *init;  /* moved into the pool, whatever happens */
  init->p = NULL;
  init->len = init->cap = 0;
  r = ppe_pool_new(&e->pool, &o);
  if (r < 0) {
    char msg[160];
    snprintf(msg, sizeof(msg), "cannot start the workers: %s", strerror(-r));
    pusherror(L, "BrokenExecutor", msg);
    lua_pushstring(L, strerror(-r));
    lua_setfield(L, -2, "cause");
    return lua_error(L);
  }
  return 1;
}

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
  {"executor", l_executor},
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

/* A metatable whose __index is the table of methods. */
static void newclass(lua_State *L, const char *name, const luaL_Reg *meta,
                     const luaL_Reg *methods) {
  newmeta(L, name, meta);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

PPE_API int luaopen_ppe(lua_State *L) {
  int r = ppe_mac_init();
  if (r < 0)
    return luaL_error(L, "ppe: cannot draw a random key (%s)", strerror(-r));
  newmeta(L, PPE_BUFBOX, buf_meta);
  lua_pop(L, 1);
  newclass(L, PPE_FUTURE, future_meta, future_methods);
  newclass(L, PPE_EXECUTOR, executor_meta, executor_methods);
  luaL_newlib(L, ppe_funcs);
  newmeta(L, PPE_ERROR, error_meta);
  lua_setfield(L, -2, "Error");
  lua_pushliteral(L, PPE_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushinteger(L, PPE_MAXDEPTH);
  lua_setfield(L, -2, "MAX_DEPTH");
  return 1;
}
