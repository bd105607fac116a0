/* serve.h - a far worker, serving an executor over stdin and stdout. */
#ifndef PPE_SERVE_H
#define PPE_SERVE_H

#include <stddef.h>

#include "lua.h"

/* Serves the executor at the other end of this process's stdin and
** stdout (a launcher's pipe) until that channel ends, then returns 0;
** ends the process if it ends while a task runs. L is the calling state,
** whose package paths the tasks' fresh state gets. -1 with a message in
** why (n bytes) when the handshake failed. */
int ppe_serve(lua_State *L, char *why, size_t n);

#endif
