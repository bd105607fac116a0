/* worker.c - the worker process: its own lua_State, serving tasks. */
#include "worker.h"

static int worker_id = 0;  /* 0 in the parent */

int ppe_worker_id(void) {
  return worker_id;
}
