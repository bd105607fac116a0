/* pool.c - worker lifecycle, task queue, dispatch and the I/O thread. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bigblock.h"
#include "chan_local.h"
#include "chan_stream.h"
#include "channel.h"
#include "debug.h"
#include "forward.h"
#include "future.h"
#include "hello.h"
#include "launch.h"
#include "pool.h"
#include "transport.h"
#include "worker.h"
#include "zygote.h"

/* Worker slot states. */
enum {
  W_NONE,      /* no process */
  W_SPAWNING,  /* asked the zygote for one */
  W_INIT,      /* running the initializer */
  W_READY,     /* serving tasks: none, one, or a pipeline of them */
  W_ENDING,    /* channel closed; waiting for the zygote to report its end */
  W_HELLO,     /* far: its launcher started; its hello not yet come */
  W_WAITING    /* far: none; another is started at spawn_at (back-off) */
};

/* Small tasks are sent several at a time to each worker, as many as it
** runs in about this long (by the measured average), so messages and
** system calls are shared; a long task keeps the pipeline at one, so
** an uneven load still spreads over every worker, and what was sent
** behind a task that turned out long is taken back (take_back). */
#define PIPELINE_US 1000.0
#define PIPELINE_MAX 256

/* A worker may not have read a pipeline, nor the one taken back before
** it: its channel must tell each of those tasks apart. */
typedef char depth_fits[2 * PIPELINE_MAX <= PPE_CHAN_DEPTH ? 1 : -1];

/* Seconds a worker whose channel ended may take to exit by itself. A
** process can close its descriptors well before it ends (under valgrind
** the leak check comes after), and its own status is the one to report. */
#define EOF_GRACE 5.0

/* Seconds a worker sent SIGTERM (terminate_workers) may take to end
** before it is killed: it may be stopped, or handle the signal itself. */
#define SIGNAL_GRACE 1.0

/* Once the pool is closing, a request to fork or to kill that the zygote
** has not answered in ZYGOTE_ASK seconds has it asked whether it serves
** at all (a ping, answered after every earlier request). One that does
** not answer that in ZYGOTE_GRACE seconds, or whose channel has had no
** room for a request that long, is stopped or stuck: it is killed, its
** workers end with it, and no close waits for it without bound. A worker
** merely slow to end (a large address space, a disk) keeps a zygote that
** answers from being killed. */
#define ZYGOTE_ASK 1.0
#define ZYGOTE_GRACE 3.0

/* Seconds after SIGKILL that a closing pool waits for a worker's end
** before it counts the worker as gone: one held by a tracer, or in an
** uninterruptible wait, may outlive SIGKILL. Its zygote, which answers,
** reaps it whenever it ends. */
#define LOST_AFTER 10.0

/* How often the end of a launcher without a pidfd is looked for. */
#define UNWATCHED 0.05

/* A far worker's start that failed is tried again after this long,
** doubled for each failure in a row, up to BACKOFF_MAX. */
#define BACKOFF 0.1
#define BACKOFF_MAX 5.0

/* The local workers after the first are forked once the first has
** answered, or a second task is queued, or this many seconds after the
** executor was made, whichever comes first: a first task then has the
** machine's cores to itself, not shared with forks it does not need.
** The first two bring others_at forward to their moment. */
#define OTHERS_AFTER 0.02

/* A request to the zygote that waits for room on its channel. */
typedef struct zreq {
  ppe_zmsg m;
  int fd;              /* sent with it, or -1 */
} zreq;

/* A group of workers: local ones, forked by the zygote, or far ones, each
** started through the group's launcher. */
typedef struct group {
  const char *name;    /* kept for the process's life: tasks name it */
  char **argv;         /* launcher and command; NULL: forked here */
  int n;
  int fails;           /* failed starts in a row; a handshake resets it */
  int early;           /* far workers in a row that ended after their
                       ** handshake, before any reply and holding no
                       ** task; their first reply resets it */
  double hello_wait;   /* a far worker that has not said hello this long
                       ** after its launcher started is a failed start */
  int given_up;
  int want;            /* the size resize asked for, not yet applied; -1 */
  char why[PPE_CAUSE + PPE_LAUNCH_TAIL];  /* its last failed start */
  long completed, failed, restarts;
} group;

typedef struct wslot {
  ppe_chan *ch;        /* to the worker asked for or running; NULL */
  pid_t pid;           /* a far worker's: its launcher's, here */
  int g;               /* its group */
  ppe_launch *far;     /* a far worker's launcher, or NULL */
  int greeted;         /* far: its hello came and matched */
  int late;            /* far: no hello came in time; it was killed */
  int replied;         /* it has answered once: it works */
  int off;             /* OFF_PARKED or OFF_RETIRED: not started again */
  int retiring;        /* retired while busy: it leaves once it is idle */
  int regrown;         /* back in its group before its worker had left:
                       ** the one that follows is no restart */
  double idle_since;   /* W_READY with nothing to do since then; 0 */
  int bad;             /* it sent what no worker of ours sends */
  int exited;          /* far: its launcher was reaped, with 'status'; */
  int status;          /* the end is told once its replies are taken */
  double due;          /* W_HELLO: its hello is due by then; W_WAITING:
                       ** the next start is then */
  int state;
  int timed_out;       /* we killed it for running past task_timeout */
  int initing;         /* its initializer has not answered; it stays set
                       ** when its channel ends (W_ENDING), until its end
                       ** is reported */
  ppe_task *head, *tail;  /* in flight, oldest (the running one) first */
  int ninflight;
  double deadline;     /* of the running task */
  double started;      /* when the running task started, about */
  double kill_at;      /* when to kill it if it has not ended: one whose
                       ** channel ended, or that was sent SIGTERM */
  double asked;        /* when the zygote was sent a request to fork or to
                       ** kill it, while that has not been answered; 0 */
  double killed;       /* when SIGKILL was first sent for it; 0 */
  int signalled;       /* terminate/kill: what it held has failed already,
                       ** and no reply of its is taken */
  int forced;          /* killed to stop a task of its that cancel{force}
                       ** cancelled: the one place its end's cause is
                       ** known. That end is no task's failure, nor a
                       ** cause to run one again: the cancelled task is
                       ** final, and what it held besides goes back to the
                       ** queue as never started. Its replacement counts
                       ** as a restart */
  int ncut;            /* tasks of its list cut before their requests
                       ** were out (PPE_CUT_SKIPPED) */
  long ntasks;
  long ndone;          /* items its process finished (stats' rows) */
} wslot;

/* Why a slot holds no worker and none is started for it (wslot.off). */
enum {
  OFF_PARKED = 1,  /* idle_timeout: started again when work waits */
  OFF_RETIRED      /* resize: started again only by a resize */
};

struct ppe_pool {
  int serial;          /* this process's executor number, from 1, that
                       ** PPE_DEBUG's lines name */
  int nw;
  wslot *w;
  int ng;
  group *g;
  int host_failures;
  ppe_hello hello;     /* what far workers must say */
  struct pollfd *pfd;  /* wake, zygote, one per slot, then two per slot
                       ** (a far one's launcher: its pidfd and stderr) */
  ppe_task *qhead, *qtail;
  uint64_t nextid;
  long nrunning, ncompleted, nfailed, nrestarts;
  int wakefd, zfd;
  int notifyfd;        /* readable while completions wait for a poll */
  int notified;
  ppe_zygote *zyg;     /* whose channel zfd is */
  zreq *zq;            /* requests its channel had no room for, in order */
  int zqlen, zqcap;
  double zstall;       /* since when the first of those waits; 0 */
  double zping;        /* when a ping went unanswered so far; 0 */
  int zdead;           /* the zygote ended: so did its workers */
  pthread_t thread;
  int thread_on, joined;
  int wake_pending;    /* the I/O thread has a wake-up coming */
  pthread_mutex_t side_lock;  /* guards the three below */
  ppe_task *shead, *stail;    /* submitted while the lock was busy */
  int io_done;         /* the I/O thread takes no more from there */
  double ewma_us;      /* average run time of a task, once known */
  int shutdown;        /* no more submits */
  int closing;         /* stop the workers once nothing is left to run */
  int broken;
  int spawnfail;       /* a worker could not be forked: why (errno) */
  char cause[PPE_CAUSE + PPE_LAUNCH_TAIL];  /* why it broke, when no worker
                       ** said it */
  ppe_buf initerr;     /* the initializer's error reply, if it raised */
  int shared;          /* workers read large requests in our arena */
  int max_tasks;
  double task_timeout;
  double idle_timeout;  /* 0: workers stay */
  int resized;          /* some group's 'want' waits to be applied */
  int dropped;          /* work was left queued at the end: it failed */
  int nparked;          /* slots parked by idle_timeout (OFF_PARKED): a
                        ** submit wakes the I/O thread to start one */
  int retries;         /* runs again of a task whose worker died */
  uint32_t memory_cap; /* max_memory_per_child, KiB (worker.h); 0 */
  ppe_buf init;        /* initializer request, sent to every new worker */
  double others_at;    /* the local workers after the first are still to
                       ** be asked for, by then at the latest; 0 */
};

#define LIVE(w) ((w)->state == W_INIT || (w)->state == W_READY)
/* Its channel is open: not ended, nor yet to open. */
#define LINKED(w) (ppe_chan_fd((w)->ch) >= 0)

static void wake(ppe_pool *p) {
  uint64_t one = 1;
  ssize_t r;
  do r = write(p->wakefd, &one, sizeof(one));
  while (r < 0 && errno == EINTR);
}


/*
** {======================================================
** Tasks leaving the pool (lock held)
** =======================================================
*/

/* Makes the notify descriptor readable, once per batch of completions. */
static void notify(ppe_pool *p) {
  uint64_t one = 1;
  ssize_t r;
  if (p->notified) return;
  p->notified = 1;
  do r = write(p->notifyfd, &one, sizeof(one));
  while (r < 0 && errno == EINTR);
}

/* Makes t final, counted; whoever held it keeps its reference. */
static int serials = 0;  /* executors made in this process */

/* The failures a task's debug line names (a broken pool's are told
** once, by set_broken). */
static const char *const failure_kinds[] = {
  "", "RemoteError", "WorkerDied", "TaskTimeout", "SerializationError",
  "BrokenExecutor"
};

static void settle(ppe_pool *p, ppe_task *t, int state, int err) {
  if (state == PPE_FAILED && err != PPE_E_BROKEN)
    PPE_DEBUG(("executor %d: task %llu failed: %s (worker pid %d)",
               p->serial, (unsigned long long)t->id, failure_kinds[err],
               (int)t->pid));
  notify(p);
  p->ncompleted += t->items;
  if (state == PPE_FAILED) p->nfailed += t->items;
  ppe_task_complete(t, state, err);
}

/* Makes t final, and lets go of the pool's reference. */
static void finish(ppe_pool *p, ppe_task *t, int state, int err) {
  settle(p, t, state, err);
  ppe_task_unref(t);
}

/* A broken pool's failure: the initializer's own error if it raised. */
static void fail_broken(ppe_pool *p, ppe_task *t) {
  ppe_task_drop_res(t);
  if (p->initerr.len > 0) {
    ppe_buf_add(&t->res, p->initerr.p, p->initerr.len);
    t->res_text = 0;
  }
  else {
    ppe_buf_add(&t->res, p->cause, strlen(p->cause));
    t->res_text = 1;
  }
  settle(p, t, PPE_FAILED, PPE_E_BROKEN);
}

/* The task at the front of the queue, left there; those before it that
** were cancelled while queued are dropped. (One that is running was taken
** back from a worker, see take_back, or is retried, see retry.) */
static ppe_task *queued(ppe_pool *p) {
  ppe_task *t;
  while ((t = p->qhead) != NULL && ppe_task_final(t)) {
    p->qhead = t->next;
    if (p->qhead == NULL) p->qtail = NULL;
    t->next = NULL;
    p->ncompleted += t->items;  /* final, and now dropped */
    ppe_task_unref(t);
  }
  return t;
}

static ppe_task *dequeue(ppe_pool *p) {
  ppe_task *t = queued(p);
  if (t == NULL) return NULL;
  p->qhead = t->next;
  if (p->qhead == NULL) p->qtail = NULL;
  t->next = NULL;
  return t;
}

