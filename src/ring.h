/* ring.h - replies through shared memory. A worker appends each reply to
** a ring at the start of its arena, which the executor maps, instead of
** writing it to the channel: no system call per reply, and a reply is
** safe the moment it is written, even if the worker dies next. The
** channel carries a bell, an empty frame, only when the executor may be
** asleep; replies the ring has no room for go through the channel.
**
** Order: the executor empties the ring before it reads each frame from
** the channel, and the worker uses the ring only once the executor has
** taken every reply it sent through the channel. */
#ifndef PPE_RING_H
#define PPE_RING_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* Bytes of replies the ring holds; a larger one goes through the channel. */
#define PPE_RING_DATA (64 * 1024)
#define PPE_RING_MAXREC (PPE_RING_DATA / 4)

/* Gate words: one per task sent to the worker, by its number among them
** modulo this. Enough for every task the worker may not have read yet:
** a pipeline, and one taken back before it (pool.c). */
#define PPE_GATES 1024

/* In shared memory: each counter is written by one side only, and each
** on a cache line of its own. */
typedef struct ppe_ring {
  uint64_t head;   /* worker: bytes appended, ever */
  char pad1[56];
  uint64_t tail;   /* executor: bytes taken, ever */
  char pad2[56];
  uint64_t seen;   /* executor: replies taken from the channel */
  uint32_t awake;  /* executor: 1 while it will look here before sleeping */
  uint32_t gated;  /* worker: 1 once it goes through the gate (below) */
  uint32_t opened; /* executor: 1 once it opens the gate for a task */
  uint32_t left;   /* worker: the exit code it leaves with, when that is
                   ** ppe's own (worker.h) and not a task's os.exit */
  char pad3[40];
  /* Both sides, by compare-and-swap. Small, in the page of the counters,
  ** which an idle worker keeps: nothing more stays resident for them. */
  uint16_t gate[PPE_GATES];
  char data[PPE_RING_DATA];
} ppe_ring;

/* Worker. Appends the message m (frame header first, n bytes) if the ring
** has room and the executor has taken the 'sent' replies that went
** through the channel. Returns 0 if the message must go through the
** channel, 1 if appended, 2 if appended and the bell must be rung. */
int ppe_ring_put(ppe_ring *r, const char *m, size_t n, uint64_t sent);

/* Worker, idle: gives the ring's pages back if the executor has read
** all (the first stays: the counters are there). */
void ppe_ring_idle(ppe_ring *r);

/* Executor. Its own view of a worker's ring: where it has read to. */
typedef struct ppe_ring_reader {
  ppe_ring *r;     /* NULL: the worker has none */
  uint64_t pos;
  uint64_t head;   /* read once per pass: a worker may write it anytime */
  uint64_t seen;   /* kept here, where the worker cannot change it */
} ppe_ring_reader;

/* Starts a pass over what the worker has appended so far. */
void ppe_ring_begin(ppe_ring_reader *rr);
/* The next message of the pass: its header copied to *f, its payload in
** the ring at *payload, valid until ppe_ring_end. 1, 0 at the end of the
** pass, -1 if the ring holds what no worker of ours writes. */
int ppe_ring_next(ppe_ring_reader *rr, ppe_frame *f, const char **payload);
/* Gives the space read back to the worker. */
void ppe_ring_end(ppe_ring_reader *rr);
/* Before the executor sleeps (awake 0): 1 if the worker has appended
** what it has not read, so it must not. After it wakes: awake 1. */
int ppe_ring_sleep(ppe_ring_reader *rr);
void ppe_ring_wake(ppe_ring_reader *rr);
/* The executor took a reply from the channel. */
void ppe_ring_seen(ppe_ring_reader *rr);

/* Worker: it is about to leave with ppe's own exit code 'code'. */
void ppe_ring_leave(ppe_ring *r, int code);
/* Executor, once the worker has ended: the code it said it left with,
** or 0. */
int ppe_ring_left(const ppe_ring *r);

/* The gate: the executor may take back a task it sent, as long as the
** worker has not started it. Task n (counted from 0 by both sides, over
** the task and chunk requests of one worker) is opened before it is sent;
** the worker starts it only if it can close the gate first, and the
** executor takes it back only if it can bar it first. A worker can only
** make the executor keep a task it has, which it could do anyway. */

/* Worker: from now on, every task goes through the gate. */
void ppe_gate_use(ppe_ring *r);
/* Executor: task n is about to be sent. */
void ppe_gate_open(ppe_ring *r, uint32_t n);
/* Executor: 1 if task n is taken back (the worker will skip it), 0 if
** the worker has started it or does not use the gate. */
int ppe_gate_bar(ppe_ring *r, uint32_t n);
/* Worker: 1 if task n is to run (it counts as started from now), 0 if
** the executor took it back, -1 if the executor opened the gate for
** another task there (the two count differently: nothing to trust). */
int ppe_gate_pass(ppe_ring *r, uint32_t n);

/* A task cancelled even while it runs (cancel{force}) is settled at the
** same gate, which has two more states: the worker, once task n has
** returned and before its reply goes out, marks it done; the executor,
** to cancel a task that runs, marks it stopped. Whichever comes first
** holds: a task is either finished, its reply on its way, or stopped,
** and then the worker sends no reply and starts nothing more, and waits
** for the end its executor sends it. */

/* What ppe_gate_stop found. */
enum {
  PPE_GATE_BARRED,   /* not started: the worker will skip it */
  PPE_GATE_STOPPED,  /* started, and now stopped: kill the worker */
  PPE_GATE_DONE,     /* it has returned: its reply comes */
  PPE_GATE_UNKNOWN   /* the worker does not use the gate */
};

/* Executor: task n is to end now, whether it runs or not: PPE_GATE_*. */
int ppe_gate_stop(ppe_ring *r, uint32_t n);
/* Worker: task n has returned. 1 if its reply is to go out; 0 if the
** executor stopped it; -1 if the gate holds another task's word. */
int ppe_gate_finish(ppe_ring *r, uint32_t n);

#endif
