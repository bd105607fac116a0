/* worker.h - the worker process main loop. */
#ifndef PPE_WORKER_H
#define PPE_WORKER_H

#include "lua.h"

/* 1..max_workers inside a worker, 0 in the parent. */
int ppe_worker_id(void);

struct ppe_peer;
/* Serves requests from fd on L until end of stream; never returns. arena
** is its own shared arena (a descriptor, or -1), parent the caller's,
** mapped (or NULL). */
void ppe_worker_main(lua_State *L, int fd, int id, int arena,
                     struct ppe_peer *parent) __attribute__((noreturn));

#endif
