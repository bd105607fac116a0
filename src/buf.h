/* buf.h - a growable byte buffer, the unit every message is built in. */
#ifndef PPE_BUF_H
#define PPE_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct ppe_buf {
  char *p;
  size_t len;  /* bytes in use */
  size_t cap;  /* bytes allocated */
  int shared;  /* a message to send: grown large, it lives in the shared
               ** arena (shm.h), where the other side reads it */
} ppe_buf;

#define PPE_BUF_INIT {NULL, 0, 0, 0}

/* Makes room for 'extra' more bytes; 0 or -ENOMEM, the buffer untouched
** on failure. */
int ppe_buf_grow_(ppe_buf *b, size_t extra);

static inline int ppe_buf_reserve(ppe_buf *b, size_t extra) {
  return (extra <= b->cap - b->len) ? 0 : ppe_buf_grow_(b, extra);
}

static inline int ppe_buf_add(ppe_buf *b, const void *s, size_t n) {
  int r = ppe_buf_reserve(b, n);
  if (r == 0) { if (n) memcpy(b->p + b->len, s, n); b->len += n; }
  return r;
}

void ppe_buf_free(ppe_buf *b);

/* Blocks at least this large are mapped (and kept for reuse); smaller
** ones are malloc'd. */
#define PPE_BIG_MIN ((size_t)4 << 20)

/* Mapped blocks, here and in the shared arena (shm.h), are sized in whole
** units of 2 MiB: blocks of nearly the same size (a message, the string
** it carries, the reply that echoes it) then fit each other's freed
** blocks exactly, and the size a block is freed with tells its length. */
#define PPE_UNIT ((size_t)2 << 20)
#define PPE_UNIT_ROUND(n) (((n) + PPE_UNIT - 1) & ~(PPE_UNIT - 1))

/* The allocation behind buffers, for other big blocks too: resizes a
** block of osize bytes (0 for none) to nsize; NULL on failure, the block
** untouched. Blocks must be freed with the size they have. */
void *ppe_big_resize(void *p, size_t osize, size_t nsize);
void ppe_big_free(void *p, size_t size);

/* Returns to the system the kept mappings that went unused for a while
** (all of them if now < 0); now is ppe_now(). Returns the seconds until
** the next one is due, or -1 if none is kept. */
double ppe_big_trim(double now);
/* Freed mappings are kept for reuse only while someone trims them when
** idle: each executor counts itself in (+1) and out (-1). */
void ppe_big_keep(int delta);
/* How long a freed block keeps its pages for reuse, in seconds: 0 gives
** them back at once, < 0 is the default (10 s). Process-wide; a fork's
** child (a worker) keeps what its parent had. */
void ppe_big_set_keep(double seconds);
/* In a child after fork: the cache's lock and contents are not its own. */
void ppe_big_after_fork(void);

#endif
