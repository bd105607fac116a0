/* pool.h - the executor's engine: worker lifecycle (spawn through the
** zygote, respawn, reap), the task queue, dispatch, and an I/O thread that
** moves requests and replies while the caller's Lua code runs. Lua-free:
** requests and replies are opaque bytes. Returns 0 or -errno. */
#ifndef PPE_POOL_H
#define PPE_POOL_H

#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "task.h"

typedef struct ppe_pool ppe_pool;

#define PPE_CAUSE 160

struct ppe_hello;

/* A group of workers: forked here, or each started through a launcher
** (far workers, chan_stream.h). */
typedef struct ppe_group_opts {
  int n;
  char *const *argv;          /* the launcher's argv, then the worker's
                              ** command, NULL-terminated; NULL: forked
                              ** here */
  const char *name;           /* for errors ('host') and stats */
  double start_timeout;       /* seconds a far worker has to say hello;
                              ** 0: PPE_START_TIMEOUT */
} ppe_group_opts;

#define PPE_START_TIMEOUT 30.0

typedef struct ppe_pool_opts {
  int max_workers;            /* with no groups: one local group of it */
  const ppe_group_opts *groups;  /* or these, ngroups of them */
  int ngroups;
  int host_failures;          /* failed starts in a row that give a group
                              ** of far workers up */
  const struct ppe_hello *hello;  /* what a far worker must say (hello.h) */
  const char *path, *cpath;   /* package paths for the workers' states */
  int max_tasks_per_child;    /* 0: no limit */
  double task_timeout;        /* seconds; 0: none */
  double idle_timeout;        /* seconds a worker may idle before it
                              ** leaves, started again when work waits;
                              ** 0: for ever */
  int retries;                /* runs again of a task whose worker died */
  uint64_t max_memory;        /* bytes of resident memory over which a
                              ** worker leaves after its task; 0: none */
  double keep;                /* seconds freed big blocks keep their pages,
                              ** process-wide (ppe_big_set_keep); < 0: the
                              ** default */
  ppe_buf init;               /* initializer request (ppe_request_begin,
                              ** then the payload), or empty; moved into
                              ** the pool, which frames it */
  char cause[PPE_CAUSE];      /* out: when ppe_pool_new fails, what failed
                              ** if that says more than the errno (such as
                              ** "cannot fork a worker: ..."), else ""; with
                              ** -ENAMETOOLONG, that the package paths are
                              ** too long */
} ppe_pool_opts;

typedef struct ppe_stats {
  long workers, pending, running, completed, failed, restarts;
} ppe_stats;

/* One group's figures: its workers up, tasks running on them, tasks that
** ended there, replacements; and whether it was given up. */
typedef struct ppe_group_stats {
  const char *name;           /* valid while the pool is */
  long size;                  /* the workers it is to have (resize) */
  long workers, running, completed, failed, restarts;
  int given_up;
} ppe_group_stats;

/* One worker slot's figures: stats()'s rows. */
typedef struct ppe_worker_stats {
  const char *group;   /* its group's name; valid while the pool is */
  int far;             /* a far worker: pid is as its machine numbers it */
  pid_t pid;           /* its process, or 0 while it has none */
  const char *state;   /* "starting", "idle", "busy", "ending", "down",
                       ** "parked" (idle_timeout), "retired" (resize) */
  long done;           /* items its process finished (a task, or a map
                       ** chunk's items) */
  double age;          /* "busy": seconds its current task has run */
} ppe_worker_stats;

/* Attaches to the process's zygote (zygote.h), has it fork the workers,
** then starts the I/O thread. */
int ppe_pool_new(ppe_pool **out, ppe_pool_opts *o);

/* Queues t (the pool takes its own reference). -EPIPE once the pool is
** known broken: t has failed at once then (PPE_E_BROKEN), with why, for
** the caller to raise. -ESHUTDOWN after shutdown. */
int ppe_pool_submit(ppe_pool *p, ppe_task *t);

/* One step of cancelling t even if it runs (cancel{force}), lock held
** (lock.h's): engine.c asks it again at every completion while it says
** -1, and with 'now' once PPE_FORCE_WAIT seconds have passed. 1 if t is
** cancelled, now or before: a worker running it is killed and replaced,
** one it was sent to that has not started it skips it. 0 if it finished
** or failed, before or just now. -1 while an answer is awaited: the reply
** of a task that has just returned, or a far worker's word (asked by
** message). With 'now' the worker is not waited for: it is killed. A task
** never submitted is cancelled if pending. */
int ppe_pool_force(ppe_task *t, int now);

#define PPE_FORCE_WAIT 1.0

/* No more submits; cancel_futures cancels what has not started. With
** wait, returns once every task is final and every worker is reaped: 1.
** With a timeout >= 0 too (seconds), what is not done by then is cut
** short: queued tasks are cancelled, running ones fail as their workers
** are terminated (SIGTERM, SIGKILL a second later); then 0. */
int ppe_pool_shutdown(ppe_pool *p, int wait, int cancel_futures,
                      double timeout);

/* Group g (0-based) is to have n workers: more are started at once;
** fewer retires idle workers first, busy ones once their tasks are done.
** Done by the I/O thread, at once. -ESHUTDOWN after shutdown. */
int ppe_pool_resize(ppe_pool *p, int g, int n);

/* Sends sig to every worker, fails what is unfinished, shuts down. */
void ppe_pool_signal(ppe_pool *p, int sig);

void ppe_pool_stats(ppe_pool *p, ppe_stats *st);
/* How many worker slots p has (its workers' ids are 1 to that), and
** slot i's figures (0-based). */
int ppe_pool_nslots(ppe_pool *p);
void ppe_pool_worker_stats(ppe_pool *p, int i, ppe_worker_stats *ws);
/* How many groups p has, and group g's figures. */
int ppe_pool_ngroups(ppe_pool *p);
void ppe_pool_group_stats(ppe_pool *p, int g, ppe_group_stats *gs);

/* A descriptor readable while completions wait for a poll, for event
** loops; ppe_pool_drain_notify makes it quiet again. */
int ppe_pool_fileno(ppe_pool *p);
void ppe_pool_drain_notify(ppe_pool *p);

/* Shuts down with wait and frees the pool. */
void ppe_pool_free(ppe_pool *p);

#endif
