/* chan_local.c - the channel to a worker forked on this machine (see
** chan_local.h): its socketpair, its arena and ring, and our arena. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "chan_local.h"
#include "ring.h"
#include "shm.h"
#include "transport.h"

/* Requests gathered in one system call. */
#define IOV_BATCH 64

/* A reply this large, alone in the reader's buffer, is taken with the
** buffer instead of copied out of it. */
#define STEAL_MIN (1u << 20)

/* Every task the worker may not have read needs a gate word of its own. */
typedef char gates_enough[PPE_CHAN_DEPTH < PPE_GATES ? 1 : -1];

typedef struct local {
  ppe_chan ch;
  int eof;               /* its end of stream was read */
  ppe_task *sending;     /* first task queued not wholly sent */
  size_t sendpos;        /* bytes of it sent */
  const char *out;       /* the initializer's request being sent */
  size_t outlen, outpos;
  ppe_ref outref;        /* what is sent of it when it is in the arena */
  int shared;            /* the worker reads large requests in our arena */
  uint32_t nsent;        /* tasks sent to it: the gate's count */
  ppe_reader rd;         /* touched by the I/O thread only */
  int left;              /* the exit code a worker without a ring said
                         ** it leaves with (worker.h), or 0 */
  ppe_peer *peer;        /* its arena, where its large replies are */
  ppe_ring_reader ring;  /* and where its small ones are (I/O thread) */
} local;

#define L(ch) ((local *)(ch))


/*
** {======================================================
** Requests
** =======================================================
*/

/* What goes on the socket for a task: its request, or, when that is in
** the shared arena, a frame that says where. */
#define WIRE(t) ((t)->ref.f.type ? (const char *)&(t)->ref : (t)->req.p)
#define WIRELEN(t) ((t)->ref.f.type ? sizeof((t)->ref) : (t)->req.len)

static void l_send(ppe_chan *ch, ppe_task *t) {
  local *c = L(ch);
  if (!c->shared || !ppe_buf_ref(&t->ref, &t->req)) t->ref.f.type = 0;
  t->gate = c->nsent++;
  if (c->ring.r != NULL) ppe_gate_open(c->ring.r, t->gate);
  if (c->sending == NULL) {
    c->sending = t;
    c->sendpos = 0;
  }
}

static void l_send_init(ppe_chan *ch, const ppe_buf *init) {
  local *c = L(ch);
  c->out = init->p;
  c->outlen = init->len;
  if (c->shared && ppe_buf_ref(&c->outref, init)) {
    c->out = (const char *)&c->outref;
    c->outlen = sizeof(c->outref);
  }
  c->outpos = 0;
}

static int l_unsent(const ppe_chan *ch) {
  const local *c = (const local *)ch;
  return c->out != NULL || c->sending != NULL;
}

/* Sends what it can without waiting: the initializer's request, then the
** tasks' requests, many per system call. A full socket stops it; a dead
** one too (its end of stream will tell). */
static int l_push(ppe_chan *ch) {
  local *c = L(ch);
  while (c->out != NULL) {
    long r = ppe_send_some(ch->fd, c->out + c->outpos, c->outlen - c->outpos);
    if (r <= 0) return 1;
    c->outpos += (size_t)r;
    if (c->outpos == c->outlen) c->out = NULL;
  }
  while (c->sending != NULL) {
    struct iovec iov[IOV_BATCH];
    ppe_task *t = c->sending;
    size_t off = c->sendpos;
    long r;
    int n = 0;
    for (; t != NULL && n < IOV_BATCH; t = t->next, off = 0) {
      iov[n].iov_base = (char *)WIRE(t) + off;
      iov[n].iov_len = WIRELEN(t) - off;
      n++;
    }
    r = ppe_sendv_some(ch->fd, iov, n);
    if (r <= 0) return 1;
    while (r > 0 && c->sending != NULL) {
      size_t left = WIRELEN(c->sending) - c->sendpos;
      if ((size_t)r < left) {
        c->sendpos += (size_t)r;
        break;
      }
      r -= (long)left;
      c->sending = c->sending->next;
      c->sendpos = 0;
    }
  }
  return 0;
}

static void l_stop(ppe_chan *ch) {
  L(ch)->sending = NULL;
}

/* }====================================================== */


