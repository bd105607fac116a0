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

/* Fills r to name the message in b (header and payload) if b is in the
** shared arena; 0 if it is not and must go through the socket. */
struct ppe_ref;
int ppe_buf_ref(struct ppe_ref *r, const ppe_buf *b);

#endif
