/* lua_ppe.c - the Lua binding of ppe: arguments, userdata, metatables. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "src/compat.h"

#include "ppe.h"
#include "src/bigblock.h"
#include "src/future.h"
#include "src/hostalloc.h"
#include "src/loaded.h"
#include "src/mac.h"
#include "src/pool.h"
#include "src/transport.h"
#include "src/vm.h"
#include "src/wire.h"
#include "src/worker.h"
#include "src/zygote.h"

#define PPE_VERSION "ppe 0.1.0"
#define PPE_ERROR "ppe.Error"
#define PPE_BUFBOX "ppe.Buffer"
#define PPE_EXECUTOR "ppe.Executor"
#define PPE_FUTURE "ppe.Future"
#define PPE_SLOTS "ppe.Slots"

/* Every C function of the module has the metatables of the classes met
** once or twice per task as upvalues: one is had at the cost of a stack
** slot, where the registry would take a lookup. */
#define FUTURE_MT lua_upvalueindex(1)
#define EXECUTOR_MT lua_upvalueindex(2)
#define SLOTS lua_upvalueindex(3)  /* the futures' tasks (see Slots) */
#define WEAK lua_upvalueindex(4)   /* slot + 1 -> future, weak */
#define NUPS 4

/* luaL_testudata, with the metatable at index mt. */
static void *testclass(lua_State *L, int arg, int mt) {
  void *p = lua_touserdata(L, arg);
  if (p != NULL && lua_getmetatable(L, arg)) {
    int same = lua_rawequal(L, -1, mt);
    lua_pop(L, 1);
    if (same) return p;
  }
  return NULL;
}

/* luaL_checkudata, with the metatable at index mt. */
static void *checkclass(lua_State *L, int arg, int mt, const char *tname) {
  void *p = testclass(L, arg, mt);
  if (p == NULL) luaL_typeerror(L, arg, tname);
  return p;
}

/* luaL_setmetatable, with the metatable at index mt. */
static void setclass(lua_State *L, int mt) {
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
}

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

/* 'shared' for a request, built to be sent (see buf.h). */
static ppe_buf *newbuf(lua_State *L, int shared) {
  ppe_buf *b = (ppe_buf *)lua_newuserdatauv(L, sizeof(ppe_buf), 0);
  b->p = NULL; b->len = b->cap = 0;
  b->shared = shared;
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

static const char scratch_key = 's';

/* The buffer requests are encoded in, pushed: one kept in the registry
** and reused, unless it is in use already (a finalizer run by an
** allocation during an encode may submit too), then a new one. */
static ppe_buf *scratch(lua_State *L) {
  ppe_buf *b;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &scratch_key) == LUA_TUSERDATA) {
    b = (ppe_buf *)lua_touserdata(L, -1);
    if (b->len == 0) return b;
    lua_pop(L, 1);
    return newbuf(L, 1);
  }
  lua_pop(L, 1);
  b = newbuf(L, 1);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &scratch_key);
  return b;
}

