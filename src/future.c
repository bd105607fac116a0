/* future.c - the task behind each future: its states, its result bytes,
** and the lists of completions. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
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
  t->items = 1;
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

/* One task in one list. While the task is not final, 'next' links the
** lists waiting for it (t->subs); once it is, the list's queue of those
** to take; once taken, the list's free nodes. */
typedef struct ppe_sub {
  ppe_task *t;      /* NULL: free */
  ppe_done *d;
  int64_t tag;
  int queued;       /* in d's queue, not in t->subs */
  struct ppe_sub *next;
} ppe_sub;

/* Nodes are made in blocks, reused once taken: an endless map's list
** stays as large as what it has in flight. */
typedef struct Block {
  struct Block *next;
  size_t n;
  ppe_sub v[1];
} Block;

struct ppe_done {
  ppe_sub *head, *tail;  /* final, in the order they became so */
  size_t ready;          /* how many there are */
  size_t attached, taken;  /* tasks ever attached, and taken */
  int failed;            /* one taken had failed */
  ppe_sub *free;
  Block *blocks;
  size_t cap;            /* nodes in every block */
};

ppe_done *ppe_done_new(void) {
  return (ppe_done *)calloc(1, sizeof(ppe_done));
}

/* Makes room for n more nodes on d's free list: 0, or -ENOMEM. */
static int done_reserve(ppe_done *d, size_t n) {
  size_t have = 0, i;
  ppe_sub *s;
  Block *b;
  for (s = d->free; s != NULL && have < n; s = s->next) have++;
  if (have >= n) return 0;
  n -= have;
  if (n < d->cap) n = d->cap;  /* the lists grow by doubling */
  if (n < 16) n = 16;
  b = (Block *)malloc(sizeof(Block) + (n - 1) * sizeof(ppe_sub));
  if (b == NULL) return -ENOMEM;
  b->n = n;
  b->next = d->blocks;
  d->blocks = b;
  d->cap += n;
  for (i = n; i-- > 0;) {
    b->v[i].t = NULL;
    b->v[i].next = d->free;
    d->free = &b->v[i];
  }
  return 0;
}

static void enqueue(ppe_done *d, ppe_sub *s) {
  s->queued = 1;
  s->next = NULL;
  if (d->tail != NULL) d->tail->next = s;
  else d->head = s;
  d->tail = s;
  d->ready++;
}

/* Attaches t by a node of the free list, which has one. */
static void attach(ppe_done *d, ppe_task *t, int64_t tag, int queue) {
  ppe_sub *s = d->free;
  d->free = s->next;
  s->t = t;
  s->d = d;
  s->tag = tag;
  d->attached++;
  t->refs++;  /* the list's */
  if (queue) enqueue(d, s);
  else {
    s->queued = 0;
    s->next = t->subs;
    t->subs = s;
  }
}

int ppe_done_attach(ppe_done *d, ppe_task *t, int64_t tag) {
  if (done_reserve(d, 1) != 0) return -ENOMEM;
  attach(d, t, tag, ppe_task_final(t));
  return 0;
}

typedef struct Final {
  uint64_t seq;
  size_t i;
} Final;

static int byseq(const void *a, const void *b) {
  uint64_t x = ((const Final *)a)->seq, y = ((const Final *)b)->seq;
  return (x > y) - (x < y);
}

int ppe_done_attach_all(ppe_done *d, ppe_task *const *ts, size_t n) {
  size_t i, k = 0;
  Final *fin = NULL;
  if (done_reserve(d, n) != 0) return -ENOMEM;
  for (i = 0; i < n; i++) k += ppe_task_final(ts[i]);
  if (k > 0 && (fin = (Final *)malloc(k * sizeof(*fin))) == NULL)
    return -ENOMEM;
  for (i = 0, k = 0; i < n; i++) {
    if (!ppe_task_final(ts[i])) attach(d, ts[i], (int64_t)i + 1, 0);
    else {
      fin[k].seq = ts[i]->seq;
      fin[k++].i = i;
    }
  }
  /* Those final already go in in the order they became so. */
  if (k > 1) qsort(fin, k, sizeof(*fin), byseq);
  for (i = 0; i < k; i++) attach(d, ts[fin[i].i], (int64_t)fin[i].i + 1, 1);
  free(fin);
  return 0;
}

int64_t ppe_done_take(ppe_done *d) {
  ppe_sub *s = d->head;
  int64_t tag;
  if (s == NULL) return 0;
  d->head = s->next;
  if (d->head == NULL) d->tail = NULL;
  d->ready--;
  tag = s->tag;
  d->taken++;
  if (s->t->state == PPE_FAILED) d->failed = 1;
  ppe_task_unref(s->t);
  s->t = NULL;
  s->next = d->free;
  d->free = s;
  return tag;
}

size_t ppe_done_ready(const ppe_done *d) {
  return d->ready;
}

size_t ppe_done_left(const ppe_done *d) {
  return d->attached - d->taken;
}

int ppe_done_failed(const ppe_done *d) {
  return d->failed;
}

/* Unlinks s from the lists waiting for its task. */
static void unsubscribe(ppe_sub *s) {
  ppe_sub **at = &s->t->subs;
  while (*at != s) at = &(*at)->next;
  *at = s->next;
}

void ppe_done_release(ppe_done *d) {
  Block *b = d->blocks;
  while (b != NULL) {
    Block *next = b->next;
    size_t i;
    for (i = 0; i < b->n; i++) {
      ppe_sub *s = &b->v[i];
      if (s->t == NULL) continue;
      if (!s->queued) unsubscribe(s);
      ppe_task_unref(s->t);
    }
    free(b);
    b = next;
  }
  free(d);
}

/* }====================================================== */


void ppe_task_unref(ppe_task *t) {
  if (--t->refs > 0) return;
  ppe_task_drop_req(t);
  ppe_task_drop_res(t);
  free(t);  /* no list holds it: each holds a reference */
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
  while (t->subs != NULL) {  /* the lists waiting for it */
    ppe_sub *s = t->subs;
    t->subs = s->next;
    enqueue(s->d, s);
  }
  ppe_signal_completion();
}

uint64_t ppe_task_watched(void) {
  return __atomic_load_n(&watched_done, __ATOMIC_ACQUIRE);
}

int ppe_task_cancel(ppe_task *t) {
  if (t->state == PPE_PENDING) ppe_task_complete(t, PPE_CANCELLED, 0);
  return t->state == PPE_CANCELLED;
}
