/* lwait.c - ppe.wait and ppe.as_completed: waiting on many futures, of
** any executors, through the engine's one wait. */
#include "src/lua/lppe.h"

/* The tasks of the futures in the array at arg, in a Lua-owned array,
** pushed. */
static ppe_task **checkfutures(lua_State *L, int arg, int *n) {
  ppe_task **ts;
  lua_Integer i, len;
  luaL_checktype(L, arg, LUA_TTABLE);
  len = luaL_len(L, arg);
  luaL_argcheck(L, len <= INT32_MAX / 2, arg, "too many futures");
  ts = (ppe_task **)lua_newuserdatauv(L, sizeof(ppe_task *) *
                                      (size_t)(len ? len : 1), 0);
  for (i = 1; i <= len; i++) {
    lua_geti(L, arg, i);
    if (lppe_testclass(L, -1, FUTURE_MT) == NULL)
      luaL_error(L, "bad argument #%d (item %d is %s, not a future)", arg,
                 (int)i, luaL_typename(L, -1));
    if ((ts[i - 1] = lppe_futuretask(L, -1)) == NULL)
      luaL_error(L, "bad argument #%d (item %d is a collected future)", arg,
                 (int)i);
    lua_pop(L, 1);
  }
  *n = (int)len;
  return ts;
}

const char *const lppe_return_when[] = {
  "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", NULL
};

int lppe_wait(lua_State *L) {
  int n, i;
  double deadline = lppe_deadline(L, 2);
  int mode = luaL_checkoption(L, 3, "ALL_COMPLETED", lppe_return_when);
  lua_Integer nd = 0, nn = 0;
  ppe_task **ts;
  lua_settop(L, 3);
  ts = checkfutures(L, 1, &n);
  while (ppe_await_many(ts, n, mode, deadline, lppe_callbacks(L)) ==
         PPE_CALLBACKS)
    ;
  lua_createtable(L, n, 0);
  lua_createtable(L, 0, 0);
  for (i = 0; i < n; i++) {
    int fin = ppe_state(ts[i]) >= PPE_FINISHED;
    lua_geti(L, 1, i + 1);
    lua_rawseti(L, fin ? -3 : -2, fin ? ++nd : ++nn);
  }
  lppe_run_callbacks(L);
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
  int best;
  do best = ppe_await_next(c->ts, c->yielded, c->n, c->deadline,
                          lppe_callbacks(L));
  while (best == PPE_CALLBACKS);
  if (best == -2)
    return lppe_raise(L, "TimeoutError",
                      "futures not completed within the timeout");
  if (best < 0) return 0;
  c->yielded[best] = 1;
  lua_getiuservalue(L, lua_upvalueindex(1), 1);
  lua_rawgeti(L, -1, best + 1);
  return 1;
}

int lppe_as_completed(lua_State *L) {
  int n, i, k = 0;
  double deadline = lppe_deadline(L, 2);
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
