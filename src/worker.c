/* worker.c - the worker process: reads requests from its channel, runs
** them on its own lua_State, writes replies; leaves with _exit. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lua.h"

#include "bigblock.h"
#include "buf.h"
#include "lock.h"
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
static int chan = -1;      /* the channel to the executor, in a worker */
static uint32_t memory_cap = 0;  /* KiB; 0: none */

static uint64_t sent = 0;  /* replies sent through the channel */
static uint32_t ntasks = 0;  /* task requests read: the gate's count */

int ppe_worker_id(void) {
  return worker_id;
}

void ppe_worker_set_id(int id) {
  worker_id = id;
}

uint32_t ppe_worker_memory_cap(uint64_t bytes) {
  uint64_t kib = bytes / 1024;
  if (bytes == 0) return 0;
  /* Under 1 KiB, every worker is over it, as it is over 1 KiB; past 4 TiB,
  ** none is. */
  return kib < 1 ? 1 : kib > UINT32_MAX ? UINT32_MAX : (uint32_t)kib;
}

void ppe_worker_set_memory_cap(uint32_t kib) {
  memory_cap = kib;
}

/* The resident set, in KiB: the second field of /proc/self/statm, in
** pages. Read afresh each time (a kept descriptor would be one more than
** a worker holds); 0 if it cannot be read. */
static uint64_t resident_kib(void) {
  static long page = 0;
  char buf[128], *p;
  unsigned long long pages;
  ssize_t n;
  int fd;
  if (page == 0 && (page = sysconf(_SC_PAGESIZE)) <= 0) page = 4096;
  do fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return 0;
  do n = read(fd, buf, sizeof(buf) - 1);
  while (n < 0 && errno == EINTR);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  strtoull(buf, &p, 10);  /* the size of the address space */
  pages = strtoull(p, NULL, 10);
  return (uint64_t)pages * (uint64_t)page / 1024;
}

int ppe_worker_over_memory(void) {
  return memory_cap > 0 && resident_kib() > memory_cap;
}

const char *ppe_worker_exit_meaning(int code) {
  switch (code) {
    case PPE_EXIT_READ:
      return "out of step with its executor: a request it could not read";
    case PPE_EXIT_NOMEM: return "out of memory";
    case PPE_EXIT_INIT: return "its initializer raised";
    case PPE_EXIT_HOOK: return "the host's worker-init hook raised";
    case PPE_EXIT_MEMORY:
      return "its resident memory passed max_memory_per_child";
    default: return NULL;
  }
}

/* Signals by name, with what each means, for the messages of workers
** that one of them ended. */
static const struct {
  int sig;
  const char *name, *what;
} signals[] = {
  {SIGHUP, "SIGHUP", "hangup"},
  {SIGINT, "SIGINT", "interrupt"},
  {SIGQUIT, "SIGQUIT", "quit"},
  {SIGILL, "SIGILL", "illegal instruction"},
  {SIGTRAP, "SIGTRAP", "trace or breakpoint trap"},
  {SIGABRT, "SIGABRT", "aborted"},
  {SIGBUS, "SIGBUS", "bus error"},
  {SIGFPE, "SIGFPE", "arithmetic exception"},
  {SIGKILL, "SIGKILL", "killed"},
  {SIGUSR1, "SIGUSR1", "user signal 1"},
  {SIGSEGV, "SIGSEGV", "segmentation fault"},
  {SIGUSR2, "SIGUSR2", "user signal 2"},
  {SIGPIPE, "SIGPIPE", "broken pipe"},
  {SIGALRM, "SIGALRM", "alarm clock"},
  {SIGTERM, "SIGTERM", "terminated"},
#ifdef SIGSTKFLT
  {SIGSTKFLT, "SIGSTKFLT", "stack fault"},
#endif
  {SIGCHLD, "SIGCHLD", "child stopped or ended"},
  {SIGCONT, "SIGCONT", "continued"},
  {SIGSTOP, "SIGSTOP", "stopped"},
  {SIGTSTP, "SIGTSTP", "stopped at the terminal"},
  {SIGTTIN, "SIGTTIN", "stopped for terminal input"},
  {SIGTTOU, "SIGTTOU", "stopped for terminal output"},
  {SIGURG, "SIGURG", "urgent data on a socket"},
  {SIGXCPU, "SIGXCPU", "CPU time limit exceeded"},
  {SIGXFSZ, "SIGXFSZ", "file size limit exceeded"},
  {SIGVTALRM, "SIGVTALRM", "virtual timer expired"},
  {SIGPROF, "SIGPROF", "profiling timer expired"},
  {SIGWINCH, "SIGWINCH", "window size changed"},
  {SIGIO, "SIGIO", "I/O possible"},
#ifdef SIGPWR
  {SIGPWR, "SIGPWR", "power failure"},
#endif
  {SIGSYS, "SIGSYS", "bad system call"},
};