/* Ends every task of the queue (one taken back, or being retried, is
** running): cancelled with 'cancel', else failed as a broken pool's. */
static void empty_queue(ppe_pool *p, int cancel) {
  ppe_task *t;
  while ((t = dequeue(p)) != NULL) {
    if (t->state == PPE_RUNNING) p->nrunning -= t->items;
    if (cancel) settle(p, t, PPE_CANCELLED, 0);
    else fail_broken(p, t);
    ppe_task_unref(t);
  }
}

static void fail_queue(ppe_pool *p) {
  empty_queue(p, 0);
}

/* Moves the tasks submitted while the lock was busy to the queue, in their
** order, numbering them. A broken pool fails them. */
static void take_side(ppe_pool *p) {
  ppe_task *t;
  pthread_mutex_lock(&p->side_lock);
  t = p->shead;
  p->shead = p->stail = NULL;
  pthread_mutex_unlock(&p->side_lock);
  while (t != NULL) {
    ppe_task *next = t->next;
    t->next = NULL;
    t->id = ++p->nextid;
    if (p->qtail) p->qtail->next = t;
    else p->qhead = t;
    p->qtail = t;
    t = next;
  }
  if (p->broken) fail_queue(p);
}

/* The task at the head of w's list starts now, as far as we know. */
static void next_starts(ppe_pool *p, wslot *w) {
  w->started = ppe_now();
  if (p->task_timeout > 0) w->deadline = w->started + p->task_timeout;
}

/* Unlinks t, after prev (NULL: t is the head), from w's list. */
static void unlink_task(ppe_pool *p, wslot *w, ppe_task *prev, ppe_task *t) {
  if (prev != NULL) prev->next = t->next;
  else w->head = t->next;
  if (w->tail == t) w->tail = prev;
  t->next = NULL;
  w->ninflight--;
  if (prev == NULL && w->head != NULL) next_starts(p, w);
}

/* Lets go of a final task that a worker held, and of its request, which
** the worker may have read until now. */
static void let_go(ppe_task *t) {
  if (t->keep_req) {
    t->keep_req = 0;
    ppe_task_drop_req(t);
  }
  ppe_task_unref(t);
}

/* Puts the tasks a dead worker held but never started back at the front
** of the queue, in their order: they lose nothing. One being retried
** stays running (see retry). */
static void requeue(ppe_pool *p, ppe_task *first) {
  ppe_task *t, *last = NULL;
  for (t = first; t != NULL; t = t->next) {
    if (t->runs == 0) {
      PPE_SET_STATE(t, PPE_PENDING);
      p->nrunning -= t->items;
    }
    t->pid = 0;
    t->forcing = 0;
    last = t;
  }
  if (last == NULL) return;
  last->next = p->qhead;
  p->qhead = first;
  if (p->qtail == NULL) p->qtail = last;
}

static void set_broken(ppe_pool *p, const char *cause) {
  if (p->broken) return;
  __atomic_store_n(&p->broken, 1, __ATOMIC_RELEASE);  /* submit reads it */
  p->closing = 1;
  if (cause != NULL) snprintf(p->cause, sizeof(p->cause), "%s", cause);
  PPE_DEBUG(("executor %d: broken: %s", p->serial, p->cause));
  fail_queue(p);
}

/* }====================================================== */


/*
** {======================================================
** Sending requests (lock held; from either thread)
** =======================================================
*/

/* Ends a socket for both sides, whatever copies of it a child the caller
** forked may hold. */
static void end_channel(int fd) {
  shutdown(fd, SHUT_RDWR);
  close(fd);
}

/* Closes the channel to the zygote and lets go of it; the last one to
** leave a retired zygote reaps it. p never points to a freed record. */
static void leave_zygote(ppe_pool *p) {
  ppe_zygote *z = p->zyg;
  if (p->zfd >= 0) end_channel(p->zfd);
  p->zfd = -1;
  p->zyg = NULL;
  if (z != NULL) ppe_zygote_detach(z);
}

/* Worker w is killed at t unless it has ended, or is due sooner. */
static void kill_by(wslot *w, double t) {
  if (w->kill_at == 0 || t < w->kill_at) w->kill_at = t;
}

/* A worker whose channel is closed ends by itself once it reads the end
** of it; one that does not (stopped, or stuck) is killed after a grace. */
static void close_channel(wslot *w) {
  if (LINKED(w)) ppe_chan_end(w->ch);
  w->state = W_ENDING;
  kill_by(w, ppe_now() + EOF_GRACE);
}

/* How many tasks a worker may hold at once. */
static int depth(ppe_pool *p, const wslot *w) {
  double k = p->ewma_us > 0 ? PIPELINE_US / p->ewma_us : 1;
  int d = k < 1 ? 1 : k > PIPELINE_MAX ? PIPELINE_MAX : (int)k;
  if (p->max_tasks > 0 && d > p->max_tasks - w->ntasks)
    d = (int)(p->max_tasks - w->ntasks);  /* it leaves after its quota */
  return d;
}

static void run_on(ppe_pool *p, wslot *w, ppe_task *t, double now) {
  ppe_request_frame(&t->req, t->type, t->id);
  if (t->state != PPE_RUNNING)  /* else counted already */
    p->nrunning += t->items;
  PPE_SET_STATE(t, PPE_RUNNING);
  t->pid = w->far != NULL ? ppe_chan_stream_pid(w->ch) : w->pid;
  t->host = w->far != NULL ? p->g[w->g].name : NULL;
  t->next = NULL;
  if (w->tail) w->tail->next = t;
  else {
    w->head = t;
    w->timed_out = 0;
    w->started = now;
    if (p->task_timeout > 0) w->deadline = now + p->task_timeout;
  }
  w->tail = t;
  ppe_chan_send(w->ch, t);  /* linked first: it is sent after those */
  w->ninflight++;
  w->idle_since = 0;
}

/* The worker's running task (if any) has run long. */
static int running_long(const wslot *w, double now) {
  return now - w->started > PIPELINE_US * 1e-6;
}

/* A worker holding tasks it has not started behind one that has run
** long: what take_back takes them from. */
static int held_back(const wslot *w, double now) {
  return w->state == W_READY && w->ninflight > 1 && running_long(w, now) &&
         !ppe_chan_unsent(w->ch) && ppe_chan_takes_back(w->ch);
}

/* 1 if slot i is one of those in 'slots' (a task's died_on). */
static int died_in(uint64_t slots, int i) {
  return (int)((slots >> (i % 64)) & 1);
}

/* The worker to give the next task: the least loaded one with room. One
** whose running task has already run long gets no more behind it. A task
** retried after its workers died ('avoid', the slots where they were) goes
** to another slot's worker if one has room, else to a replacement (but see
** passed). */
static wslot *pick(ppe_pool *p, double now, uint64_t avoid) {
  wslot *best = NULL;
  int i, bad = 0;
  for (i = 0; i < p->nw; i++) {
    wslot *w = &p->w[i];
    int b;
    if (w->state != W_READY || w->signalled || w->retiring || w->forced ||
        w->ninflight >= depth(p, w))
      continue;
    if (w->ninflight > 0 && running_long(w, now)) continue;
    b = avoid != 0 && died_in(avoid, i);
    if (best == NULL || b < bad ||
        (b == bad && w->ninflight < best->ninflight)) {
      best = w;
      bad = b;
    }
  }
  return best;
}

/* 1 if a worker is up in a slot not among 'avoid': a task retried may
** wait for it. */
static int elsewhere(const ppe_pool *p, uint64_t avoid) {
  int i;
  for (i = 0; i < p->nw; i++) {
    const wslot *w = &p->w[i];
    if (LIVE(w) && !w->signalled && !died_in(avoid, i)) return 1;
  }
  return 0;
}

/* A task retried, first in the queue, that only the replacement of a
** worker it died on (w, slot i) has room for, waits there for another
** worker while one is up: the first task queued behind it that may run
** on w passes it, taken out of the queue. NULL if none may (w then takes
** the retried one: a worker is never left idle for it). */
static ppe_task *passed(ppe_pool *p, const ppe_task *first, int i) {
  ppe_task *prev = p->qhead, *t;
  if (!died_in(first->died_on, i) || !elsewhere(p, first->died_on))
    return NULL;
  for (; (t = prev->next) != NULL; prev = t) {
    if (ppe_task_final(t) || died_in(t->died_on, i)) continue;
    prev->next = t->next;
    if (p->qtail == t) p->qtail = prev;
    t->next = NULL;
    return t;
  }
  return NULL;
}

/* Takes back the tasks sent to a worker behind a running task that has
** run long, those it has not started, when another worker has room:
** they go back to the front of the queue, in the order they were
** submitted, so the worker free first runs them, as with a queue shared
** by all. The worker skips them (its channel sees to it); a channel that
** has to ask the worker gives each back once skipped (answered).
** Not while its requests are still being sent: a frame goes out whole.
** They stay running, as the contract has it of a task once handed to a
** worker: not cancellable, counted as running. */
static void take_back(ppe_pool *p, double now) {
  ppe_task *back = NULL, **at, *last;
  int i;
  /* Every submit comes here: the cheap test first, pick only then. */
  for (i = 0; i < p->nw && !held_back(&p->w[i], now); i++)
    ;
  if (i == p->nw || pick(p, now, 0) == NULL) return;
  for (; i < p->nw; i++) {
    wslot *w = &p->w[i];
    ppe_task *prev, *t;
    if (!held_back(w, now)) continue;
    prev = w->head;
    while ((t = prev->next) != NULL) {
      if (t->cut || ppe_chan_take_back(w->ch, t) != PPE_BACK_SKIPPED) {
        prev = t;  /* started, or asked: its reply, or word, will come */
        continue;
      }
      prev->next = t->next;
      if (w->tail == t) w->tail = prev;
      w->ninflight--;
      t->pid = 0;
      /* In id order: a pipeline may hold tasks taken back before behind
      ** later ones. There are a few hundred at most. */
      for (at = &back; *at != NULL && (*at)->id < t->id; at = &(*at)->next)
        ;
      t->next = *at;
      *at = t;
    }
  }
  if (back == NULL) return;
  for (last = back; last->next != NULL; last = last->next)
    ;
  last->next = p->qhead;
  p->qhead = back;
  if (p->qtail == NULL) p->qtail = last;
}

/* Tasks cancelled before they started, whose requests had to go out
** whole first: out now, they leave the list. */
static void sweep_cut(ppe_pool *p, wslot *w) {
  ppe_task *prev = NULL, *t = w->head;
  while (t != NULL) {
    ppe_task *next = t->next;
    if (t->cut == PPE_CUT_SKIPPED) {
      unlink_task(p, w, prev, t);
      w->ncut--;
      let_go(t);
    }
    else prev = t;
    t = next;
  }
}

/* Hands queued tasks to workers. With 'direct' (the caller's thread), a
** worker that was idle gets its one task sent at once, the shortest path;
** the rest is left to the I/O thread, which sends in batches. Returns 1 if
** the I/O thread has sending to do. */
static int dispatch(ppe_pool *p, int direct) {
  int i, need = 0;
  double now = ppe_now();
  ppe_task *t;
  /* A second task: the others are wanted now. The I/O thread asks for
  ** them, not a submit, which would make an arena for each, lock held. */
  if (p->others_at > now && p->nextid >= 2) {
    p->others_at = now;
    need = 1;
  }
  for (i = 0; i < p->nw; i++)
    if (p->w[i].ncut > 0 && !ppe_chan_unsent(p->w[i].ch))
      sweep_cut(p, &p->w[i]);
  take_back(p, now);
  while ((t = queued(p)) != NULL) {
    wslot *w = pick(p, now, t->died_on);
    ppe_task *u;
    if (w == NULL) break;
    if (t->died_on != 0 && (u = passed(p, t, (int)(w - p->w))) != NULL)
      run_on(p, w, u, now);
    else run_on(p, w, dequeue(p), now);
  }
  for (i = 0; i < p->nw; i++) {
    wslot *w = &p->w[i];
    if (!ppe_chan_unsent(w->ch)) continue;
    if (!direct || w->ninflight == 1) need |= ppe_chan_push(w->ch);
    else need = 1;
  }
  return need;
}