/* Encodes values first..first+n-1 after room for a frame header, into a
** buffer Lua owns, whose box is pushed. The caller hands the buffer to
** ppe_task_new, which empties it for reuse. Raises SerializationError
** (the buffer emptied too). */
static ppe_buf *encode_request(lua_State *L, int first, int n,
                               const char *label, int base) {
  char err[PPE_ERRSZ];
  ppe_frame f;
  ppe_buf *b = scratch(L);
  memset(&f, 0, sizeof(f));
  if (ppe_buf_add(b, &f, sizeof(f)) != 0)
    luaL_error(L, "not enough memory");
  if (ppe_encode(L, b, first, n, label, base, err) != 0) {
    /* A large block goes back: kept, it would be in the arena, which a
    ** child of fork could not write. */
    if (b->cap >= PPE_BIG_MIN) ppe_buf_free(b);
    b->len = 0;
    raiseerror(L, "SerializationError", err);
  }
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

/* A future's task is held for it in a slot of the state's table of
** slots, and the future itself is in a weak table under the same index.
** When a collection cycle ends, the slots whose futures went are let go
** (sweep_gc). So a future needs no finalizer: an object with one costs
** the collector several times as much, and outlives its last reference
** by a cycle with all it holds, a 64 MiB result say. */
typedef struct Slot {
  ppe_task *t;    /* NULL: free */
  uint64_t gen;   /* bumped when let go: older futures of it are dead */
  int inner;      /* a map's own: when it goes, nobody wants its task */
  int gone;       /* a sweep found its future gone; the next lets go */
} Slot;

typedef struct Slots {
  Slot *v;
  size_t n, cap;     /* slots made, and room */
  size_t *free;      /* indexes of free slots, a stack of nfree */
  size_t nfree;
  int armed;         /* a sweeper exists (see sweep_gc) */
  int held;          /* this load keeps the zygote (zygote.h) */
} Slots;

/* A future's user values: 1, what the Lua side made of the outcome (the
** values table, with n, or the error object); 2, its done-callbacks. */
typedef struct Future {
  Slots *s;       /* the state's: it outlives every future */
  size_t slot;
  uint64_t gen;
  int form;       /* F_*: what user value 1 holds */
} Future;

static ppe_task *task_of(const Future *f) {
  const Slots *s = f->s;
  return (f->slot < s->n && s->v[f->slot].gen == f->gen) ? s->v[f->slot].t
                                                        : NULL;
}

#define TASK(f) task_of(f)

/* Forms of a future's outcome on the Lua side. */
enum { F_NONE, F_ONE, F_MANY, F_FAIL };

static int run_callbacks(lua_State *L);

/* A future is usable as long as its slot holds its task: always, but for
** one that a finalizer of the caller's brought back from the dead. */
static Future *checkfuture(lua_State *L, int arg) {
  Future *f = (Future *)checkclass(L, arg, FUTURE_MT, PPE_FUTURE);
  if (TASK(f) == NULL) luaL_error(L, "attempt to use a collected future");
  return f;
}

/* Room for one more slot: 0, or -1 out of memory. */
static int slots_reserve(Slots *s) {
  size_t cap = s->cap ? 2 * s->cap : 256, *fr;
  Slot *v;
  if (s->nfree > 0 || s->n < s->cap) return 0;
  if ((v = (Slot *)realloc(s->v, cap * sizeof(*v))) == NULL) return -1;
  s->v = v;
  if ((fr = (size_t *)realloc(s->free, cap * sizeof(*fr))) == NULL)
    return -1;
  s->free = fr;
  s->cap = cap;
  return 0;
}

/* Lets go of slot k's task (lock held). */
static void slot_release(Slots *s, size_t k) {
  Slot *sl = &s->v[k];
  /* A map dropped before its end (a loop left early, before 5.4 has a
  ** for loop close it) cancels what it has not started, as Python's does
  ** when its generator goes. */
  if (sl->inner) ppe_task_cancel(sl->t);
  ppe_task_unref(sl->t);
  sl->t = NULL;
  sl->gen++;
  s->free[s->nfree++] = k;
}

/* Makes the next sweeper: an object nobody holds, whose finalizer runs
** once the cycle under way ends. Its metatable is the Slots' user value
** 1, so that another load of the module in this state sweeps its own. */
static void arm(lua_State *L, Slots *s) {
  lua_newuserdatauv(L, 1, 0);
  lua_getiuservalue(L, SLOTS, 1);
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  s->armed = 1;
}

/* Pushes a new future for t, which it takes the caller's reference of. */
static void newfuture(lua_State *L, ppe_task *t, int inner) {
  Slots *s = (Slots *)lua_touserdata(L, SLOTS);
  Future *f;
  size_t k;
  if (!s->armed) arm(L, s);  /* a sweep could not make the next one */
  if (slots_reserve(s) != 0) {
    ppe_lock();
    ppe_task_unref(t);
    ppe_unlock();
    luaL_error(L, "not enough memory");
  }
  f = (Future *)lua_newuserdatauv(L, sizeof(Future), 2);
  if (s->nfree > 0) k = s->free[--s->nfree];
  else {
    k = s->n++;
    s->v[k].t = NULL;
    s->v[k].gen = 0;
  }
  s->v[k].gone = 0;
  f->s = s;
  f->slot = k;
  f->gen = s->v[k].gen;
  f->form = F_NONE;
  setclass(L, FUTURE_MT);
  /* The future first: a sweep meanwhile would let go of a slot with a
  ** task and no future. */
  lua_pushvalue(L, -1);
  lua_rawseti(L, WEAK, (lua_Integer)k + 1);
  s->v[k].t = t;
  s->v[k].inner = inner;
}

/* The sweeper's finalizer, once per collection cycle, after the cycle
** has cleared from the weak table the futures it found dead. A slot goes
** at the second sweep that finds its future gone, not the first: the
** finalizer of an object that held the future (which runs in the same
** cycle, before or after this one) may still use it, to cancel it say. */
static int sweep_gc(lua_State *L) {
  Slots *s = (Slots *)lua_touserdata(L, SLOTS);
  size_t k;
  int locked = 0;
  s->armed = 0;
  for (k = 0; k < s->n; k++) {
    Slot *sl = &s->v[k];
    if (sl->t == NULL) continue;
    if (lua_rawgeti(L, WEAK, (lua_Integer)k + 1) != LUA_TNIL) sl->gone = 0;
    else if (!sl->gone) sl->gone = 1;
    else {
      if (!locked) {
        ppe_lock();
        locked = 1;
      }
      slot_release(s, k);
    }
    lua_pop(L, 1);
  }
  if (locked) ppe_unlock();
  arm(L, s);  /* if it raises, the next future arms again */
  return 0;
}

/* At the state's close: every task still held goes. */
static int slots_gc(lua_State *L) {
  Slots *s = (Slots *)lua_touserdata(L, 1);
  size_t k;
  ppe_lock();
  for (k = 0; k < s->n; k++)
    if (s->v[k].t != NULL) slot_release(s, k);
  ppe_unlock();
  free(s->v);
  free(s->free);
  if (s->held) ppe_zygote_hold(-1);
  memset(s, 0, sizeof(*s));
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
  ppe_task_spin(t, deadline);
  ppe_lock();
  while (!(done = ppe_task_final(t)))
    if (ppe_wait_completion(deadline) == -ETIMEDOUT) {
      done = ppe_task_final(t);
      break;
    }
  ppe_unlock();
  return done;
}

/* Decodes a worker's (message, traceback, value) into a RemoteError. */
static void push_remote(lua_State *L, const char *s, size_t len,
                        pid_t pid) {
  char err[PPE_ERRSZ];
  int top = lua_gettop(L);
  if (ppe_decode(L, s, len, 0, err) != 3) {
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
  if (ppe_task_res_lost(t)) {
    pusherror(L, "BrokenExecutor", "the outcome is in a worker's memory, "
              "which the child of a fork does not share");
    return;
  }
  switch (t->state == PPE_CANCELLED ? -1 : t->err) {
    case -1:
      pusherror(L, "CancelledError", "the future was cancelled");
      break;
    case PPE_E_REMOTE:
      push_remote(L, PPE_RES(t), PPE_RESLEN(t), t->pid);
      break;
    case PPE_E_DIED:
      if (t->how == PPE_HOW_ZYGOTE)
        snprintf(msg, sizeof(msg), "worker %d was lost: the zygote process "
                 "ended (killed, or given up as stopped or stuck)",
                 (int)t->pid);
      else if (t->signal) {
        char what[64];
        ppe_signal_describe(what, sizeof(what), t->signal);
        snprintf(msg, sizeof(msg), t->how == PPE_HOW_SENT
                 ? "worker %d was sent signal %d (%s) by %s"
                 : "worker %d was killed by signal %d (%s)",
                 (int)t->pid, t->signal, what,
                 t->signal == SIGKILL ? "kill_workers" : "terminate_workers");
      }
      else if (t->own_exit)
        snprintf(msg, sizeof(msg), "worker %d exited with code %d (%s)",
                 (int)t->pid, t->exit_code,
                 ppe_worker_exit_meaning(t->exit_code));
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
      if (PPE_RESLEN(t) == 0)
        pusherror(L, "SerializationError", "the worker ran out of memory");
      else if (ppe_decode(L, PPE_RES(t), PPE_RESLEN(t), 0, err) == 1) {
        pusherror(L, "SerializationError", lua_tostring(L, -1));
        lua_replace(L, top + 1);
      }
      else pusherror(L, "SerializationError", err);
      break;
    }
    default:  /* PPE_E_BROKEN */
      if (t->res_text) {
        lua_pushlstring(L, PPE_RES(t), PPE_RESLEN(t));
        pusherror(L, "BrokenExecutor", lua_tostring(L, -1));
        lua_remove(L, -2);
      }
      else {
        push_remote(L, PPE_RES(t), PPE_RESLEN(t), t->pid);
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

/* Makes the Lua side of a final task's outcome, once, and keeps it in the
** future's user value 1: every call returns the same values. A single
** plain value is kept as it is; several, or a table or function, in a
** values table (with n), which 'as_table' always asks for. Pushes it and
** returns its form. */
static int outcome(lua_State *L, int arg, Future *f, int as_table) {
  ppe_task *t = TASK(f);
  if (f->form == F_NONE) {
    int form = F_FAIL;
    /* What is made here is allocated, which may run a collection, whose
    ** sweep may let go of the slot of a future that a finalizer brought
    ** back: t is held meanwhile. (A memory error in between would leave
    ** this reference behind.) */
    ppe_lock();
    ppe_task_ref(t);
    ppe_unlock();
    if (t->state == PPE_FINISHED && !ppe_task_res_lost(t)) {
      char err[PPE_ERRSZ];
      int top = lua_gettop(L);
      int n = ppe_decode(L, PPE_RES(t), PPE_RESLEN(t), 0, err);
      if (n < 0) pusherror(L, "SerializationError", err);
      else if (n == 1 && !as_table && !lua_istable(L, -1) &&
               !lua_isfunction(L, -1))
        form = F_ONE;
      else {
        int i;
        lua_createtable(L, n, 1);
        lua_insert(L, top + 1);
        for (i = n; i >= 1; i--) lua_rawseti(L, top + 1, i);
        lua_pushinteger(L, n);
        lua_setfield(L, top + 1, "n");
        form = F_MANY;
      }
    }
    else push_failure(L, t);
    lua_setiuservalue(L, arg, 1);
    f->form = form;
    ppe_lock();
    ppe_task_drop_res(t);  /* the Lua side holds it now */
    ppe_task_unref(t);
    ppe_unlock();
  }
  else if (as_table && f->form == F_ONE) {
    lua_createtable(L, 1, 1);
    lua_getiuservalue(L, arg, 1);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, 1);
    lua_setfield(L, -2, "n");
    lua_setiuservalue(L, arg, 1);
    f->form = F_MANY;
  }
  lua_getiuservalue(L, arg, 1);
  return f->form;
}

static int f_result(lua_State *L) {
  Future *f = checkfuture(L, 1);
  int i, n, ok = await(TASK(f), optdeadline(L, 2));
  run_callbacks(L);
  if (!ok)
    return raiseerror(L, "TimeoutError", "the future is not done in time");
  switch (outcome(L, 1, f, 0)) {
    case F_FAIL: return lua_error(L);
    case F_ONE: return 1;
  }
  n = (int)(lua_getfield(L, -1, "n"), lua_tointeger(L, -1));
  lua_pop(L, 1);
  luaL_checkstack(L, n, "too many results");
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  return n;
}

static int f_exception(lua_State *L) {
  Future *f = checkfuture(L, 1);
  int ok = await(TASK(f), optdeadline(L, 2));
  run_callbacks(L);
  if (!ok)
    return raiseerror(L, "TimeoutError", "the future is not done in time");
  if (outcome(L, 1, f, 0) != F_FAIL) lua_pushnil(L);
  else if (TASK(f)->state == PPE_CANCELLED) return lua_error(L);
  return 1;
}

static int f_wait(lua_State *L) {
  Future *f = checkfuture(L, 1);
  int ok = await(TASK(f), optdeadline(L, 2));
  run_callbacks(L);
  lua_pushboolean(L, ok);
  return 1;
}

static int f_done(lua_State *L) {
  lua_pushboolean(L, task_state(TASK(checkfuture(L, 1))) >= PPE_FINISHED);
  return 1;
}

static int f_running(lua_State *L) {
  lua_pushboolean(L, task_state(TASK(checkfuture(L, 1))) == PPE_RUNNING);
  return 1;
}

static int f_cancelled(lua_State *L) {
  lua_pushboolean(L, task_state(TASK(checkfuture(L, 1))) == PPE_CANCELLED);
  return 1;
}

static int f_cancel(lua_State *L) {
  Future *f = checkfuture(L, 1);
  int ok;
  ppe_lock();
  ok = ppe_task_cancel(TASK(f));
  ppe_unlock();
  run_callbacks(L);
  lua_pushboolean(L, ok);
  return 1;
}

static const char *const state_names[] = {
  "pending", "running", "finished", "failed", "cancelled"
};

static int f_state(lua_State *L) {
  lua_pushstring(L, state_names[task_state(TASK(checkfuture(L, 1)))]);
  return 1;
}

static int f_tostring(lua_State *L) {
  Future *f = checkfuture(L, 1);
  lua_pushfstring(L, "ppe.future: %p (%s)", (void *)f,
                  state_names[task_state(TASK(f))]);
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** Executors
** =======================================================
*/

typedef struct Executor {
  ppe_pool *pool;  /* NULL once closed (its workers reaped) */
  int shut;        /* shutdown was called */
  ppe_stats last;  /* the figures at close, for stats() afterwards */
} Executor;

static Executor *toexecutor(lua_State *L) {
  return (Executor *)checkclass(L, 1, EXECUTOR_MT, PPE_EXECUTOR);
}

/* An executor whose workers still exist: what signals and fileno need. */
static Executor *checkexecutor(lua_State *L) {
  Executor *e = toexecutor(L);
  if (e->pool == NULL) luaL_error(L, "attempt to use a closed executor");
  return e;
}

/* Waits for all work, reaps the workers and releases every resource. */
static void release(Executor *e) {
  if (e->pool == NULL) return;
  e->shut = 1;
  ppe_pool_shutdown(e->pool, 1, 0);
  ppe_pool_stats(e->pool, &e->last);
  ppe_pool_free(e->pool);
  e->pool = NULL;
}

static int e_submit(lua_State *L) {
  Executor *e = toexecutor(L);
  ppe_buf *b;
  ppe_task *t;
  int r;
  checkcallable(L, 2);
  if (e->shut || e->pool == NULL)
    return raiseerror(L, "ShutdownError", "cannot submit after shutdown");
  b = encode_request(L, 2, lua_gettop(L) - 1, "argument", 1);
  t = ppe_task_new(b);
  if (t == NULL) {
    b->len = 0;
    return luaL_error(L, "not enough memory");
  }
  r = ppe_pool_submit(e->pool, t);
  if (r < 0) {
    ppe_lock();
    ppe_task_unref(t);
    ppe_unlock();
    return raiseerror(L, "ShutdownError", "cannot submit after shutdown");
  }
  newfuture(L, t, 0);
  run_callbacks(L);
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
  Executor *e = toexecutor(L);
  int wait = getbool(L, 2, "wait", 1);
  int cancel = getbool(L, 2, "cancel_futures", 0);
  e->shut = 1;
  if (e->pool == NULL) return 0;  /* idempotent */
  ppe_pool_shutdown(e->pool, 0, cancel);
  if (wait) release(e);
  return 0;
}

/* close, __close and __gc: finish pending work, reap every worker, and
** release all the executor holds. Copes with a closed executor. */
static int e_close(lua_State *L) {
  release(toexecutor(L));
  return 0;
}

static int e_signal(lua_State *L, int sig) {
  Executor *e = toexecutor(L);
  e->shut = 1;
  if (e->pool == NULL) return 0;  /* nothing left to signal */
  ppe_pool_signal(e->pool, sig);
  release(e);
  return 0;
}

static int e_terminate(lua_State *L) { return e_signal(L, SIGTERM); }
static int e_kill(lua_State *L) { return e_signal(L, SIGKILL); }

static int e_stats(lua_State *L) {
  Executor *e = toexecutor(L);
  ppe_stats st = e->last;
  if (e->pool != NULL) ppe_pool_stats(e->pool, &st);
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
  Executor *e = toexecutor(L);
  lua_pushfstring(L, "ppe.executor: %p%s", (void *)e,
                  e->pool == NULL ? " (closed)" : e->shut ? " (shut down)" : "");
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** Done-callbacks: run in the caller's state, never from a C thread
** =======================================================
*/

static const char watch_key = 'w';  /* future -> true, callbacks pending */

/* How many futures are watched, in every state of the process: when none
** is, the frequent calls that run callbacks skip looking. */
static long nwatched = 0;

typedef struct Ready {
  uint64_t seq;
  int idx;
} Ready;

static int byseq(const void *a, const void *b) {
  uint64_t x = ((const Ready *)a)->seq, y = ((const Ready *)b)->seq;
  return (x > y) - (x < y);
}

static int tostring_value(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Reports the error on the top (left there) through warn: a callback's
** failure must not break the call that happened to run it, nor keep the
** other callbacks from running. The value's text comes from a protected
** call: a __tostring may raise, or return what is not a string. */
static void warn_callback(lua_State *L) {
  const char *msg;
  int ok;
  lua_pushcfunction(L, tostring_value);
  lua_pushvalue(L, -2);
  ok = lua_pcall(L, 1, 1, 0) == LUA_OK;
  msg = lua_tostring(L, -1);
  lua_warning(L, "ppe: error in a done-callback: ", 1);
  if (ok && msg != NULL) lua_warning(L, msg, 0);
  else {
    lua_warning(L, luaL_typename(L, -2), 1);
    lua_warning(L, ok ? " value (its __tostring gave no string)"
                      : " value (its __tostring raised: ", !ok);
    if (!ok) {
      lua_warning(L, msg != NULL ? msg : luaL_typename(L, -1), 1);
      lua_warning(L, ")", 0);
    }
  }
  lua_pop(L, 1);
}

static void call_callbacks(lua_State *L, int fut) {
  lua_Integer i, n;
  if (lua_getiuservalue(L, fut, 2) != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_pushnil(L);
  lua_setiuservalue(L, fut, 2);  /* each callback runs once */
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_pushvalue(L, fut);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      warn_callback(L);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* Runs the callbacks of every watched future now done, in completion
** order. Returns how many futures had theirs run. */
static int run_callbacks(lua_State *L) {
  int watch, list, n = 0, i;
  Ready *r;
  if (nwatched == 0) return 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &watch_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  watch = lua_gettop(L);
  lua_newtable(L);
  list = lua_gettop(L);
  ppe_lock();
  lua_pushnil(L);
  while (lua_next(L, watch)) {
    Future *f = (Future *)lua_touserdata(L, -2);
    lua_pop(L, 1);
    /* One let go of already (at the state's close) counts as done. */
    if (TASK(f) == NULL || ppe_task_final(TASK(f))) {
      lua_pushvalue(L, -1);
      lua_rawseti(L, list, ++n);
    }
  }
  ppe_unlock();
  if (n == 0) {
    lua_pop(L, 2);
    return 0;
  }
  r = (Ready *)lua_newuserdatauv(L, sizeof(Ready) * (size_t)n, 0);
  for (i = 0; i < n; i++) {
    ppe_task *t;
    lua_rawgeti(L, list, i + 1);
    t = TASK((Future *)lua_touserdata(L, -1));
    r[i].seq = t != NULL ? t->seq : 0;
    r[i].idx = i + 1;
    lua_pushnil(L);
    lua_rawset(L, watch);  /* no longer watched */
    nwatched--;
  }
  qsort(r, (size_t)n, sizeof(Ready), byseq);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, list, r[i].idx);
    call_callbacks(L, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_pop(L, 3);
  return n;
}

static int f_add_done_callback(lua_State *L) {
  Future *f = checkfuture(L, 1);
  if (!lua_isfunction(L, 2) && luaL_getmetafield(L, 2, "__call") == LUA_TNIL)
    return luaL_typeerror(L, 2, "function");
  lua_settop(L, 2);
  if (task_state(TASK(f)) >= PPE_FINISHED) {
    lua_settop(L, 2);
    lua_insert(L, 1);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) warn_callback(L);
    return 0;
  }
  if (lua_getiuservalue(L, 1, 2) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 2);
  }
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &watch_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &watch_key);
  }
  lua_pushvalue(L, 1);
  if (lua_rawget(L, -2) == LUA_TNIL) nwatched++;
  lua_pop(L, 1);
  lua_pushvalue(L, 1);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  return 0;
}

/* }====================================================== */


/*
** {======================================================
** Waiting on many futures
** =======================================================
*/

/* The tasks of the futures in the array at arg, in a Lua-owned array. */
static ppe_task **checkfutures(lua_State *L, int arg, int *n) {
  ppe_task **ts;
  lua_Integer i, len;
  luaL_checktype(L, arg, LUA_TTABLE);
  len = luaL_len(L, arg);
  luaL_argcheck(L, len <= INT32_MAX / 2, arg, "too many futures");
  ts = (ppe_task **)lua_newuserdatauv(L, sizeof(ppe_task *) *
                                      (size_t)(len ? len : 1), 0);
  for (i = 1; i <= len; i++) {
    Future *f;
    lua_geti(L, arg, i);
    f = (Future *)testclass(L, -1, FUTURE_MT);
    if (f == NULL)
      luaL_error(L, "bad argument #%d (item %d is %s, not a future)", arg,
                 (int)i, luaL_typename(L, -1));
    if (TASK(f) == NULL)
      luaL_error(L, "bad argument #%d (item %d is a collected future)", arg,
                 (int)i);
    ts[i - 1] = TASK(f);
    lua_pop(L, 1);
  }
  *n = (int)len;
  return ts;
}

static const char *const return_when_names[] = {
  "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", NULL
};

static int satisfied(ppe_task **ts, int n, int mode) {
  int i, done = 0;
  for (i = 0; i < n; i++) {
    if (!ppe_task_final(ts[i])) continue;
    done++;
    if (mode == 1) return 1;
    if (mode == 2 && ts[i]->state == PPE_FAILED) return 1;
  }
  return done == n;
}

static int l_wait(lua_State *L) {
  int n, i;
  double deadline = optdeadline(L, 2);
  int mode = luaL_checkoption(L, 3, "ALL_COMPLETED", return_when_names);
  lua_Integer nd = 0, nn = 0;
  ppe_task **ts;
  lua_settop(L, 3);
  ts = checkfutures(L, 1, &n);
  run_callbacks(L);
  ppe_lock();
  while (!satisfied(ts, n, mode))
    if (ppe_wait_completion(deadline) == -ETIMEDOUT) break;
  ppe_unlock();
  lua_createtable(L, n, 0);
  lua_createtable(L, 0, 0);
  for (i = 0; i < n; i++) {
    int fin;
    ppe_lock();
    fin = ppe_task_final(ts[i]);
    ppe_unlock();
    lua_geti(L, 1, i + 1);
    lua_rawseti(L, fin ? -3 : -2, fin ? ++nd : ++nn);
  }
  run_callbacks(L);
  return 2;
}

/* as_completed's state: the distinct futures, which are yielded. */
typedef struct Completion {
  int n;
  double deadline;
  ppe_task **ts;   /* in the user value: the array below is kept alive */
  char *yielded;
} Completion;

static int as_completed_step(lua_State *L) {
  Completion *c = (Completion *)lua_touserdata(L, lua_upvalueindex(1));
  int i, best = -1, left = 0;
  run_callbacks(L);
  ppe_lock();
  for (;;) {
    for (i = 0; i < c->n; i++) {
      if (c->yielded[i]) continue;
      left++;
      if (ppe_task_final(c->ts[i]) &&
          (best < 0 || c->ts[i]->seq < c->ts[best]->seq))
        best = i;
    }
    if (best >= 0 || left == 0) break;
    if (ppe_wait_completion(c->deadline) == -ETIMEDOUT) {
      ppe_unlock();
      return raiseerror(L, "TimeoutError",
                        "futures not completed within the timeout");
    }
    left = 0;
  }
  ppe_unlock();
  if (best < 0) return 0;
  c->yielded[best] = 1;
  lua_getiuservalue(L, lua_upvalueindex(1), 1);
  lua_rawgeti(L, -1, best + 1);
  return 1;
}

static int l_as_completed(lua_State *L) {
  int n, i, k = 0;
  double deadline = optdeadline(L, 2);
  Completion *c;
  ppe_task **ts;
  lua_settop(L, 2);
  ts = checkfutures(L, 1, &n);
  c = (Completion *)lua_newuserdatauv(L, sizeof(Completion) + (size_t)n +
                                      sizeof(ppe_task *) * (size_t)n, 1);
  c->ts = (ppe_task **)(c + 1);
  c->yielded = (char *)(c->ts + n);
  c->deadline = deadline;
  lua_newtable(L);  /* the distinct futures, kept alive here */
  lua_newtable(L);  /* those seen */
  for (i = 0; i < n; i++) {
    lua_geti(L, 1, i + 1);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) != LUA_TNIL) {  /* a duplicate: yielded once */
      lua_pop(L, 2);
      continue;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, -4);
    c->ts[k] = ts[i];
    c->yielded[k] = 0;
    lua_rawseti(L, -3, ++k);
  }
  lua_pop(L, 1);
  c->n = k;
  lua_setiuservalue(L, -2, 1);
  lua_pushcclosure(L, as_completed_step, 1);
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** map
** =======================================================
*/

/* The iteration state of ex:map. User values: 1 executor, 2 fn, 3 items,
** 4 queue of chunks (3 slots each: future, first index, count). */
typedef struct MapState {
  int ordered, spread, chunksize;
  lua_Integer buffersize;   /* 0: no bound */
  lua_Integer total;        /* #items for a sequence, -1 for an iterator */
  lua_Integer nread;        /* items taken from the source */
  int exhausted;
  int closed;               /* by __close or it:close(): at its end */
  int compact;              /* this chunk: one value per item, no counts */
  lua_Integer inflight;     /* items sent and not yet yielded */
  lua_Integer qhead, qtail; /* chunk numbers in the queue */
  lua_Integer cur;          /* chunk being yielded, 0 if none */
  lua_Integer cur_first, cur_count;  /* its items */
  lua_Integer cur_item, cur_pos;     /* next item, its place in values */
  lua_Integer nvals;        /* values in the values table (user value 5) */
  pid_t cur_pid;
  double deadline;
  ppe_done *done;           /* ordered=false: chunks as they complete */
} MapState;

#define PPE_MAP "ppe.Map"
/* An unordered map's metatable is the same but for a __gc, which frees its
** completion list: an ordered one has none to free, and a finalizer would
** keep it and its items a collection longer. */
#define PPE_UMAP "ppe.UnorderedMap"

static MapState *tomap(lua_State *L) {
  MapState *m = (MapState *)luaL_testudata(L, 1, PPE_MAP);
  if (m == NULL) m = (MapState *)luaL_testudata(L, 1, PPE_UMAP);
  if (m == NULL) luaL_typeerror(L, 1, PPE_MAP);
  return m;
}

/* Reads up to 'want' items onto the stack from src, the sequence or the
** iterator; returns how many. */
static int map_read(lua_State *L, MapState *m, int src, int want) {
  int got = 0;
  luaL_checkstack(L, want + 4, "chunksize too large");
  while (got < want && !m->exhausted) {
    if (m->total >= 0) {
      if (m->nread >= m->total) { m->exhausted = 1; break; }
      lua_geti(L, src, m->nread + 1);
    }
    else {
      lua_pushvalue(L, src);
      lua_call(L, 0, 1);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        m->exhausted = 1;
        break;
      }
    }
    m->nread++;
    got++;
  }
  return got;
}

static void map_fill(lua_State *L, MapState *m, Executor *e) {
  while (!m->exhausted &&
         (m->buffersize == 0 || m->inflight < m->buffersize)) {
    lua_Integer want = m->chunksize, first = m->nread + 1;
    int top = lua_gettop(L), got;
    ppe_buf *b;
    ppe_task *t;
    ppe_frame f;
    if (m->buffersize > 0 && want > m->buffersize - m->inflight)
      want = m->buffersize - m->inflight;
    lua_getiuservalue(L, 1, 3);  /* the items: below what is sent */
    lua_getiuservalue(L, 1, 2);
    lua_pushboolean(L, m->spread);
    got = map_read(L, m, top + 1, (int)want);
    if (got == 0) { lua_settop(L, top); break; }
    b = encode_request(L, top + 2, got + 2, "item", (int)first - 2);
    memset(&f, 0, sizeof(f));
    f.type = PPE_F_CHUNK;
    memcpy(b->p, &f, sizeof(f));
    t = ppe_task_new(b);
    if (t == NULL) {
      b->len = 0;
      luaL_error(L, "not enough memory");
    }
    if (ppe_pool_submit(e->pool, t) < 0) {
      ppe_lock();
      ppe_task_unref(t);
      ppe_unlock();
      raiseerror(L, "ShutdownError", "cannot map after shutdown");
    }
    lua_getiuservalue(L, 1, 4);
    newfuture(L, t, 1);
    m->qtail++;
    if (m->done != NULL) {  /* (one that is final already goes in at once) */
      ppe_lock();
      ppe_done_attach(m->done, t, m->qtail);
      ppe_unlock();
    }
    lua_rawseti(L, -2, 3 * m->qtail - 2);
    lua_pushinteger(L, first);
    lua_rawseti(L, -2, 3 * m->qtail - 1);
    lua_pushinteger(L, got);
    lua_rawseti(L, -2, 3 * m->qtail);
    m->inflight += got;
    lua_settop(L, top);
  }
}

/* Pushes chunk k's future (or nil). */
static Future *map_future(lua_State *L, lua_Integer k) {
  lua_getiuservalue(L, 1, 4);
  lua_rawgeti(L, -1, 3 * k - 2);
  lua_replace(L, -2);
  return (Future *)lua_touserdata(L, -1);
}

static lua_Integer map_field(lua_State *L, lua_Integer k, int which) {
  lua_Integer v;
  lua_getiuservalue(L, 1, 4);
  lua_rawgeti(L, -1, 3 * k - 2 + which);
  v = lua_tointeger(L, -1);
  lua_pop(L, 2);
  return v;
}

/* The next chunk to yield: the oldest, or with ordered=false the first to
** complete, from the map's completion list. Waits for it; raises
** TimeoutError past the map's deadline. */
static lua_Integer map_pick(lua_State *L, MapState *m) {
  lua_Integer k = m->qhead, best = 0;
  Future *f = NULL;
  if (m->ordered) {  /* the oldest chunk not dropped: see map_drop */
    while (k <= m->qtail && (f = map_future(L, k)) == NULL) {
      lua_pop(L, 1);
      k++;
    }
    lua_pop(L, 1);
    if (f == NULL) luaL_error(L, "no chunk to wait for");
  }
  ppe_lock();
  for (;;) {
    if (f != NULL) best = ppe_task_final(TASK(f)) ? k : 0;
    else best = (lua_Integer)ppe_done_take(m->done);
    if (best > 0) break;
    if (ppe_wait_completion(m->deadline) == -ETIMEDOUT) {
      ppe_unlock();
      raiseerror(L, "TimeoutError", "map did not complete within timeout");
    }
  }
  ppe_unlock();
  return best;
}

static void map_drop(lua_State *L, MapState *m, lua_Integer k) {
  int i;
  m->inflight -= map_field(L, k, 2);
  lua_getiuservalue(L, 1, 4);
  for (i = 0; i < 3; i++) {
    lua_pushnil(L);
    lua_rawseti(L, -2, 3 * k - 2 + i);
  }
  lua_pop(L, 1);
  while (m->qhead <= m->qtail) {  /* skip dropped chunks at the head */
    lua_getiuservalue(L, 1, 4);
    if (lua_rawgeti(L, -1, 3 * m->qhead - 2) != LUA_TNIL) {
      lua_pop(L, 2);
      break;
    }
    lua_pop(L, 2);
    m->qhead++;
  }
  m->cur = 0;
}

/* Raises if the futures of a map were collected (a finalizer of the
** caller's brought the map back): their tasks are gone. Before any lock.
** The map alone holds them, so they all go in the same collection: the
** one at the head of the queue tells for all. */
static void map_alive(lua_State *L, MapState *m) {
  Future *f;
  if (!m->ordered && m->done == NULL)  /* its __gc has run */
    luaL_error(L, "attempt to use a collected map");
  if (m->qhead > m->qtail) return;
  f = map_future(L, m->qhead);
  lua_pop(L, 1);
  if (f != NULL && TASK(f) == NULL)
    luaL_error(L, "attempt to use a collected map");
}

/* Moves to the next chunk to yield and decodes its reply into the values
** table (user value 5, reused from chunk to chunk). Returns 0 when the map
** is done; raises the failure of a whole chunk (a worker died, say). */
static int map_next_chunk(lua_State *L, MapState *m) {
  char err[PPE_ERRSZ];
  Executor *e;
  Future *fut;
  ppe_task *t;
  lua_Integer i;
  int n, top;
  map_alive(L, m);
  if (m->cur != 0) map_drop(L, m, m->cur);
  lua_getiuservalue(L, 1, 1);
  e = (Executor *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!m->exhausted && e->pool != NULL && !e->shut) map_fill(L, m, e);
  if (m->qhead > m->qtail) return 0;
  m->cur = map_pick(L, m);
  m->cur_first = map_field(L, m->cur, 1);
  m->cur_count = map_field(L, m->cur, 2);
  m->cur_item = 0;
  m->cur_pos = 1;
  fut = map_future(L, m->cur);
  t = TASK(fut);
  m->cur_pid = t->pid;
  top = lua_gettop(L);
  if (t->state != PPE_FINISHED || ppe_task_res_lost(t)) {
    outcome(L, top, fut, 1);
    map_drop(L, m, m->cur);
    return lua_error(L);
  }
  ppe_lock();
  ppe_task_ref(t);  /* as outcome() does, across the decode */
  ppe_unlock();
  n = ppe_decode(L, PPE_RES(t), PPE_RESLEN(t), 0, err);
  ppe_lock();
  ppe_task_unref(t);
  ppe_unlock();
  if (n < 0) {
    map_drop(L, m, m->cur);
    return raiseerror(L, "SerializationError", err);
  }
  /* A chunk whose every item gave one value comes as true, v1, ..., vn. */
  m->compact = n > 0 && lua_type(L, top + 1) == LUA_TBOOLEAN;
  if (lua_getiuservalue(L, 1, 5) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, n, 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 5);
  }
  lua_insert(L, top + 1);
  for (i = n; i >= 1; i--) lua_rawseti(L, top + 1, i);
  for (i = n + 1; i <= m->nvals; i++) {  /* let go of the last chunk's */
    lua_pushnil(L);
    lua_rawseti(L, top + 1, i);
  }
  m->nvals = n;
  if (m->compact) m->cur_pos = 2;
  lua_settop(L, 1);
  ppe_lock();
  ppe_task_drop_res(t);
  ppe_unlock();
  return 1;
}

/* The iterator: the map state is its own __call, so argument 1 is always
** the state. Yields the item's index and the values fn returned for it. */
static int map_step(lua_State *L) {
  MapState *m = (MapState *)lua_touserdata(L, 1);
  lua_Integer k, i;
  run_callbacks(L);
  if (m->compact && m->cur != 0 && m->cur_item < m->cur_count &&
      !m->closed) {  /* the common case, in as few calls as it takes */
    lua_getiuservalue(L, 1, 5);
    lua_pushinteger(L, m->cur_first + m->cur_item++);
    lua_rawgeti(L, -2, m->cur_pos++);
    return 2;
  }
  lua_settop(L, 1);
  if (m->closed) return 0;
  while (m->cur == 0 || m->cur_item >= m->cur_count)
    if (!map_next_chunk(L, m)) return 0;
  lua_getiuservalue(L, 1, 5);
  if (m->compact) {
    lua_pushinteger(L, m->cur_first + m->cur_item++);
    lua_rawgeti(L, 2, m->cur_pos++);
    return 2;
  }
  lua_rawgeti(L, 2, m->cur_pos);
  k = lua_tointeger(L, 3);
  lua_pushinteger(L, m->cur_first + m->cur_item++);
  if (k < 0) {  /* this item raised: -1, message, traceback, value */
    pusherror(L, "RemoteError", "");
    lua_rawgeti(L, 2, m->cur_pos + 1);
    lua_setfield(L, -2, "message");
    lua_rawgeti(L, 2, m->cur_pos + 2);
    lua_setfield(L, -2, "traceback");
    lua_rawgeti(L, 2, m->cur_pos + 3);
    lua_setfield(L, -2, "value");
    lua_pushinteger(L, m->cur_pid);
    lua_setfield(L, -2, "pid");
    m->cur_pos += 4;
    return lua_error(L);
  }
  luaL_checkstack(L, (int)k + 2, "too many results");
  for (i = 1; i <= k; i++) lua_rawgeti(L, 2, m->cur_pos + i);
  m->cur_pos += 1 + k;
  return (int)k + 1;
}

/* Leaving the loop early cancels what has not started. */
static int map_close(lua_State *L) {
  MapState *m = tomap(L);
  lua_Integer k;
  map_alive(L, m);
  ppe_lock();
  for (k = m->qhead; k <= m->qtail; k++) {
    Future *f = map_future(L, k);
    if (f != NULL && TASK(f) != NULL) ppe_task_cancel(TASK(f));
    lua_pop(L, 1);
  }
  ppe_unlock();
  m->exhausted = m->closed = 1;
  return 0;
}

static int map_gc(lua_State *L) {
  MapState *m = (MapState *)lua_touserdata(L, 1);
  if (m->done != NULL) {
    ppe_lock();
    ppe_done_release(m->done);
    ppe_unlock();
    m->done = NULL;
  }
  return 0;
}

static const luaL_Reg map_meta[] = {
  {"__close", map_close},
  {"__call", map_step},
  {NULL, NULL}
};

static const luaL_Reg umap_meta[] = {
  {"__close", map_close},
  {"__gc", map_gc},
  {"__call", map_step},
  {NULL, NULL}
};

/* it:close(), for Luas whose for loop closes nothing (before 5.4). */
static const luaL_Reg map_methods[] = {
  {"close", map_close},
  {NULL, NULL}
};

static lua_Integer mapoption(lua_State *L, const char *key, lua_Integer def) {
  lua_Integer v = def;
  if (lua_getfield(L, 4, key) != LUA_TNIL) {
    int isint;
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || lua_type(L, -1) != LUA_TNUMBER || v < 1)
      luaL_error(L, "map option '%s' must be a positive integer", key);
  }
  lua_pop(L, 1);
  return v;
}

