/* serve.c - a far worker: a process that serves an executor over its
** standard input and output, as a launcher (ssh, srun, ...) connects
** them. Three threads: the main one runs tasks on a fresh Lua state; a
** reader takes frames off the channel as they come, so that a task taken
** back is skipped and the end of the channel ends the process even in
** the middle of a task; a forwarder sends what tasks write to stdout. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

#include "bigblock.h"
#include "compat.h"
#include "frame.h"
#include "hello.h"
#include "lock.h"
#include "mac.h"
#include "runner.h"
#include "serve.h"
#include "transport.h"
#include "worker.h"

/* How long the executor has to answer the worker's hello. */
#define WELCOME_MS 30000

/* A request this large, alone in the reader's buffer, is taken with the
** buffer instead of copied out of it. */
#define STEAL_MIN (1u << 20)

/* A request read and not yet run. */
typedef struct Req {
  struct Req *next;
  ppe_frame f;
  const char *payload;  /* f.len bytes: in buf, or in inl */
  ppe_buf buf;          /* the reader's buffer, taken with the request */
  char inl[1];
} Req;

typedef struct Serve {
  int in, out;              /* the channel: the launcher's pipe */
  int outr;                 /* the read end of the tasks' stdout */
  int stop[2];              /* a pipe: the forwarder's call to end */
  pthread_mutex_t mu;       /* guards all below, and writes to out */
  pthread_cond_t cond;
  Req *head, *tail;
  int ended;                /* the channel reached its end */
  int busy;                 /* a task runs */
  uint64_t running;         /* which one, while busy */
  ppe_reader rd;            /* the handshake's, then the reader's */
} Serve;

static Serve S;

/* Writes a frame and its payload whole (mu held): one writer at a time,
** so frames never interleave. A write that fails means the executor is
** gone: nothing is left to do. */
static void put(uint32_t type, uint32_t aux, uint64_t id, const void *p,
                size_t n) {
  ppe_frame f;
  memset(&f, 0, sizeof(f));
  f.type = type;
  f.aux = aux;
  f.id = id;
  f.len = n;
  if (ppe_send_all(S.out, &f, sizeof(f)) != 0 ||
      (n > 0 && ppe_send_all(S.out, p, n) != 0))
    _exit(0);
}

/* Leaves with one of ppe's own exit codes, saying so first: the executor
** has no ring to read it in. */
static void leave(int code) __attribute__((noreturn));
static void leave(int code) {
  pthread_mutex_lock(&S.mu);
  put(PPE_F_LEFT, (uint32_t)code, 0, NULL, 0);
  _exit(code);
}

/* A request: a copy of the frame at pl, or the reader's whole buffer
** when the frame is large and alone in it (its pages are not touched
** again, and the buffer goes back to the kept blocks once run). */
static Req *request(ppe_reader *rd, const ppe_frame *f, const char *pl,
                    size_t start) {
  int whole = start == 0 && rd->pos == rd->b.len && f->len >= STEAL_MIN;
  Req *q = malloc(sizeof(*q) + (whole ? 0 : (size_t)f->len));
  if (q == NULL) leave(PPE_EXIT_NOMEM);
  memset(q, 0, sizeof(*q));
  q->f = *f;
  if (whole) {
    q->buf = rd->b;
    q->payload = pl;
    memset(&rd->b, 0, sizeof(rd->b));
    rd->pos = 0;
  }
  else {
    memcpy(q->inl, pl, (size_t)f->len);
    q->payload = q->inl;
  }
  return q;
}

static void free_request(Req *q) {
  ppe_buf_free(&q->buf);
  free(q);
}

/* The reader: queues requests, answers for those taken back or
** cancelled while they wait (the executor runs them elsewhere, or not
** at all), ends the process when the task it runs is cancelled, and at
** the end of the channel ends the process if a task runs (its result has
** nobody to go to), or wakes the main thread to return. Under the lock,
** which a reply is sent under: a task cancelled is either skipped,
** stopped, or answered already. */
static void *reader_main(void *arg) {
  ppe_reader *rd = &S.rd;
  (void)arg;
  for (;;) {
    ppe_frame f;
    const char *pl;
    size_t start;
    int r;
    while (start = rd->pos, (r = ppe_reader_next(rd, &f, &pl)) == 1) {
      Req *q;
      pthread_mutex_lock(&S.mu);
      if (f.type == PPE_F_TAKEBACK || f.type == PPE_F_CANCEL) {
        /* Answered at once, if queued. */
        Req **at = &S.head, *prev = NULL;
        while ((q = *at) != NULL && q->f.id != f.id) {
          prev = q;
          at = &q->next;
        }
        if (q != NULL) {
          *at = q->next;
          if (S.tail == q) S.tail = prev;
          put(PPE_F_SKIPPED, 0, q->f.id, NULL, 0);
          free_request(q);
        }
        else if (f.type == PPE_F_CANCEL && S.busy && S.running == f.id) {
          /* It runs: nothing more goes out, and this process ends here,
          ** as its executor has its launcher killed. */
          put(PPE_F_STOPPED, 0, f.id, NULL, 0);
          _exit(0);
        }
        pthread_mutex_unlock(&S.mu);
        continue;
      }
      pthread_mutex_unlock(&S.mu);
      if (f.type != PPE_F_TASK && f.type != PPE_F_CHUNK &&
          f.type != PPE_F_INIT)
        leave(PPE_EXIT_READ);
      q = request(rd, &f, pl, start);
      pthread_mutex_lock(&S.mu);
      if (S.tail != NULL) S.tail->next = q;
      else S.head = q;
      S.tail = q;
      pthread_cond_signal(&S.cond);
      pthread_mutex_unlock(&S.mu);
    }
    if (r < 0) leave(PPE_EXIT_READ);
    if (ppe_reader_fill(rd, S.in) <= 0) break;  /* its end, or an error */
  }
  pthread_mutex_lock(&S.mu);
  if (S.busy) _exit(0);  /* mid-task: nobody wants its result now */
  S.ended = 1;
  pthread_cond_signal(&S.cond);
  pthread_mutex_unlock(&S.mu);
  ppe_reader_free(rd);
  return NULL;
}