/* }====================================================== */


/*
** {======================================================
** Replies and ends of workers (lock held; I/O thread)
** =======================================================
*/

/* A request went out: its answer is awaited from now on. */
static void zsent(ppe_pool *p, const ppe_zmsg *m, double now) {
  int i;
  if (m->type == PPE_Z_PING) p->zping = now;
  else if (m->type == PPE_Z_SPAWN && m->id >= 1 && m->id <= p->nw)
    p->w[m->id - 1].asked = now;
  else if (m->type == PPE_Z_KILL && m->status == SIGKILL)
    for (i = 0; i < p->nw; i++) {
      wslot *w = &p->w[i];
      if (w->pid != m->pid) continue;
      if (w->asked == 0) w->asked = now;
      if (w->killed == 0) w->killed = now;
    }
}

/* Sends a request with its descriptor, if any (then closed, sent or not).
** 0 once sent or lost with the zygote (its end tells), or -EAGAIN. */
static int zsend(ppe_pool *p, zreq *q, double now) {
  int r = ppe_send_packet(p->zfd, &q->m, sizeof(q->m), &q->fd, q->fd >= 0);
  if (r == -EAGAIN) return r;
  if (r == 0) zsent(p, &q->m, now);
  if (q->fd >= 0) close(q->fd);
  q->fd = -1;
  return 0;
}

/* Sends the queued requests the channel has room for, in order. */
static void zflush(ppe_pool *p) {
  int k = 0;
  double now = ppe_now();
  while (k < p->zqlen && zsend(p, &p->zq[k], now) == 0) k++;
  if (k == 0) return;
  memmove(p->zq, p->zq + k, (size_t)(p->zqlen - k) * sizeof(*p->zq));
  p->zqlen -= k;
  p->zstall = p->zqlen > 0 ? now : 0;  /* it reads: the clock starts anew */
}

/* Sends the zygote a request (a fork's with the worker's arena, fd, which
** it takes), or queues it while the channel is full (a burst of kills or
** of forks): none is dropped. -ENOMEM if it could be neither. */
static int zrequest(ppe_pool *p, int type, int id, int pid, int status,
                    int fd) {
  zreq q;
  q.m.type = type; q.m.id = id; q.m.pid = pid; q.m.status = status;
  q.fd = fd;
  if (p->zqlen == 0 && zsend(p, &q, ppe_now()) == 0) return 0;
  if (p->zqlen == p->zqcap) {
    int ncap = p->zqcap ? 2 * p->zqcap : 64;
    zreq *n = realloc(p->zq, (size_t)ncap * sizeof(*n));
    if (n == NULL) {
      if (fd >= 0) close(fd);
      return -ENOMEM;  /* as a lost request: a close is bounded anyway */
    }
    p->zq = n;
    p->zqcap = ncap;
  }
  p->zq[p->zqlen++] = q;
  if (p->zstall == 0) p->zstall = ppe_now();
  return 0;
}

/* Lets go of every queued request, and of the descriptors they carry. */
static void zdrop(ppe_pool *p) {
  int i;
  for (i = 0; i < p->zqlen; i++)
    if (p->zq[i].fd >= 0) close(p->zq[i].fd);
  p->zqlen = 0;
  p->zstall = 0;
}

/* The zygote sent something: it reads and serves, however slowly. */
static void zygote_heard(ppe_pool *p) {
  if (p->zstall > 0) p->zstall = ppe_now();
}

/* pid has ended: a kill still queued for it must not reach another
** process that gets its number. */
static void zforget(ppe_pool *p, pid_t pid) {
  int i, k = 0;
  for (i = 0; i < p->zqlen; i++)
    if (p->zq[i].m.type != PPE_Z_KILL || p->zq[i].m.pid != pid)
      p->zq[k++] = p->zq[i];
  p->zqlen = k;
  if (k == 0) p->zstall = 0;
}

/* A far worker is ended through its launcher: the worker ends once its
** channel does (serve.c). */
static void kill_worker(ppe_pool *p, wslot *w, int sig) {
  if (w->far != NULL) ppe_launch_kill(w->far, sig);
  else if (w->pid > 0) zrequest(p, PPE_Z_KILL, 0, w->pid, sig, -1);
}

static void greeted(ppe_pool *p, wslot *w);

/* Whose replies ppe_chan_take hands on_reply. */
typedef struct taker {
  ppe_pool *p;
  wslot *w;
} taker;

/* Cancels t (cancel{force}) as it stands in w's list: final now, it stays
** there, cut, as 'how' says (PPE_CUT_*); its request too, which the
** worker may still read, or which is still being sent. */
static void cut(ppe_pool *p, wslot *w, ppe_task *t, int how) {
  p->nrunning -= t->items;
  t->cut = how;
  t->forcing = 0;
  t->keep_req = 1;
  if (how == PPE_CUT_SKIPPED) w->ncut++;
  p->g[w->g].completed += t->items;
  settle(p, t, PPE_CANCELLED, PPE_E_NONE);
}

/* Worker w is to be killed for t, which it runs and which is cut
** (PPE_CUT_STOPPED): its end is no failure (w->forced). With 'behind',
** the worker is known to start nothing after t: what it was sent behind
** t goes back to the queue now, as the queue's; else at its end. */
static void stop_worker(ppe_pool *p, wslot *w, ppe_task *t, int behind) {
  ppe_task *rest = t->next, *back = NULL, **at = &back;
  w->forced = 1;
  kill_worker(p, w, SIGKILL);
  if (!behind) return;
  ppe_chan_stop(w->ch);  /* nothing more goes to it */
  t->next = NULL;
  w->tail = t;
  while (rest != NULL) {
    ppe_task *next = rest->next;
    rest->next = NULL;
    w->ninflight--;
    if (rest->cut) {  /* skipped already: nothing to run */
      w->ncut -= rest->cut == PPE_CUT_SKIPPED;
      let_go(rest);
    }
    else {
      *at = rest;
      at = &rest->next;
    }
    rest = next;
  }
  requeue(p, back);
  if (p->broken) fail_queue(p);
}

/* Task 'id', which worker w was asked to give back or to cancel, was
** skipped there (it goes to the front of the queue, in its order, as
** take_back's do; or is cancelled, if that was asked), or was stopped as
** it ran (the worker ends: it is killed, and what it held behind goes
** back to the queue). -1 if w holds no such task. */
static int answered(ppe_pool *p, wslot *w, uint64_t id, int stopped) {
  ppe_task **at, *prev = NULL, *t;
  for (t = w->head; t != NULL && t->id != id; t = t->next) prev = t;
  if (t == NULL) return -1;
  if (stopped) {
    if (!t->cut) cut(p, w, t, PPE_CUT_STOPPED);
    stop_worker(p, w, t, 1);
    return 0;
  }
  unlink_task(p, w, prev, t);
  if (t->cut) {  /* cut meanwhile, its worker given up on: moot now */
    let_go(t);
    return 0;
  }
  if (t->forcing) {
    p->nrunning -= t->items;
    p->g[w->g].completed += t->items;
    finish(p, t, PPE_CANCELLED, PPE_E_NONE);
    return 0;
  }
  t->pid = 0;
  for (at = &p->qhead; *at != NULL && (*at)->id < t->id; at = &(*at)->next)
    ;
  t->next = *at;
  *at = t;
  if (t->next == NULL) p->qtail = t;
  return 0;
}

/* The host's worker-init hook raised in a worker, which leaves: the pool
** is broken, with the hook's words (what was sent to that worker fails
** with it, see slot_ended). */
static void hook_raised(ppe_pool *p, ppe_reply *r) {
  char why[PPE_CAUSE];
  size_t n = (size_t)r->f.len < PPE_HOOK_WHY ? (size_t)r->f.len
                                             : PPE_HOOK_WHY;
  snprintf(why, sizeof(why), "the host's worker-init hook raised: %.*s",
           (int)n, r->payload);
  ppe_reply_drop(r);
  set_broken(p, why);
}

static void on_reply(void *ud, ppe_reply *r) {
  ppe_pool *p = ((taker *)ud)->p;
  wslot *w = ((taker *)ud)->w;
  const ppe_frame *f = &r->f;
  ppe_task *t = w->head;
  int state = PPE_FINISHED, err = PPE_E_NONE;
  if (w->signalled) {  /* too late: what it held has failed */
    if (!r->skipped && !r->stopped) ppe_reply_drop(r);
    return;
  }
  if (f->type == PPE_F_HOOKERR) {  /* every worker would fail so */
    hook_raised(p, r);
    return;
  }
  if (!w->replied) {
    w->replied = 1;
    p->g[w->g].early = 0;
    /* A local worker answered: the others are wanted now (ask_others) */
    if (p->others_at > 0 && w->far == NULL) p->others_at = ppe_now();
  }
  if (r->skipped || r->stopped) {  /* it never ran, or is stopped */
    if (answered(p, w, f->id, r->stopped) != 0) kill_worker(p, w, SIGKILL);
    return;
  }
  if (w->state == W_INIT) {
    w->initing = 0;
    if (f->type == PPE_F_OK) w->state = W_READY;
    else {
      if (p->initerr.len == 0)  /* the first one says it for all */
        ppe_buf_add(&p->initerr, r->payload, (size_t)f->len);
      set_broken(p, "the initializer raised");
    }
    ppe_reply_drop(r);
    return;
  }
  /* Replies come in the order of requests: tasks cut before this one
  ** get none (skipped, or stopped where this one could not run). */
  while (t != NULL && t->cut && t->id != f->id) {
    unlink_task(p, w, NULL, t);
    w->ncut -= t->cut == PPE_CUT_SKIPPED;
    let_go(t);
    t = w->head;
  }
  if (t == NULL || f->id != t->id || w->state != W_READY) {
    kill_worker(p, w, SIGKILL);  /* a worker out of step is not trusted */
    ppe_reply_drop(r);
    return;
  }
  /* This is the running task. */
  unlink_task(p, w, NULL, t);
  w->ntasks++;
  t->runs++;
  p->ewma_us = p->ewma_us > 0 ? 0.8 * p->ewma_us + 0.2 * (f->aux + 1.0)
                              : f->aux + 1.0;
  if (t->cut) {  /* cancelled as it returned, where no gate settles it */
    ppe_reply_drop(r);
    let_go(t);
    return;
  }
  p->nrunning -= t->items;
  if (w->head == NULL) w->idle_since = ppe_now();
  if (f->type == PPE_F_ERR) { state = PPE_FAILED; err = PPE_E_REMOTE; }
  else if (f->type != PPE_F_OK) { state = PPE_FAILED; err = PPE_E_SERIAL; }
  if (ppe_reply_keep(r, t) != 0) {
    state = PPE_FAILED;
    err = PPE_E_SERIAL;
  }
  p->g[w->g].completed += t->items;
  w->ndone += t->items;
  if (state == PPE_FAILED) p->g[w->g].failed += t->items;
  finish(p, t, state, err);
  if (p->max_tasks > 0 && w->ntasks >= p->max_tasks && w->ninflight == 0)
    close_channel(w);  /* it leaves on end of stream; a new one follows */
}

/* Takes the replies w's channel holds; a worker that sent what it may not
** is killed. Returns ppe_chan_take's bits. */
static int take_replies(ppe_pool *p, wslot *w) {
  taker k;
  int r;
  k.p = p;
  k.w = w;
  r = ppe_chan_take(w->ch, on_reply, &k);
  if (w->state == W_HELLO && ppe_chan_stream_greeted(w->ch)) {
    if (r & PPE_CHAN_BAD) w->greeted = 1;  /* (said so: it gets no work) */
    else greeted(p, w);
  }
  if (r & PPE_CHAN_BAD) {
    w->bad = 1;
    kill_worker(p, w, SIGKILL);
  }
  return r;
}

/* Asks the zygote for the worker of slot w, with a new channel, whose
** arena the zygote hands the worker. */
static int ask_spawn(ppe_pool *p, wslot *w) {
  int arena;
  ppe_chan_free(w->ch);
  w->ch = ppe_chan_local_new(&arena);
  if (w->ch == NULL) return -ENOMEM;
  return zrequest(p, PPE_Z_SPAWN, (int)(w - p->w) + 1, 0, 0, arena);
}

