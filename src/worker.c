/* worker.c - the worker process: reads requests from its channel, runs
** them on its own lua_State, writes replies; leaves with _exit. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "runner.h"
#include "transport.h"
#include "worker.h"

static int worker_id = 0;  /* 0 in the parent */

int ppe_worker_id(void) {
  return worker_id;
}

void ppe_worker_main(lua_State *L, int fd, int id) {
  ppe_reader rd = {PPE_BUF_INIT, 0};
  ppe_buf out = PPE_BUF_INIT;
  worker_id = id;
  for (;;) {
    ppe_frame f;
    const char *payload;
    int r = ppe_reader_next(&rd, &f, &payload);
    if (r < 0) _exit(3);  /* the parent sent nonsense: nothing to trust */
    if (r == 0) {
      long n = ppe_reader_fill(&rd, fd);
      if (n == 0) _exit(0);  /* end of stream: the executor is done */
      if (n < 0 && n != -EAGAIN) _exit(n == -ENOMEM ? 4 : 3);
      continue;
    }
    if (f.type != PPE_F_TASK && f.type != PPE_F_INIT &&
        f.type != PPE_F_CHUNK)
      _exit(3);
    if (ppe_runner_run(L, (int)f.type, f.id, payload, (size_t)f.len,
                       &out) < 0)
      _exit(4);
    /* Output of print reaches a pipe even though _exit skips stdio. */
    fflush(stdout);
    fflush(stderr);
    if (ppe_send_all(fd, out.p, out.len) != 0) _exit(0);
    if (f.type == PPE_F_INIT && ((ppe_frame *)out.p)->type != PPE_F_OK)
      _exit(5);  /* an initializer that raised leaves the worker useless */
    if (out.cap > ((size_t)1 << 24)) ppe_buf_free(&out);  /* give back */
  }
}
