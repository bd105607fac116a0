/* lfuture.c - ppe.Future: the futures' slots, their outcomes, their
** methods, and the done-callbacks run in the caller's state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/lua/lppe.h"
#include "src/wire.h"
#include "src/zygote.h"

/*
** {======================================================
** TaskRefs: a future's task, held for it
** =======================================================
*/

/* A future's task is held for it in a slot of the state's table of
** slots, and the future itself is in a weak table under the same index.
** When a collection cycle ends, the slots whose futures went are let go
** (sweep_gc). So a future needs no finalizer: an object with one costs
** the collector several times as much, and outlives its last reference
** by a cycle with all it holds, a 64 MiB result say. */
typedef struct TaskRef {
  ppe_task *t;    /* NULL: free */
  uint64_t gen;   /* bumped when let go: older futures of it are dead */
  int inner;      /* a map's own: when it goes, nobody wants its task */
  int gone;       /* a sweep found its future gone; the next lets go */
} TaskRef;

typedef struct TaskRefs {
  TaskRef *v;
  size_t n, cap;     /* slots made, and room */
  size_t *free;      /* indexes of free slots, a stack of nfree */
  size_t nfree;
  int armed;         /* a sweeper exists (see sweep_gc) */
  int held;          /* this load keeps the zygote (zygote.h) */
} TaskRefs;

/* A future's user values: 1, what the Lua side made of the outcome (the
** values table, with n, or the error object); 2, its done-callbacks. */
typedef struct Future {
  TaskRefs *s;       /* the state's: it outlives every future */
  size_t slot;
  uint64_t gen;
  int form;       /* F_*: what user value 1 holds */
} Future;

static ppe_task *task_of(const Future *f) {
  const TaskRefs *s = f->s;
  return (f->slot < s->n && s->v[f->slot].gen == f->gen) ? s->v[f->slot].t
                                                        : NULL;
}

#define TASK(f) task_of(f)

/* A future is usable as long as its slot holds its task: always, but for
** one that a finalizer of the caller's brought back from the dead. */
static Future *checkfuture(lua_State *L, int arg) {
  Future *f = (Future *)lppe_checkclass(L, arg, FUTURE_MT, PPE_FUTURE);
  if (TASK(f) == NULL) luaL_error(L, "attempt to use a collected future");
  return f;
}

/* The task of the future at idx; NULL if that is no future, or a
** collected one. */
ppe_task *lppe_futuretask(lua_State *L, int idx) {
  Future *f = (Future *)lppe_testclass(L, idx, FUTURE_MT);
  return f != NULL ? TASK(f) : NULL;
}

/* Room for one more slot: 0, or -1 out of memory. */
static int slots_reserve(TaskRefs *s) {
  size_t cap = s->cap ? 2 * s->cap : 256, *fr;
  TaskRef *v;
  if (s->nfree > 0 || s->n < s->cap) return 0;
  if ((v = (TaskRef *)realloc(s->v, cap * sizeof(*v))) == NULL) return -1;
  s->v = v;
  if ((fr = (size_t *)realloc(s->free, cap * sizeof(*fr))) == NULL)
    return -1;
  s->free = fr;
  s->cap = cap;
  return 0;
}

/* Lets go of the tasks of the slots in ks[0..n), under one lock. A map's
** own that goes before its end (a loop left early, before 5.4 has a for
** loop close it) is cancelled if it has not started, as Python's map
** does when its generator goes. */
#define BATCH 64
static void slots_release(TaskRefs *s, const size_t *ks, size_t n) {
  ppe_task *ts[BATCH];
  char cancel[BATCH];
  size_t i;
  for (i = 0; i < n; i++) {
    TaskRef *sl = &s->v[ks[i]];
    ts[i] = sl->t;
    cancel[i] = (char)sl->inner;
    sl->t = NULL;
    sl->gen++;
    s->free[s->nfree++] = ks[i];
  }
  ppe_release_all(ts, n, cancel);
}

/* Makes the next sweeper: an object nobody holds, whose finalizer runs
** once the cycle under way ends. Its metatable is the TaskRefs' user value
** 1, so that another load of the module in this state sweeps its own. */
static void arm(lua_State *L, TaskRefs *s) {
  lua_newuserdatauv(L, 1, 0);
  lua_getiuservalue(L, TASKREFS, 1);
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  s->armed = 1;
}

