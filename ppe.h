/* ppe.h - the public C interface of ppe, for programs that embed Lua. */
#ifndef PPE_H
#define PPE_H

#include "lua.h"

#if defined(__GNUC__)
#define PPE_API __attribute__((visibility("default")))
#else
#define PPE_API
#endif

/* ppe's version, as ppe._VERSION gives it: the one place it is written.
** The Makefile reads it from here (ppe.pc), and spec/release_spec.lua
** checks that the rockspec and CHANGELOG.md name the same one. */
#define PPE_VERSION "ppe 0.2.0"

/* Opens the module: luaL_requiref(L, "ppe", luaopen_ppe, 0) from Lua 5.2
** on; on every version, Lua 5.1 and LuaJIT too, set package.preload.ppe to
** it (examples/host/preload.c). Link libppe.a: pkg-config --libs ppe. */
PPE_API int luaopen_ppe(lua_State *L);

/* require "ppe.serve": the calling process serves the executor at the
** other end of its stdin and stdout (as ppe.serve() does), then exits. */
PPE_API int luaopen_ppe_serve(lua_State *L);

/* Installs the host's hook, called as init(L, ud) in every new worker on
** its fresh state (after the standard libraries, before the executor's
** initializer), so the host can register its own C libraries there; 'ud'
** is the host's, passed as it is. NULL removes it. A hook that raises
** (lua_error) breaks the executor: its futures fail BrokenExecutor with
** "the host's worker-init hook raised: " and the hook's message, and no
** worker is started again. Workers of executors made before keep the
** hook they had; the next executor gets a new fork server, forked with
** this hook in place. */
PPE_API void ppe_set_worker_init(void (*init)(lua_State *L, void *ud),
                                 void *ud);

/* Whether opening ppe in a state may make ppe's kept mappings serve that
** state's blocks of 4 MiB and more (large results then cost no page
** faults; README, "Memory"). 1, the default, allows it: ppe then wraps
** the state's allocator, if it is the stock one of luaL_newstate and the
** VM is PUC Lua, and the environment variable PPE_HOST_ALLOC is not 0.
** 0 leaves the allocator of every state opened afterwards as it is. Call
** it before luaopen_ppe; a state already wrapped stays so. */
PPE_API void ppe_set_host_alloc(int on);

#endif
