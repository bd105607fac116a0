/* future.c - the task behind each future: its states, its result bytes,
** and the lists of completions. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "future.h"
#include "lock.h"
#include "shm.h"

static uint64_t completions = 0;  /* orders completions process-wide */
static uint64_t watched_done = 0;  /* of them, tasks with done-callbacks */

void ppe_request_frame(ppe_buf *req, uint32_t type, uint64_t id) {
  ppe_frame f;
  memset(&f, 0, sizeof(f));
  f.type = type;
  f.id = id;
  f.len = req->len - sizeof(f);
  memcpy(req->p, &f, sizeof(f));
}

ppe_task *ppe_task_new(ppe_buf *req, uint32_t type) {
  /* A small request lives in the task's own block: one allocation per
  ** task. A large one is moved, not copied. */
  int inl = req->len <= PPE_INLINE_REQ;
  ppe_task *t = malloc(sizeof(*t) + (inl ? req->len : 0));
  if (t == NULL) return NULL;
  memset(t, 0, sizeof(*t));
  t->type = type;
  t->state = PPE_PENDING;
  t->refs = 1;
  if (inl) {
    memcpy(t + 1, req->p, req->len);
    t->req.p = (char *)(t + 1);
    t->req.len = req->len;
    t->req_inline = 1;
    t->inl = req->len;
    req->len = 0;  /* the caller keeps its buffer for the next one */
  }
  else {
    t->req = *req;
    req->p = NULL;
    req->len = req->cap = 0;
  }
  return t;
}

void ppe_task_drop_req(ppe_task *t) {
  if (t->req_inline) {
    t->req.p = NULL;
    t->req.len = 0;
  }
  else ppe_buf_free(&t->req);
}

void ppe_task_drop_res(ppe_task *t) {
  if (t->res_inline) {
    t->res_inline = 0;
    t->res.p = NULL;
    t->res.len = t->res.cap = 0;
  }
  else if (t->res_peer != NULL) {
    if (!ppe_peer_gone(t->res_peer)) ppe_shm_return(t->res.p, t->res.len);
    ppe_peer_unref(t->res_peer);
    t->res_peer = NULL;
    t->res.p = NULL;
    t->res.len = t->res.cap = 0;
  }
  else ppe_buf_free(&t->res);
  t->res_off = 0;
}

int ppe_task_set_res(ppe_task *t, const char *p, size_t n) {
  ppe_task_drop_res(t);
  t->res_text = 0;
  if (n <= t->inl && n > 0) {  /* no allocation for a small reply */
    ppe_task_drop_req(t);
    memcpy(t + 1, p, n);
    t->res.p = (char *)(t + 1);
    t->res.len = n;
    t->res_inline = 1;
    return 0;
  }
  return ppe_buf_add(&t->res, p, n);
}

int ppe_task_res_lost(const ppe_task *t) {
  return t->res_peer != NULL && ppe_peer_gone(t->res_peer);
}

void ppe_task_ref(ppe_task *t) {
  t->refs++;
}

/*
** {======================================================
** Completion lists
** =======================================================
*/

struct ppe_done {
  ppe_task *head, *tail;
  int refs;   /* the consumer's, and one per task attached */
  int gone;   /* the consumer let go */
};

ppe_done *ppe_done_new(void) {
  ppe_done *d = (ppe_done *)calloc(1, sizeof(*d));
  if (d != NULL) d->refs = 1;
  return d;
}

static void done_unref(ppe_done *d) {
  if (--d->refs == 0) free(d);
}

static void done_put(ppe_done *d, ppe_task *t) {
  if (d->gone) return;
  t->refs++;  /* the list's */
  t->done_next = NULL;
  if (d->tail != NULL) d->tail->done_next = t;
  else d->head = t;
  d->tail = t;
}

void ppe_done_attach(ppe_done *d, ppe_task *t, int64_t tag) {
  t->done = d;
  t->done_tag = tag;
  d->refs++;
  if (ppe_task_final(t)) done_put(d, t);
}

int64_t ppe_done_take(ppe_done *d) {
  ppe_task *t = d->head;
  int64_t tag;
  if (t == NULL) return 0;
  d->head = t->done_next;
  if (d->head == NULL) d->tail = NULL;
  tag = t->done_tag;
  ppe_task_unref(t);
  return tag;
}

void ppe_done_release(ppe_done *d) {
  ppe_task *t = d->head;
  d->gone = 1;
  d->head = d->tail = NULL;
  while (t != NULL) {  /* d outlives this: the consumer's reference */
    ppe_task *next = t->done_next;
    ppe_task_unref(t);
    t = next;
  }
  done_unref(d);
}

/* }====================================================== */


void ppe_task_unref(ppe_task *t) {
  if (--t->refs > 0) return;
  ppe_task_drop_req(t);
  ppe_task_drop_res(t);
  if (t->done != NULL) done_unref(t->done);
  free(t);
}

/* A wait on a running task first spins this long. A short task's result
** then reaches its waiter without a sleep and a wake-up: a round trip
** costs about half as much. */
#define SPIN_US 50

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static int cpus = 0;  /* a spin on the only CPU delays the worker */
static pthread_once_t cpus_once = PTHREAD_ONCE_INIT;

/* The CPUs this process may run on (its affinity, which a cpuset or
** taskset narrows), not those the machine has. */
static void count_cpus(void) {
  cpu_set_t set;
  cpus = sched_getaffinity(0, sizeof(set), &set) == 0
             ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
}

int ppe_task_spin(const ppe_task *t, double deadline) {
  double until;
  int i, s;
  pthread_once(&cpus_once, count_cpus);
  if (cpus < 2 ||
      (s = __atomic_load_n(&t->state, __ATOMIC_ACQUIRE)) != PPE_RUNNING)
    return 0;
  until = ppe_now() + SPIN_US * 1e-6;
  if (deadline >= 0 && deadline < until) until = deadline;
  for (;;) {
    for (i = 0; i < 64; i++) {
      if ((s = __atomic_load_n(&t->state, __ATOMIC_ACQUIRE)) != PPE_RUNNING)
        return s >= PPE_FINISHED;
      cpu_relax();
    }
    if (ppe_now() >= until) return 0;
  }
}

int ppe_task_final(const ppe_task *t) {
  return t->state >= PPE_FINISHED;
}

void ppe_task_complete(ppe_task *t, int state, int err) {
  t->err = err;
  t->seq = ++completions;
  PPE_SET_STATE(t, state);  /* last: a spinning waiter reads on at once */
  if (t->watched)
    __atomic_store_n(&watched_done, watched_done + 1, __ATOMIC_RELEASE);
  if (!t->keep_req) ppe_task_drop_req(t);  /* not needed now */
  if (t->done != NULL) done_put(t->done, t);
  ppe_signal_completion();
}

uint64_t ppe_task_watched(void) {
  return __atomic_load_n(&watched_done, __ATOMIC_ACQUIRE);
}

int ppe_task_cancel(ppe_task *t) {
  if (t->state == PPE_PENDING) ppe_task_complete(t, PPE_CANCELLED, 0);
  return t->state == PPE_CANCELLED;
}
