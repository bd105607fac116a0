/* lock.h - the one lock, its condition, and the monotonic clock. */
#ifndef PPE_LOCK_H
#define PPE_LOCK_H

/* One lock guards every pool and task: completions from any executor wake
** any waiter, so waiting on futures of several executors needs nothing
** more. The lock is never held across a call into Lua. */
void ppe_lock(void);
void ppe_unlock(void);
int ppe_trylock(void);  /* 1 if it took the lock */
/* Waits for a completion until 'deadline' (monotonic seconds; < 0 for
** ever). Returns 0 when woken, -ETIMEDOUT when the deadline passed. */
int ppe_wait_completion(double deadline);
/* Wakes every waiter of ppe_wait_completion (lock held). */
void ppe_signal_completion(void);

/* Seconds on the monotonic clock, the one every deadline is on. */
double ppe_now(void);

#endif