/*
** {======================================================
** Replies
** =======================================================
*/

/* Reads all that is there (the socket is non-blocking). */
static int l_read(ppe_chan *ch) {
  local *c = L(ch);
  for (;;) {
    long n = ppe_reader_fill(&c->rd, ch->fd);
    if (n == 0 || (n < 0 && n != -EAGAIN)) {
      c->eof = 1;
      return PPE_CHAN_END;
    }
    /* A short read took all there was: the next is poll's to tell of,
    ** not a read that fails (one system call less per reply). */
    if (n < 0 || c->rd.drained) return 0;
  }
}

/* Hands r to fn. A reply to the task still being sent, which only a
** worker out of step sends, ends that task's sending first: fn may
** unlink the task, and free it. */
static void deliver(local *c, ppe_reply *r, ppe_reply_fn fn, void *ud) {
  if (c->sending != NULL && c->sending->id == r->f.id) {
    c->sending = c->sending->next;
    c->sendpos = 0;
  }
  fn(ud, r);
}

static void copied(ppe_reply *r, const ppe_frame *f, const char *pl) {
  r->f = *f;
  r->skipped = r->stopped = 0;
  r->payload = pl;
  r->held = PPE_HELD_COPY;
}

/* The message a REF frame f (payload pl) names in the worker's arena, as
** r: -1 if it names none. */
static int lent(local *c, const ppe_frame *f, const char *pl, ppe_reply *r) {
  char *m = ppe_peer_message(c->peer, f, pl, &r->f);
  if (m == NULL) return -1;
  r->skipped = r->stopped = 0;
  r->payload = m + sizeof(r->f);
  r->held = PPE_HELD_LENT;
  r->lent = m;
  r->peer = c->peer;
  return 0;
}

/* Gives fn the replies waiting in the worker's ring; -1 if it wrote
** there what it may not, and nothing more is read from it. */
static int take_ring(local *c, ppe_reply_fn fn, void *ud) {
  ppe_reply r;
  ppe_frame f;
  const char *pl;
  int n;
  ppe_ring_begin(&c->ring);
  while ((n = ppe_ring_next(&c->ring, &f, &pl)) == 1) {
    if (f.type == PPE_F_BELL) n = -1;  /* bells ring on the socket */
    else if (f.type != PPE_F_REF) copied(&r, &f, pl);
    else if (lent(c, &f, pl, &r) != 0) n = -1;
    if (n < 0) break;
    deliver(c, &r, fn, ud);
  }
  ppe_ring_end(&c->ring);
  if (n < 0) c->ring.r = NULL;
  return n;
}

static int l_take(ppe_chan *ch, ppe_reply_fn fn, void *ud) {
  local *c = L(ch);
  ppe_reply r;
  ppe_frame f;
  const char *pl;
  int n;
  /* The ring first, and again before each frame from the socket: the
  ** worker wrote what is in it before it sent the frame. */
  if (take_ring(c, fn, ud) < 0) goto bad;
  for (;;) {
    size_t start = c->rd.pos;
    if ((n = ppe_reader_next(&c->rd, &f, &pl)) != 1) break;
    if (take_ring(c, fn, ud) < 0) goto bad;
    if (f.type == PPE_F_BELL) continue;
    if (f.type == PPE_F_LEFT) {  /* (from a worker that has no ring) */
      c->left = (int)f.aux;
      continue;
    }
    ppe_ring_seen(&c->ring);
    if (f.type == PPE_F_REF) {
      if (lent(c, &f, pl, &r) != 0) goto bad;
    }
    else {
      copied(&r, &f, pl);
      if (start == 0 && c->rd.pos == c->rd.b.len && f.len >= STEAL_MIN) {
        r.held = PPE_HELD_BUF;
        r.buf = &c->rd.b;
      }
    }
    deliver(c, &r, fn, ud);
    if (c->rd.b.p == NULL) c->rd.pos = 0;  /* the buffer went with it */
  }
  return (c->eof ? PPE_CHAN_END : 0) | (n < 0 ? PPE_CHAN_BAD : 0);
bad:
  /* Nothing more of it is read: its stream ends here. */
  c->rd.pos = c->rd.b.len;
  c->eof = 1;
  return PPE_CHAN_END | PPE_CHAN_BAD;
}

