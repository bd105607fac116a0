/* ring.c - replies through shared memory (see ring.h). */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ring.h"

/* Records start on 8-byte boundaries, so a header is never split. */
#define REC(n) (((n) + 7) & ~(size_t)7)

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
/* Each side writes its counter, then reads the other's: with a full fence
** between, at least one of them sees the other's write. */
#define FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)

int ppe_ring_put(ppe_ring *r, const char *m, size_t n, uint64_t sent) {
  uint64_t head = r->head, tail = LOAD(&r->tail);
  size_t rec = REC(n), off = (size_t)(head % PPE_RING_DATA);
  size_t room = PPE_RING_DATA - off, need = rec;
  if (rec > PPE_RING_MAXREC || LOAD(&r->seen) != sent) return 0;
  if (room < rec) need += room;  /* it starts over at the beginning */
  if (head - tail + need > PPE_RING_DATA) return 0;  /* full */
  if (room < rec) {
    if (room >= sizeof(ppe_frame)) {
      ppe_frame pad;
      memset(&pad, 0, sizeof(pad));
      pad.type = PPE_F_PAD;
      pad.len = room - sizeof(pad);
      memcpy(r->data + off, &pad, sizeof(pad));
    }
    head += room;
    off = 0;
  }
  memcpy(r->data + off, m, n);
  STORE(&r->head, head + rec);
  FENCE();
  return __atomic_load_n(&r->awake, __ATOMIC_RELAXED) ? 1 : 2;
}

void ppe_ring_idle(ppe_ring *r) {
  uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t from = ((uintptr_t)r->data + pg - 1) & ~(pg - 1);
  uintptr_t to = ((uintptr_t)r->data + PPE_RING_DATA) & ~(pg - 1);
  /* Only once all is read: nobody looks at the bytes then. */
  if (LOAD(&r->tail) != r->head || to <= from) return;
  madvise((void *)from, to - from, MADV_REMOVE);
}

void ppe_ring_begin(ppe_ring_reader *rr) {
  if (rr->r != NULL) rr->head = LOAD(&rr->r->head);
}

int ppe_ring_next(ppe_ring_reader *rr, ppe_frame *f, const char **payload) {
  const char *data;
  uint64_t avail;
  if (rr->r == NULL) return 0;
  data = rr->r->data;
  for (;;) {
    size_t off = (size_t)(rr->pos % PPE_RING_DATA);
    size_t room = PPE_RING_DATA - off;
    avail = rr->head - rr->pos;
    if (avail == 0) return 0;
    if (avail > PPE_RING_DATA) return -1;  /* ahead of what it may be */
    if (room < sizeof(*f)) {  /* too little left for a header: skipped */
      if (avail < room) return -1;
      rr->pos += room;
      continue;
    }
    if (avail < sizeof(*f)) return -1;
    /* Read once: the header is checked and used from this copy. */
    memcpy(f, data + off, sizeof(*f));
    if (f->type == PPE_F_PAD) {
      if (f->len != room - sizeof(*f) || avail < room) return -1;
      rr->pos += room;
      continue;
    }
    if (f->len > room - sizeof(*f) || REC(sizeof(*f) + f->len) > avail)
      return -1;
    *payload = data + off + sizeof(*f);
    rr->pos += REC(sizeof(*f) + (size_t)f->len);
    return 1;
  }
}

void ppe_ring_end(ppe_ring_reader *rr) {
  if (rr->r != NULL) STORE(&rr->r->tail, rr->pos);
}

int ppe_ring_sleep(ppe_ring_reader *rr) {
  if (rr->r == NULL) return 0;
  __atomic_store_n(&rr->r->awake, 0, __ATOMIC_RELAXED);
  FENCE();
  return LOAD(&rr->r->head) != rr->pos;
}

void ppe_ring_wake(ppe_ring_reader *rr) {
  if (rr->r != NULL) __atomic_store_n(&rr->r->awake, 1, __ATOMIC_RELAXED);
}

void ppe_ring_leave(ppe_ring *r, int code) {
  STORE(&r->left, (uint32_t)code);
}

int ppe_ring_left(const ppe_ring *r) {
  uint32_t code = LOAD(&r->left);
  return code <= 255 ? (int)code : 0;
}

/* A gate word: the task's number (its low 13 bits, enough to tell a
** task from the one a lap of PPE_GATES before), and its state in the low
** three bits. */
enum { G_OPEN = 1, G_STARTED, G_BARRED, G_DONE, G_STOPPED };
#define GATE(n, state) ((uint16_t)(((n) << 3) | (state)))
#define SLOT(r, n) (&(r)->gate[(n) % PPE_GATES])

typedef char gate_laps[(1 << 13) > PPE_GATES ? 1 : -1];

/* Moves task n's gate from state 'from' to 'to', if it is there. */
static int gate_move(ppe_ring *r, uint32_t n, int from, int to) {
  uint16_t expect = GATE(n, from);
  return __atomic_compare_exchange_n(SLOT(r, n), &expect, GATE(n, to), 0,
                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

void ppe_gate_use(ppe_ring *r) {
  STORE(&r->gated, 1);
}

void ppe_gate_open(ppe_ring *r, uint32_t n) {
  STORE(SLOT(r, n), GATE(n, G_OPEN));
  if (!LOAD(&r->opened)) STORE(&r->opened, 1);
}

int ppe_gate_bar(ppe_ring *r, uint32_t n) {
  return LOAD(&r->gated) && gate_move(r, n, G_OPEN, G_BARRED);
}

int ppe_gate_pass(ppe_ring *r, uint32_t n) {
  uint16_t v;
  if (gate_move(r, n, G_OPEN, G_STARTED)) return 1;
  v = LOAD(SLOT(r, n));
  if (v == GATE(n, G_BARRED)) return 0;
  /* An executor that opens no gate (it could not map our arena) never
  ** takes a task back: anything goes. */
  return LOAD(&r->opened) ? -1 : 1;
}

int ppe_gate_stop(ppe_ring *r, uint32_t n) {
  uint16_t v;
  if (!LOAD(&r->gated)) return PPE_GATE_UNKNOWN;
  /* Each move fails only if the worker moved first: then the next one
  ** is tried, and the worker moves the word forward only. */
  if (gate_move(r, n, G_OPEN, G_BARRED)) return PPE_GATE_BARRED;
  if (gate_move(r, n, G_STARTED, G_STOPPED)) return PPE_GATE_STOPPED;
  v = LOAD(SLOT(r, n));
  if ((v & ~7) != GATE(n, 0)) return PPE_GATE_UNKNOWN;  /* not its word */
  switch (v & 7) {
    case G_DONE: return PPE_GATE_DONE;
    case G_BARRED: return PPE_GATE_BARRED;
    case G_STOPPED: return PPE_GATE_STOPPED;
    default: return PPE_GATE_UNKNOWN;
  }
}

int ppe_gate_finish(ppe_ring *r, uint32_t n) {
  uint16_t v;
  if (gate_move(r, n, G_STARTED, G_DONE)) return 1;
  v = LOAD(SLOT(r, n));
  if (v == GATE(n, G_STOPPED)) return 0;
  return LOAD(&r->opened) ? -1 : 1;
}

void ppe_ring_seen(ppe_ring_reader *rr) {
  rr->seen++;
  if (rr->r != NULL) STORE(&rr->r->seen, rr->seen);
}
