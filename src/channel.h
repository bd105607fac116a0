/* channel.h - how the executor talks to one worker: requests out,
** replies in, and the end of it, whatever carries them. pool.c decides
** what to send, to whom, and when; a channel only moves the bytes and
** says what came back. The first kind is chan_local.h's (a socketpair,
** shared arenas, a reply ring); another, a byte stream to a worker on
** the far side of a launcher, is one more table of the functions below.
** Each channel has one descriptor, both ways: a launcher is given the
** same socket as its stdin and stdout. Never raises; lock.h's lock is
** held unless said. */
#ifndef PPE_CHANNEL_H
#define PPE_CHANNEL_H

#include "buf.h"
#include "frame.h"
#include "future.h"

typedef struct ppe_chan ppe_chan;

/* The most tasks sent to a worker that it may not have read: a
** pipeline, and the tasks taken back before it. A channel that takes
** tasks back tells that many apart. */
#define PPE_CHAN_DEPTH 512


/*
** {======================================================
** Replies
** =======================================================
*/

/* How a reply's bytes are held, which says how they are kept. */
enum {
  PPE_HELD_COPY,  /* in the channel's own memory, until the callback
                  ** returns: kept by copying */
  PPE_HELD_LENT,  /* in the worker's arena, lent until returned: kept where
                  ** it is, never copied */
  PPE_HELD_BUF    /* alone in a buffer of the channel's, header first:
                  ** kept by taking the buffer */
};

typedef struct ppe_reply {
  ppe_frame f;            /* its header: f.aux is the task's run time, us */
  int skipped;            /* no reply: task f.id, asked back
                          ** (PPE_BACK_ASKED), was skipped; nothing more
                          ** below is set */
  int stopped;            /* no reply: task f.id, asked to be cancelled
                          ** (ppe_chan_cancel), was running and is
                          ** stopped; the worker sends nothing more, and
                          ** nothing below is set */
  const char *payload;    /* f.len bytes */
  int held;               /* PPE_HELD_* */
  char *lent;             /* LENT: the whole message, header first */
  struct ppe_peer *peer;  /* LENT: the arena it is in (shm.h) */
  ppe_buf *buf;           /* BUF: the buffer it may be taken with */
} ppe_reply;

/* Makes r the reply bytes of t (ppe_task's res), at the lowest cost its
** holding allows: 0, or -ENOMEM if a copy could not be made. */
int ppe_reply_keep(ppe_reply *r, ppe_task *t);
/* Lets r go unkept: a loan goes back to the worker. */
void ppe_reply_drop(ppe_reply *r);

/* Given every reply, in the order the worker sent them; it calls
** ppe_reply_keep or ppe_reply_drop, once, for each that is neither
** 'skipped' nor 'stopped'. */
typedef void (*ppe_reply_fn)(void *ud, ppe_reply *r);

/* }====================================================== */


/*
** {======================================================
** The channel
** =======================================================
*/

/* What ppe_chan_take and ppe_chan_read report: bits. */
#define PPE_CHAN_END 1  /* nothing more comes: its end of stream, or the
                        ** violation that stops reading */
#define PPE_CHAN_BAD 2  /* the worker sent what it may not: it is not to be
                        ** trusted any more */

/* One function per operation below, for each kind of channel. */
typedef struct ppe_chan_ops {
  void (*send)(ppe_chan *ch, ppe_task *t);
  void (*send_init)(ppe_chan *ch, const ppe_buf *init);
  int (*push)(ppe_chan *ch);
  int (*unsent)(const ppe_chan *ch);
  void (*stop)(ppe_chan *ch);
  int (*read)(ppe_chan *ch);
  int (*take)(ppe_chan *ch, ppe_reply_fn fn, void *ud);
  int (*takes_back)(const ppe_chan *ch);
  int (*take_back)(ppe_chan *ch, ppe_task *t);
  int (*cancel)(ppe_chan *ch, ppe_task *t);
  int (*sleep)(ppe_chan *ch);
  void (*wake)(ppe_chan *ch);
  int (*holding)(const ppe_chan *ch);
  int (*left)(const ppe_chan *ch);
  void (*end)(ppe_chan *ch);
  void (*free)(ppe_chan *ch);
} ppe_chan_ops;

/* What every kind starts with; its own state follows. */
struct ppe_chan {
  const ppe_chan_ops *ops;
  int fd;  /* polled: -1 before it opens and once it ends */
};

/* The two below are asked of every worker's channel at every dispatch
** and poll: inline, one call at most. */

