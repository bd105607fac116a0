/* hostalloc.c - big blocks for the caller's own Lua state.
** A large result becomes a Lua string in the caller's state. With the
** stock allocator that string is a fresh malloc'd mapping each time: 4 KiB
** pages, each faulted and zeroed while the bytes are copied in, which
** costs several times the copy. ppe's own mappings are reused, so the
** allocator of a state that uses the stock one is wrapped: new blocks of
** PPE_BIG_MIN bytes and more come from ppe, and everything else goes on
** as before. Blocks are told apart by a list of the ones ppe
** handed out (there are few: each is 4 MiB or more). */
#include <pthread.h>
#include <stdlib.h>

#include "lua.h"
#include "lauxlib.h"

#include "compat.h"

#include "ppe.h"
#include "bigblock.h"
#include "hostalloc.h"
#include "loaded.h"
#include "vm.h"

static int host_on = 1;  /* ppe_set_host_alloc's; set before any state */

PPE_API void ppe_set_host_alloc(int on) {
  host_on = on != 0;
}

static lua_Alloc stock = NULL;  /* what luaL_newstate installs */
static pthread_once_t stock_once = PTHREAD_ONCE_INIT;

/* The blocks ppe handed out, shared by every state in the process. */
static pthread_mutex_t own_lock = PTHREAD_MUTEX_INITIALIZER;
static void **own = NULL;
static size_t nown = 0, capown = 0;

/* Finds p in the list and puts np in its place, or takes p out when np
** is NULL; 1 if p was there. With np == p it only looks. */
static int swap_own(void *p, void *np) {
  size_t i;
  int found = 0;
  pthread_mutex_lock(&own_lock);
  for (i = 0; i < nown; i++)
    if (own[i] == p) {
      if (np != NULL) own[i] = np;
      else own[i] = own[--nown];
      found = 1;
      break;
    }
  pthread_mutex_unlock(&own_lock);
  return found;
}

/* Adds p to the list; 0 if there was no room for it. */
static int adopt(void *p) {
  int ok = 1;
  pthread_mutex_lock(&own_lock);
  if (nown == capown) {
    size_t ncap = capown ? capown * 2 : 16;
    void **n = realloc(own, ncap * sizeof(*own));
    if (n == NULL) ok = 0;
    else {
      own = n;
      capown = ncap;
    }
  }
  if (ok) own[nown++] = p;
  pthread_mutex_unlock(&own_lock);
  return ok;
}

static void *host_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  /* A state runs on one thread at a time: nobody else moves p meanwhile. */
  if (p != NULL && osize >= PPE_BIG_MIN && swap_own(p, p)) {
    void *np = NULL;
    if (nsize > 0 && (np = ppe_big_resize(p, osize, nsize)) == NULL)
      return NULL;  /* Lua keeps the old block, still ppe's */
    /* Shrunk below the limit, it is malloc'd as stock's blocks are. */
    swap_own(p, nsize >= PPE_BIG_MIN ? np : NULL);
    if (nsize == 0) ppe_big_free(p, osize);
    return np;
  }
  if (p == NULL && nsize >= PPE_BIG_MIN) {
    void *np = ppe_big_resize(NULL, 0, nsize);
    if (np != NULL && adopt(np)) return np;
    ppe_big_free(np, nsize);  /* and the stock allocator tries */
  }
  return stock(ud, p, osize, nsize);
}

static void find_stock(void) {
  lua_State *T;
  /* lua_close unloads C libraries before it frees the last objects,
  ** which then come to host_alloc. */
  if (!ppe_stay_loaded()) return;  /* stock stays NULL: no wrapping */
  T = luaL_newstate();
  if (T == NULL) return;
  stock = lua_getallocf(T, NULL);
  lua_close(T);
}

int ppe_host_alloc(lua_State *L) {
  void *ud;
  lua_Alloc f;
  /* LuaJIT's allocator is its own, which nothing may wrap. */
  if (!host_on || ppe_luajit()) return 0;
  f = lua_getallocf(L, &ud);
  if (f == host_alloc) return 1;
  pthread_once(&stock_once, find_stock);
  if (stock == NULL || f != stock) return 0;
  lua_setallocf(L, host_alloc, ud);
  return 1;
}
