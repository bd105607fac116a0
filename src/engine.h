/* engine.h - what the Lua binding asks of the engine. A task is opaque
** here, and every function takes the lock itself when it needs it: the
** binding never locks, never waits on a condition, never reads a task.
** Every wait below goes through one wait of the engine's (engine.c). */
#ifndef PPE_ENGINE_H
#define PPE_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "pool.h"
#include "task.h"

/* Request kinds, for ppe_request_task. */
enum { PPE_REQ_TASK, PPE_REQ_CHUNK, PPE_REQ_INIT };

/* Makes room for the request's header at the start of the empty buffer
** b, which the caller then fills with the request's wire message. The
** header itself is written by the engine, when the request is sent. */
int ppe_request_begin(ppe_buf *b);

/* A new task for the request in b (ppe_request_begin, then the message),
** which it takes: b is left empty for reuse; 'items' is what it counts
** for in stats() (a map's chunk, its items). One reference, the
** caller's. NULL without memory (b is emptied then too). */
ppe_task *ppe_request_task(ppe_buf *b, int kind, int items);

/* Lets go of the caller's reference of t; with 'cancel', cancels it
** first if it has not started (a map's chunk that nobody will read). */
void ppe_release(ppe_task *t, int cancel);
/* The same for n tasks, under one lock. */
void ppe_release_all(ppe_task *const *ts, size_t n, const char *cancel);

/* PPE_PENDING..PPE_CANCELLED, read without the lock. */
int ppe_state(const ppe_task *t);
/* Its place in the order of completions (from 1), or 0 if not final. */
uint64_t ppe_completion(const ppe_task *t);
/* 1 if t had not started and is (now or already) cancelled. */
int ppe_cancel(ppe_task *t);
/* The pid of the worker that ran final task t (as a far worker's machine
** numbers it; its group in *host then, else NULL), or 0: not final, or
** never run. */
pid_t ppe_ran_on(ppe_task *t, const char **host);
/* cancel{force}: 1 if t is (now or already) cancelled, even if it ran;
** 0 if it finished or failed. t is final on return (ppe_pool_force). */
int ppe_cancel_force(ppe_task *t);

/* The deadline 'secs' seconds from now, on the clock of every wait. */
double ppe_deadline(double secs);

/* Done-callbacks run in the caller's thread, in its waits too: t has
** some, and goes to d (a completion list of the caller's, below) with
** 'tag' when it completes. A wait that was given a mark returns
** PPE_CALLBACKS once such a task completes after the mark was taken, so
** that the caller runs them and waits again:
**   do { mark = ppe_callbacks_mark(); run them; r = wait(..., mark); }
**   while (r == PPE_CALLBACKS);
** A callback may so cancel or submit, and end the wait it runs in. 0, or
** -ENOMEM. */
int ppe_watch(ppe_done *d, ppe_task *t, int64_t tag);
uint64_t ppe_callbacks_mark(void);
#define PPE_CALLBACKS (-3)

/* Waits until t is final or the deadline (monotonic seconds, ppe_now;
** < 0 for ever) passes. 1 if it is final, 0, or PPE_CALLBACKS. */
int ppe_await(ppe_task *t, double deadline, uint64_t mark);

/*
** Completion lists: tasks in the order they complete, for one consumer
** (an unordered map, an as_completed, a wait, the done-callbacks of a
** state) who knows each by a tag (not 0). A task may be in many lists;
** adding, completing and taking cost O(1) each, so that no wait looks at
** every task it waits for at each completion.
*/
ppe_done *ppe_done_open(void);  /* NULL without memory */
/* Adds t (one final already goes in at once): 0, or -ENOMEM. */
int ppe_done_add(ppe_done *d, ppe_task *t, int64_t tag);
/* Adds ts[0..n) with the tags 1..n; those final already go in in the
** order they completed. 0, or -ENOMEM (none added then). */
int ppe_done_add_all(ppe_done *d, ppe_task *const *ts, size_t n);
/* The tag of the next task to complete, waiting for it until the
** deadline; 0 if it passed first, -1 if every task added was taken
** already, or PPE_CALLBACKS. */
int64_t ppe_done_next(ppe_done *d, double deadline, uint64_t mark);
/* Takes the tags of up to 'max' completed and not taken, without
** waiting, into tags; how many. */
size_t ppe_done_poll(ppe_done *d, int64_t *tags, size_t max);
/* How many completed and were not taken. */
size_t ppe_done_count(ppe_done *d);

/* What ppe.wait's return_when asks for. */
enum { PPE_ALL_COMPLETED, PPE_FIRST_COMPLETED, PPE_FIRST_EXCEPTION };
/* Waits until 'mode' is satisfied by the tasks of d or the deadline
** passes, taking those that complete: 0, or PPE_CALLBACKS. */
int ppe_done_await(ppe_done *d, int mode, double deadline, uint64_t mark);
/* The consumer is gone: the tasks are let go. */
void ppe_done_close(ppe_done *d);

/*
** Outcomes. A final task's outcome is told once, here, in one record:
** its kind, what its error says, and the bytes to decode, if any. The
** binding makes its Lua values and its ppe.Error from that alone.
*/

/* What went wrong: one per kind of ppe.Error, in ppe_error_kinds. */
enum {
  PPE_OK, PPE_K_REMOTE, PPE_K_DIED, PPE_K_TIMEOUT, PPE_K_SERIAL,
  PPE_K_BROKEN, PPE_K_CANCELLED
};
extern const char *const ppe_error_kinds[];  /* by PPE_K_*, from 1 */

/* What the bytes hold. */
enum {
  PPE_B_NONE,      /* nothing: 'message' says it all */
  PPE_B_VALUES,    /* the task's results (PPE_OK) */
  PPE_B_REMOTE,    /* an error raised: message, traceback, value */
  PPE_B_TEXT,      /* one string, the message (a worker's own words) */
  PPE_B_RAW        /* plain text, not a wire message: the message */
};

#define PPE_MSGSZ 200

typedef struct ppe_outcome {
  int kind;              /* PPE_OK or PPE_K_* */
  int body;              /* PPE_B_* */
  const char *bytes;     /* valid until ppe_outcome_done */
  size_t len;
  int wrap;              /* PPE_K_BROKEN of a raising initializer: the
                         ** bytes are its RemoteError, the cause */
  char message[PPE_MSGSZ];  /* PPE_B_NONE's message */
  pid_t pid;             /* the worker that ran it, or 0 */
  int show_pid;          /* the error has a field pid */
  const char *host;      /* a far worker's group, or NULL: the error's
                         ** field host; kept for the process's life */
  int field;             /* 0, or which of the two below is told */
  int signal, exit_code;
  int attempts;          /* a task that ran: how many times it did (its
                         ** errors' field attempts), else 0 */
} ppe_outcome;

enum { PPE_FIELD_NONE, PPE_FIELD_SIGNAL, PPE_FIELD_EXIT };

/* Fills o with final task t's outcome and holds t until ppe_outcome_done,
** which lets go of its reply bytes too: the caller decodes them once. */
void ppe_outcome_get(ppe_task *t, ppe_outcome *o);
void ppe_outcome_done(ppe_task *t);

#endif
