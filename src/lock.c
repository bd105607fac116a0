/* lock.c - the one lock, its condition, and the monotonic clock. */
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "lock.h"

/* Adaptive where there is one (glibc): a caller that finds its result in
** and the lock still held by the I/O thread, which completed it and goes
** on with its batch, spins a moment instead of sleeping on the lock and
** being woken: a round trip then costs about what a socketpair's does,
** not a third wake-up more. */
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
static pthread_mutex_t lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;
#else
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
#endif
static pthread_cond_t completion;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* The condition runs on the monotonic clock, so a change of the wall
** clock neither shortens nor stretches a timeout. */
static void init_cond(void) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&completion, &a);
  pthread_condattr_destroy(&a);
}

void ppe_lock(void) {
  pthread_once(&once, init_cond);
  pthread_mutex_lock(&lock);
}

int ppe_trylock(void) {
  pthread_once(&once, init_cond);
  return pthread_mutex_trylock(&lock) == 0;
}

void ppe_unlock(void) {
  pthread_mutex_unlock(&lock);
}

double ppe_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int ppe_wait_completion(double deadline) {
  struct timespec ts;
  int r;
  if (deadline < 0) {
    pthread_cond_wait(&completion, &lock);
    return 0;
  }
  ts.tv_sec = (time_t)deadline;
  ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  r = pthread_cond_timedwait(&completion, &lock, &ts);
  return r == ETIMEDOUT ? -ETIMEDOUT : 0;
}

void ppe_signal_completion(void) {
  pthread_cond_broadcast(&completion);
}