static const char *const map_options[] = {
  "chunksize", "timeout", "ordered", "buffersize", "unpack", NULL
};

static int e_map(lua_State *L) {
  Executor *e = toexecutor(L);
  MapState *m;
  char err[PPE_ERRSZ];
  ppe_buf *probe;
  checkcallable(L, 2);
  if (lua_type(L, 3) != LUA_TTABLE && lua_type(L, 3) != LUA_TFUNCTION)
    luaL_typeerror(L, 3, "sequence or iterator function");
  if (lua_isnoneornil(L, 4)) {
    lua_settop(L, 3);
    lua_newtable(L);
  }
  luaL_checktype(L, 4, LUA_TTABLE);
  lua_settop(L, 4);
  lua_pushnil(L);
  while (lua_next(L, 4)) {
    int i;
    lua_pop(L, 1);
    for (i = 0; map_options[i]; i++)
      if (lua_type(L, -1) == LUA_TSTRING &&
          strcmp(lua_tostring(L, -1), map_options[i]) == 0) break;
    if (map_options[i] == NULL)
      return luaL_error(L, "unknown map option '%s'", luaL_tolstring(L, -1, NULL));
  }
  if (e->shut || e->pool == NULL)
    return raiseerror(L, "ShutdownError", "cannot map after shutdown");
  /* The function is checked once here, so its faults name it. */
  probe = newbuf(L, 0);
  if (ppe_encode(L, probe, 2, 1, "argument", 1, err) != 0)
    return raiseerror(L, "SerializationError", err);
  lua_pop(L, 1);
  m = (MapState *)lua_newuserdatauv(L, sizeof(MapState), 5);
  memset(m, 0, sizeof(*m));
  m->qhead = 1;
  m->chunksize = (int)mapoption(L, "chunksize", 1);
  m->buffersize = lua_getfield(L, 4, "buffersize") == LUA_TNIL ? 0 : -1;
  lua_pop(L, 1);
  if (m->buffersize) m->buffersize = mapoption(L, "buffersize", 1);
  m->ordered = getbool(L, 4, "ordered", 1);
  m->spread = getbool(L, 4, "unpack", 0);
  m->deadline = -1;
  if (lua_getfield(L, 4, "timeout") != LUA_TNIL) {
    double secs = (double)lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(secs >= 0))
      return luaL_error(L, "map option 'timeout' must be seconds >= 0");
    m->deadline = ppe_now() + secs;
  }
  lua_pop(L, 1);
  m->total = lua_istable(L, 3) ? luaL_len(L, 3) : -1;
  /* From here on, __gc frees what it has. */
  luaL_setmetatable(L, m->ordered ? PPE_MAP : PPE_UMAP);
  if (!m->ordered && (m->done = ppe_done_new()) == NULL)
    return luaL_error(L, "not enough memory");
  lua_pushvalue(L, 1); lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2); lua_setiuservalue(L, -2, 2);
  lua_pushvalue(L, 3); lua_setiuservalue(L, -2, 3);
  lua_newtable(L); lua_setiuservalue(L, -2, 4);
  /* Everything is sent at once, as Python does, unless buffersize says
  ** how much may be in flight. */
  lua_replace(L, 1);
  lua_settop(L, 1);
  map_fill(L, m, e);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushvalue(L, 1);  /* to-be-closed: breaking out cancels the rest */
  return 4;
}

