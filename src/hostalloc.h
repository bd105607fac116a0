/* hostalloc.h - big blocks for the caller's own Lua state. */
#ifndef PPE_HOSTALLOC_H
#define PPE_HOSTALLOC_H

#include "lua.h"

/* If L allocates with the stock allocator of luaL_newstate, the VM is PUC
** Lua and ppe_set_host_alloc(0) was not called, makes its blocks of
** PPE_BIG_MIN bytes and more come from ppe's mappings (reused while an
** executor lives); the rest still goes to the stock allocator. A host's
** own allocator is left alone. Returns 1 if the state allocates through
** ppe now. */
int ppe_host_alloc(lua_State *L);

#endif
