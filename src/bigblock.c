/* bigblock.c - big blocks: mapped, and kept a while for reuse once freed. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bigblock.h"
#include "lock.h"
#include "shm.h"

/* Freed mappings kept for the next big block: a buffer that comes back
** with its pages present is not zeroed again by the kernel, which is most
** of the cost of a large message. Enough slots for a request, the string
** it carries, the reply and a result or two not yet collected. Unless
** reused, each is kept for the keep time, then LAZY_S more with its pages
** marked free (MADV_FREE): the kernel takes them back whenever it needs
** memory, and until then a reuse finds them without a fault; then it is
** unmapped. This is jemalloc's decay, and the keep time its default for
** dirty pages: a program that sends a large value every few seconds
** would otherwise fault its memory in afresh each time. */
#define SLOTS 6
#define KEEP_DEFAULT 10.0
#define LAZY_S 10.0

static struct {
  void *p;
  size_t size;
  double at;  /* when it was kept, or marked free */
  int lazy;   /* its pages are marked free */
} cache[SLOTS];
static int keepers = 0;  /* who will trim the cache: 0, nothing is kept */
static double keep_s = KEEP_DEFAULT;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

void ppe_big_keep(int delta) {
  int none;
  pthread_mutex_lock(&cache_lock);
  keepers += delta;
  none = keepers <= 0;
  pthread_mutex_unlock(&cache_lock);
  if (none) ppe_big_trim(-1);
}

void ppe_big_set_keep(double seconds) {
  pthread_mutex_lock(&cache_lock);
  keep_s = seconds < 0 ? KEEP_DEFAULT : seconds;
  pthread_mutex_unlock(&cache_lock);
}

static double keep_time(void) {
  double k;
  pthread_mutex_lock(&cache_lock);
  k = keep_s;
  pthread_mutex_unlock(&cache_lock);
  return k;
}

int ppe_big_keeping(void) {
  int k;
  pthread_mutex_lock(&cache_lock);
  k = keepers > 0 && keep_s > 0;
  pthread_mutex_unlock(&cache_lock);
  return k;
}

#define ROUND(n) PPE_UNIT_ROUND(n)

/* A cached mapping of exactly n bytes (rounded), cut from the smallest
** one at least that long; or NULL. */
static void *take_cached(size_t n) {
  void *p = NULL;
  size_t size = 0;
  int i, best = -1;
  pthread_mutex_lock(&cache_lock);
  for (i = 0; i < SLOTS; i++)
    if (cache[i].p != NULL && cache[i].size >= n &&
        (best < 0 || cache[i].size < cache[best].size))
      best = i;
  if (best >= 0) {
    p = cache[best].p;
    size = cache[best].size;
    cache[best].p = NULL;
  }
  pthread_mutex_unlock(&cache_lock);
  if (p != NULL && size > n) munmap((char *)p + n, size - n);
  return p;
}

/* A new mapping of n bytes (rounded), from the cache if it has one. A
** block of PPE_BIG_MIN or more that is not in the shared arena lives in
** one: growing it moves page tables (mremap) instead of copying bytes.
** No huge pages are asked for: a fresh huge page may first have to be
** made by compaction, in the faulting thread, and in a virtual machine
** whose host takes back the guest's free memory, each is cold there too
** (a fresh 64 MiB took 140 ms in huge pages, 30 ms in small ones). */
static void *map_new(size_t n) {
  void *p = take_cached(n);
  if (p != NULL) return p;
  p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
           -1, 0);
  if (p == MAP_FAILED) return NULL;
  ppe_populate(p, n);  /* a new block is written whole */
  return p;
}

/* Keeps a mapping for reuse, evicting a smaller one. */
static void put_cached(void *p, size_t size, double now) {
  int i, small = -1;
  pthread_mutex_lock(&cache_lock);
  /* Not kept when nobody would give it back when idle, or when told so. */
  if (keepers <= 0 || keep_s <= 0) {
    pthread_mutex_unlock(&cache_lock);
    munmap(p, size);
    return;
  }
  for (i = 0; i < SLOTS; i++)
    if (small < 0 || cache[i].p == NULL ||
        (cache[small].p != NULL && cache[i].size < cache[small].size))
      small = i;
  if (cache[small].p == NULL || cache[small].size < size) {
    void *old = cache[small].p;
    size_t osize = cache[small].size;
    cache[small].p = p;
    cache[small].size = size;
    cache[small].at = now;
    cache[small].lazy = 0;
    p = old;
    size = osize;
  }
  pthread_mutex_unlock(&cache_lock);
  if (p != NULL) munmap(p, size);
}

double ppe_big_trim(double now) {
  struct { void *p; size_t size; } gone[SLOTS];
  double keep = keep_time(), next = ppe_shm_trim(now, keep);
  int i, n = 0;
  pthread_mutex_lock(&cache_lock);
  for (i = 0; i < SLOTS; i++) {
    double left;
    if (cache[i].p == NULL) continue;
#ifdef MADV_FREE
    /* Under the lock: a block taken meanwhile would lose what it got. */
    if (!cache[i].lazy && now >= 0 && now - cache[i].at >= keep &&
        madvise(cache[i].p, cache[i].size, MADV_FREE) == 0) {
      cache[i].lazy = 1;
      cache[i].at = now;
    }
#endif
    left = (cache[i].lazy ? LAZY_S : keep) - (now - cache[i].at);
    if (now < 0 || left <= 0) {
      gone[n].p = cache[i].p;
      gone[n++].size = cache[i].size;
      cache[i].p = NULL;
    }
    else if (next < 0 || left < next) next = left;
  }
  pthread_mutex_unlock(&cache_lock);
  for (i = 0; i < n; i++) munmap(gone[i].p, gone[i].size);
  return next;
}

void ppe_big_after_fork(void) {
  int i;
  /* The lock may have been held by another thread at the fork. */
  pthread_mutex_init(&cache_lock, NULL);
  keepers = 1;  /* a worker trims its own cache when idle */
  for (i = 0; i < SLOTS; i++) {
    if (cache[i].p != NULL) munmap(cache[i].p, cache[i].size);
    cache[i].p = NULL;
  }
}

void *ppe_big_resize(void *p, size_t osize, size_t nsize) {
  void *np;
  if (nsize < PPE_BIG_MIN) {  /* to or within the malloc heap */
    if (osize < PPE_BIG_MIN) return realloc(p, nsize);
    np = malloc(nsize);
    if (np == NULL) return NULL;
    memcpy(np, p, nsize);
    munmap(p, ROUND(osize));
    return np;
  }
  if (osize >= PPE_BIG_MIN) {
    if (ROUND(osize) == ROUND(nsize)) return p;
    np = mremap(p, ROUND(osize), ROUND(nsize), MREMAP_MAYMOVE);
    if (np == MAP_FAILED) return NULL;
    if (ROUND(nsize) > ROUND(osize))  /* the new part, to be written */
      ppe_populate((char *)np + ROUND(osize), ROUND(nsize) - ROUND(osize));
    return np;
  }
  np = map_new(ROUND(nsize));
  if (np != NULL && p != NULL) {
    memcpy(np, p, osize < nsize ? osize : nsize);
    free(p);
  }
  return np;
}

void ppe_big_free(void *p, size_t size) {
  if (p == NULL) return;
  if (size >= PPE_BIG_MIN) put_cached(p, ROUND(size), ppe_now());
  else free(p);
}