/* The forwarder: what tasks write to stdout goes to the executor as it
** comes; the executor writes it out in whole lines. Bytes are read and
** sent under the lock, so that drain_output, under it, finds them either
** still in the pipe or sent. */
static void *forwarder_main(void *arg) {
  char buf[16384];
  (void)arg;
  for (;;) {
    struct pollfd pf[2] = {{S.outr, POLLIN, 0}, {S.stop[0], POLLIN, 0}};
    ssize_t n;
    if (poll(pf, 2, -1) < 0) continue;  /* EINTR */
    if (pf[1].revents) return NULL;
    pthread_mutex_lock(&S.mu);
    n = read(S.outr, buf, sizeof(buf));  /* (non-blocking) */
    if (n > 0) put(PPE_F_OUT, 0, 0, buf, (size_t)n);
    pthread_mutex_unlock(&S.mu);
    if (n == 0) return NULL;
  }
}

/* Once a task has returned: what it wrote to stdout has gone out before
** its reply does, so the caller prints a task's lines before its future
** completes. */
static void drain_output(void) {
  fflush(stdout);
  for (;;) {
    int left = 0;
    pthread_mutex_lock(&S.mu);
    if (ioctl(S.outr, FIONREAD, &left) != 0) left = 0;
    pthread_mutex_unlock(&S.mu);
    if (left == 0) return;
    {
      struct timespec ts = {0, 100000};
      nanosleep(&ts, NULL);
    }
  }
}

static uint32_t micros(double t0) {
  double us = (ppe_now() - t0) * 1e6;
  return us > 4e9 ? 4000000000U : (uint32_t)us;
}

/* Runs q on W and sends its reply. */
static void run(lua_State *W, Req *q, ppe_buf *reply) {
  double t0 = ppe_now();
  int type = ppe_runner_run(W, (int)q->f.type, q->f.id, q->payload,
                            (size_t)q->f.len, reply);
  ppe_buf_free(&q->buf);  /* kept for the next large one */
  ppe_frame *rf;
  if (type < 0) leave(PPE_EXIT_NOMEM);
  drain_output();
  rf = (ppe_frame *)reply->p;
  rf->aux = micros(t0);  /* the executor sizes its pipelines by it */
  pthread_mutex_lock(&S.mu);
  if (ppe_send_all(S.out, reply->p, reply->len) != 0) _exit(0);
  S.busy = 0;
  pthread_mutex_unlock(&S.mu);
  if (q->f.type == PPE_F_INIT && type != PPE_F_OK) leave(PPE_EXIT_INIT);
  if (reply->len > (1u << 20)) lua_gc(W, LUA_GCCOLLECT, 0);
  /* Its reply is out; what waits behind it runs elsewhere. */
  if (q->f.type != PPE_F_INIT && ppe_worker_over_memory())
    leave(PPE_EXIT_MEMORY);
}

/* Sleeps on the condition until woken, or 'secs' seconds at most. */
static void sleep_for(double secs) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);  /* the condition's clock */
  ts.tv_sec += (time_t)secs;
  ts.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9) + 1000000;
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  pthread_cond_timedwait(&S.cond, &S.mu, &ts);
}

/* The next request to run, or NULL once the channel has ended (those
** queued then are let go with the process). While it waits, big blocks
** kept for reuse go back once unused for a while. */
static Req *next_request(void) {
  Req *q;
  pthread_mutex_lock(&S.mu);
  for (;;) {
    double due;
    if (S.head != NULL || S.ended) break;
    if ((due = ppe_big_trim(ppe_now())) >= 0) sleep_for(due);
    else pthread_cond_wait(&S.cond, &S.mu);
  }
  /* Once the channel has ended, what is queued has nobody to answer. */
  q = S.ended ? NULL : S.head;
  if (q != NULL) {
    S.head = q->next;
    if (S.head == NULL) S.tail = NULL;
    S.busy = 1;
    S.running = q->f.id;
  }
  pthread_mutex_unlock(&S.mu);
  return q;
}