/* Pushes a new future for t, which it takes the caller's reference of. A
** map's own futures are 'inner'. */
void lppe_newfuture(lua_State *L, ppe_task *t, int inner) {
  TaskRefs *s = (TaskRefs *)lua_touserdata(L, TASKREFS);
  Future *f;
  size_t k;
  if (!s->armed) arm(L, s);  /* a sweep could not make the next one */
  if (slots_reserve(s) != 0) {
    ppe_release(t, 0);
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
  lppe_setclass(L, FUTURE_MT);
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
  TaskRefs *s = (TaskRefs *)lua_touserdata(L, TASKREFS);
  size_t k, ks[BATCH], n = 0;
  s->armed = 0;
  for (k = 0; k < s->n; k++) {
    TaskRef *sl = &s->v[k];
    if (sl->t == NULL) continue;
    if (lua_rawgeti(L, WEAK, (lua_Integer)k + 1) != LUA_TNIL) sl->gone = 0;
    else if (!sl->gone) sl->gone = 1;
    else ks[n++] = k;
    lua_pop(L, 1);
    if (n == BATCH) {
      slots_release(s, ks, n);
      n = 0;
    }
  }
  slots_release(s, ks, n);
  arm(L, s);  /* if it raises, the next future arms again */
  return 0;
}

/* At the state's close: every task still held goes. */
static int slots_gc(lua_State *L) {
  TaskRefs *s = (TaskRefs *)lua_touserdata(L, 1);
  size_t k, ks[BATCH], n = 0;
  for (k = 0; k < s->n; k++) {
    if (s->v[k].t == NULL) continue;
    ks[n++] = k;
    if (n == BATCH) {
      slots_release(s, ks, n);
      n = 0;
    }
  }
  slots_release(s, ks, n);
  free(s->v);
  free(s->free);
  if (s->held) ppe_zygote_hold(-1);
  memset(s, 0, sizeof(*s));
  return 0;
}

/* }====================================================== */


/*
** {======================================================
** Outcomes
** =======================================================
*/

/* Makes the Lua side of a final task's outcome, once, and keeps it in the
** future's user value 1: every call returns the same values. A single
** plain value is kept as it is; several, or a table or function, in a
** values table (with n), which 'as_table' always asks for. Pushes it and
** returns its form. */
static int outcome(lua_State *L, int arg, Future *f, int as_table) {
  if (f->form == F_NONE) {
    ppe_task *t = TASK(f);
    ppe_outcome o;
    int form = F_FAIL;
    /* What is made here is allocated, which may run a collection, whose
    ** sweep may let go of the slot of a future that a finalizer brought
    ** back: the engine holds t meanwhile. (A memory error in between
    ** would leave that hold behind.) */
    ppe_outcome_get(t, &o);
    if (o.kind == PPE_OK) {
      char err[PPE_ERRSZ];
      int top = lua_gettop(L);
      int n = ppe_decode(L, o.bytes, o.len, 0, err);
      if (n < 0) lppe_pusherror(L, "SerializationError", err);
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
    else lppe_pushfailure(L, &o);
    lua_setiuservalue(L, arg, 1);
    f->form = form;
    ppe_outcome_done(t);  /* the Lua side holds it now */
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

/* The outcome of the future at idx, final, pushed: see outcome. */
int lppe_outcome(lua_State *L, int idx, int as_table) {
  return outcome(L, idx, checkfuture(L, idx), as_table);
}

/* Waits for f until the deadline given at arg, running the callbacks of
** futures that complete meanwhile. 1 if it is final. */
static int await(lua_State *L, Future *f, int arg) {
  double deadline = lppe_deadline(L, arg);
  int ok;
  do ok = ppe_await(TASK(f), deadline, lppe_callbacks(L));
  while (ok == PPE_CALLBACKS);
  lppe_run_callbacks(L);
  return ok;
}

/* The TimeoutError of a wait of the seconds at arg that ran out. */
static int timed_out(lua_State *L, int arg) {
  lua_pushfstring(L, "the future is not done within %s s",
                  lua_tostring(L, arg));
  return lppe_raise(L, "TimeoutError", lua_tostring(L, -1));
}

static int f_result(lua_State *L) {
  Future *f = checkfuture(L, 1);
  int i, n, ok = await(L, f, 2);
  if (!ok) return timed_out(L, 2);
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
  int ok = await(L, f, 2);
  if (!ok) return timed_out(L, 2);
  if (outcome(L, 1, f, 0) != F_FAIL) lua_pushnil(L);
  else if (ppe_state(TASK(f)) == PPE_CANCELLED) return lua_error(L);
  return 1;
}

static int f_wait(lua_State *L) {
  Future *f = checkfuture(L, 1);
  int ok = await(L, f, 2);
  lua_pushboolean(L, ok);
  return 1;
}

static int f_done(lua_State *L) {
  lua_pushboolean(L, ppe_state(TASK(checkfuture(L, 1))) >= PPE_FINISHED);
  return 1;
}

static int f_running(lua_State *L) {
  lua_pushboolean(L, ppe_state(TASK(checkfuture(L, 1))) == PPE_RUNNING);
  return 1;
}

static int f_cancelled(lua_State *L) {
  lua_pushboolean(L, ppe_state(TASK(checkfuture(L, 1))) == PPE_CANCELLED);
  return 1;
}

static const char *const cancel_options[] = {"force", NULL};

/* f:cancel([opts]): with force = true, a running task too. */
static int f_cancel(lua_State *L) {
  ppe_task *t = TASK(checkfuture(L, 1));
  int ok, force;
  lppe_options(L, 2, cancel_options, "cancel");
  force = lppe_optbool(L, 2, "force", 0);
  ok = force ? ppe_cancel_force(t) : ppe_cancel(t);
  lppe_run_callbacks(L);
  lua_pushboolean(L, ok);
  return 1;
}

static const char *const state_names[] = {
  "pending", "running", "finished", "failed", "cancelled"
};

static int f_state(lua_State *L) {
  lua_pushstring(L, state_names[ppe_state(TASK(checkfuture(L, 1)))]);
  return 1;
}

/* The worker that ran it: its pid (and far group), once it is done. */
static int f_pid(lua_State *L) {
  const char *host;
  pid_t pid = ppe_ran_on(TASK(checkfuture(L, 1)), &host);
  if (pid <= 0) return 0;
  lua_pushinteger(L, pid);
  if (host == NULL) return 1;
  lua_pushstring(L, host);
  return 2;
}

static int f_tostring(lua_State *L) {
  Future *f = checkfuture(L, 1);
  lua_pushfstring(L, "ppe.future: %p (%s)", (void *)f,
                  state_names[ppe_state(TASK(f))]);
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** Done-callbacks: run in the caller's state, never from a C thread
** =======================================================
*/

/* The state's watched futures: W[future] = tag and W[tag] = future,
** where tag is its number in the list 'd' of the box beside, which the
** engine fills as they complete. */
static const char watch_key = 'w';
static const char box_key = 'b';

/* Completed futures taken at a time, under one lock. */
#define CALLBACK_BATCH 64

/* The tags taken out of 'd' and not yet run are the state's, not a
** call's: a callback that runs the callbacks due (result, wait, poll)
** runs them next, in completion order. */
typedef struct Watch {
  ppe_done *d;         /* first: a box of lwait.c's */
  lua_Integer tags;    /* the last tag given */
  int next, ntaken;    /* taken[next..ntaken-1] are still to run */
  int64_t taken[CALLBACK_BATCH];
} Watch;

/* How many futures are watched, in every state of the process: when none
** is, the frequent calls that run callbacks skip looking. */
static long nwatched = 0;

static int tostring_value(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Reports the error on the top (left there) on stderr, in one line, as
** Python's pool logs a raising callback: a callback's failure must not
** break the call that happened to run it, nor keep the other callbacks
** from running, nor go unseen. The value's text comes from a protected
** call: a __tostring may raise, or return what is not a string. */
static void warn_callback(lua_State *L) {
  const char *msg;
  int ok;
  lua_pushcfunction(L, tostring_value);
  lua_pushvalue(L, -2);
  ok = lua_pcall(L, 1, 1, 0) == LUA_OK;
  msg = lua_tostring(L, -1);
  if (ok && msg != NULL)
    fprintf(stderr, "ppe: error in a done-callback: %s\n", msg);
  else if (ok)
    fprintf(stderr, "ppe: error in a done-callback: %s value (its "
            "__tostring gave no string)\n", luaL_typename(L, -2));
  else
    fprintf(stderr, "ppe: error in a done-callback: %s value (its "
            "__tostring raised: %s)\n", luaL_typename(L, -2),
            msg != NULL ? msg : luaL_typename(L, -1));
  fflush(stderr);
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

/* The tag of the next completed future whose callbacks are due, or 0;
** 'left' bounds how many more are taken out of 'd' at once. */
static int64_t next_due(Watch *w, size_t left) {
  if (w->next == w->ntaken) {
    w->next = 0;
    w->ntaken = (int)ppe_done_poll(w->d, w->taken, left < CALLBACK_BATCH
                                                   ? left : CALLBACK_BATCH);
    if (w->ntaken == 0) return 0;
  }
  return w->taken[w->next++];
}

/* Runs the callbacks of every watched future done by now, in completion
** order; not those of futures that complete while they run, which the
** next call runs. Returns how many futures had theirs run. */
int lppe_run_callbacks(lua_State *L) {
  Watch *w;
  int64_t tag;
  size_t n, i = 0;
  if (nwatched == 0) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &watch_key);
  w = (Watch *)(lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key) == LUA_TUSERDATA
                ? lua_touserdata(L, -1) : NULL);
  if (w == NULL || w->d == NULL || !lua_istable(L, -2) ||
      (n = (size_t)(w->ntaken - w->next) + ppe_done_count(w->d)) == 0) {
    lua_pop(L, 2);
    return 0;
  }
  /* Those that completed before the call, not those its callbacks wait
  ** for: each call ends. */
  for (; i < n && (tag = next_due(w, n - i)) != 0; i++) {
    lua_rawgeti(L, -2, tag);  /* the future */
    lua_pushnil(L);
    lua_rawseti(L, -4, tag);
    lua_pushvalue(L, -1);
    lua_pushnil(L);
    lua_rawset(L, -5);  /* no longer watched */
    nwatched--;
    call_callbacks(L, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return (int)i;
}

/* Runs the callbacks now due, after taking the mark of a wait that
** follows (engine.h): one that completes meanwhile ends that wait. */
uint64_t lppe_callbacks(lua_State *L) {
  uint64_t mark = ppe_callbacks_mark();
  lppe_run_callbacks(L);
  return mark;
}

static int f_add_done_callback(lua_State *L) {
  Future *f = checkfuture(L, 1);
  if (!lua_isfunction(L, 2) && luaL_getmetafield(L, 2, "__call") == LUA_TNIL)
    return luaL_typeerror(L, 2, "function");
  lua_settop(L, 2);
  if (ppe_state(TASK(f)) >= PPE_FINISHED) {
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
  if (lua_rawget(L, -2) == LUA_TNIL) {  /* watched from now on */
    Watch *w = (Watch *)(lua_rawgetp(L, LUA_REGISTRYINDEX, &box_key) ==
                         LUA_TUSERDATA ? lua_touserdata(L, -1) : NULL);
    if (w == NULL || w->d == NULL) {
      w = (Watch *)lppe_newdone(L, sizeof(Watch) - sizeof(ppe_done *));
      w->tags = 0;
      w->next = w->ntaken = 0;
      lua_rawsetp(L, LUA_REGISTRYINDEX, &box_key);
    }
    if (ppe_watch(w->d, TASK(f), w->tags + 1) != 0)
      return luaL_error(L, "not enough memory");
    w->tags++;
    nwatched++;
    lua_pushvalue(L, 1);
    lua_pushinteger(L, w->tags);
    lua_rawset(L, -5);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -4, w->tags);
  }
  return 0;
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
  {"pid", f_pid},
  {"add_done_callback", f_add_done_callback},
  {NULL, NULL}
};

static const luaL_Reg future_meta[] = {
  {"__tostring", f_tostring},
  {"__index", NULL},
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

/* Pushes the upvalues TASKREFS and WEAK: the state's slots, and the weak
** table of their futures. */
void lppe_push_taskrefs(lua_State *L) {
  memset(lua_newuserdatauv(L, sizeof(TaskRefs), 1), 0, sizeof(TaskRefs));
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
}

/* Once every upvalue is there (from mts on): the slots' finalizers, and
** the future class. */
void lppe_open_futures(lua_State *L, int mts) {
  lppe_newmeta(L, PPE_TASKREFS, slots_meta, mts);
  lua_setmetatable(L, mts + 2);
  ((TaskRefs *)lua_touserdata(L, mts + 2))->held = 1;  /* till its __gc */
  ppe_zygote_hold(1);
  lua_createtable(L, 0, 1);  /* the sweepers' metatable, this load's own */
  lppe_setfuncs(L, sweep_meta, mts);
  lua_setiuservalue(L, mts + 2, 1);
  lppe_newclass(L, PPE_FUTURE, future_meta, future_methods, mts);
}