/* The state is callable: it is both the iterator and the state. */

/* }====================================================== */


/*
** {======================================================
** poll and fileno
** =======================================================
*/

static int e_poll(lua_State *L) {
  Executor *e = toexecutor(L);
  if (e->pool != NULL) ppe_pool_drain_notify(e->pool);
  lua_pushinteger(L, run_callbacks(L));
  return 1;
}

static int e_fileno(lua_State *L) {
  Executor *e = checkexecutor(L);
  lua_pushinteger(L, ppe_pool_fileno(e->pool));
  return 1;
}

/* }====================================================== */


static const luaL_Reg future_methods[] = {
  {"result", f_result},
  {"exception", f_exception},
  {"wait", f_wait},
  {"done", f_done},
  {"running", f_running},
  {"cancelled", f_cancelled},
  {"cancel", f_cancel},
  {"state", f_state},
  {"add_done_callback", f_add_done_callback},
  {NULL, NULL}
};

static const luaL_Reg slots_meta[] = {
  {"__gc", slots_gc},
  {NULL, NULL}
};

static const luaL_Reg sweep_meta[] = {
  {"__gc", sweep_gc},
  {NULL, NULL}
};

static const luaL_Reg future_meta[] = {
  {"__tostring", f_tostring},
  {"__index", NULL},
  {NULL, NULL}
};


