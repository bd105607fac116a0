/* shm.c - the shared arena (see shm.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* memfd_create, fallocate, MAP_NORESERVE */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frame.h"
#include "lock.h"
#include "ring.h"
#include "shm.h"

/* Under valgrind, the parts of an arena not in use are marked
** inaccessible: its leak check reads every accessible mapped page, and
** reading a page of shared memory allocates it, gigabytes of it. And an
** arena is small there: memcheck keeps state for every 64 KiB of a
** mapping, which every fork copies and every exit frees, seconds of it
** for arenas the size of the machine's memory. */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define HIDE(p, n) VALGRIND_MAKE_MEM_NOACCESS(p, n)
#define SHOW(p, n) VALGRIND_MAKE_MEM_DEFINED(p, n)
#define UNDER_VALGRIND RUNNING_ON_VALGRIND
#endif
#endif
#ifndef HIDE
#define HIDE(p, n) ((void)0)
#define SHOW(p, n) ((void)0)
#define UNDER_VALGRIND 0
#endif
#define VALGRIND_ARENA ((size_t)1 << 30)

/* Blocks are whole units, as the big blocks of bigblock.c are. */
#define ROUND(n) PPE_UNIT_ROUND(n)

/* The ring is the first unit of an arena. */
typedef char ring_fits[sizeof(ppe_ring) <= PPE_UNIT ? 1 : -1];

/* An arena is sparse: it takes memory only for the pages written. Its
** size bounds one message; larger ones go through the socket. */
#define MAX_ARENA ((size_t)64 << 30)

/* Freed blocks that keep their pages, at most this many: a message
** written where one was before costs no page faults, the zeroing of
** fresh pages being most of the cost of a large message. */
#define KEPT 6

/* How often a process with a loan out looks whether it has come back,
** whatever the keep time: seconds. */
#define LOAN_POLL_S 1.0

/* Arenas inherited across forks: their blocks are the parent's, and a
** child that frees one must neither reuse nor unmap it. */
#define GONE_MAX 8

typedef struct extent {
  size_t off, len;
  double at;     /* when it was freed */
  int punched;   /* its pages went back to the system */
} extent;

typedef struct extents {
  extent *e;
  int n, cap;
} extents;

static struct {
  int fd;
  char *base;
  size_t size;
  size_t top;      /* from here up, never used or given back */
  extents fr;      /* free blocks below top, by offset */
  extents lent;    /* blocks the peer holds */
} A = {-1, NULL, 0, 0, {NULL, 0, 0}, {NULL, 0, 0}};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct { char *p; size_t size; } gone[GONE_MAX];
static int ngone = 0;
static int atfork_set = 0;

struct ppe_peer {
  char *base;
  size_t size;
  int refs;
  int gone;      /* in the child of a fork: not ours, not mapped */
  struct ppe_peer *prev, *next;
};

static ppe_peer *peers = NULL;  /* every peer mapping, for forks */


/*
** {======================================================
** Lists of extents
** =======================================================
*/

static int ext_insert(extents *x, int i, extent e) {
  if (x->n == x->cap) {
    int ncap = x->cap ? 2 * x->cap : 8;
    extent *ne = realloc(x->e, (size_t)ncap * sizeof(extent));
    if (ne == NULL) return -ENOMEM;
    x->e = ne;
    x->cap = ncap;
  }
  memmove(x->e + i + 1, x->e + i, (size_t)(x->n - i) * sizeof(extent));
  x->e[i] = e;
  x->n++;
  return 0;
}

static void ext_remove(extents *x, int i) {
  x->n--;
  memmove(x->e + i, x->e + i + 1, (size_t)(x->n - i) * sizeof(extent));
}

/* }====================================================== */


/*
** {======================================================
** The own arena's blocks (lock held)
** =======================================================
*/