/* The descriptor to poll for reading, and for writing while
** ppe_chan_unsent; -1 for none (ch may be NULL). */
static inline int ppe_chan_fd(const ppe_chan *ch) {
  return ch != NULL ? ch->fd : -1;
}

/* 1 while something waits to be sent (ch may be NULL). */
static inline int ppe_chan_unsent(const ppe_chan *ch) {
  return ch != NULL && ch->ops->unsent(ch);
}

/* Queues t's request (its frame header written), to go out after those
** queued before; the channel decides how: inline, or as a reference to
** where it already is. The tasks queued stay linked by their 'next'
** field, in that order (the caller's list of those in flight): the caller
** unlinks one only once nothing is unsent, or its reply has come, or
** after ppe_chan_stop. */
void ppe_chan_send(ppe_chan *ch, ppe_task *t);
/* Queues the initializer's request, ahead of any task; init stays
** unchanged until it is sent. */
void ppe_chan_send_init(ppe_chan *ch, const ppe_buf *init);
/* Sends what can go without waiting, from either thread; 1 if some is
** left for when the descriptor is writable. */
int ppe_chan_push(ppe_chan *ch);
/* Sends nothing more of what is queued: those tasks failed, and their
** requests may go before they are unlinked. */
void ppe_chan_stop(ppe_chan *ch);

/* I/O thread, without the lock: reads what the descriptor has (non-
** blocking), for ppe_chan_take. PPE_CHAN_END once the stream has ended. */
int ppe_chan_read(ppe_chan *ch);
/* Gives fn every whole reply read or otherwise arrived, in order, and
** returns PPE_CHAN_* bits: END once the stream ended (what it held was
** given first), BAD for what no worker of ours sends. A reply to a task
** not wholly sent (a worker out of step) ends that task's sending. fn
** may end the channel, not free it. */
int ppe_chan_take(ppe_chan *ch, ppe_reply_fn fn, void *ud);

/* What ppe_chan_take_back and ppe_chan_cancel say of a task. */
enum {
  PPE_BACK_STARTED,  /* the worker may have started it: its reply comes */
  PPE_BACK_SKIPPED,  /* the worker will skip it: it is as if never sent,
                     ** and the caller unlinks it */
  PPE_BACK_ASKED,    /* the worker was asked to skip it: its reply comes,
                     ** or, in its place, one that says it was skipped
                     ** (ppe_reply's 'skipped'), or, for ppe_chan_cancel,
                     ** one that says it was stopped ('stopped'); asked
                     ** again, the channel says so again, at no cost */
  PPE_BACK_STOPPED,  /* ppe_chan_cancel: it had started and is stopped:
                     ** no reply of it comes, nor of anything after it;
                     ** the worker waits to be killed */
  PPE_BACK_DONE,     /* ppe_chan_cancel: it had returned: its reply
                     ** comes */
  PPE_BACK_BARRED    /* ppe_chan_cancel: the worker will skip it, but its
                     ** request, not wholly sent, goes out whole first:
                     ** the caller unlinks it once nothing is unsent */
};

/* 1 if tasks sent can be taken back at all. */
int ppe_chan_takes_back(const ppe_chan *ch);
/* t, wholly sent, is to be taken back: PPE_BACK_*. */
int ppe_chan_take_back(ppe_chan *ch, ppe_task *t);
/* t, sent or not yet wholly, is cancelled even if it runs (cancel{force}):
** how it stands, PPE_BACK_*; STARTED when the channel cannot tell. This
** is the one place that settles a task finishing at that instant: it is
** either done, its reply on its way, or it never runs or is stopped. */
int ppe_chan_cancel(ppe_chan *ch, ppe_task *t);

/* Around the I/O thread's poll: before it (lock held), 1 if replies have
** arrived that no descriptor will tell of, so it must not sleep; after it
** (I/O thread, without the lock), awake again. */
int ppe_chan_sleep(ppe_chan *ch);
void ppe_chan_wake(ppe_chan *ch);

/* 1 while ppe_chan_take stopped at a reply that must wait for the task's
** output to be written (forward.h): the channel is not to be read (or
** polled) meanwhile, nor its worker's end told before that reply. */
int ppe_chan_holding(const ppe_chan *ch);

/* Once the worker has ended: the exit code it said it left with, when
** that is ppe's own (worker.h), else 0. */
int ppe_chan_left(const ppe_chan *ch);
/* Closes our side, for both sides, whatever copies of it a child the
** caller forked may hold: a worker ends once it reads that. Replies read
** already can still be taken; nothing more is sent. */
void ppe_chan_end(ppe_chan *ch);
/* Frees ch (closing its descriptor if still open). */
void ppe_chan_free(ppe_chan *ch);

/* }====================================================== */

#endif
