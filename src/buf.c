/* buf.c - growth and release of ppe_buf. */
#include <errno.h>
#include <stdlib.h>

#include "buf.h"

int ppe_buf_grow_(ppe_buf *b, size_t extra) {
  size_t need, ncap;
  char *np;
  if (extra > (size_t)-1 - b->len) return -ENOMEM;
  need = b->len + extra;
  ncap = b->cap ? b->cap : 256;
  /* Doubling keeps appends amortised O(1); the guard stops overflow. */
  while (ncap < need)
    ncap = (ncap > (size_t)-1 / 2) ? need : ncap * 2;
  np = realloc(b->p, ncap);
  if (np == NULL) return -ENOMEM;
  b->p = np;
  b->cap = ncap;
  return 0;
}

void ppe_buf_free(ppe_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}