/* Gives a block's pages back: through the mapping, so a worker needs no
** descriptor for it. */
static void punch(extent *e) {
  if (madvise(A.base + e->off, e->len, MADV_REMOVE) != 0 && A.fd >= 0)
    fallocate(A.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              (off_t)e->off, (off_t)e->len);
  e->punched = 1;
}

/* Joins e[i] with its neighbours of the same kind; a given-back block
** just under top lowers top. */
static void coalesce(int i) {
  extent *e = A.fr.e;
  if (i + 1 < A.fr.n && e[i].off + e[i].len == e[i + 1].off &&
      e[i].punched == e[i + 1].punched) {
    e[i].len += e[i + 1].len;
    if (e[i + 1].at > e[i].at) e[i].at = e[i + 1].at;
    ext_remove(&A.fr, i + 1);
  }
  if (i > 0 && e[i - 1].off + e[i - 1].len == e[i].off &&
      e[i - 1].punched == e[i].punched) {
    e[i - 1].len += e[i].len;
    if (e[i].at > e[i - 1].at) e[i - 1].at = e[i].at;
    ext_remove(&A.fr, i);
    i--;
  }
  if (i == A.fr.n - 1 && e[i].punched && e[i].off + e[i].len == A.top) {
    A.top = e[i].off;
    ext_remove(&A.fr, i);
  }
}

/* Gives back the pages of the oldest kept blocks beyond KEPT. */
static void limit_kept(void) {
  for (;;) {
    int i, kept = 0, old = -1;
    for (i = 0; i < A.fr.n; i++) {
      if (A.fr.e[i].punched) continue;
      kept++;
      if (old < 0 || A.fr.e[i].at < A.fr.e[old].at) old = i;
    }
    if (kept <= KEPT) return;
    punch(&A.fr.e[old]);
    coalesce(old);
  }
}

static void free_locked(size_t off, size_t len, int keep, double now) {
  extent e;
  int i = 0;
  HIDE(A.base + off, len);
  e.off = off;
  e.len = len;
  e.at = now;
  e.punched = 0;
  if (!keep) punch(&e);
  while (i < A.fr.n && A.fr.e[i].off < off) i++;
  if (ext_insert(&A.fr, i, e) != 0) {
    /* No room to remember it: its pages go back, its addresses are lost
    ** until the arena is gone, which only costs address space. */
    if (!e.punched) punch(&e);
    return;
  }
  coalesce(i);
  limit_kept();
}

/* Loans the peer has returned become free blocks with their pages. */
static void reclaim(double now) {
  int i = 0;
  while (i < A.lent.n) {
    extent *l = &A.lent.e[i];
    uint32_t *w = (uint32_t *)(void *)(A.base + l->off);
    if (__atomic_load_n(w, __ATOMIC_ACQUIRE) != 0) { i++; continue; }
    free_locked(l->off, l->len, 1, now);
    ext_remove(&A.lent, i);
  }
}

/* Takes n bytes from the front of free block i. */
static size_t take(int i, size_t n) {
  extent *e = &A.fr.e[i];
  size_t off = e->off;
  e->off += n;
  e->len -= n;
  if (e->len == 0) ext_remove(&A.fr, i);
  return off;
}

/* }====================================================== */


/*
** {======================================================
** Creation, forks
** =======================================================
*/

static size_t arena_size(void) {
  long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
  size_t ram = (pages > 0 && psize > 0) ? (size_t)pages * (size_t)psize
                                        : MAX_ARENA;
  if (UNDER_VALGRIND) return VALGRIND_ARENA;
  return ram < MAX_ARENA ? ROUND(ram) : MAX_ARENA;
}

