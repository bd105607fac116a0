/* lwait.c - ppe.wait and ppe.as_completed: waiting on many futures, of
** any executors, through the engine's completion lists; and the box that
** holds such a list for Lua. */
#include "src/lua/lppe.h"

/*
** {======================================================
** Boxes: a completion list owned by a Lua value
** =======================================================
*/

/* The list goes with its box, or before (lppe_closedone): an error or a
** loop left early lets go of the tasks it holds. */
static int box_gc(lua_State *L) {
  lppe_closedone((ppe_done **)lua_touserdata(L, 1));
  return 0;
}

ppe_done **lppe_newdone(lua_State *L, size_t extra) {
  ppe_done **box = (ppe_done **)lua_newuserdatauv(L, sizeof(ppe_done *) +
                                                 extra, 1);
  *box = NULL;
  luaL_setmetatable(L, PPE_DONEBOX);
  if ((*box = ppe_done_open()) == NULL) luaL_error(L, "not enough memory");
  return box;
}

void lppe_closedone(ppe_done **box) {
  if (*box == NULL) return;
  ppe_done_close(*box);
  *box = NULL;
}

/* }====================================================== */


/* The futures of the array at arg, checked, copied into a new array
** (pushed): a callback run during a wait may change the caller's, or its
** __index answer anew. With 'once', each future goes in once, however
** often it is given (as Python's set does). Returns how many. */
static int futures(lua_State *L, int arg, int once) {
  lua_Integer i, k = 0, len;
  luaL_checktype(L, arg, LUA_TTABLE);
  len = luaL_len(L, arg);
  luaL_argcheck(L, len <= INT32_MAX / 2, arg, "too many futures");
  lua_createtable(L, len > 0 ? (int)len : 0, 0);
  lua_newtable(L);  /* those seen */
  for (i = 1; i <= len; i++) {
    lua_geti(L, arg, i);
    if (lppe_testclass(L, -1, FUTURE_MT) == NULL)
      luaL_error(L, "bad argument #%d (item %d is %s, not a future)", arg,
                 (int)i, luaL_typename(L, -1));
    if (lppe_futuretask(L, -1) == NULL)
      luaL_error(L, "bad argument #%d (item %d is a collected future)", arg,
                 (int)i);
    if (once) {
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) != LUA_TNIL) {
        lua_pop(L, 2);
        continue;
      }
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushboolean(L, 1);
      lua_rawset(L, -4);
    }
    lua_rawseti(L, -3, ++k);
  }
  lua_pop(L, 1);
  return (int)k;
}

/* The tasks of the n futures of the array at idx (made by futures), added
** to the list d. */
static void addfutures(lua_State *L, int idx, int n, ppe_done *d) {
  ppe_task **ts;
  int i;
  ts = (ppe_task **)lua_newuserdatauv(L, sizeof(ppe_task *) *
                                      (size_t)(n ? n : 1), 0);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    ts[i] = lppe_futuretask(L, -1);
    lua_pop(L, 1);
  }
  if (ppe_done_add_all(d, ts, (size_t)n) != 0)
    luaL_error(L, "not enough memory");
  lua_pop(L, 1);
}

const char *const lppe_return_when[] = {
  "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", NULL
};

int lppe_wait(lua_State *L) {
  int n, i;
  double deadline = lppe_deadline(L, 2);
  int mode = luaL_checkoption(L, 3, "ALL_COMPLETED", lppe_return_when);
  lua_Integer nd = 0, nn = 0;
  ppe_done **box;
  lua_settop(L, 3);
  n = futures(L, 1, 0);  /* 4 */
  box = lppe_newdone(L, 0);
  addfutures(L, 4, n, *box);
  while (ppe_done_await(*box, mode, deadline, lppe_callbacks(L)) ==
         PPE_CALLBACKS)
    ;
  lppe_closedone(box);
  lua_createtable(L, n, 0);
  lua_createtable(L, 0, 0);
  for (i = 1; i <= n; i++) {
    int fin;
    lua_rawgeti(L, 4, i);
    fin = ppe_state(lppe_futuretask(L, -1)) >= PPE_FINISHED;
    lua_rawseti(L, fin ? -3 : -2, fin ? ++nd : ++nn);
  }
  lppe_run_callbacks(L);
  return 2;
}

/* as_completed's list and deadline, in a box whose user value is the
** array of futures given, which the tags index. */
typedef struct Completion {
  ppe_done *d;
  double deadline;
  lua_Number timeout;  /* the seconds it was given */
} Completion;

static int as_completed_step(lua_State *L) {
  Completion *c = (Completion *)lua_touserdata(L, lua_upvalueindex(1));
  int64_t tag;
  do {
    uint64_t mark = lppe_callbacks(L);
    /* (a callback may have run this iterator to its end, and its list
    ** gone: c->d is read after the callbacks) */
    if (c->d == NULL) return 0;
    tag = ppe_done_next(c->d, c->deadline, mark);
  } while (tag == PPE_CALLBACKS);
  if (tag == 0) {
    lua_pushfstring(L, "futures not completed within %f s", c->timeout);
    return lppe_raise(L, "TimeoutError", lua_tostring(L, -1));
  }
  if (tag < 0) {  /* every one was yielded: the list goes now */
    lppe_closedone(&c->d);
    return 0;
  }
  lua_getiuservalue(L, lua_upvalueindex(1), 1);
  lua_rawgeti(L, -1, tag);
  return 1;
}

int lppe_as_completed(lua_State *L) {
  int n;
  double deadline = lppe_deadline(L, 2);
  Completion *c;
  lua_settop(L, 2);
  n = futures(L, 1, 1);  /* 3 */
  c = (Completion *)lppe_newdone(L, sizeof(Completion) - sizeof(ppe_done *));
  c->deadline = deadline;
  c->timeout = lua_tonumber(L, 2);
  addfutures(L, 3, n, c->d);
  lua_pushvalue(L, 3);
  lua_setiuservalue(L, -2, 1);
  lua_pushcclosure(L, as_completed_step, 1);
  return 1;
}

static const luaL_Reg box_meta[] = {
  {"__gc", box_gc},
  {NULL, NULL}
};

void lppe_open_waits(lua_State *L, int mts) {
  lppe_newmeta(L, PPE_DONEBOX, box_meta, mts);
  lua_pop(L, 1);
}
