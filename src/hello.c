/* hello.c - the handshake with a far worker. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "compat.h"
#include "hello.h"
#include "ppe.h"
#include "vm.h"
#include "wire.h"

static const char MAGIC[8] = {'p', 'p', 'e', 1, 'h', 'e', 'l', 'o'};

typedef struct Dump {
  ppe_hello *h;
} Dump;

static int keep_head(lua_State *L, const void *p, size_t n, void *ud) {
  ppe_hello *h = ((Dump *)ud)->h;
  size_t room = sizeof(h->code) - h->ncode;
  (void)L;
  if (n > room) n = room;
  memcpy(h->code + h->ncode, p, n);
  h->ncode += (uint32_t)n;
  return 0;
}

/* The VM's own name and version: LuaJIT's differ from 5.1's in all but
** _VERSION, and so does their bytecode. */
static void vm_name(lua_State *L, char *out, size_t n) {
  const char *v = NULL;
  if (ppe_luajit()) {
    lua_getglobal(L, "jit");
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "version");
      v = lua_tostring(L, -1);
      if (v != NULL) snprintf(out, n, "%s", v);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (v != NULL) return;
  }
  snprintf(out, n, "Lua %d.%d", LUA_VERSION_NUM / 100,
           LUA_VERSION_NUM % 100);
}

int ppe_hello_make(lua_State *L, ppe_hello *h) {
  Dump d;
  int r;
  memset(h, 0, sizeof(*h));
  memcpy(h->magic, MAGIC, sizeof(MAGIC));
  h->order = 0x01020304;
  h->wire = PPE_WIRE_VERSION;
  snprintf(h->ppe, sizeof(h->ppe), "%s", PPE_VERSION);
  vm_name(L, h->lua, sizeof(h->lua));
  h->pid = (int32_t)getpid();
  d.h = h;
  if (luaL_loadstring(L, "return") != LUA_OK) {
    lua_pop(L, 1);
    return -1;
  }
  r = lua_dump(L, keep_head, &d, 0);
  lua_pop(L, 1);
  return r == 0 ? 0 : -1;
}

/* A side's versions, for a message: "ppe 0.1.0 on Lua 5.4". */
static void describe(const ppe_hello *h, char *out, size_t n) {
  snprintf(out, n, "%.24s on %.40s", h->ppe, h->lua);
}

int ppe_hello_match(const ppe_hello *mine, const void *far, size_t n,
                    char *why, size_t whysz) {
  ppe_hello h;
  char a[80], b[80];
  if (n != sizeof(h) || memcmp(far, MAGIC, sizeof(MAGIC)) != 0) {
    snprintf(why, whysz, "the far side did not answer as a ppe worker "
             "(expected %s)", PPE_VERSION);
    return 0;
  }
  memcpy(&h, far, sizeof(h));
  h.ppe[sizeof(h.ppe) - 1] = h.lua[sizeof(h.lua) - 1] = '\0';
  describe(mine, a, sizeof(a));
  describe(&h, b, sizeof(b));
  if (strcmp(h.ppe, mine->ppe) != 0 || strcmp(h.lua, mine->lua) != 0) {
    snprintf(why, whysz, "versions differ: here %s, far side %s", a, b);
    return 0;
  }
  if (h.order != mine->order || h.wire != mine->wire ||
      h.ncode != mine->ncode || memcmp(h.code, mine->code, h.ncode) != 0) {
    snprintf(why, whysz, "bytecode or byte order differ: here %s, far side "
             "%s on another kind of machine", a, b);
    return 0;
  }
  return 1;
}