/* 1 if the queue holds work to run: tasks cancelled there are none. */
static int work_queued(const ppe_pool *p) {
  const ppe_task *t;
  for (t = p->qhead; t != NULL; t = t->next)
    if (!ppe_task_final(t)) return 1;
  return 0;
}

/* A worker is to be replaced: always while the pool is open, and after a
** shutdown while queued work is left for it (one that ended after its
** max_tasks_per_child, say), as the shutdown waits for that work. */
static int replace_workers(const ppe_pool *p) {
  return !p->closing || (!p->broken && work_queued(p));
}

static void launch(ppe_pool *p, wslot *w);

/* A group of far workers whose starts all fail is given up; an executor
** whose every group is given up is broken, with the last one's cause. */
static void start_failed(ppe_pool *p, wslot *w, const char *why,
                         int early) {
  group *g = &p->g[w->g];
  int i, *n = early ? &g->early : &g->fails;
  w->state = W_NONE;
  /* A start under way when its group was given up or its slot retired or
  ** parked, or one ended because nothing is left to do, is no failure of
  ** the group's; nor one whose slot, retired, was wanted again before its
  ** end (killed as it retired) was heard of: that slot starts anew. */
  if (w->regrown) {
    w->regrown = 0;
    if (!g->given_up && !w->off && replace_workers(p)) launch(p, w);
    return;
  }
  if (g->given_up || w->off || !replace_workers(p)) return;
  snprintf(g->why, sizeof(g->why), "%s", why);
  PPE_DEBUG(("executor %d: worker %d of '%s' did not start: %s",
             p->serial, (int)(w - p->w) + 1, g->name, why));
  if (++*n < p->host_failures) {
    double wait = BACKOFF;
    for (i = 1; i < *n && wait < BACKOFF_MAX; i++) wait *= 2;
    w->state = W_WAITING;
    w->due = ppe_now() + (wait < BACKOFF_MAX ? wait : BACKOFF_MAX);
    return;
  }
  g->given_up = 1;
  for (i = 0; i < p->ng; i++)
    if (!p->g[i].given_up) return;
  set_broken(p, g->why);
}

/* Starts far worker w through its group's launcher; it is up once it has
** said hello (greeted). */
static void launch(ppe_pool *p, wslot *w) {
  group *g = &p->g[w->g];
  char why[PPE_CAUSE];
  int fd, r;
  ppe_chan_free(w->ch);
  w->ch = NULL;
  r = ppe_launch_start(&w->far, g->argv, &fd);
  if (r == 0 && (w->ch = ppe_chan_stream_new(fd, &p->hello,
                                             (int)(w - p->w) + 1,
                                             p->memory_cap)) == NULL) {
    close(fd);
    ppe_launch_free(w->far);
    w->far = NULL;
    r = -ENOMEM;
  }
  if (r < 0) {
    snprintf(why, sizeof(why), "cannot start the launcher of '%s': %s",
             g->name, strerror(-r));
    start_failed(p, w, why, 0);
    return;
  }
  w->pid = ppe_launch_pid(w->far);
  w->state = W_HELLO;
  w->due = ppe_now() + g->hello_wait;
}

/* Its hello came and matched: it counts as started, and gets work. */
static void greeted(ppe_pool *p, wslot *w) {
  PPE_DEBUG(("executor %d: worker %d of '%s' started: pid %d on its "
             "machine (launcher pid %d)", p->serial, (int)(w - p->w) + 1,
             p->g[w->g].name, (int)ppe_chan_stream_pid(w->ch),
             (int)w->pid));
  p->g[w->g].fails = 0;
  w->greeted = 1;
  if (p->init.len > 0) {
    w->state = W_INIT;
    w->initing = 1;
    ppe_chan_send_init(w->ch, &p->init);
    ppe_chan_push(w->ch);
  }
  else w->state = W_READY;
}

/* Starts the worker of slot w: forked here, or through a launcher. */
static int start_worker(ppe_pool *p, wslot *w) {
  if (p->g[w->g].argv != NULL) {
    launch(p, w);
    return 0;
  }
  if (ask_spawn(p, w) != 0) return -1;
  w->state = W_SPAWNING;
  return 0;
}

/* Asks the zygote for the local workers after the first (OTHERS_AFTER);
** the I/O thread reads the answers, and sends on what finds the zygote's
** channel full (zrequest). A worker that cannot be asked for is left
** out, as a restart that cannot be; none is once the first broke the
** pool (its initializer failed), nor one retired meanwhile. */
static void ask_others(ppe_pool *p) {
  int i;
  p->others_at = 0;
  for (i = 0; i < p->nw && replace_workers(p); i++) {
    wslot *w = &p->w[i];
    if (w->state == W_NONE && !w->off && p->g[w->g].argv == NULL)
      (void)start_worker(p, w);
  }
}

static void respawn(ppe_pool *p, wslot *w) {
  int regrown = w->regrown;
  w->regrown = 0;
  if (w->off || !replace_workers(p) || p->g[w->g].given_up ||
      start_worker(p, w) != 0) {
    w->state = W_NONE;
    return;
  }
  if (regrown) return;
  p->nrestarts++;
  p->g[w->g].restarts++;
  PPE_DEBUG(("executor %d: worker %d restarting (its restart %ld)",
             p->serial, (int)(w - p->w) + 1, (long)p->nrestarts));
}

/* Why a worker that ended before its initializer returned did, for the
** cause of its broken executor. */
static void init_died(ppe_pool *p, int status, int own) {
  char why[PPE_CAUSE], sig[64];
  if (own)
    snprintf(why, sizeof(why), "a worker exited with code %d (%s)",
             WEXITSTATUS(status),
             ppe_worker_exit_meaning(WEXITSTATUS(status)));
  else if (WIFSIGNALED(status)) {
    ppe_signal_describe(sig, sizeof(sig), WTERMSIG(status));
    snprintf(why, sizeof(why), "a worker was killed by signal %d (%s) "
             "while running the initializer", WTERMSIG(status), sig);
  }
  else
    snprintf(why, sizeof(why), "a worker exited with code %d while running "
             "the initializer", WEXITSTATUS(status));
  set_broken(p, why);
}

static void slot_ended(ppe_pool *p, wslot *w, pid_t pid, int status);

/* The zygote reports a local worker's end. */
static void on_exited(ppe_pool *p, pid_t pid, int status) {
  int i;
  for (i = 0; i < p->nw; i++) {
    wslot *w = &p->w[i];
    if (w->pid != pid || w->far != NULL || w->state == W_NONE ||
        w->state == W_SPAWNING || w->state == W_WAITING)
      continue;
    slot_ended(p, w, pid, status);
    return;
  }
}

/* How a far worker's launcher ended, 'when', and the tail of its stderr:
** for the reason of a failed start. */
static void launcher_ended(char *why, size_t n, ppe_pool *p, wslot *w,
                           int status, const char *when) {
  const char *tail = ppe_launch_tail(w->far);
  const char *name = p->g[w->g].name;
  const char *more = tail[0] ? "; its stderr ended with:\n" : "";
  if (WIFSIGNALED(status))
    snprintf(why, n, "the launcher of '%s' was killed by signal %d %s%s%s",
             name, WTERMSIG(status), when, more, tail);
  else
    snprintf(why, n, "the launcher of '%s' exited with code %d %s%s%s",
             name, WEXITSTATUS(status), when, more, tail);
}

/* Why a far worker's start failed: its own words, or its launcher's. */
static void far_failed(ppe_pool *p, wslot *w, int status) {
  char why[PPE_CAUSE + PPE_LAUNCH_TAIL];
  const char *said = w->ch != NULL ? ppe_chan_stream_why(w->ch) : "";
  const char *tail = ppe_launch_tail(w->far);
  group *g = &p->g[w->g];
  if (said[0] != '\0')
    snprintf(why, sizeof(why), "workers of '%s' cannot start: %s", g->name,
             said);
  else if (w->late)
    snprintf(why, sizeof(why), "no worker of '%s' said hello within %g s "
             "of its launcher's start%s%s", g->name, g->hello_wait,
             tail[0] ? "; the launcher's stderr ended with:\n" : "", tail);
  else
    launcher_ended(why, sizeof(why), p, w, status,
                   "before its worker said hello");
  if (LINKED(w)) ppe_chan_end(w->ch);
  ppe_chan_free(w->ch);
  w->ch = NULL;
  ppe_launch_free(w->far);
  w->far = NULL;
  w->pid = 0;
  w->kill_at = 0;
  w->late = w->bad = 0;
  start_failed(p, w, why, 0);
}

/* A far worker's launcher has ended (reaped): a start that failed, or a
** worker lost like any other. Told once the replies it sent are taken: a
** reply waits while its task's output is not yet written (the caller's
** stdout full), as a local worker would wait to write it; unless the
** task failed already (timed out, or terminate/kill). */
static void far_exited(ppe_pool *p, wslot *w) {
  if (LINKED(w)) {  /* what it said before it ended still counts */
    ppe_chan_read(w->ch);
    take_replies(p, w);
  }
  if (w->greeted && !w->signalled && !w->timed_out &&
      ppe_chan_holding(w->ch))
    return;
  w->exited = 0;
  if (!w->greeted) far_failed(p, w, w->status);
  else slot_ended(p, w, w->pid, w->status);
}

/* Whether t, the task that worker w was running when it died, runs
** again: the one place where that is decided (the option retries). It
** does while it has runs left, unless its worker was killed on purpose,
** which is no accident to make good: by task_timeout (timed_out), or by
** terminate_workers or kill_workers (signalled: their tasks failed at
** once, fail_held); a cancel{force} or a shutdown{timeout} that kills a
** worker is one of those too. Nor once the pool is broken (its zygote
** gone, say): nothing would run it. */
static int retry(const ppe_pool *p, const wslot *w, const ppe_task *t) {
  if (w->timed_out || w->signalled || w->forced || p->broken) return 0;
  return t->runs <= p->retries;
}

/* Task t, which worker w was running when it ended with 'status' ('own':
** one of ppe's own exit codes), fails with it: WorkerDied, or TaskTimeout
** if we killed it for that. The tasks sent behind t go back to the queue,
** or fail if the pool is broken. */
static void died_with(ppe_pool *p, wslot *w, ppe_task *t, pid_t pid,
                      int status, int own) {
  ppe_task *rest = t->next;
  t->next = NULL;
  t->pid = w->far != NULL ? ppe_chan_stream_pid(w->ch) : pid;
  t->host = w->far != NULL ? p->g[w->g].name : NULL;
  t->signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  t->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
  t->own_exit = own;
  t->how = p->zdead ? PPE_HOW_ZYGOTE : PPE_HOW_ENDED;
  ppe_task_drop_res(t);
  p->nrunning -= t->items;
  p->g[w->g].completed += t->items;
  p->g[w->g].failed += t->items;
  finish(p, t, PPE_FAILED, w->timed_out ? PPE_E_TIMEOUT : PPE_E_DIED);
  if (p->broken) {  /* nowhere to run them now */
    while (rest != NULL) {
      ppe_task *n = rest->next;
      rest->next = NULL;
      p->nrunning -= rest->items;
      fail_broken(p, rest);
      ppe_task_unref(rest);
      rest = n;
    }
  }
  requeue(p, rest);
}

/* Worker w has ended, its replies taken: the tasks cut in its list go,
** and one whose cancel{force} it was asked to settle is cancelled if it
** was the one running, as it would have been (w->forced then). */
static void ended_forced(ppe_pool *p, wslot *w) {
  ppe_task *prev = NULL, *t = w->head;
  while (t != NULL) {
    ppe_task *next = t->next;
    if (t->cut) {
      unlink_task(p, w, prev, t);
      let_go(t);
    }
    else prev = t;
    t = next;
  }
  w->ncut = 0;
  if ((t = w->head) != NULL && t->forcing) {
    unlink_task(p, w, NULL, t);
    p->nrunning -= t->items;
    p->g[w->g].completed += t->items;
    finish(p, t, PPE_CANCELLED, PPE_E_NONE);
    w->forced = 1;
  }
}

