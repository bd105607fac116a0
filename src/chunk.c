/* chunk.c - a map chunk's reply: its writer and its reader. */
#include "lauxlib.h"

#include "chunk.h"
#include "compat.h"

void ppe_chunk_ok(lua_State *L, int slot) {
  lua_pushinteger(L, lua_gettop(L) - slot);
  lua_replace(L, slot);
}

void ppe_chunk_failed(lua_State *L, int slot) {
  lua_pushinteger(L, -1);
  lua_replace(L, slot);
}

/* In one pass: each value moves down, never over one still to move. */
void ppe_chunk_pack(lua_State *L, int first, int nitems) {
  int i;
  for (i = 0; i < nitems; i++)  /* items before i hold two slots each */
    if (lua_tointeger(L, first + 2 * i) != 1) return;
  lua_pushboolean(L, 1);
  lua_replace(L, first);
  for (i = 1; i < nitems; i++) {
    lua_pushvalue(L, first + 2 * i + 1);
    lua_replace(L, first + 1 + i);
  }
  lua_settop(L, first + nitems);
}

int ppe_chunk_packed(lua_State *L, int first) {
  return lua_type(L, first) == LUA_TBOOLEAN;
}

int ppe_chunk_item(lua_State *L, int vals, lua_Integer *pos, int packed) {
  lua_Integer k, i;
  if (packed) {
    lua_rawgeti(L, vals, (*pos)++);
    return 1;
  }
  lua_rawgeti(L, vals, *pos);
  k = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (k < 0) {
    for (i = 1; i <= 3; i++) lua_rawgeti(L, vals, *pos + i);
    *pos += 4;
    return -1;
  }
  luaL_checkstack(L, (int)k + 2, "too many results");
  for (i = 1; i <= k; i++) lua_rawgeti(L, vals, *pos + i);
  *pos += 1 + k;
  return (int)k;
}
