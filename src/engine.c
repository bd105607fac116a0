/* engine.c - the engine as the binding sees it: requests made into
** tasks, states, waits and outcomes, each taking the lock itself. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "frame.h"
#include "future.h"
#include "lock.h"
#include "worker.h"

int ppe_request_begin(ppe_buf *b) {
  ppe_frame f;
  memset(&f, 0, sizeof(f));  /* written for real when it is sent */
  return ppe_buf_add(b, &f, sizeof(f));
}

ppe_task *ppe_request_task(ppe_buf *b, int kind, int items) {
  static const uint32_t types[] = { PPE_F_TASK, PPE_F_CHUNK, PPE_F_INIT };
  ppe_task *t = ppe_task_new(b, types[kind]);
  if (t == NULL) b->len = 0;
  else t->items = items;
  return t;
}

void ppe_release(ppe_task *t, int cancel) {
  ppe_lock();
  if (cancel) ppe_task_cancel(t);
  ppe_task_unref(t);
  ppe_unlock();
}

void ppe_release_all(ppe_task *const *ts, size_t n, const char *cancel) {
  size_t i;
  ppe_lock();
  for (i = 0; i < n; i++) {
    if (cancel[i]) ppe_task_cancel(ts[i]);
    ppe_task_unref(ts[i]);
  }
  ppe_unlock();
}

int ppe_state(const ppe_task *t) {
  return __atomic_load_n(&t->state, __ATOMIC_ACQUIRE);
}

/* The state is stored last when a task completes (ppe_task_complete):
** once it reads final, its sequence number is there. */
uint64_t ppe_completion(const ppe_task *t) {
  return ppe_state(t) >= PPE_FINISHED ? t->seq : 0;
}

pid_t ppe_ran_on(ppe_task *t, const char **host) {
  pid_t pid = 0;
  *host = NULL;
  ppe_lock();
  if (ppe_task_final(t) && t->state != PPE_CANCELLED) {
    pid = t->pid;
    *host = t->host;
  }
  ppe_unlock();
  return pid;
}

int ppe_cancel(ppe_task *t) {
  int ok;
  ppe_lock();
  ok = ppe_task_cancel(t);
  ppe_unlock();
  return ok;
}


/*
** {======================================================
** Waits: one loop, many questions
** =======================================================
*/

/* Asks ready(ud) under the lock, sleeping between completions until it
** says 1 or the deadline passes, or a task with done-callbacks completes
** after 'mark' (PPE_CALLBACKS). Returns its last answer. Every wait of
** the binding is this one. */
static int wait_until(int (*ready)(void *ud), void *ud, double deadline,
                      uint64_t mark) {
  int r;
  ppe_lock();
  while ((r = ready(ud)) == 0) {
    if (ppe_task_watched() != mark) {
      r = PPE_CALLBACKS;
      break;
    }
    if (ppe_wait_completion(deadline) == -ETIMEDOUT) {
      r = ready(ud);
      break;
    }
  }
  ppe_unlock();
  return r;
}

uint64_t ppe_callbacks_mark(void) {
  return ppe_task_watched();
}

double ppe_deadline(double secs) {
  return ppe_now() + secs;
}

static int one_final(void *ud) {
  return ppe_task_final((const ppe_task *)ud);
}

int ppe_await(ppe_task *t, double deadline, uint64_t mark) {
  if (ppe_task_spin(t, deadline)) return 1;
  return wait_until(one_final, t, deadline, mark);
}

typedef struct Force {
  ppe_task *t;
  double until;  /* a worker silent until then is killed */
  int r;
} Force;

/* Asked again at every completion until the worker has answered. */
static int forced(void *ud) {
  Force *x = (Force *)ud;
  x->r = ppe_pool_force(x->t, ppe_now() >= x->until);
  return x->r >= 0;
}

int ppe_cancel_force(ppe_task *t) {
  Force x;
  x.t = t;
  x.until = ppe_deadline(PPE_FORCE_WAIT);
  x.r = 0;
  /* (done-callbacks run after: this wait is not theirs) */
  while (wait_until(forced, &x, x.until, ppe_task_watched()) ==
         PPE_CALLBACKS)
    ;
  return x.r == 1;
}

