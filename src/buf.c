/* buf.c - growth and release of ppe_buf. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "buf.h"

/* A buffer this large lives in its own mapping, asked for huge pages: a
** fresh 64 MiB message then costs 32 page faults, not 16384, and growing
** it moves page tables (mremap) instead of copying bytes. Buffers at least
** this large are always mapped, smaller ones always malloc'd. */
#define MAPPED (4u << 20)

/* Freed mappings kept for the next big block: a buffer that comes back
** with its pages present is not zeroed again by the kernel, which is most
** of the cost of a large message. Trimmed when the process goes idle. */
#define SLOTS 2

static struct { void *p; size_t size; } cache[SLOTS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* A cached mapping of at least n bytes (its size in *size), or NULL. */
static void *take_cached(size_t n, size_t *size) {
  void *p = NULL;
  int i, best = -1;
  pthread_mutex_lock(&cache_lock);
  for (i = 0; i < SLOTS; i++)
    if (cache[i].p != NULL && cache[i].size >= n &&
        (best < 0 || cache[i].size < cache[best].size))
      best = i;
  if (best >= 0) {
    p = cache[best].p;
    *size = cache[best].size;
    cache[best].p = NULL;
  }
  pthread_mutex_unlock(&cache_lock);
  return p;
}

/* A new mapping of at least n bytes, from the cache if it has one. */
static void *map_new(size_t n, size_t *size) {
  void *p = take_cached(n, size);
  if (p != NULL) return p;
  p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
           -1, 0);
  if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
  madvise(p, n, MADV_HUGEPAGE);
#endif
  *size = n;
  return p;
}

/* Keeps a mapping for reuse, evicting a smaller one. */
static void put_cached(void *p, size_t size) {
  int i, small = -1;
  pthread_mutex_lock(&cache_lock);
  for (i = 0; i < SLOTS; i++)
    if (small < 0 || cache[i].p == NULL ||
        (cache[small].p != NULL && cache[i].size < cache[small].size))
      small = i;
  if (cache[small].p == NULL || cache[small].size < size) {
    void *old = cache[small].p;
    size_t osize = cache[small].size;
    cache[small].p = p;
    cache[small].size = size;
    p = old;
    size = osize;
  }
  pthread_mutex_unlock(&cache_lock);
  if (p != NULL) munmap(p, size);
}

void ppe_big_trim(void) {
  int i;
  for (i = 0; i < SLOTS; i++) {
    void *p;
    size_t size;
    pthread_mutex_lock(&cache_lock);
    p = cache[i].p;
    size = cache[i].size;
    cache[i].p = NULL;
    pthread_mutex_unlock(&cache_lock);
    if (p != NULL) munmap(p, size);
  }
}

void ppe_big_after_fork(void) {
  int i;
  /* The lock may have been held by another thread at the fork. */
  pthread_mutex_init(&cache_lock, NULL);
  for (i = 0; i < SLOTS; i++) {
    if (cache[i].p != NULL) munmap(cache[i].p, cache[i].size);
    cache[i].p = NULL;
  }
}

/* Resizes to at least nsize; *got is the size the block has. */
static void *resize_atleast(void *p, size_t osize, size_t nsize,
                            size_t *got) {
  void *np;
  *got = nsize;
  if (nsize < MAPPED) {  /* to or within the malloc heap */
    if (osize < MAPPED) return realloc(p, nsize);
    np = malloc(nsize);
    if (np == NULL) return NULL;
    memcpy(np, p, nsize);
    munmap(p, osize);
    return np;
  }
  if (osize >= MAPPED) {
    np = mremap(p, osize, nsize, MREMAP_MAYMOVE);
    return np == MAP_FAILED ? NULL : np;
  }
  np = map_new(nsize, got);
  if (np != NULL && p != NULL) {
    memcpy(np, p, osize < nsize ? osize : nsize);
    free(p);
  }
  return np;
}

void *ppe_big_resize(void *p, size_t osize, size_t nsize) {
  size_t got;
  void *np = resize_atleast(p, osize, nsize, &got);
  if (np != NULL && got != nsize) {  /* exact sizes are asked for here */
    void *sp = mremap(np, got, nsize, 0);
    if (sp == MAP_FAILED) {
      ppe_big_free(np, got);
      return NULL;
    }
    np = sp;
  }
  return np;
}

void ppe_big_free(void *p, size_t size) {
  if (p == NULL) return;
  if (size >= MAPPED) put_cached(p, size);
  else free(p);
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
  np = resize_atleast(b->p, b->cap, ncap, &ncap);
  if (np == NULL) return -ENOMEM;
  b->p = np;
  b->cap = ncap;
  return 0;
}

void ppe_buf_free(ppe_buf *b) {
  ppe_big_free(b->p, b->cap);
  b->p = NULL;
  b->len = b->cap = 0;
}
