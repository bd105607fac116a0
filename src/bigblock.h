/* bigblock.h - big blocks: mapped, and kept a while for reuse once freed.
** Buffers grow into them, and so do a worker's Lua values (runner.c) and
** the caller's when ppe allocates for its state (hostalloc.c). */
#ifndef PPE_BIGBLOCK_H
#define PPE_BIGBLOCK_H

#include <stddef.h>

/* Blocks at least this large are mapped (and kept for reuse); smaller
** ones are malloc'd. */
#define PPE_BIG_MIN ((size_t)4 << 20)

/* Resizes a block of osize bytes (0 for none) to nsize; NULL on failure,
** the block untouched. Blocks must be freed with the size they have. */
void *ppe_big_resize(void *p, size_t osize, size_t nsize);
void ppe_big_free(void *p, size_t size);

/* Returns to the system the kept mappings that went unused for a while,
** and the pages of the shared arena's kept blocks (ppe_shm_trim); all of
** them if now < 0; now is ppe_now(). Returns the seconds until the next
** one is due, or -1 if none is kept. */
double ppe_big_trim(double now);
/* Freed mappings are kept for reuse only while someone trims them when
** idle: each executor counts itself in (+1) and out (-1). */
void ppe_big_keep(int delta);
/* 1 if freed blocks keep their pages now: someone trims them, and the
** keep time is not 0. Freed arena blocks follow the same rule. */
int ppe_big_keeping(void);
/* How long a freed block keeps its pages for reuse, in seconds: 0 gives
** them back at once, < 0 is the default (10 s). Process-wide; a fork's
** child (a worker) keeps what its parent had. */
void ppe_big_set_keep(double seconds);
/* In a child after fork: the cache's lock and contents are not its own. */
void ppe_big_after_fork(void);

#endif
