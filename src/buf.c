/* buf.c - growth and release of ppe_buf. */
#include <errno.h>
#include <string.h>

#include "bigblock.h"
#include "buf.h"
#include "frame.h"
#include "shm.h"

/* Only a block of PPE_BIG_MIN or more can be the arena's: the test for
** it, under a lock, is spared the small buffers of every task. */
static void buf_release(void *p, size_t size) {
  if (size < PPE_BIG_MIN || !ppe_shm_free(p, size, ppe_big_keeping()))
    ppe_big_free(p, size);
}

/* A message to send that outgrows the malloc heap goes to the shared
** arena, where the peer can read it without a copy through the socket; to
** a mapping of its own if the arena has no room. Other buffers (what was
** read, results) stay private: a child of fork keeps its copy of them. */
static void *buf_resize(ppe_buf *b, size_t ncap) {
  void *np;
  if (ncap < PPE_BIG_MIN || !b->shared)
    return ppe_big_resize(b->p, b->cap, ncap);
  if (ppe_shm_extend(b->p, b->cap, ncap)) return b->p;
  np = ppe_shm_alloc(ncap);
  if (np == NULL && !ppe_shm_has(b->p))
    return ppe_big_resize(b->p, b->cap, ncap);
  if (np == NULL && (np = ppe_big_resize(NULL, 0, ncap)) == NULL)
    return NULL;
  if (b->len > 0) memcpy(np, b->p, b->len);
  buf_release(b->p, b->cap);
  return np;
}

int ppe_buf_grow_(ppe_buf *b, size_t extra) {
  size_t need, ncap;
  char *np;
  if (extra > (size_t)-1 - b->len) return -ENOMEM;
  need = b->len + extra;
  ncap = b->cap ? b->cap : 256;
  /* Doubling keeps appends amortised O(1); the guard stops overflow. */
  while (ncap < need)
    ncap = (ncap > (size_t)-1 / 2) ? need : ncap * 2;
  if (ncap >= PPE_BIG_MIN) {
    /* Mapped, a buffer grows by moving page tables, not bytes: a quarter
    ** more each time keeps appends amortised O(1) and a frame read by its
    ** known size takes the whole pages it needs, not twice that. */
    size_t quarter = b->cap + b->cap / 4;
    ncap = need > quarter ? need : quarter;
    if (ncap > (size_t)-1 - PPE_UNIT) return -ENOMEM;
    ncap = PPE_UNIT_ROUND(ncap);
  }
  np = buf_resize(b, ncap);
  if (np == NULL) return -ENOMEM;
  b->p = np;
  b->cap = ncap;
  return 0;
}

void ppe_buf_free(ppe_buf *b) {
  buf_release(b->p, b->cap);
  b->p = NULL;
  b->len = b->cap = 0;
}

int ppe_buf_ref(ppe_ref *r, const ppe_buf *b) {
  ppe_frame f;
  size_t off;
  /* Only a block that large can be the arena's: the test for it, under
  ** its lock, is spared the small messages of every task. */
  if (b->cap < PPE_BIG_MIN || b->len < sizeof(f) ||
      (off = ppe_shm_offset(b->p)) == 0)
    return 0;
  memcpy(&f, b->p, sizeof(f));
  r->f.type = PPE_F_REF;
  r->f.aux = f.type;  /* the reader may need it before the message */
  r->f.id = f.id;
  r->f.len = sizeof(r->off) + sizeof(r->len);
  r->off = (uint64_t)off;
  r->len = b->len;
  return 1;
}