/* PPE_DEBUG's line for a worker's end: how it ended, and why ppe ended
** it when it did. */
static void debug_end(const ppe_pool *p, const wslot *w, pid_t pid,
                      int status, int own, int over) {
  char how[96], sig[64];
  const char *why = w->signalled ? " (terminate_workers or kill_workers)"
                  : w->timed_out && w->head != NULL
                      ? " (its task ran past task_timeout)"
                  : w->forced ? " (cancel{force} or shutdown's timeout)"
                  : w->retiring ? " (retired: resize or idle_timeout)"
                  : over ? " (over max_memory_per_child)"
                  : p->max_tasks > 0 && w->ntasks >= p->max_tasks
                      ? " (it ran max_tasks_per_child tasks)"
                  : p->closing ? " (its executor closed)" : "";
  if (WIFSIGNALED(status)) {
    ppe_signal_describe(sig, sizeof(sig), WTERMSIG(status));
    snprintf(how, sizeof(how), "killed by signal %d (%s)", WTERMSIG(status),
             sig);
  }
  else if (own)
    snprintf(how, sizeof(how), "exited with code %d (%s)",
             WEXITSTATUS(status),
             ppe_worker_exit_meaning(WEXITSTATUS(status)));
  else if (WEXITSTATUS(status) != 0 && w->head != NULL)
    snprintf(how, sizeof(how), "exited with code %d (the task called "
             "os.exit)", WEXITSTATUS(status));
  else snprintf(how, sizeof(how), "exited with code %d",
                WEXITSTATUS(status));
  /* (a far worker's own pid is on its machine: pid is its launcher's) */
  PPE_DEBUG(("executor %d: worker %d%s%s%s ended: %spid %d %s%s",
             p->serial, (int)(w - p->w) + 1,
             w->far ? " of '" : "", w->far ? p->g[w->g].name : "",
             w->far ? "'" : "", w->far ? "launcher " : "", (int)pid, how,
             why));
}

/* Worker w has ended with 'status': what it held fails or goes back to
** the queue, and another is started in its place. */
static void slot_ended(ppe_pool *p, wslot *w, pid_t pid, int status) {
  {
    char why[PPE_CAUSE + PPE_LAUNCH_TAIL];
    ppe_task *t;
    int own, early, over;
    if (LINKED(w)) {  /* what it wrote before it ended still counts */
      ppe_chan_read(w->ch);
      take_replies(p, w);
    }
    if (!w->signalled) ended_forced(p, w);
    t = w->head;
    /* A worker that left over max_memory_per_child did so once its last
    ** reply was out, and started nothing after it (worker.h). */
    over = w->ch != NULL && ppe_chan_left(w->ch) == PPE_EXIT_MEMORY;
    /* A far worker that ends unasked after its hello but before any
    ** reply, holding no task, counts toward host_failures (in a count of
    ** its own, which a handshake does not reset): one that greets and
    ** dies at once is not started again and again at once. One that held
    ** a task died of it, or with it: that task fails (or is retried), as
    ** on a local worker, and the group goes on. */
    early = w->far != NULL && !w->replied && !w->signalled &&
            !w->initing && !w->timed_out && !w->forced && t == NULL;
    if (early && w->bad)
      snprintf(why, sizeof(why), "workers of '%s' cannot start: one sent "
               "what no ppe worker sends, after its hello", p->g[w->g].name);
    else if (early)
      launcher_ended(why, sizeof(why), p, w, status,
                     "after its worker's hello, before any reply");
    /* Its exit code is ppe's own if it said so first; a task's os.exit
    ** may give the same numbers. */
    own = WIFEXITED(status) && WEXITSTATUS(status) != 0 &&
          ppe_chan_left(w->ch) == WEXITSTATUS(status) &&
          ppe_worker_exit_meaning(WEXITSTATUS(status)) != NULL;
    if (ppe_debug_on()) debug_end(p, w, pid, status, own, over);
    if (w->initing) init_died(p, status, own);
    w->initing = 0;
    /* Its hook raised before it read anything: what it held never ran,
    ** and fails as the rest of the queue of a broken pool does. */
    if (own && WEXITSTATUS(status) == PPE_EXIT_HOOK && !w->signalled) {
      w->head = NULL;
      requeue(p, t);
      set_broken(p, "a worker exited with code 6 (the host's worker-init "
                 "hook raised)");
      fail_queue(p);
      t = NULL;
    }
    if (w->signalled) {  /* those failed when it was signalled */
      while (t != NULL) {
        ppe_task *n = t->next;
        t->next = NULL;
        let_go(t);  /* nobody reads its request now */
        t = n;
      }
    }
    else if (t != NULL && w->forced) {  /* no failure: they run again */
      w->head = NULL;
      requeue(p, t);
      if (p->broken) fail_queue(p);
    }
    else if (over) requeue(p, t);  /* none of them started */
    else if (t != NULL) {
      t->runs++;  /* it ran until its worker died */
      if (retry(p, w, t)) {
        t->died_on |= (uint64_t)1 << ((w - p->w) % 64);
        requeue(p, t);  /* first, running still; the rest behind it */
      }
      else died_with(p, w, t, pid, status, own);
    }
    w->head = w->tail = NULL;
    w->ninflight = 0;
    w->ncut = 0;
    ppe_chan_free(w->ch);  /* replies it lent stay with their tasks */
    w->ch = NULL;
    w->kill_at = w->asked = w->killed = 0;
    if (w->far == NULL) zforget(p, pid);
    ppe_launch_free(w->far);  /* reaped already */
    w->far = NULL;
    w->greeted = 0;
    w->signalled = w->forced = 0;
    w->pid = 0;
    w->ntasks = w->ndone = 0;
    w->replied = w->bad = w->retiring = 0;
    w->idle_since = 0;
    if (early && !w->off) start_failed(p, w, why, 1);
    else respawn(p, w);
  }
}

static void on_spawned(ppe_pool *p, int id, pid_t pid, int fd) {
  wslot *w;
  if (id < 1 || id > p->nw || p->w[id - 1].state != W_SPAWNING) {
    if (fd >= 0) close(fd);
    return;
  }
  w = &p->w[id - 1];
  w->asked = 0;
  w->pid = pid;
  PPE_DEBUG(("executor %d: worker %d started: pid %d", p->serial, id,
             (int)pid));
  if (ppe_chan_local_open(w->ch, fd, p->shared) != 0 ||
      !replace_workers(p)) {
    close_channel(w);
    return;
  }
  if (p->init.len > 0) {
    w->state = W_INIT;
    w->initing = 1;
    ppe_chan_send_init(w->ch, &p->init);
    ppe_chan_push(w->ch);
  }
  else w->state = W_READY;
}

/* The zygote answered a ping: it serves, and what it was asked it did;
** a worker slow to end gets another grace before it is asked again. */
static void on_pong(ppe_pool *p) {
  int i;
  double now = ppe_now();
  p->zping = 0;
  for (i = 0; i < p->nw; i++)
    if (p->w[i].asked > 0) p->w[i].asked = now;
}

static void on_zmsg(ppe_pool *p, const ppe_zmsg *m, int fd) {
  char msg[128];
  zygote_heard(p);
  switch (m->type) {
    case PPE_Z_SPAWNED: on_spawned(p, m->id, m->pid, fd); return;
    case PPE_Z_EXITED: on_exited(p, m->pid, m->status); break;
    case PPE_Z_PONG: on_pong(p); break;
    case PPE_Z_SPAWNFAIL:
      snprintf(msg, sizeof(msg), "cannot fork a worker: %s",
               strerror(m->status));
      if (m->id >= 1 && m->id <= p->nw) {
        p->w[m->id - 1].state = W_NONE;
        p->w[m->id - 1].asked = 0;
      }
      p->spawnfail = m->status > 0 ? m->status : EIO;
      set_broken(p, msg);
      break;
  }
  if (fd >= 0) close(fd);
}

static void zygote_gone(ppe_pool *p);

/* Sets why slot w is off (wslot.off), keeping count of those parked. */
static void set_off(ppe_pool *p, wslot *w, int off) {
  p->nparked += (off == OFF_PARKED) - (w->off == OFF_PARKED);
  w->off = off;
}

/* Whether the zygote still serves, once the pool is closing (see
** ZYGOTE_GRACE): 1 if it is to be given up; otherwise, if it is to be
** asked, the ping is sent; the time of the next look goes in *due, if
** sooner than *due or *due is < 0. */
static int zygote_stuck(ppe_pool *p, double now, double *due, int act) {
  int i, late = 0;
  double t;
#define DUE(x) do { t = (x); if (*due < 0 || t < *due) *due = t; } while (0)
  if (!p->closing) return 0;
  if (p->zqlen > 0) {  /* what waits to be sent goes first, pings too */
    if (now >= p->zstall + ZYGOTE_GRACE) return 1;
    DUE(p->zstall + ZYGOTE_GRACE);
    return 0;
  }
  if (p->zping > 0) {
    if (now >= p->zping + ZYGOTE_GRACE) return 1;
    DUE(p->zping + ZYGOTE_GRACE);
    return 0;
  }
  for (i = 0; i < p->nw; i++) {
    const wslot *w = &p->w[i];
    if (w->asked == 0 || w->state == W_NONE) continue;
    if (now >= w->asked + ZYGOTE_ASK) late = 1;
    else DUE(w->asked + ZYGOTE_ASK);
  }
#undef DUE
  if (late && act) zrequest(p, PPE_Z_PING, 0, 0, 0, -1);
  if (late) *due = now;  /* (not acted on: look again at once) */
  return 0;
}

static void check_timeouts(ppe_pool *p, double now) {
  int i;
  double due = -1;
  if (p->others_at > 0 && now >= p->others_at) ask_others(p);
  for (i = 0; i < p->nw; i++) {
    wslot *w = &p->w[i];
    if (w->state == W_HELLO && now >= w->due) {
      w->due = now + p->g[w->g].hello_wait;  /* its end: a failed start */
      w->late = 1;
      kill_worker(p, w, SIGKILL);
    }
    if (w->state == W_WAITING && now >= w->due) {
      if (w->off || !replace_workers(p) || p->g[w->g].given_up)
        w->state = W_NONE;
      else launch(p, w);
    }
    if (w->state != W_READY || w->ninflight > 0 || w->initing) continue;
    if (w->retiring) {  /* its work is done: it leaves */
      w->retiring = 0;
      close_channel(w);
      continue;
    }
    if (w->idle_since == 0) w->idle_since = now;
    if (p->idle_timeout > 0 && !p->closing &&
        now - w->idle_since >= p->idle_timeout) {
      set_off(p, w, OFF_PARKED);
      close_channel(w);
    }
  }
  for (i = 0; i < p->nw; i++) {
    wslot *w = &p->w[i];
    if (w->state != W_NONE && w->kill_at > 0 && now >= w->kill_at) {
      w->kill_at = 0;
      kill_worker(p, w, SIGKILL);
    }
  }
  for (i = 0; i < p->nw && p->closing; i++) {
    wslot *w = &p->w[i];
    if (w->killed > 0 && now >= w->killed + LOST_AFTER && w->pid > 0)
      on_exited(p, w->pid, SIGKILL);  /* given up; the zygote reaps it */
  }
  if (zygote_stuck(p, now, &due, 1)) {
    ppe_zygote_kill(p->zyg);  /* a stopped one too; its workers go along */
    zygote_gone(p);
  }
  if (p->task_timeout <= 0) return;
  for (i = 0; i < p->nw; i++) {
    wslot *w = &p->w[i];
    if (w->head != NULL && !w->head->cut && !w->timed_out &&
        now >= w->deadline) {
      w->timed_out = 1;
      kill_worker(p, w, SIGKILL);
    }
  }
}