static const luaL_Reg executor_methods[] = {
  {"submit", e_submit},
  {"shutdown", e_shutdown},
  {"close", e_close},
  {"terminate_workers", e_terminate},
  {"kill_workers", e_kill},
  {"stats", e_stats},
  {"map", e_map},
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
    return newbuf(L, 1);
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
  o.keep = keepenv(L);
  init = initoption(L, 1);                  /* stack 2 */
  o.path = pkgpath(L, "path");              /* stack 3 */
  o.cpath = pkgpath(L, "cpath");            /* stack 4 */
  e = (Executor *)lua_newuserdatauv(L, sizeof(Executor), 0);
  memset(e, 0, sizeof(*e));
  setclass(L, EXECUTOR_MT);
  o.init = *init;  /* moved into the pool, whatever happens */
  init->p = NULL;
  init->len = init->cap = 0;
  r = ppe_pool_new(&e->pool, &o);
  if (r == -ENAMETOOLONG)  /* they go to the zygote in one datagram */
    return luaL_error(L, "package.path and package.cpath are too long for "
                      "the workers (at most %d bytes together)",
                      PPE_PATHS_MAX);
  if (r < 0) {
    char msg[PPE_CAUSE + 64];
    if (o.cause[0] != '\0') snprintf(msg, sizeof(msg), "%s", o.cause);
    else snprintf(msg, sizeof(msg), "cannot start the workers: %s",
                  strerror(-r));
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
  ppe_buf *b = newbuf(L, 0);
  if (ppe_encode(L, b, 1, n, "argument", 1, err) != 0)
    return raiseerror(L, "SerializationError", err);
  lua_pushlstring(L, b->p, b->len);
  ppe_buf_free(b);
  return 1;
}

/* The decoder flags of ppe.decode's options table at arg: { functions =
** false } takes plain data only, for bytes from anyone but ourselves. */
static int decodeflags(lua_State *L, int arg) {
  int flags = 0;
  if (lua_isnoneornil(L, arg)) return 0;
  if (!lua_istable(L, arg)) luaL_typeerror(L, arg, "options table");
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    size_t len;
    if (lua_type(L, -2) != LUA_TSTRING ||
        strcmp(lua_tolstring(L, -2, &len), "functions") != 0 || len != 9)
      luaL_error(L, "unknown decode option '%s'",
                 lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                 : luaL_typename(L, -2));
    if (!lua_isboolean(L, -1))
      luaL_error(L, "option 'functions' must be a boolean, got %s",
                 luaL_typename(L, -1));
    if (!lua_toboolean(L, -1)) flags |= PPE_DEC_DATA;
    lua_pop(L, 1);
  }
  return flags;
}