/* Moves the channel off descriptors 0 and 1: a task reads /dev/null and
** writes into the forwarder's pipe. 0, or -errno. */
static int take_stdio(void) {
  int p[2], nul;
  fflush(stdout);
  S.in = fcntl(0, F_DUPFD_CLOEXEC, 3);
  S.out = fcntl(1, F_DUPFD_CLOEXEC, 3);
  if (S.in < 0 || S.out < 0 || pipe2(p, O_CLOEXEC) != 0 ||
      pipe2(S.stop, O_CLOEXEC) != 0)
    return -errno;
  nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (nul < 0 || dup2(nul, 0) < 0 || dup2(p[1], 1) < 0) return -errno;
  close(nul);
  close(p[1]);
  S.outr = p[0];
  return ppe_set_nonblock(S.outr, 1);
}

/* Says hello and waits for the executor's welcome: its key, and this
** worker's number. 0; 1 if the executor left first (it was closing, or
** found this side did not match: it says why); or -1 with a message in
** why. */
static int handshake(lua_State *L, char *why, size_t n) {
  ppe_reader *rd = &S.rd;
  ppe_hello h;
  ppe_welcome w;
  ppe_frame f;
  const char *pl;
  int r;
  if (ppe_hello_make(L, &h) != 0) {
    snprintf(why, n, "not enough memory");
    return -1;
  }
  put(PPE_F_HELLO, 0, 0, &h, sizeof(h));
  while ((r = ppe_reader_next(rd, &f, &pl)) == 0) {
    long got;
    if (ppe_wait_readable(S.in, WELCOME_MS) != 1) break;
    if ((got = ppe_reader_fill(rd, S.in)) == 0) return 1;  /* it left */
    if (got < 0 && got != -EAGAIN) break;
  }
  if (r != 1 || f.type != PPE_F_WELCOME || f.len != sizeof(w)) {
    snprintf(why, n, r == 0 ? "no welcome from the executor" :
             "the executor's first message was no welcome");
    return -1;
  }
  memcpy(&w, pl, sizeof(w));
  ppe_mac_set_key(w.key);
  ppe_worker_set_id(w.id);
  ppe_worker_set_memory_cap(w.memory_cap);
  return 0;  /* what came after it stays in rd, for the reader thread */
}

/* The fresh state tasks run on, with this side's package paths; NULL if
** the host's hook raised, which is told as the local worker's is. */
static lua_State *task_state(lua_State *L) {
  char why[PPE_HOOK_WHY];
  lua_State *W = ppe_runner_state();
  const char *path, *cpath;
  if (W == NULL) return NULL;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_getfield(L, -2, "cpath");
  path = lua_tostring(L, -2);
  cpath = lua_tostring(L, -1);
  if (ppe_runner_paths(W, path, cpath) != 0) {
    lua_close(W);
    W = NULL;
  }
  else if (ppe_runner_hook(W, why, sizeof(why)) != 0) {
    put(PPE_F_HOOKERR, 0, 0, why, strlen(why));
    lua_close(W);
    W = NULL;
  }
  lua_pop(L, 3);
  return W;
}

int ppe_serve(lua_State *L, char *why, size_t n) {
  pthread_t reader, fwd;
  ppe_buf reply = PPE_BUF_INIT;
  lua_State *W;
  Req *q;
  int r;
  signal(SIGPIPE, SIG_IGN);  /* a closed channel is an error code */
  ppe_big_keep(1);  /* large messages reuse their blocks (trimmed idle) */
  pthread_mutex_init(&S.mu, NULL);
  pthread_cond_init(&S.cond, NULL);
  if (take_stdio() != 0) {
    snprintf(why, n, "cannot take over stdin and stdout: %s",
             strerror(errno));
    return -1;
  }
  if ((r = handshake(L, why, n)) != 0) return r < 0 ? -1 : 0;
  if ((W = task_state(L)) == NULL) leave(PPE_EXIT_HOOK);
  if (pthread_create(&fwd, NULL, forwarder_main, NULL) != 0 ||
      pthread_create(&reader, NULL, reader_main, NULL) != 0)
    leave(PPE_EXIT_NOMEM);
  while ((q = next_request()) != NULL) {
    run(W, q, &reply);
    free_request(q);
  }
  /* The channel ended between tasks: this process goes back to its
  ** caller, its stdout given back. The forwarder is told to end: waiting
  ** for the end of the tasks' pipe would wait for whatever child of a
  ** task still holds it. */
  pthread_join(reader, NULL);
  lua_close(W);
  ppe_buf_free(&reply);
  fflush(stdout);
  dup2(S.out, 1);
  dup2(S.in, 0);
  if (write(S.stop[1], "", 1) == 1) pthread_join(fwd, NULL);
  close(S.outr);
  close(S.stop[0]);
  close(S.stop[1]);
  close(S.in);
  close(S.out);
  ppe_big_keep(-1);  /* what it kept goes now */
  return 0;
}