/* }====================================================== */


/*
** {======================================================
** The gates, the ring's flags, the end
** =======================================================
*/

static int l_takes_back(const ppe_chan *ch) {
  return ((const local *)ch)->ring.r != NULL;
}

/* The worker skips a task it finds barred, and says nothing of it. */
static int l_take_back(ppe_chan *ch, ppe_task *t) {
  local *c = L(ch);
  return c->ring.r != NULL && ppe_gate_bar(c->ring.r, t->gate)
             ? PPE_BACK_SKIPPED : PPE_BACK_STARTED;
}

/* 1 if t's request is not wholly sent yet. */
static int unsent(const local *c, const ppe_task *t) {
  const ppe_task *u;
  for (u = c->sending; u != NULL; u = u->next)
    if (u == t) return 1;
  return 0;
}

/* The gate settles it (ring.h). A task not wholly sent yet that the
** worker will skip still goes out whole: the worker counts it. */
static int l_cancel(ppe_chan *ch, ppe_task *t) {
  local *c = L(ch);
  if (c->ring.r == NULL) return PPE_BACK_STARTED;
  switch (ppe_gate_stop(c->ring.r, t->gate)) {
    case PPE_GATE_BARRED:
      return unsent(c, t) ? PPE_BACK_BARRED : PPE_BACK_SKIPPED;
    case PPE_GATE_STOPPED: return PPE_BACK_STOPPED;
    case PPE_GATE_DONE: return PPE_BACK_DONE;
    default: return PPE_BACK_STARTED;
  }
}

/* Workers ring the bell only while we may be asleep. */
static int l_sleep(ppe_chan *ch) {
  return ppe_ring_sleep(&L(ch)->ring);
}

static void l_wake(ppe_chan *ch) {
  ppe_ring_wake(&L(ch)->ring);
}

/* A local worker writes its output itself. */
static int l_holding(const ppe_chan *ch) {
  (void)ch;
  return 0;
}

static int l_left(const ppe_chan *ch) {
  const local *c = (const local *)ch;
  ppe_ring *r = ppe_peer_ring(c->peer);
  int code = r != NULL ? ppe_ring_left(r) : 0;
  return code != 0 ? code : c->left;
}

static void l_end(ppe_chan *ch) {
  local *c = L(ch);
  if (ch->fd >= 0) {
    shutdown(ch->fd, SHUT_RDWR);
    close(ch->fd);
  }
  ch->fd = -1;
  c->out = NULL;
  c->sending = NULL;
}

/* Replies still held by tasks keep the worker's arena mapped. */
static void l_free(ppe_chan *ch) {
  local *c = L(ch);
  if (ch->fd >= 0) close(ch->fd);
  ppe_reader_free(&c->rd);
  ppe_peer_unref(c->peer);
  free(c);
}

/* }====================================================== */


/* Named, not in order: a change to ppe_chan_ops cannot shift the table
** onto the wrong functions. */
static const ppe_chan_ops local_ops = {
  .send = l_send, .send_init = l_send_init, .push = l_push,
  .unsent = l_unsent, .stop = l_stop, .read = l_read, .take = l_take,
  .takes_back = l_takes_back, .take_back = l_take_back, .cancel = l_cancel,
  .sleep = l_sleep, .wake = l_wake, .holding = l_holding, .left = l_left,
  .end = l_end, .free = l_free
};

/* The arena is mapped here first: a worker whose arena we could not map
** gets none. */
ppe_chan *ppe_chan_local_new(int *arena) {
  local *c = calloc(1, sizeof(*c));
  int fd;
  *arena = -1;
  if (c == NULL) return NULL;
  c->ch.ops = &local_ops;
  c->ch.fd = -1;
  fd = ppe_shm_create();
  c->peer = fd >= 0 ? ppe_peer_open(fd, 1) : NULL;
  if (c->peer == NULL && fd >= 0) {
    close(fd);
    fd = -1;
  }
  *arena = fd;
  return &c->ch;
}

int ppe_chan_local_open(ppe_chan *ch, int fd, int shared) {
  local *c = L(ch);
  ch->fd = fd;
  c->shared = shared;
  c->ring.r = ppe_peer_ring(c->peer);
  return fd < 0 ? -EBADF : ppe_set_nonblock(fd, 1);
}
