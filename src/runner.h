/* runner.h - the worker's Lua side: its fresh state, and running one task
** from a request payload into a reply frame. */
#ifndef PPE_RUNNER_H
#define PPE_RUNNER_H

#include "lua.h"

#include "buf.h"

/* A fresh state with the standard libraries and ppe preloadable. NULL if
** it cannot be built. Never raises. */
lua_State *ppe_runner_state(void);

/* Sets package.path and package.cpath of L, each unless NULL. 0, or -1 if
** it ran out of memory. */
int ppe_runner_paths(lua_State *L, const char *path, const char *cpath);

/* The host's worker-init hook (ppe.h), or NULL. */
typedef void (*ppe_hook)(lua_State *L, void *ud);
ppe_hook ppe_runner_host_hook(void **ud);

/* Runs the host's worker-init hook, if any, on L. 0, or -1 if it raised,
** with its message in why[0..n) (cut to fit). */
int ppe_runner_hook(lua_State *L, char *why, size_t n);

/* Runs the request (a PPE_F_TASK or PPE_F_INIT payload) and writes a whole
** reply frame for task 'id' into out (reset first). Never raises; returns
** the reply's frame type, or -1 if out could not be built at all. */
int ppe_runner_run(lua_State *L, int type, unsigned long long id,
                   const char *p, size_t len, ppe_buf *out);

#endif
