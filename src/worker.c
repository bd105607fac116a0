/* worker.c - the worker process: reads requests from its channel, runs
** them on its own lua_State, writes replies; leaves with _exit. */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "lua.h"

#include "runner.h"
#include "transport.h"
#include "worker.h"

/* Replies are gathered while more requests are already buffered, and sent
** together: one system call for a batch of small tasks. */
#define REPLY_FLUSH (256 * 1024)

/* A request or reply this large leaves garbage worth collecting at once,
** so its memory is there for the next one. */
#define BIG_MESSAGE (1024 * 1024)

/* After this long without work, a worker gives its memory back. */
#define IDLE_MS 200

static int worker_id = 0;  /* 0 in the parent */

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

static void flush_replies(int fd, ppe_buf *out) {
  fflush(stdout);  /* print's output reaches a pipe though _exit skips */
  fflush(stderr);  /* stdio, and before the reply that reports the task */
  if (out->len > 0 && ppe_send_all(fd, out->p, out->len) != 0) _exit(0);
  out->len = 0;
}

/* Runs one request, appending its reply (frame and payload) to out. */
static void serve_one(lua_State *L, int fd, const ppe_frame *f,
                      const char *payload, ppe_buf *out, ppe_buf *one) {
  struct timespec t0;
  ppe_frame *rf;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (ppe_runner_run(L, (int)f->type, f->id, payload, (size_t)f->len,
                     one) < 0)
    _exit(4);
  rf = (ppe_frame *)one->p;
  rf->aux = micros_since(&t0);  /* the parent sizes its batches by it */
  if (one->len >= REPLY_FLUSH) {  /* too big to copy into the batch */
    flush_replies(fd, out);
    flush_replies(fd, one);
  }
  else if (ppe_buf_add(out, one->p, one->len) != 0) _exit(4);
  if (f->len > BIG_MESSAGE || one->len > BIG_MESSAGE)
    lua_gc(L, LUA_GCCOLLECT, 0);
}

void ppe_worker_main(lua_State *L, int fd, int id) {
  ppe_reader rd = {PPE_BUF_INIT, 0};
  ppe_buf out = PPE_BUF_INIT, one = PPE_BUF_INIT;
  worker_id = id;
  for (;;) {
    ppe_frame f;
    const char *payload;
    int r = ppe_reader_next(&rd, &f, &payload);
    if (r < 0) _exit(3);  /* the parent sent nonsense: nothing to trust */
    if (r == 0) {
      long n;
      flush_replies(fd, &out);  /* nothing more buffered: reply now */
      if (rd.pos == rd.b.len && ppe_wait_readable(fd, IDLE_MS) == 0) {
        /* Idle: an idle worker should cost next to nothing. */
        lua_gc(L, LUA_GCCOLLECT, 0);
        ppe_buf_free(&out);
        ppe_buf_free(&one);
        ppe_reader_free(&rd);
        ppe_big_trim();
      }
      n = ppe_reader_fill(&rd, fd);
      if (n == 0) _exit(0);  /* end of stream: the executor is done */
      if (n < 0 && n != -EAGAIN) _exit(n == -ENOMEM ? 4 : 3);
      continue;
    }
    if (f.type != PPE_F_TASK && f.type != PPE_F_INIT &&
        f.type != PPE_F_CHUNK)
      _exit(3);
    serve_one(L, fd, &f, payload, &out, &one);
    if (f.type == PPE_F_INIT && one.p != NULL &&
        ((ppe_frame *)one.p)->type != PPE_F_OK) {
      flush_replies(fd, &out);
      _exit(5);  /* an initializer that raised leaves the worker useless */
    }
    if (out.len >= REPLY_FLUSH) flush_replies(fd, &out);
  }
}
