/* worker.c - the worker process: reads requests from its channel, runs
** them on its own lua_State, writes replies; leaves with _exit. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lua.h"

#include "buf.h"
#include "future.h"
#include "runner.h"
#include "ring.h"
#include "shm.h"
#include "transport.h"
#include "worker.h"

/* A request or reply this large leaves garbage worth collecting at once,
** so its memory is there for the next one. */
#define BIG_MESSAGE (1024 * 1024)

/* After this long without work, a worker collects its garbage and frees
** its buffers. */
#define IDLE_MS 200

static int worker_id = 0;  /* 0 in the parent */

static uint64_t sent = 0;  /* replies sent through the channel */
static uint32_t ntasks = 0;  /* task requests read: the gate's count */

int ppe_worker_id(void) {
  return worker_id;
}

static uint32_t micros_since(const struct timespec *t0) {
  struct timespec t1;
  double us;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  us = (double)(t1.tv_sec - t0->tv_sec) * 1e6 +
       (double)(t1.tv_nsec - t0->tv_nsec) / 1e3;
  return us > 4e9 ? 4000000000U : (uint32_t)us;
}

/* Sends a reply: into the ring, with a bell if the parent may be asleep,
** or through the channel. */
static void reply_out(int fd, const char *m, size_t n) {
  /* Asked each time: the child of a fork in a task has no arena. */
  ppe_ring *ring = ppe_shm_ring();
  int r = ring != NULL ? ppe_ring_put(ring, m, n, sent) : 0;
  if (r == 0) {
    if (ppe_send_all(fd, m, n) != 0) _exit(0);
    sent++;
  }
  else if (r == 2) {
    ppe_frame bell;
    memset(&bell, 0, sizeof(bell));
    bell.type = PPE_F_BELL;
    if (ppe_send_all(fd, &bell, sizeof(bell)) != 0) _exit(0);
  }
}

/* Runs one request and puts its reply out (in the ring or the channel)
** before anything else runs: if the next task kills the worker, no
** finished task's result dies with it, and the parent knows the oldest
** unanswered task as the one that was running. Requests still arrive
** several at a time. Returns the reply's type (the reply itself may have
** been lent to the parent). */
static int serve_one(lua_State *L, int fd, const ppe_frame *f,
                     const char *payload, ppe_buf *reply) {
  struct timespec t0;
  ppe_ref ref;
  const char *out;
  size_t n;
  int big, type;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (ppe_runner_run(L, (int)f->type, f->id, payload, (size_t)f->len,
                     reply) < 0)
    _exit(4);
  /* The parent sizes its pipelines by the time a task takes. */
  ((ppe_frame *)reply->p)->aux = micros_since(&t0);
  type = (int)((ppe_frame *)reply->p)->type;
  out = reply->p;
  n = reply->len;
  fflush(stdout);  /* print's output reaches a pipe though _exit skips */
  fflush(stderr);  /* stdio, and before the reply that reports the task */
  big = f->len > BIG_MESSAGE || reply->len > BIG_MESSAGE;
  if (ppe_shm_ref(&ref, reply)) {
    /* The parent reads it where it is, and says when it is done; the
    ** next reply is built elsewhere meanwhile. */
    ppe_shm_lend(reply->p, reply->cap);
    reply->p = NULL;
    reply->len = reply->cap = 0;
    out = (const char *)&ref;
    n = sizeof(ref);
  }
  reply_out(fd, out, n);
  if (big) lua_gc(L, LUA_GCCOLLECT, 0);
  return type;
}

void ppe_worker_main(lua_State *L, int fd, int id, int arena,
                     ppe_peer *pa) {
  ppe_reader rd = {PPE_BUF_INIT, 0};
  ppe_buf reply = PPE_BUF_INIT;  /* made shared below */
  char *shared;  /* the request, when it is in the caller's arena */
  int type;
  uint32_t kind;  /* of request */
  worker_id = id;
  /* Counts of this worker's own: one made by a task of another worker's
  ** (a nested executor's) starts from that worker's copy of them. */
  sent = 0;
  ntasks = 0;
  reply.shared = 1;
  /* Large replies are built in our arena: the mapping stays, the
  ** descriptor is not needed. */
  if (arena >= 0 && ppe_shm_adopt(arena) != 0) close(arena);  /* none */
  if (ppe_shm_ring() != NULL) ppe_gate_use(ppe_shm_ring());
  for (;;) {
    ppe_frame f;
    const char *payload;
    int r = ppe_reader_next(&rd, &f, &payload);
    if (r < 0) _exit(3);  /* the parent sent nonsense: nothing to trust */
    if (r == 0) {
      long n;
      if (rd.pos == rd.b.len && ppe_wait_readable(fd, IDLE_MS) == 0) {
        /* Idle: an idle worker should cost next to nothing. */
        lua_gc(L, LUA_GCCOLLECT, 0);
        if (ppe_shm_ring() != NULL) ppe_ring_idle(ppe_shm_ring());
        ppe_buf_free(&reply);
        ppe_reader_free(&rd);
      }
      /* Big blocks kept for reuse go back once unused for a while. */
      if (rd.pos == rd.b.len) {
        double due;
        while ((due = ppe_big_trim(ppe_now())) >= 0 &&
               ppe_wait_readable(fd, (int)(due * 1000) + 1) == 0)
          ;
      }
      n = ppe_reader_fill(&rd, fd);
      if (n == 0) _exit(0);  /* end of stream: the executor is done */
      if (n < 0 && n != -EAGAIN) _exit(n == -ENOMEM ? 4 : 3);
      continue;
    }
    kind = f.type == PPE_F_REF ? f.aux : f.type;
    if (kind != PPE_F_TASK && kind != PPE_F_INIT && kind != PPE_F_CHUNK)
      _exit(3);
    /* A task the executor took back runs elsewhere: no reply. Its
    ** request is not looked at: in the caller's arena, it may be gone. */
    if (kind != PPE_F_INIT && ppe_shm_ring() != NULL) {
      int pass = ppe_gate_pass(ppe_shm_ring(), ntasks++);
      if (pass < 0) _exit(3);  /* out of step with the executor */
      if (pass == 0) continue;
    }
    shared = NULL;
    if (f.type == PPE_F_REF) {
      ppe_frame in;
      if ((shared = ppe_peer_message(pa, &f, payload, &in)) == NULL)
        _exit(3);
      f = in;
      payload = shared + sizeof(in);
      if (f.type != kind) _exit(3);
    }
    type = serve_one(L, fd, &f, payload, &reply);
    if (shared != NULL) ppe_peer_done(shared, sizeof(f) + (size_t)f.len);
    if (f.type == PPE_F_INIT && type != PPE_F_OK)
      _exit(5);  /* an initializer that raised leaves the worker useless */
  }
}