static int poll_timeout(ppe_pool *p, double now) {
  double first = -1;
  int i, room = -1;  /* another worker has room: asked only if needed */
  for (i = 0; i < p->nw; i++) {
    wslot *w = &p->w[i];
    if (p->task_timeout > 0 && w->head != NULL && !w->head->cut &&
        !w->timed_out && (first < 0 || w->deadline < first))
      first = w->deadline;
    if (w->state != W_NONE && w->kill_at > 0 &&
        (first < 0 || w->kill_at < first))
      first = w->kill_at;
    if ((w->state == W_HELLO || w->state == W_WAITING) &&
        (first < 0 || w->due < first))
      first = w->due;
    if (p->idle_timeout > 0 && w->state == W_READY && w->ninflight == 0 &&
        !w->initing) {
      if (w->idle_since == 0) w->idle_since = now;  /* idle from here */
      if (first < 0 || w->idle_since + p->idle_timeout < first)
        first = w->idle_since + p->idle_timeout;
    }
    if (w->far != NULL && !ppe_launch_watched(w->far) &&
        (first < 0 || now + UNWATCHED < first))
      first = now + UNWATCHED;  /* its end is looked for */
    /* When a task with others behind it will have run long, if another
    ** worker has room now: they are taken back then (take_back). A worker
    ** that has room later says so with a reply, which wakes us anyway. */
    if (w->state == W_READY && w->ninflight > 1 && !running_long(w, now) &&
        (first < 0 || w->started + PIPELINE_US * 1e-6 < first) &&
        (room >= 0 ? room : (room = pick(p, now, 0) != NULL)))
      first = w->started + PIPELINE_US * 1e-6;
  }
  if (p->others_at > 0 && (first < 0 || p->others_at < first))
    first = p->others_at;
  zygote_stuck(p, now, &first, 0);
  if (first < 0) return -1;
  return first <= now ? 0 : (int)((first - now) * 1000) + 1;
}

/* Once nothing is queued or running, closing channels ends the workers. */
static void maybe_close(ppe_pool *p) {
  int i;
  if (!p->closing || p->nrunning > 0 || p->qhead != NULL) return;
  for (i = 0; i < p->nw; i++) {
    wslot *w = &p->w[i];
    if (LIVE(w)) close_channel(w);
    else if (w->state == W_HELLO) {  /* nothing to wait for: it ends now */
      close_channel(w);
      kill_worker(p, w, SIGKILL);
    }
    else if (w->state == W_WAITING) w->state = W_NONE;
  }
}

static int all_gone(ppe_pool *p) {
  int i;
  for (i = 0; i < p->nw; i++)
    if (p->w[i].state != W_NONE) return 0;
  return 1;
}

/* The zygote ended (killed from outside): its workers went with it. */
static void zygote_gone(ppe_pool *p) {
  int i;
  set_broken(p, "the zygote process ended");
  ppe_zygote_retire(p->zyg);  /* the next executor gets a new one */
  p->zdead = 1;
  zdrop(p);  /* nobody to send them to */
  p->zping = 0;
  for (i = 0; i < p->nw; i++) {
    wslot *w = &p->w[i];
    if (w->state == W_NONE) continue;
    if (LINKED(w)) close_channel(w);
    on_exited(p, w->pid, SIGKILL);  /* as good a status as any now */
    w->state = W_NONE;
  }
}

/* }====================================================== */


/*
** {======================================================
** The I/O thread
** =======================================================
*/

#define ZBATCH 32

/*
** {======================================================
** Sizes: resize, idle workers
** =======================================================
*/

/* Room for n more slots, for group g, not started; 0 or -ENOMEM. Only
** this thread reads the slots without the lock (around its poll). */
static int add_slots(ppe_pool *p, int g, int n) {
  wslot *w = realloc(p->w, sizeof(wslot) * (size_t)(p->nw + n));
  struct pollfd *pfd;
  if (w == NULL) return -ENOMEM;
  p->w = w;
  pfd = realloc(p->pfd, sizeof(struct pollfd) * (3 * (size_t)(p->nw + n)
                                                 + 4));
  if (pfd == NULL) return -ENOMEM;
  p->pfd = pfd;
  memset(&p->w[p->nw], 0, sizeof(wslot) * (size_t)n);
  while (n-- > 0) {
    p->w[p->nw].g = g;
    p->w[p->nw].off = OFF_RETIRED;  /* (started as the group grows) */
    p->nw++;
  }
  return 0;
}

/* Its slots that are not retired: the group's size. */
static int group_size(const ppe_pool *p, int g) {
  int i, n = 0;
  for (i = 0; i < p->nw; i++)
    if (p->w[i].g == g && p->w[i].off != OFF_RETIRED) n++;
  return n;
}

/* Worker w leaves the group: at once if it has nothing to do, else once
** it has done what it holds (the tasks it was handed run to their end). */
static void retire(ppe_pool *p, wslot *w) {
  set_off(p, w, OFF_RETIRED);
  if (w->state == W_WAITING) w->state = W_NONE;
  else if (w->state == W_HELLO) {  /* nothing to wait for */
    close_channel(w);
    kill_worker(p, w, SIGKILL);
  }
  else if (w->state == W_READY && w->ninflight == 0) close_channel(w);
  else if (w->state != W_NONE && w->state != W_ENDING) w->retiring = 1;
}

/* Group g to its size 'want': retired slots come back first, then new
** ones; it shrinks by its idle workers first, then busy ones. */
static void resize_group(ppe_pool *p, int g, int want) {
  int i, pass, have = group_size(p, g);
  if (have < want && p->g[g].given_up) return;  /* it stays given up */
  for (i = 0; i < p->nw && have < want; i++) {
    wslot *w = &p->w[i];
    if (w->g != g || w->off != OFF_RETIRED) continue;
    set_off(p, w, 0);
    w->retiring = 0;
    if (w->state == W_NONE && start_worker(p, w) != 0) w->state = W_NONE;
    else if (w->state != W_NONE) w->regrown = 1;  /* its next: no restart */
    have++;
  }
  if (have < want && add_slots(p, g, want - have) == 0)
    resize_group(p, g, want);
  for (pass = 0; pass < 2; pass++)
    for (i = p->nw - 1; i >= 0 && have > want; i--) {
      wslot *w = &p->w[i];
      int idle = !LIVE(w) || (w->ninflight == 0 && !w->initing);
      if (w->g != g || w->off == OFF_RETIRED || (pass == 0 && !idle))
        continue;
      retire(p, w);
      have--;
    }
}

/* What resize asked, applied (lock held; at the top of the I/O loop,
** the only place the slots may move). */
static void apply_sizes(ppe_pool *p) {
  int g;
  p->resized = 0;
  for (g = 0; g < p->ng; g++)
    if (p->g[g].want >= 0) {
      int want = p->g[g].want;
      p->g[g].want = -1;
      p->g[g].n = want;
      if (!p->closing) resize_group(p, g, want);
    }
}

/* Work waits: workers parked for idleness start again, one per task
** waiting, as far as there are some. */
static void unpark(ppe_pool *p) {
  const ppe_task *t;
  int i, want = 0;
  for (t = p->qhead; t != NULL && want < p->nw; t = t->next)
    if (!ppe_task_final(t)) want++;
  /* Less those that a worker idle, or one on its way, will take. */
  for (i = 0; i < p->nw && want > 0; i++) {
    const wslot *w = &p->w[i];
    if (w->off || w->retiring) continue;
    if ((w->state == W_READY && w->ninflight == 0) ||
        w->state == W_SPAWNING || w->state == W_HELLO ||
        w->state == W_INIT || w->state == W_WAITING)
      want--;
  }
  for (i = 0; i < p->nw && want > 0; i++) {
    wslot *w = &p->w[i];
    if (w->off != OFF_PARKED || w->state != W_NONE ||
        p->g[w->g].given_up)
      continue;
    set_off(p, w, 0);
    if (start_worker(p, w) != 0) w->state = W_NONE;
    want--;
  }
}

/* }====================================================== */


static void *io_main(void *arg) {
  ppe_pool *p = (ppe_pool *)arg;
  ppe_lock();
  while (!(p->closing && all_gone(p))) {
    ppe_zmsg zm[ZBATCH];
    int zfds[ZBATCH], nz = 0, i, np, zgone = 0, timeout, n;
    struct pollfd *out;
    double now, due;
    if (p->resized) apply_sizes(p);
    np = 3 * p->nw + 4;
    out = &p->pfd[3 * p->nw + 2];
    now = ppe_now();
    timeout = poll_timeout(p, now);
    p->pfd[0].fd = p->wakefd;
    p->pfd[0].events = POLLIN;
    p->pfd[1].fd = p->zfd;
    p->pfd[1].events = POLLIN | (p->zqlen > 0 ? POLLOUT : 0);
    for (i = 0; i < p->nw; i++) {
      wslot *w = &p->w[i];
      struct pollfd *pf = &p->pfd[i + 2];
      /* One that holds a reply is read again once the output before it
      ** is out: the descriptor below tells when it may be. */
      pf->fd = ppe_chan_holding(w->ch) ? -1 : ppe_chan_fd(w->ch);
      pf->events = POLLIN | (ppe_chan_unsent(w->ch) ? POLLOUT : 0);
      pf->revents = 0;
      pf = &p->pfd[p->nw + 2 + 2 * i];
      pf[0].fd = pf[1].fd = -1;
      if (w->far != NULL) ppe_launch_fds(w->far, &pf[0].fd, &pf[1].fd);
      pf[0].events = pf[1].events = POLLIN;
      pf[0].revents = pf[1].revents = 0;
    }
    out[0].fd = ppe_fwd_pollfd(1);
    out[1].fd = ppe_fwd_pollfd(2);
    out[0].events = out[1].events = POLLOUT;
    out[0].revents = out[1].revents = 0;
    /* Workers may tell of replies only while we may be asleep: from here.
    ** One that came before we said so is taken now, not slept on. */
    for (i = 0; i < p->nw; i++)  /* (one whose channel is closed: moot) */
      if (LINKED(&p->w[i]) && ppe_chan_sleep(p->w[i].ch)) timeout = 0;
    ppe_unlock();
    /* Big blocks kept for reuse go back once unused for a while; this
    ** thread is the one that wakes up for it. */
    due = ppe_big_trim(now);
    if (due >= 0 && (timeout < 0 || due * 1000 < timeout))
      timeout = (int)(due * 1000) + 1;
    /* Reads happen outside the lock: only this thread reads or closes
    ** the channels, so the caller's thread keeps submitting meanwhile. */
    n = poll(p->pfd, (nfds_t)np, timeout);
    if (n < 0 && errno != EINTR) {
      ppe_lock();
      continue;
    }
    for (i = 0; i < p->nw; i++)
      if (p->w[i].ch != NULL) ppe_chan_wake(p->w[i].ch);
    if (p->pfd[0].revents & POLLIN) {
      uint64_t v;
      while (read(p->wakefd, &v, sizeof(v)) > 0)
        ;
      ppe_lock();
      p->wake_pending = 0;
      ppe_unlock();
    }
    if ((out[0].revents | out[1].revents) != 0) ppe_fwd_flush();
    for (i = 0; i < p->nw; i++)
      if (p->pfd[i + 2].revents & (POLLIN | POLLHUP | POLLERR))
        ppe_chan_read(p->w[i].ch);
    if (p->pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      while (nz < ZBATCH) {
        long n = ppe_recv_packet(p->zfd, &zm[nz], sizeof(zm[0]), &zfds[nz],
                                 1);
        if (n == (long)sizeof(zm[0])) nz++;
        else {
          if (zfds[nz] >= 0) close(zfds[nz]);
          if (n == 0 || (n < 0 && n != -EAGAIN)) zgone = 1;
          break;
        }
      }
    }
    ppe_lock();
    if (p->pfd[1].revents & POLLOUT) zflush(p);
    for (i = 0; i < p->nw; i++) {  /* far workers' launchers */
      wslot *w = &p->w[i];
      struct pollfd *pf = &p->pfd[p->nw + 2 + 2 * i];
      int status;
      if (w->far != NULL && (((pf[0].revents | pf[1].revents) & ~POLLOUT) ||
                             !ppe_launch_watched(w->far)) &&
          ppe_launch_poll(w->far, &status)) {
        w->exited = 1;
        w->status = status;
      }
      if (w->exited) far_exited(p, w);
    }
    for (i = 0; i < p->nw; i++) {
      wslot *w = &p->w[i];
      int r;
      if (!LINKED(w)) continue;
      r = take_replies(p, w);
      if (LINKED(w) && (p->pfd[i + 2].revents & POLLOUT))
        ppe_chan_push(w->ch);
      if ((r & PPE_CHAN_END) && LINKED(w)) {
        /* Its channel ended, or carried what cannot be read. A worker that
        ** is exiting gets a moment to end with its own status; one that
        ** lives on in that state is not to be trusted or waited for, and
        ** is killed, then reported and replaced like any death. */
        close_channel(w);  /* its status follows from the zygote */
      }
    }
    for (i = 0; i < nz; i++) on_zmsg(p, &zm[i], zfds[i]);
    if (zgone) zygote_gone(p);
    check_timeouts(p, ppe_now());
    take_side(p);
    dispatch(p, 0);
    if (p->idle_timeout > 0) unpark(p);
    maybe_close(p);
  }
  /* Nothing may wait on the side, or in the queue, now that nobody would
  ** take it: what is left fails. */
  pthread_mutex_lock(&p->side_lock);
  p->io_done = 1;
  pthread_mutex_unlock(&p->side_lock);
  take_side(p);
  if (p->cause[0] == '\0' && work_queued(p))
    snprintf(p->cause, sizeof(p->cause), "no worker was left to run it");
  p->dropped = work_queued(p);
  fail_queue(p);
  ppe_unlock();
  /* Every worker is reaped: we leave the zygote here, not at a join that
  ** may come late, so a zygote that is to go is no zombie meanwhile. */
  leave_zygote(p);
  return NULL;
}