int ppe_shm_create(void) {
  int fd = memfd_create("ppe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -errno;
  /* Sealed at its size: nobody that reopens it (through /proc) can cut
  ** it short under a mapping, which would make the owner fault. */
  if (ftruncate(fd, (off_t)arena_size()) != 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

/* Swaps a mapping for an inaccessible reservation of its addresses: no
** byte of it is read or written here, and no other mapping lands there. */
static void reserve(void *p, size_t size) {
  mmap(p, size, PROT_NONE,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
}

/* In the child of a fork, the arena is the parent's: no block of it may be
** written or reused here. */
static void after_fork(void) {
  ppe_peer *pe;
  pthread_mutex_init(&lock, NULL);
  /* The workers' arenas too: a child keeps no memory of theirs alive,
  ** and returns no loan that is its parent's. */
  for (pe = peers; pe != NULL; pe = pe->next) {
    reserve(pe->base, pe->size);
    pe->gone = 1;
  }
  if (A.base != NULL) {
    if (ngone < GONE_MAX) {
      gone[ngone].p = A.base;
      gone[ngone++].size = A.size;
    }
    reserve(A.base, A.size);
    if (A.fd >= 0) close(A.fd);
  }
  free(A.fr.e);
  free(A.lent.e);
  memset(&A, 0, sizeof(A));
  A.fd = -1;
}

/* A fork waits for the lock, so the child finds the lists whole. */
static void before_fork(void) {
  pthread_mutex_lock(&lock);
}

static void parent_after_fork(void) {
  pthread_mutex_unlock(&lock);
}

static int watch_forks(void) {
  if (!atfork_set &&
      pthread_atfork(before_fork, parent_after_fork, after_fork) != 0)
    return -1;
  atfork_set = 1;
  return 0;
}

static int map_own(int fd) {
  struct stat st;
  void *p;
  if (fstat(fd, &st) != 0) return -errno;
  p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) return -errno;
  if (watch_forks() != 0) {
    munmap(p, (size_t)st.st_size);
    return -ENOMEM;
  }
  A.fd = fd;
  A.base = p;
  A.size = (size_t)st.st_size;
  A.top = PPE_UNIT;  /* the first unit is the ring's */
  HIDE(p, A.size);
  SHOW(p, sizeof(ppe_ring));
  return 0;
}

int ppe_shm_own(void) {
  int r = 0;
  pthread_mutex_lock(&lock);
  if (A.base == NULL) {
    int fd = ppe_shm_create();
    r = fd < 0 ? fd : map_own(fd);
    if (fd >= 0 && r < 0) close(fd);
  }
  if (r == 0) r = A.fd;
  pthread_mutex_unlock(&lock);
  return r;
}

int ppe_shm_adopt(int fd) {
  int r;
  pthread_mutex_lock(&lock);
  r = A.base == NULL ? map_own(fd) : -EEXIST;
  if (r == 0) {
    close(fd);  /* the mapping is all a worker needs */
    A.fd = -1;
  }
  pthread_mutex_unlock(&lock);
  return r;
}

/* }====================================================== */


#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  /* Linux 5.14 */
#endif

void ppe_populate(void *p, size_t n) {
  /* An older kernel refuses it (EINVAL), and one short of memory stops
  ** part way: either way, the writes fault in what is missing. */
  if (p != NULL && n > 0) madvise(p, n, MADV_POPULATE_WRITE);
}


/*
** {======================================================
** Blocks
** =======================================================
*/

#define OWNS(p) (A.base != NULL && (const char *)(p) >= A.base && \
                 (const char *)(p) < A.base + A.size)

void *ppe_shm_alloc(size_t n) {
  char *p = NULL;
  int i, best = -1, fresh = 1;
  if (n == 0 || n > MAX_ARENA) return NULL;
  n = ROUND(n);
  pthread_mutex_lock(&lock);
  if (A.base == NULL) goto done;
  if (A.lent.n > 0) reclaim(ppe_now());
  /* The smallest block that still has its pages, else any that fits. */
  for (i = 0; i < A.fr.n; i++) {
    const extent *e = &A.fr.e[i];
    if (e->len < n) continue;
    if (best < 0 || (A.fr.e[best].punched && !e->punched) ||
        (A.fr.e[best].punched == e->punched && e->len < A.fr.e[best].len))
      best = i;
  }
  if (best >= 0) {
    fresh = A.fr.e[best].punched;
    p = A.base + take(best, n);
  }
  else if (n <= A.size - A.top) {
    p = A.base + A.top;
    A.top += n;
  }
done:
  pthread_mutex_unlock(&lock);
  if (p != NULL) SHOW(p, n);
  /* A block is taken for a message of about its size: pages that went
  ** back are faulted in at once (see ppe_populate). */
  if (p != NULL && fresh) ppe_populate(p, n);
  return p;
}

int ppe_shm_extend(void *p, size_t osize, size_t nsize) {
  size_t o = ROUND(osize), nn = ROUND(nsize), end, need = 0;
  int i, ok = 0, fresh = 1;
  pthread_mutex_lock(&lock);
  if (!OWNS(p)) goto done;
  end = (size_t)((char *)p - A.base) + o;
  ok = 1;
  if (nn > o) {
    need = nn - o;
    for (i = 0; i < A.fr.n && A.fr.e[i].off < end; i++)
      ;
    if (i < A.fr.n && A.fr.e[i].off == end && A.fr.e[i].len >= need) {
      fresh = A.fr.e[i].punched;
      take(i, need);
    }
    else if (end == A.top && need <= A.size - A.top)
      A.top += need;
    else ok = 0;
    if (ok) SHOW(A.base + end, need);
  }
done:
  pthread_mutex_unlock(&lock);
  if (ok && need > 0 && fresh) ppe_populate((char *)p + o, need);
  return ok;
}

int ppe_shm_has(const void *p) {
  int r;
  pthread_mutex_lock(&lock);
  r = OWNS(p);
  pthread_mutex_unlock(&lock);
  return r;
}

int ppe_shm_free(void *p, size_t size, int keep) {
  int i, r = 1;
  if (p == NULL) return 0;
  pthread_mutex_lock(&lock);
  if (OWNS(p))
    free_locked((size_t)((char *)p - A.base), ROUND(size), keep, ppe_now());
  else {
    r = 0;
    for (i = 0; i < ngone; i++)
      if ((char *)p >= gone[i].p && (char *)p < gone[i].p + gone[i].size)
        r = 1;  /* the parent's: nothing of it is ours to free */
  }
  pthread_mutex_unlock(&lock);
  return r;
}

void ppe_shm_lend(void *p, size_t size) {
  extent e;
  pthread_mutex_lock(&lock);
  e.off = (size_t)((char *)p - A.base);
  e.len = ROUND(size);
  e.at = 0;
  e.punched = 0;
  if (ext_insert(&A.lent, A.lent.n, e) != 0) {
    /* Not remembered, never reused: its pages go back, at least. */
    punch(&e);
  }
  pthread_mutex_unlock(&lock);
}

size_t ppe_shm_offset(const void *p) {
  size_t off;
  pthread_mutex_lock(&lock);
  off = OWNS(p) ? (size_t)((const char *)p - A.base) : 0;
  pthread_mutex_unlock(&lock);
  return off;
}

void ppe_shm_return(void *block, size_t len) {
  __atomic_store_n((uint32_t *)block, 0, __ATOMIC_RELEASE);
  HIDE(block, len);
}

double ppe_shm_trim(double now, double keep_s) {
  double next = -1;
  int i;
  pthread_mutex_lock(&lock);
  if (A.base == NULL) goto done;
  if (A.lent.n > 0) reclaim(now < 0 ? ppe_now() : now);
  for (i = 0; i < A.fr.n; i++) {
    extent *e = &A.fr.e[i];
    if (e->punched) continue;
    if (now < 0 || now - e->at >= keep_s) {
      punch(e);
      coalesce(i);
      i = -1;  /* the list changed: look again from the start */
    }
  }
  for (i = 0; i < A.fr.n; i++) {
    const extent *e = &A.fr.e[i];
    if (!e->punched && (next < 0 || e->at + keep_s - now < next))
      next = e->at + keep_s - now;
  }
  /* A loan still out is looked at again later: once back, its pages
  ** are kept a while and then given back like any other. */
  if (A.lent.n > 0 && (next < 0 || LOAN_POLL_S < next)) next = LOAN_POLL_S;
done:
  pthread_mutex_unlock(&lock);
  return next;
}

/* }====================================================== */


/*
** {======================================================
** The peer's arena
** =======================================================
*/

ppe_peer *ppe_peer_open(int fd, int writable) {
  struct stat st;
  ppe_peer *pe;
  void *p;
  if (fstat(fd, &st) != 0 || st.st_size <= 0) return NULL;
  pe = malloc(sizeof(*pe));
  if (pe == NULL) return NULL;
  p = mmap(NULL, (size_t)st.st_size, PROT_READ | (writable ? PROT_WRITE : 0),
           MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) {
    free(pe);
    return NULL;
  }
  pe->base = p;
  pe->size = (size_t)st.st_size;
  pe->refs = 1;
  HIDE(p, pe->size);
  SHOW(p, sizeof(ppe_ring));
  pe->gone = 0;
  pe->prev = NULL;
  pthread_mutex_lock(&lock);
  if (watch_forks() != 0) {
    pthread_mutex_unlock(&lock);
    munmap(p, pe->size);
    free(pe);
    return NULL;
  }
  pe->next = peers;
  if (peers != NULL) peers->prev = pe;
  peers = pe;
  pthread_mutex_unlock(&lock);
  return pe;
}

ppe_ring *ppe_shm_ring(void) {
  return (ppe_ring *)A.base;
}

ppe_ring *ppe_peer_ring(ppe_peer *pe) {
  return pe == NULL ? NULL : (ppe_ring *)pe->base;
}

int ppe_peer_gone(const ppe_peer *pe) {
  return pe->gone;
}

/* The message at [off, off + len) of the peer's arena, or NULL if that
** is not inside it. */
static char *peer_at(ppe_peer *pe, uint64_t off, uint64_t len) {
  if (pe == NULL || pe->gone || off > pe->size || len > pe->size - off)
    return NULL;
  return pe->base + off;
}

char *ppe_peer_message(ppe_peer *pe, const ppe_frame *f, const char *pl,
                       ppe_frame *in) {
  uint64_t off, len;
  char *m;
  if (f->len != sizeof(off) + sizeof(len)) return NULL;
  memcpy(&off, pl, sizeof(off));
  memcpy(&len, pl + sizeof(off), sizeof(len));
  /* Blocks start on whole units (the return is an aligned store), after
  ** the first, the ring's. */
  if (off % PPE_UNIT != 0 || off == 0 || len < sizeof(*in) ||
      (m = peer_at(pe, off, len)) == NULL)
    return NULL;
  SHOW(m, len);
  /* Read once: the header is checked and used from this copy. */
  memcpy(in, m, sizeof(*in));
  if (in->len != len - sizeof(*in) || in->id != f->id ||
      in->type == PPE_F_REF) {
    HIDE(m, len);
    return NULL;
  }
  return m;
}

void ppe_peer_done(char *m, size_t len) {
  HIDE(m, len);
  (void)m;
  (void)len;
}

void ppe_peer_ref(ppe_peer *pe) {
  pe->refs++;
}

void ppe_peer_unref(ppe_peer *pe) {
  if (pe == NULL || --pe->refs > 0) return;
  pthread_mutex_lock(&lock);  /* a fork sees it listed or unmapped */
  if (pe->prev != NULL) pe->prev->next = pe->next;
  else peers = pe->next;
  if (pe->next != NULL) pe->next->prev = pe->prev;
  munmap(pe->base, pe->size);
  pthread_mutex_unlock(&lock);
  free(pe);
}

/* }====================================================== */
