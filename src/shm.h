/* shm.h - the shared arena: big messages are written where the peer reads
** them, so their bytes cross between processes without a copy through
** the socket. Each process has one arena (a memfd, mapped whole), the
** other end of each channel maps it too, and a frame on the socket only
** says where the message is. Never raises; returns 0 or -errno. */
#ifndef PPE_SHM_H
#define PPE_SHM_H

#include <stddef.h>
#include <stdint.h>

/* Blocks of the arena, and the big blocks of bigblock.h, are sized in
** whole units of 2 MiB: blocks of nearly the same size (a message, the
** string it carries, the reply that echoes it) then fit each other's
** freed blocks exactly, and the size a block is freed with tells its
** length. */
#define PPE_UNIT ((size_t)2 << 20)
#define PPE_UNIT_ROUND(n) (((n) + PPE_UNIT - 1) & ~(PPE_UNIT - 1))

/* A new arena, not mapped here: its descriptor (close-on-exec), or
** -errno. A worker's is made by the zygote, which hands it to the worker
** and to the executor. */
int ppe_shm_create(void);
/* This process's own arena, created on first use: its descriptor, or
** -errno if it can't be had (then messages go through the socket). */
int ppe_shm_own(void);
/* Makes fd this process's own arena (a worker's, made by the zygote);
** fd is closed if it was taken. */
int ppe_shm_adopt(int fd);

/* The reply ring (ring.h) is the first unit of every arena, outside the
** blocks. The own arena's, or NULL without one. */
struct ppe_ring;
struct ppe_ring *ppe_shm_ring(void);

/* Faults in the n bytes at p, about to be written whole, in one system
** call: a block whose pages are new, here or in a big block (bigblock.c).
** A fault one page at a time costs an exception each time, 15-30 us in a
** virtual machine whose host backs the guest's memory lazily (a fraction
** of a microsecond on bare metal): there, a fresh 64 MiB took 310-510 ms
** touched page by page and 150-280 ms populated first. */
void ppe_populate(void *p, size_t n);

/* Blocks in the own arena, for message buffers only: n is rounded up to
** whole units (PPE_UNIT); pages that are new are faulted in at once. NULL
** when there is no arena or no room in it. */
void *ppe_shm_alloc(size_t n);
/* Grows a block in place to nsize bytes (or finds it large enough): 1, or
** 0 if p is not the arena's or what follows it is taken. */
int ppe_shm_extend(void *p, size_t osize, size_t nsize);
/* 1 if p is a block of the own arena. */
int ppe_shm_has(const void *p);
/* Frees p if it is arena memory (returns 1), else returns 0. A freed
** block keeps its pages for reuse when 'keep', else they go back at once.
** Blocks inherited from the parent of a fork are let go, never reused. */
int ppe_shm_free(void *p, size_t size, int keep);
/* The offset of p in the own arena, if it is a block of it; else 0 (the
** first unit is the ring's, never a block). */
size_t ppe_shm_offset(const void *p);

/* A block sent to the peer, which keeps it until it writes 0 in the
** block's first 32-bit word (ppe_shm_return, given the message's length):
** the block is reused after. */
void ppe_shm_lend(void *p, size_t size);
void ppe_shm_return(void *block, size_t len);

/* Gives back to the system the pages of blocks that went unused for
** 'keep_s' seconds (all if now < 0), reclaims returned loans. Returns the
** seconds until the next check is due, or -1 if nothing needs one. */
double ppe_shm_trim(double now, double keep_s);

/* The peer's arena, mapped here: read-only for a worker (what the
** executor sends), writable for the executor (it returns loans). */
typedef struct ppe_peer ppe_peer;
ppe_peer *ppe_peer_open(int fd, int writable);
/* The peer's reply ring (NULL for no peer). */
struct ppe_ring *ppe_peer_ring(ppe_peer *pe);
/* 1 in the child of a fork: the mapping is not there, nor the loans. */
int ppe_peer_gone(const ppe_peer *pe);
/* The message a PPE_F_REF frame f (payload pl) names: its header copied
** to *in, and a pointer to the whole of it; NULL if f is not a well-formed
** reference into the peer's arena. */
struct ppe_frame;
char *ppe_peer_message(ppe_peer *pe, const struct ppe_frame *f,
                       const char *pl, struct ppe_frame *in);
/* Done with a message ppe_peer_message gave, not lent (a request). */
void ppe_peer_done(char *m, size_t len);
void ppe_peer_ref(ppe_peer *pe);
void ppe_peer_unref(ppe_peer *pe);  /* unmapped with the last reference */

#endif