ppe_done *ppe_done_open(void) {
  ppe_done *d;
  ppe_lock();
  d = ppe_done_new();
  ppe_unlock();
  return d;
}

int ppe_done_add(ppe_done *d, ppe_task *t, int64_t tag) {
  int r;
  ppe_lock();
  r = ppe_done_attach(d, t, tag);
  ppe_unlock();
  return r;
}

int ppe_done_add_all(ppe_done *d, ppe_task *const *ts, size_t n) {
  int r;
  ppe_lock();
  r = ppe_done_attach_all(d, ts, n);
  ppe_unlock();
  return r;
}

typedef struct Next {
  ppe_done *d;
  int64_t tag;
} Next;

/* 1 with x->tag taken; -1 when every task was taken already. */
static int done_taken(void *ud) {
  Next *x = (Next *)ud;
  if ((x->tag = ppe_done_take(x->d)) != 0) return 1;
  return ppe_done_left(x->d) == 0 ? -1 : 0;
}

int64_t ppe_done_next(ppe_done *d, double deadline, uint64_t mark) {
  Next x;
  int r;
  x.d = d;
  x.tag = 0;
  r = wait_until(done_taken, &x, deadline, mark);
  return r == PPE_CALLBACKS ? PPE_CALLBACKS : r < 0 ? -1 : x.tag;
}

size_t ppe_done_poll(ppe_done *d, int64_t *tags, size_t max) {
  size_t n = 0;
  ppe_lock();
  while (n < max && (tags[n] = ppe_done_take(d)) != 0) n++;
  ppe_unlock();
  return n;
}

size_t ppe_done_count(ppe_done *d) {
  size_t n;
  ppe_lock();
  n = ppe_done_ready(d);
  ppe_unlock();
  return n;
}

typedef struct Until {
  ppe_done *d;
  int mode;
} Until;

/* Takes what completed; 1 once the mode holds. Each completion is taken
** once, so a wait costs what was attached and what completed, never a
** look at every task per completion. */
static int mode_holds(void *ud) {
  Until *u = (Until *)ud;
  int any = ppe_done_ready(u->d) > 0;
  while (ppe_done_take(u->d) != 0)
    ;
  switch (u->mode) {
    case PPE_FIRST_COMPLETED:
      if (any) return 1;
      break;
    case PPE_FIRST_EXCEPTION:
      if (ppe_done_failed(u->d)) return 1;
      break;
  }
  return ppe_done_left(u->d) == 0;
}

int ppe_done_await(ppe_done *d, int mode, double deadline, uint64_t mark) {
  Until u;
  u.d = d;
  u.mode = mode;
  return wait_until(mode_holds, &u, deadline, mark) == PPE_CALLBACKS
           ? PPE_CALLBACKS : 0;
}

void ppe_done_close(ppe_done *d) {
  ppe_lock();
  ppe_done_release(d);
  ppe_unlock();
}

int ppe_watch(ppe_done *d, ppe_task *t, int64_t tag) {
  int r;
  ppe_lock();
  if ((r = ppe_done_attach(d, t, tag)) == 0) t->watched = 1;
  ppe_unlock();
  return r;
}

/* }====================================================== */


/*
** {======================================================
** Outcomes: each failure told once
** =======================================================
*/

const char *const ppe_error_kinds[] = {
  NULL, "RemoteError", "WorkerDied", "TaskTimeout", "SerializationError",
  "BrokenExecutor", "CancelledError"
};

static void say(ppe_outcome *o, int kind, const char *msg) {
  o->kind = kind;
  o->body = PPE_B_NONE;
  snprintf(o->message, sizeof(o->message), "%s", msg);
}

static void bytes(ppe_outcome *o, int kind, int body, const ppe_task *t) {
  o->kind = kind;
  o->body = body;
  o->bytes = PPE_RES(t);
  o->len = PPE_RESLEN(t);
}