static int l_decode(lua_State *L) {
  char err[PPE_ERRSZ];
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int n = ppe_decode(L, s, len, decodeflags(L, 2), err);
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
  {"wait", l_wait},
  {"as_completed", l_as_completed},
  {NULL, NULL}
};

/* }====================================================== */


/* Registers l in the table on the top, each function with the upvalues
** (FUTURE_MT and on: NUPS values from index mts on). */
static void setfuncs(lua_State *L, const luaL_Reg *l, int mts) {
  int i;
  for (i = 0; i < NUPS; i++) lua_pushvalue(L, mts + i);
  luaL_setfuncs(L, l, NUPS);
}

static void newmeta(lua_State *L, const char *name, const luaL_Reg *l,
                    int mts) {
  luaL_newmetatable(L, name);
  setfuncs(L, l, mts);
}

/* A metatable whose __index is the table of methods. */
static void newclass(lua_State *L, const char *name, const luaL_Reg *meta,
                     const luaL_Reg *methods, int mts) {
  newmeta(L, name, meta, mts);
  lua_newtable(L);
  setfuncs(L, methods, mts);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

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
  /* The upvalues, in their order. */
  luaL_newmetatable(L, PPE_FUTURE);
  mts = lua_gettop(L);
  luaL_newmetatable(L, PPE_EXECUTOR);
  memset(lua_newuserdatauv(L, sizeof(Slots), 1), 0, sizeof(Slots));
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  newmeta(L, PPE_SLOTS, slots_meta, mts);
  lua_setmetatable(L, mts + 2);
  ((Slots *)lua_touserdata(L, mts + 2))->held = 1;  /* till its __gc */
  ppe_zygote_hold(1);
  lua_createtable(L, 0, 1);  /* the sweepers' metatable, this load's own */
  setfuncs(L, sweep_meta, mts);
  lua_setiuservalue(L, mts + 2, 1);
  newmeta(L, PPE_BUFBOX, buf_meta, mts);
  lua_pop(L, 1);
  newclass(L, PPE_FUTURE, future_meta, future_methods, mts);
  newclass(L, PPE_EXECUTOR, executor_meta, executor_methods, mts);
  newclass(L, PPE_MAP, map_meta, map_methods, mts);
  newclass(L, PPE_UMAP, umap_meta, map_methods, mts);
  lua_createtable(L, 0, sizeof(ppe_funcs) / sizeof(ppe_funcs[0]) - 1);
  setfuncs(L, ppe_funcs, mts);
  newmeta(L, PPE_ERROR, error_meta, mts);
  lua_setfield(L, -2, "Error");
  lua_pushliteral(L, PPE_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushinteger(L, PPE_MAXDEPTH);
  lua_setfield(L, -2, "MAX_DEPTH");
  for (i = 0; return_when_names[i]; i++) {
    lua_pushstring(L, return_when_names[i]);
    lua_setfield(L, -2, return_when_names[i]);
  }
  return 1;
}
