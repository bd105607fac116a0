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

#include "transport.h"

/* Bytes of replies the ring holds; a larger one goes through the channel. */
#define PPE_RING_DATA (64 * 1024)
#define PPE_RING_MAXREC (PPE_RING_DATA / 4)

/* In shared memory: each counter is written by one side only, and each
** on a cache line of its own. */
typedef struct ppe_ring {
  uint64_t head;   /* worker: bytes appended, ever */
  char pad1[56];
  uint64_t tail;   /* executor: bytes taken, ever */
  char pad2[56];
  uint64_t seen;   /* executor: replies taken from the channel */
  uint32_t awake;  /* executor: 1 while it will look here before sleeping */
  char pad3[52];
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

#endif
