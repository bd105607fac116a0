/* future.h - the task behind each future, inside the engine: its state
** machine, its request and reply bytes, and the lists of completions.
** Its "lock held" is lock.h's. The binding sees none of it (engine.h). */
#ifndef PPE_FUTURE_H
#define PPE_FUTURE_H

#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "frame.h"
#include "lock.h"
#include "task.h"

/* Why a task failed. */
enum {
  PPE_E_NONE, PPE_E_REMOTE, PPE_E_DIED, PPE_E_TIMEOUT, PPE_E_SERIAL,
  PPE_E_BROKEN
};

/* How a task's worker was lost, for the message (PPE_E_DIED). */
enum {
  PPE_HOW_ENDED,   /* it ended by itself (its status says how) */
  PPE_HOW_SENT,    /* terminate_workers or kill_workers sent the signal:
                   ** the task failed at once, whatever it did then */
  PPE_HOW_ZYGOTE,  /* the zygote ended, and its workers with it */
  PPE_HOW_SHUTDOWN /* shutdown's timeout passed: it was terminated */
};

/* Why a task still in its worker's list is final already: cancel{force}
** cancelled it there (pool.c). */
enum {
  PPE_CUT_NONE,
  PPE_CUT_SKIPPED,  /* before it started: the worker skips it and says
                    ** nothing; its request, not wholly sent then, goes
                    ** out whole, and it leaves the list after */
  PPE_CUT_STOPPED   /* while it ran, or may have: a reply of it, if one
                    ** comes, is dropped; it leaves with its worker */
};

struct ppe_task {
  uint64_t id;
  uint32_t type;        /* of its request frame: PPE_F_TASK, ... */
  int state;
  int err;              /* PPE_E_*, when state is PPE_FAILED */
  int refs;             /* holders: the future, the pool; under the lock */
  ppe_buf req;          /* frame header and request; freed once sent */
  ppe_ref ref;          /* what is sent instead when req is in the shared
                        ** arena (type 0 otherwise) */
  ppe_buf res;          /* reply payload from res_off on, or the text of
                        ** a cause */
  size_t res_off;       /* a large reply keeps its frame header before */
  struct ppe_peer *res_peer;  /* res is a worker's, in its arena, when set:
                        ** returned to it, not freed (ppe_task_drop_res) */
  int res_text;         /* res is plain text, not a wire message */
  int req_inline;       /* req lives in this block, after the struct */
  int res_inline;       /* res lives there too, where req was */
  size_t inl;           /* bytes of this block after the struct */
  pid_t pid;            /* the worker that ran it (a far one's, as its
                        ** machine numbers it) */
  const char *host;     /* a far worker's group name; NULL here. Kept
                        ** for the life of the process (pool.c) */
  int signal;           /* PPE_E_DIED: the signal, or 0 */
  int exit_code;        /* PPE_E_DIED without a signal */
  int own_exit;         /* exit_code is one of ppe's own (worker.h), not a
                        ** task's os.exit */
  int how;              /* PPE_E_DIED: PPE_HOW_* */
  int items;            /* what it counts for in the pool's figures: 1,
                        ** or a map chunk's items */
  int runs;             /* times a worker ran it: replies, and deaths while
                        ** it was the running task (retries) */
  uint64_t died_on;     /* the worker slots where it was running when they
                        ** died, a bit each (slot modulo 64): it is run
                        ** again elsewhere if it can be */
  int keep_req;         /* its worker may still read the request: it goes
                        ** with the task, not at completion */
  int watched;          /* it has done-callbacks (ppe_task_watched) */
  int cut;              /* PPE_CUT_*: cancelled while its worker held it */
  int forcing;          /* cancel{force} asked its far worker to cancel it,
                        ** and waits for the answer */
  struct ppe_pool *pool;  /* the pool it was submitted to; used only while
                        ** it is not final, when the pool is alive */
  uint64_t seq;         /* completion order, from 1; 0 while not final */
  uint32_t gate;        /* its number among the tasks sent to its worker
                        ** (ring.h's gate) */
  struct ppe_sub *subs;  /* the completion lists waiting for it, while it
                        ** is not final (future.c) */
  struct ppe_task *next;  /* in the pool's queue */
};