/* }====================================================== */


/*
** {======================================================
** Public functions
** =======================================================
*/

/* Group names, kept for the life of the process: a future outlives its
** executor, and its error names the group. One copy of each name. */
typedef struct name {
  struct name *next;
  char s[1];
} name;

static name *names = NULL;

static const char *intern(const char *s) {
  name *n;
  ppe_lock();
  for (n = names; n != NULL && strcmp(n->s, s) != 0; n = n->next)
    ;
  if (n == NULL && (n = malloc(sizeof(*n) + strlen(s))) != NULL) {
    strcpy(n->s, s);
    n->next = names;
    names = n;
  }
  ppe_unlock();
  return n != NULL ? n->s : NULL;
}

static char **copy_argv(char *const *argv) {
  char **v;
  int n, i;
  for (n = 0; argv[n] != NULL; n++)
    ;
  if ((v = calloc((size_t)n + 1, sizeof(*v))) == NULL) return NULL;
  for (i = 0; i < n; i++)
    if ((v[i] = strdup(argv[i])) == NULL) return v;  /* freed by caller */
  return v;
}

static void free_argv(char **v) {
  int i;
  if (v == NULL) return;
  for (i = 0; v[i] != NULL; i++) free(v[i]);
  free(v);
}

static void pool_release(ppe_pool *p) {
  int i;
  for (i = 0; p->w != NULL && i < p->nw; i++) {
    ppe_lock();  /* replies still held by futures keep its arena mapped */
    ppe_chan_free(p->w[i].ch);
    ppe_unlock();
    ppe_launch_free(p->w[i].far);
  }
  for (i = 0; p->g != NULL && i < p->ng; i++) free_argv(p->g[i].argv);
  free(p->g);
  if (p->wakefd >= 0) close(p->wakefd);
  if (p->notifyfd >= 0) close(p->notifyfd);
  leave_zygote(p);
  pthread_mutex_destroy(&p->side_lock);
  ppe_buf_free(&p->init);
  ppe_buf_free(&p->initerr);
  zdrop(p);
  free(p->zq);
  free(p->pfd);
  free(p->w);
  free(p);
  ppe_big_keep(-1);
  ppe_fwd_use(-1);
}

/* Waits, at construction, until the zygote has attached the executor and
** forked its first local worker (far ones are launched, and are up when
** they say hello): a task submitted next goes to that one, and the
** others are asked for later (ask_others), their answers read by the
** I/O thread, as a restart's are. A pool whose initializer already failed
** is broken, which is still a pool: its futures fail with the cause. Only
** a zygote or a first fork that failed is an error here: its errno, and in
** 'why' (PPE_CAUSE bytes) what failed, where that says more. The lock is
** not held while waiting: other executors' I/O threads must go on reading
** what the zygote sends them, or it would wait for them. */
static int await_first(ppe_pool *p, char *why) {
  wslot *first = NULL;
  int i, r = 0;
  ppe_lock();
  for (i = 0; i < p->nw && r == 0; i++) {
    wslot *w = &p->w[i];
    if (p->g[w->g].argv != NULL) launch(p, w);
    else if (first == NULL) {
      first = w;
      w->state = W_SPAWNING;
      r = ask_spawn(p, w);
    }
  }
  ppe_unlock();
  if (r != 0) return r;
  while (first != NULL && first->state == W_SPAWNING) {
    ppe_zmsg m;
    int fd;
    long n;
    if (ppe_wait_readable(p->zfd, 10000) <= 0) {
      snprintf(why, PPE_CAUSE, "the zygote did not answer");
      return -ETIMEDOUT;
    }
    n = ppe_recv_packet(p->zfd, &m, sizeof(m), &fd, 1);
    if (n != (long)sizeof(m)) {
      if (fd >= 0) close(fd);
      if (n == 0) snprintf(why, PPE_CAUSE, "the zygote process ended");
      return n < 0 ? (int)n : n == 0 ? -EPIPE : -EPROTO;
    }
    if (m.type == PPE_Z_READY) {  /* attached, or why not */
      if (fd >= 0) close(fd);
      if (m.status != 0) return -m.status;
      p->shared = m.id == 1;
      continue;
    }
    ppe_lock();
    on_zmsg(p, &m, fd);
    ppe_unlock();
  }
  if (p->spawnfail)
    snprintf(why, PPE_CAUSE, "cannot fork a worker: %s",
             strerror(p->spawnfail));
  return -p->spawnfail;
}

static int start_thread(ppe_pool *p) {
  sigset_t all, old;
  int r;
  /* The I/O thread runs none of the host's signal handlers. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  r = pthread_create(&p->thread, NULL, io_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0) return -r;
  p->thread_on = 1;
  return 0;
}

/* A pool that never ran: closing its channel has the zygote kill its
** workers. If the zygote is what failed, the next executor gets another. */
static void abandon(ppe_pool *p, int zygote_failed) {
  if (zygote_failed) ppe_zygote_retire(p->zyg);
  pool_release(p);
}

/* A caller whose stdin, stdout or stderr is closed would have our
** descriptors take their numbers: its own writes to stderr would go to a
** channel, and workers would get a channel for stderr. They get /dev/null
** instead. */
static void guard_stdio(void) {
  int fd;
  for (fd = 0; fd <= 2; fd++)
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      int n = open("/dev/null", O_RDWR);  /* takes the lowest number */
      if (n > 2) close(n);
    }
}

/* The groups of o, or one local group of max_workers; the slots, each
** with its group. */
static int make_groups(ppe_pool *p, const ppe_pool_opts *o) {
  static const ppe_group_opts local = { 0, NULL, "local", 0 };
  int i, j, k = 0;
  p->ng = o->ngroups > 0 ? o->ngroups : 1;
  if ((p->g = calloc((size_t)p->ng, sizeof(group))) == NULL) return -ENOMEM;
  for (i = 0; i < p->ng; i++) {
    const ppe_group_opts *go = o->ngroups > 0 ? &o->groups[i] : &local;
    group *g = &p->g[i];
    g->n = o->ngroups > 0 ? go->n : o->max_workers;
    g->want = -1;
    g->hello_wait = go->start_timeout > 0 ? go->start_timeout
                                          : PPE_START_TIMEOUT;
    if ((g->name = intern(go->name)) == NULL) return -ENOMEM;
    if (go->argv != NULL) {
      if ((g->argv = copy_argv(go->argv)) == NULL) return -ENOMEM;
      for (j = 0; go->argv[j] != NULL; j++)
        if (g->argv[j] == NULL) return -ENOMEM;
    }
    p->nw += g->n;
  }
  p->w = calloc((size_t)p->nw, sizeof(wslot));
  p->pfd = calloc(3 * (size_t)p->nw + 4, sizeof(struct pollfd));
  if (p->w == NULL || p->pfd == NULL) return -ENOMEM;
  for (i = 0; i < p->ng; i++)
    for (j = 0; j < p->g[i].n; j++) p->w[k++].g = i;
  return 0;
}

int ppe_pool_new(ppe_pool **out, ppe_pool_opts *o) {
  ppe_pool *p;
  int r;
  guard_stdio();
  p = calloc(1, sizeof(*p));
  if (p == NULL) return -ENOMEM;
  /* Before the zygote is forked: workers inherit the keep time. */
  ppe_big_set_keep(o->keep);
  ppe_big_keep(1);  /* the I/O thread trims the kept mappings when idle */
  ppe_fwd_use(1);
  pthread_mutex_init(&p->side_lock, NULL);
  p->zfd = p->wakefd = p->notifyfd = -1;
  p->max_tasks = o->max_tasks_per_child;
  p->serial = __atomic_add_fetch(&serials, 1, __ATOMIC_RELAXED);
  p->host_failures = o->host_failures > 0 ? o->host_failures : 3;
  p->idle_timeout = o->idle_timeout;
  if (o->hello != NULL) p->hello = *o->hello;
  p->task_timeout = o->task_timeout;
  p->retries = o->retries;
  p->memory_cap = ppe_worker_memory_cap(o->max_memory);
  p->init = o->init;
  o->init.p = NULL;
  o->init.len = o->init.cap = 0;
  if (p->init.len > 0) ppe_request_frame(&p->init, PPE_F_INIT, 0);
  if (make_groups(p, o) != 0) {
    pool_release(p);
    return -ENOMEM;
  }
  p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  p->notifyfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->wakefd < 0 || p->notifyfd < 0) {
    r = -errno;
    pool_release(p);
    return r;
  }
  r = ppe_zygote_attach(o->path, o->cpath, p->memory_cap, &p->zyg,
                        &p->zfd);
  if (r == -ENAMETOOLONG)  /* they go to the zygote in one datagram */
    snprintf(o->cause, sizeof(o->cause), "package.path and package.cpath "
             "are too long for the workers (at most %d bytes together)",
             PPE_PATHS_MAX);
  if (r < 0) { pool_release(p); return r; }
  r = await_first(p, o->cause);
  if (r < 0) {
    abandon(p, !p->spawnfail);  /* a fork that failed is no fault of its */
    return r;
  }
  r = ppe_set_nonblock(p->zfd, 1);
  p->others_at = ppe_now() + OTHERS_AFTER;  /* before the I/O thread */
  if (r == 0) r = start_thread(p);
  if (r < 0) { abandon(p, 0); return r; }
  *out = p;
  return 0;
}

/* Leaves t for the I/O thread, which holds the lock: waiting for it
** would put the caller to sleep while the thread finishes a batch of
** replies. 0 if the I/O thread has ended (the caller then takes the
** lock). */
static int submit_side(ppe_pool *p, ppe_task *t) {
  int first;
  pthread_mutex_lock(&p->side_lock);
  if (p->io_done) {
    pthread_mutex_unlock(&p->side_lock);
    return 0;
  }
  ppe_task_ref(t);  /* t is not shared yet: no lock needed */
  first = p->shead == NULL;
  if (p->stail) p->stail->next = t;
  else p->shead = t;
  p->stail = t;
  pthread_mutex_unlock(&p->side_lock);
  /* It may be past the point where it looks: one wake-up per batch. */
  if (first) wake(p);
  return 1;
}

int ppe_pool_submit(ppe_pool *p, ppe_task *t) {
  int partial;
  t->pool = p;  /* not shared yet: no lock needed */
  /* shutdown is set by the caller's own thread: reading it here is safe.
  ** After it, or once broken, the lock is taken to raise below. */
  if (p->shutdown || __atomic_load_n(&p->broken, __ATOMIC_ACQUIRE))
    ppe_lock();
  else if (!ppe_trylock()) {
    if (submit_side(p, t)) return 0;
    ppe_lock();
  }
  take_side(p);  /* those come first */
  if (p->broken) {  /* t says why, for the caller to raise */
    ppe_task_ref(t);
    fail_broken(p, t);
    ppe_task_unref(t);
    ppe_unlock();
    return -EPIPE;
  }
  if (p->shutdown) {
    ppe_unlock();
    return -ESHUTDOWN;
  }
  t->id = ++p->nextid;
  ppe_task_ref(t);
  if (p->qtail) p->qtail->next = t;
  else p->qhead = t;
  p->qtail = t;
  /* The I/O thread must wake for what is left to send, and for the
  ** deadline of a task started here: it may be asleep with none. */
  /* (and, a worker parked by idle_timeout, to start it if need be) */
  partial = (dispatch(p, 1) || p->task_timeout > 0 || p->nparked > 0)
            && !p->wake_pending;
  if (partial) p->wake_pending = 1;  /* one wake-up serves a burst */
  ppe_unlock();
  if (partial) wake(p);
  return 0;
}