/* A lost worker: what ended it, told for a user. */
static void died(ppe_outcome *o, const ppe_task *t) {
  char *m = o->message;
  size_t sz = sizeof(o->message);
  say(o, PPE_K_DIED, "");
  o->show_pid = 1;
  o->field = t->signal ? PPE_FIELD_SIGNAL : PPE_FIELD_EXIT;
  o->signal = t->signal;
  o->exit_code = t->exit_code;
  if (t->how == PPE_HOW_ZYGOTE)
    snprintf(m, sz, "worker %d was lost: the zygote process ended "
             "(killed, or given up as stopped or stuck)", (int)t->pid);
  else if (t->signal) {
    char what[64];
    ppe_signal_describe(what, sizeof(what), t->signal);
    snprintf(m, sz, t->how == PPE_HOW_SENT || t->how == PPE_HOW_SHUTDOWN
             ? "worker %d was sent signal %d (%s) by %s"
             : "worker %d was killed by signal %d (%s)",
             (int)t->pid, t->signal, what,
             t->how == PPE_HOW_SHUTDOWN ? "shutdown, its timeout passed"
             : t->signal == SIGKILL ? "kill_workers" : "terminate_workers");
  }
  else if (t->own_exit)
    snprintf(m, sz, "worker %d exited with code %d (%s)", (int)t->pid,
             t->exit_code, ppe_worker_exit_meaning(t->exit_code));
  else
    snprintf(m, sz, "worker %d exited with code %d (the task called "
             "os.exit)", (int)t->pid, t->exit_code);
}

static void classify(ppe_outcome *o, const ppe_task *t) {
  if (ppe_task_res_lost(t)) {
    say(o, PPE_K_BROKEN, "the outcome is in a worker's memory, which the "
        "child of a fork does not share");
    return;
  }
  if (t->state == PPE_FINISHED) {
    bytes(o, PPE_OK, PPE_B_VALUES, t);
    return;
  }
  if (t->state == PPE_CANCELLED) {
    say(o, PPE_K_CANCELLED, "the future was cancelled");
    return;
  }
  switch (t->err) {
    case PPE_E_REMOTE:
      bytes(o, PPE_K_REMOTE, PPE_B_REMOTE, t);
      break;
    case PPE_E_DIED:
      died(o, t);
      break;
    case PPE_E_TIMEOUT:
      say(o, PPE_K_TIMEOUT, "");
      o->show_pid = 1;
      snprintf(o->message, sizeof(o->message), "task ran past task_timeout "
               "on worker %d (killed and replaced)", (int)t->pid);
      break;
    case PPE_E_SERIAL:
      if (PPE_RESLEN(t) == 0) say(o, PPE_K_SERIAL, "the worker ran out of "
                                  "memory");
      else bytes(o, PPE_K_SERIAL, PPE_B_TEXT, t);
      break;
    default:  /* PPE_E_BROKEN: its cause, or the initializer's error */
      bytes(o, PPE_K_BROKEN, t->res_text ? PPE_B_RAW : PPE_B_REMOTE, t);
      o->wrap = !t->res_text;
  }
}

void ppe_outcome_get(ppe_task *t, ppe_outcome *o) {
  memset(o, 0, sizeof(*o));
  ppe_lock();
  ppe_task_ref(t);  /* the bytes stay while the caller decodes them */
  classify(o, t);
  /* What ran says how many times it did (its errors, and a map's
  ** items'): more than once when its workers died and it was retried. */
  if (o->kind == PPE_OK || o->kind == PPE_K_REMOTE || o->kind == PPE_K_DIED
      || o->kind == PPE_K_TIMEOUT || o->kind == PPE_K_SERIAL)
    o->attempts = t->runs;
  o->pid = t->pid;
  if (o->kind != PPE_K_CANCELLED) o->host = t->host;
  ppe_unlock();
}

void ppe_outcome_done(ppe_task *t) {
  ppe_lock();
  ppe_task_drop_res(t);  /* the caller holds what it made of them */
  ppe_task_unref(t);
  ppe_unlock();
}

/* }====================================================== */