void ppe_signal_describe(char *buf, size_t n, int sig) {
  size_t i;
  for (i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
    if (signals[i].sig == sig) {
      snprintf(buf, n, "%s: %s", signals[i].name, signals[i].what);
      return;
    }
  if (sig >= SIGRTMIN && sig <= SIGRTMAX)
    snprintf(buf, n, "SIGRTMIN+%d: real-time signal", sig - SIGRTMIN);
  else snprintf(buf, n, "unknown signal");
}

/* Leaves with one of ppe's own exit codes, and says so in the ring (or,
** without one, on the channel, where every frame has gone out whole): the
** executor then tells it from a task's os.exit with the same code. */
static void leave(int code) __attribute__((noreturn));
static void leave(int code) {
  /* Asked now: the child of a fork in a task has no arena. */
  if (ppe_shm_ring() != NULL) ppe_ring_leave(ppe_shm_ring(), code);
  else if (chan >= 0) {
    ppe_frame f;
    memset(&f, 0, sizeof(f));
    f.type = PPE_F_LEFT;
    f.aux = (uint32_t)code;
    ppe_send_all(chan, &f, sizeof(f));
  }
  _exit(code);
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

/* A frame of 'type' whose payload is the text s, put out as a reply. */
static void say(int fd, uint32_t type, const char *s) {
  char m[sizeof(ppe_frame) + PPE_HOOK_WHY];
  ppe_frame f;
  size_t n = strlen(s);
  if (n > PPE_HOOK_WHY) n = PPE_HOOK_WHY;
  memset(&f, 0, sizeof(f));
  f.type = type;
  f.len = (uint32_t)n;
  memcpy(m, &f, sizeof(f));
  memcpy(m + sizeof(f), s, n);
  reply_out(fd, m, sizeof(f) + n);
}

/* The executor stopped the task that just returned (cancel{force}): no
** reply goes out and nothing more starts; the executor has this worker
** killed. It waits for that, or for the end of its channel. */
static void stopped(int fd) __attribute__((noreturn));
static void stopped(int fd) {
  char b[4096];
  for (;;) {
    ssize_t n = read(fd, b, sizeof(b));
    if (n == 0 || (n < 0 && errno != EINTR)) _exit(0);
  }
}

/* Runs one request and puts its reply out (in the ring or the channel)
** before anything else runs: if the next task kills the worker, no
** finished task's result dies with it, and the parent knows the oldest
** unanswered task as the one that was running. Requests still arrive
** several at a time. 'gate' is the task's gate, or -1 for none. Returns
** the reply's type (the reply itself may have been lent to the parent). */
static int serve_one(lua_State *L, int fd, const ppe_frame *f,
                     const char *payload, ppe_buf *reply, long gate) {
  struct timespec t0;
  ppe_ref ref;
  const char *out;
  size_t n;
  int big, type;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (ppe_runner_run(L, (int)f->type, f->id, payload, (size_t)f->len,
                     reply) < 0)
    leave(PPE_EXIT_NOMEM);
  /* The parent sizes its pipelines by the time a task takes. */
  ((ppe_frame *)reply->p)->aux = micros_since(&t0);
  type = (int)((ppe_frame *)reply->p)->type;
  out = reply->p;
  n = reply->len;
  fflush(stdout);  /* print's output reaches a pipe though _exit skips */
  fflush(stderr);  /* stdio, and before the reply that reports the task */
  /* Its reply goes out only if the executor has not stopped it first. */
  if (gate >= 0 && ppe_shm_ring() != NULL) {
    int go = ppe_gate_finish(ppe_shm_ring(), (uint32_t)gate);
    if (go < 0) leave(PPE_EXIT_READ);  /* out of step */
    if (go == 0) stopped(fd);
  }
  big = f->len > BIG_MESSAGE || reply->len > BIG_MESSAGE;
  if (ppe_buf_ref(&ref, reply)) {
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
                     ppe_peer *pa, int failed, const char *why) {
  ppe_reader rd = {PPE_BUF_INIT, 0, 0};
  ppe_buf reply = PPE_BUF_INIT;  /* made shared below */
  char *shared;  /* the request, when it is in the caller's arena */
  int type;
  long gate;      /* of the task request: its number, or -1 */
  uint32_t kind;  /* of request */
  worker_id = id;
  chan = fd;
  /* Counts of this worker's own: one made by a task of another worker's
  ** (a nested executor's) starts from that worker's copy of them. */
  sent = 0;
  ntasks = 0;
  reply.shared = 1;
  /* Large replies are built in our arena: the mapping stays, the
  ** descriptor is not needed. */
  if (arena >= 0 && ppe_shm_adopt(arena) != 0) close(arena);  /* none */
  if (ppe_shm_ring() != NULL) ppe_gate_use(ppe_shm_ring());
  if (why != NULL) say(fd, PPE_F_HOOKERR, why);
  if (failed) leave(failed);  /* with the ring to say why */
  for (;;) {
    ppe_frame f;
    const char *payload;
    int r = ppe_reader_next(&rd, &f, &payload);
    if (r < 0) leave(PPE_EXIT_READ);  /* nonsense: nothing to trust */
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
      if (n < 0 && n != -EAGAIN)
        leave(n == -ENOMEM ? PPE_EXIT_NOMEM : PPE_EXIT_READ);
      continue;
    }
    kind = f.type == PPE_F_REF ? f.aux : f.type;
    if (kind != PPE_F_TASK && kind != PPE_F_INIT && kind != PPE_F_CHUNK)
      leave(PPE_EXIT_READ);
    /* A task the executor took back runs elsewhere: no reply. Its
    ** request is not looked at: in the caller's arena, it may be gone. */
    gate = -1;
    if (kind != PPE_F_INIT && ppe_shm_ring() != NULL) {
      int pass = ppe_gate_pass(ppe_shm_ring(), ntasks);
      gate = ntasks++;
      if (pass < 0) leave(PPE_EXIT_READ);  /* out of step */
      if (pass == 0) continue;
    }
    shared = NULL;
    if (f.type == PPE_F_REF) {
      ppe_frame in;
      if ((shared = ppe_peer_message(pa, &f, payload, &in)) == NULL)
        leave(PPE_EXIT_READ);
      f = in;
      payload = shared + sizeof(in);
      if (f.type != kind) leave(PPE_EXIT_READ);
    }
    type = serve_one(L, fd, &f, payload, &reply, gate);
    if (shared != NULL) ppe_peer_done(shared, sizeof(f) + (size_t)f.len);
    if (f.type == PPE_F_INIT && type != PPE_F_OK)
      leave(PPE_EXIT_INIT);  /* a worker whose initializer raised is
                             ** useless */
    /* Its reply is out; the tasks sent behind it go elsewhere. */
    if (f.type != PPE_F_INIT && ppe_worker_over_memory())
      leave(PPE_EXIT_MEMORY);
  }
}