/* Requests up to this size are copied into the task's own allocation. */
#define PPE_INLINE_REQ (64 * 1024)

/* A new task holding the request (room for the frame header, then the
** payload) of frame type 'type': copied if small (req is then emptied for
** reuse), else moved in (req reset). One reference, the caller's. */
ppe_task *ppe_task_new(ppe_buf *req, uint32_t type);
/* Writes the frame header of the request in req (type, task id, the
** length of what follows): the one place request headers are made. */
void ppe_request_frame(ppe_buf *req, uint32_t type, uint64_t id);
void ppe_task_ref(ppe_task *t);    /* lock held */
void ppe_task_unref(ppe_task *t);  /* lock held */

/* Lets go of the request (lock held). */
void ppe_task_drop_req(ppe_task *t);
/* Lets go of the reply bytes (lock held). */
void ppe_task_drop_res(ppe_task *t);
/* Copies a reply's n bytes in as res, where the request was if they fit
** there: the request is not needed once its reply has come. 0, or
** -ENOMEM. Lock held. */
int ppe_task_set_res(ppe_task *t, const char *p, size_t n);
/* 1 if the reply bytes are in a worker's memory that this process, the
** child of a fork, does not share. */
int ppe_task_res_lost(const ppe_task *t);

#define PPE_RES(t) ((t)->res.p + (t)->res_off)
#define PPE_RESLEN(t) ((t)->res.len - (t)->res_off)

int ppe_task_final(const ppe_task *t);
/* Sets t's state (lock held); ppe_task_spin reads it without the lock. */
#define PPE_SET_STATE(t, s) \
  __atomic_store_n(&(t)->state, (s), __ATOMIC_RELEASE)
/* Without the lock: if t is running and the machine has another CPU for
** its worker, waits for it without sleeping, briefly (and not past
** 'deadline', monotonic seconds, if >= 0). 1 if it is final then. */
int ppe_task_spin(const ppe_task *t, double deadline);
/* Moves t to a final state and wakes every waiter (lock held). */
void ppe_task_complete(ppe_task *t, int state, int err);
/* 1 if t had not started and is (now or already) cancelled. Lock held. */
int ppe_task_cancel(ppe_task *t);
/* How many watched tasks (done-callbacks waiting in the caller) have
** become final, process-wide: read without the lock. */
uint64_t ppe_task_watched(void);

/* Tasks in the order they became final, for one consumer that takes them
** in that order: an unordered map, an as_completed, a wait, the
** done-callbacks of one Lua state. Each attached task costs O(1) to add,
** to complete and to take, however many are outstanding; a task may be
** in any number of lists at once. A list holds a reference to each task
** attached until it is taken or the list is released. Lock held for all
** of it. */
ppe_done *ppe_done_new(void);  /* NULL without memory */
/* Attaches t, which the consumer knows by tag (not 0); a t already final
** goes in at once. 0, or -ENOMEM. */
int ppe_done_attach(ppe_done *d, ppe_task *t, int64_t tag);
/* Attaches ts[0..n) with the tags 1..n; those already final go in in
** the order they became final. 0, or -ENOMEM (none attached then). */
int ppe_done_attach_all(ppe_done *d, ppe_task *const *ts, size_t n);
/* The tag of the first task to become final that was not taken yet, or
** 0 if none is waiting. */
int64_t ppe_done_take(ppe_done *d);
/* How many became final and wait to be taken. */
size_t ppe_done_ready(const ppe_done *d);
/* How many of those attached are not taken yet. */
size_t ppe_done_left(const ppe_done *d);
/* 1 if one of those taken had failed (PPE_FAILED). */
int ppe_done_failed(const ppe_done *d);
/* The consumer is gone: every task attached is let go, at once. */
void ppe_done_release(ppe_done *d);

#endif