/* Where t, running, is: in the list of the worker returned, after *prev
** (NULL: at its head); or, NULL returned, in the queue, taken back. */
static wslot *holder(ppe_pool *p, const ppe_task *t, ppe_task **prev) {
  int i;
  for (i = 0; i < p->nw; i++) {
    ppe_task *u;
    *prev = NULL;
    for (u = p->w[i].head; u != NULL; u = u->next) {
      if (u == t) return &p->w[i];
      *prev = u;
    }
  }
  return NULL;
}

/* cancel{force} of t, not final: 1 once cancelled; -1 while an answer
** is awaited: its reply, as the gate said, or its far worker's word. With
** 'now', the worker is not asked again: it is killed. */
static int force(ppe_pool *p, ppe_task *t, int now) {
  ppe_task *prev;
  wslot *w;
  if (t->state == PPE_PENDING) return ppe_task_cancel(t);
  if ((w = holder(p, t, &prev)) == NULL) {  /* taken back, queued */
    p->nrunning -= t->items;
    ppe_task_complete(t, PPE_CANCELLED, PPE_E_NONE);  /* dequeue drops it */
    return 1;
  }
  if (t->forcing && !now) return -1;  /* asked already */
  switch (now ? PPE_BACK_STARTED : ppe_chan_cancel(w->ch, t)) {
    case PPE_BACK_SKIPPED:  /* as if never sent */
      unlink_task(p, w, prev, t);
      p->nrunning -= t->items;
      p->g[w->g].completed += t->items;
      finish(p, t, PPE_CANCELLED, PPE_E_NONE);
      return 1;
    case PPE_BACK_BARRED:  /* its request goes out whole first */
      cut(p, w, t, PPE_CUT_SKIPPED);
      return 1;
    case PPE_BACK_DONE:  /* its reply is on its way */
      return -1;
    case PPE_BACK_ASKED:
      t->forcing = 1;
      ppe_chan_push(w->ch);
      wake(p);  /* the I/O thread sends the rest of the question */
      return -1;
    case PPE_BACK_STOPPED:  /* nothing after it starts */
      cut(p, w, t, PPE_CUT_STOPPED);
      stop_worker(p, w, t, 1);
      return 1;
    default:  /* it may run: what is behind goes back once it has ended */
      cut(p, w, t, PPE_CUT_STOPPED);
      stop_worker(p, w, t, 0);
      return 1;
  }
}

int ppe_pool_force(ppe_task *t, int now) {
  ppe_pool *p = t->pool;
  if (ppe_task_final(t)) return t->state == PPE_CANCELLED;
  if (p == NULL) return ppe_task_cancel(t);  /* never submitted */
  /* A pool lives as long as a task of its is not final. */
  if (force(p, t, now) < 0) return -1;
  dispatch(p, 1);  /* what went back to the queue runs */
  wake(p);  /* and the I/O thread sends the rest, the kill included */
  return 1;
}

static void join(ppe_pool *p) {
  if (p->thread_on && !p->joined) {
    pthread_join(p->thread, NULL);
    p->joined = 1;
  }
}

/* Joins the I/O thread, which ends once every worker has, if it does by
** 'deadline' (ppe_now's clock); 1 if it did. */
static int join_by(ppe_pool *p, double deadline) {
  struct timespec ts;
  double left = deadline - ppe_now();
  if (!p->thread_on || p->joined) return 1;
  clock_gettime(CLOCK_REALTIME, &ts);  /* the clock the join takes */
  if (left > 0) {
    ts.tv_sec += (time_t)left;
    ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  }
  if (pthread_timedjoin_np(p->thread, NULL, &ts) != 0) return 0;
  p->joined = 1;
  return 1;
}

static void fail_held(ppe_pool *p, wslot *w, int sig, int how);

/* shutdown's timeout has passed: what is queued, and what workers hold
** but have not started, is cancelled; the running tasks fail with
** WorkerDied as their workers are terminated (killed a grace later). */
static void cut_short(ppe_pool *p) {
  double now = ppe_now();
  int i;
  ppe_lock();
  take_side(p);
  empty_queue(p, 1);
  /* Busy workers, and those still starting or in their initializer: an
  ** idle one is closed as the pool closes. */
  for (i = 0; i < p->nw; i++) {
    wslot *w = &p->w[i];
    if (w->pid <= 0 || w->signalled) continue;
    if (w->head != NULL) fail_held(p, w, SIGTERM, PPE_HOW_SHUTDOWN);
    else if (!w->initing && w->state != W_HELLO) continue;
    kill_worker(p, w, SIGTERM);
    kill_by(w, now + SIGNAL_GRACE);
  }
  ppe_unlock();
  wake(p);
}

int ppe_pool_shutdown(ppe_pool *p, int wait, int cancel_futures,
                      double timeout) {
  ppe_lock();
  p->shutdown = 1;
  p->closing = 1;
  take_side(p);
  if (cancel_futures) {
    ppe_task *t;
    for (t = p->qhead; t != NULL; t = t->next) ppe_task_cancel(t);
  }
  ppe_unlock();
  wake(p);
  if (!wait) return 1;
  if (timeout > 1e9) timeout = -1;  /* (math.huge: for ever) */
  if (timeout >= 0 && join_by(p, ppe_now() + timeout)) return !p->dropped;
  if (timeout >= 0) cut_short(p);
  join(p);
  return timeout < 0 && !p->dropped;
}

/* Fails at once what worker w holds, as it is signalled to end ('how'):
** the task it runs with WorkerDied (the signal it was sent), and those
** sent behind it that it has not started (the gate bars them) as the
** queue's: broken, or cancelled at a shutdown's timeout. A task
** that does not end by the signal (a stopped worker, or one that handles
** SIGTERM) has failed all the same; what it replies later is not taken.
** The tasks stay in its list until it has ended, and the requests of
** those it may have started with their tasks: it may still be reading
** one in the caller's arena, which must not be another message's yet. */
static void fail_held(ppe_pool *p, wslot *w, int sig, int how) {
  ppe_task *t;
  for (t = w->head; t != NULL; t = t->next) {
    if (t->cut) continue;  /* cancelled already */
    p->nrunning -= t->items;
    if (t != w->head &&
        (!ppe_chan_takes_back(w->ch) ||
         ppe_chan_take_back(w->ch, t) != PPE_BACK_STARTED)) {
      p->g[w->g].completed += t->items;
      if (how == PPE_HOW_SHUTDOWN) settle(p, t, PPE_CANCELLED, 0);
      else {
        p->g[w->g].failed += t->items;
        fail_broken(p, t);
      }
      continue;
    }
    t->pid = w->far != NULL ? ppe_chan_stream_pid(w->ch) : w->pid;
    t->host = w->far != NULL ? p->g[w->g].name : NULL;
    t->signal = sig;
    t->exit_code = t->own_exit = 0;
    t->how = how;
    t->runs++;  /* never retried (see retry): it failed here */
    p->g[w->g].completed += t->items;
    p->g[w->g].failed += t->items;
    t->keep_req = 1;  /* a worker that lives on a while may read it */
    ppe_task_drop_res(t);
    settle(p, t, PPE_FAILED, PPE_E_DIED);
  }
  ppe_chan_stop(w->ch);
  w->ninflight = 0;
  w->signalled = 1;
}

void ppe_pool_signal(ppe_pool *p, int sig) {
  int i;
  double now;
  ppe_lock();
  now = ppe_now();
  p->shutdown = 1;
  snprintf(p->cause, sizeof(p->cause), "the workers were %s",
           sig == SIGKILL ? "killed" : "terminated");
  set_broken(p, NULL);
  for (i = 0; i < p->nw; i++) {  /* ending ones too: do not wait for them */
    wslot *w = &p->w[i];
    if (w->pid <= 0 ||
        !(LIVE(w) || w->state == W_ENDING || w->state == W_HELLO))
      continue;
    if (!w->signalled) fail_held(p, w, sig, PPE_HOW_SENT);
    kill_worker(p, w, sig);
    kill_by(w, now + SIGNAL_GRACE);  /* SIGKILL if SIGTERM did not do */
  }
  ppe_unlock();
  wake(p);
  join(p);
}

int ppe_pool_resize(ppe_pool *p, int g, int n) {
  ppe_lock();
  if (p->shutdown) {
    ppe_unlock();
    return -ESHUTDOWN;
  }
  p->g[g].want = n;
  p->resized = 1;
  ppe_unlock();
  wake(p);
  return 0;
}

int ppe_pool_ngroups(ppe_pool *p) {
  return p->ng;
}

void ppe_pool_group_stats(ppe_pool *p, int g, ppe_group_stats *gs) {
  int i;
  memset(gs, 0, sizeof(*gs));
  ppe_lock();
  gs->name = p->g[g].name;
  gs->size = p->g[g].want >= 0 ? p->g[g].want : p->g[g].n;
  gs->completed = p->g[g].completed;
  gs->failed = p->g[g].failed;
  gs->restarts = p->g[g].restarts;
  gs->given_up = p->g[g].given_up;
  for (i = 0; i < p->nw; i++) {
    const wslot *w = &p->w[i];
    const ppe_task *t;
    if (w->g != g) continue;
    if (LIVE(w)) gs->workers++;
    for (t = w->head; t != NULL && !w->signalled; t = t->next)
      gs->running += t->cut ? 0 : t->items;
  }
  ppe_unlock();
}

int ppe_pool_nslots(ppe_pool *p) {
  return p->nw;
}

void ppe_pool_worker_stats(ppe_pool *p, int i, ppe_worker_stats *ws) {
  static const char *const states[] = {
    "down", "starting", "starting", "idle", "ending", "starting", "down"
  };
  const wslot *w = &p->w[i];
  memset(ws, 0, sizeof(*ws));
  ppe_lock();
  ws->group = p->g[w->g].name;
  ws->far = w->far != NULL;
  ws->state = w->off == OFF_PARKED ? "parked"
            : w->off == OFF_RETIRED ? "retired" : states[w->state];
  if (w->state != W_NONE && w->state != W_WAITING && w->state != W_SPAWNING)
    ws->pid = w->far != NULL && w->ch != NULL && w->greeted
                ? ppe_chan_stream_pid(w->ch) : w->pid;
  ws->done = w->ndone;
  if (w->state == W_READY && w->head != NULL && !w->head->cut) {
    ws->state = "busy";
    ws->age = ppe_now() - w->started;
  }
  ppe_unlock();
}

void ppe_pool_stats(ppe_pool *p, ppe_stats *st) {
  ppe_task *t;
  int i;
  memset(st, 0, sizeof(*st));
  ppe_lock();
  take_side(p);
  for (i = 0; i < p->nw; i++)
    if (LIVE(&p->w[i])) st->workers++;
  for (t = p->qhead; t != NULL; t = t->next) {
    if (t->state == PPE_PENDING) st->pending += t->items;
    else if (t->state != PPE_RUNNING)  /* (taken back: counted as such) */
      st->completed += t->items;  /* cancelled, not yet dropped */
  }
  st->running = p->nrunning;
  st->completed += p->ncompleted;
  st->failed = p->nfailed;
  st->restarts = p->nrestarts;
  ppe_unlock();
}

int ppe_pool_fileno(ppe_pool *p) {
  return p->notifyfd;
}

void ppe_pool_drain_notify(ppe_pool *p) {
  uint64_t v;
  ppe_lock();
  if (p->notified) {
    while (read(p->notifyfd, &v, sizeof(v)) > 0)
      ;
    p->notified = 0;
  }
  ppe_unlock();
}

void ppe_pool_free(ppe_pool *p) {
  ppe_pool_shutdown(p, 1, 0, -1);
  pool_release(p);
}

/* }====================================================== */
