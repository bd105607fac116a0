/* lerror.c - ppe.Error: the tables every error of ppe is, and the one
** place a task's failure record (engine.h) becomes one. */
#include <string.h>

#include "src/lua/lppe.h"
#include "src/wire.h"

/* Pushes a new error {kind=kind, message=msg}. */
void lppe_pusherror(lua_State *L, const char *kind, const char *msg) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  luaL_setmetatable(L, PPE_ERROR);
}

int lppe_raise(lua_State *L, const char *kind, const char *msg) {
  lppe_pusherror(L, kind, msg);
  return lua_error(L);
}

static void setint(lua_State *L, const char *field, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, field);
}

/* Replaces the message, traceback and value on the top of the stack with
** the RemoteError they make, raised on worker pid in the task's run
** 'attempts': a task's, or one item of a map's chunk. */
void lppe_remote(lua_State *L, lua_Integer pid, int attempts) {
  lppe_pusherror(L, "RemoteError", lua_tostring(L, -3));
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "traceback");
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "value");
  setint(L, "pid", pid);
  if (attempts > 0) setint(L, "attempts", attempts);
  lua_replace(L, -4);
  lua_pop(L, 2);
}

/* Decodes a worker's (message, traceback, value) into a RemoteError. */
static void push_remote(lua_State *L, const ppe_outcome *o) {
  char err[PPE_ERRSZ];
  int top = lua_gettop(L);
  if (ppe_decode(L, o->bytes, o->len, 0, err) != 3) {
    lua_settop(L, top);
    lppe_pusherror(L, "SerializationError", err);
    return;
  }
  lppe_remote(L, o->pid, o->attempts);
}

/* The message a worker sent as one string. */
static void push_text(lua_State *L, const ppe_outcome *o, const char *kind) {
  char err[PPE_ERRSZ];
  int top = lua_gettop(L);
  int n = ppe_decode(L, o->bytes, o->len, 0, err);
  if (n == 1 && lua_type(L, -1) == LUA_TSTRING) {
    lppe_pusherror(L, kind, lua_tostring(L, -1));
    lua_replace(L, top + 1);
    return;
  }
  lua_settop(L, top);
  lppe_pusherror(L, kind, n < 0 ? err : "a malformed reply from a worker");
}

static void failure(lua_State *L, const ppe_outcome *o);

/* Pushes the ppe.Error that the failure record o tells of: a far
** worker's names its group as host. */
void lppe_pushfailure(lua_State *L, const ppe_outcome *o) {
  failure(L, o);
  if (o->host != NULL) {
    lua_pushstring(L, o->host);
    lua_setfield(L, -2, "host");
  }
}

/* Raises the failure of t, final, and lets go of the caller's t. */
int lppe_raise_outcome(lua_State *L, ppe_task *t) {
  ppe_outcome o;
  ppe_outcome_get(t, &o);
  lppe_pushfailure(L, &o);
  ppe_outcome_done(t);
  ppe_release(t, 0);
  return lua_error(L);
}

static void failure(lua_State *L, const ppe_outcome *o) {
  const char *kind = ppe_error_kinds[o->kind];
  switch (o->body) {
    case PPE_B_REMOTE:
      push_remote(L, o);
      if (o->wrap) {  /* the initializer raised: that is the cause */
        lua_getfield(L, -1, "message");
        lppe_pusherror(L, kind, "");
        lua_pushfstring(L, "the initializer raised: %s", lua_tostring(L, -2));
        lua_setfield(L, -2, "message");
        lua_pushvalue(L, -3);
        lua_setfield(L, -2, "cause");
        lua_replace(L, -3);
        lua_pop(L, 1);
      }
      return;
    case PPE_B_TEXT:
      push_text(L, o, kind);
      return;
    case PPE_B_RAW:
      lua_pushlstring(L, o->bytes, o->len);
      lppe_pusherror(L, kind, lua_tostring(L, -1));
      lua_remove(L, -2);
      return;
  }
  lppe_pusherror(L, kind, o->message);
  if (o->show_pid) setint(L, "pid", o->pid);
  if (o->field == PPE_FIELD_SIGNAL) setint(L, "signal", o->signal);
  else if (o->field == PPE_FIELD_EXIT) setint(L, "exit_code", o->exit_code);
  if (o->attempts > 0) setint(L, "attempts", o->attempts);
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

/* Sets the metatable of errors as field Error of the table on the top. */
void lppe_open_errors(lua_State *L, int mts) {
  lppe_newmeta(L, PPE_ERROR, error_meta, mts);
  lua_setfield(L, -2, "Error");
}
