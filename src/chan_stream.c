/* chan_stream.c - the channel to a far worker (see chan_stream.h): one
** socket, given to its launcher as stdin and stdout, with frames alone
** on it: no shared memory, no gate. The worker (serve.c) says hello
** first; nothing is sent before it has, and matched. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "chan_stream.h"
#include "forward.h"
#include "transport.h"

/* Requests gathered in one system call. */
#define IOV_BATCH 64

/* A reply this large, alone in the reader's buffer, is taken with the
** buffer instead of copied out of it. */
#define STEAL_MIN (1u << 20)

typedef struct stream {
  ppe_chan ch;
  int eof;               /* its end of stream was read */
  int greeted;           /* its hello came, and matched: welcomed */
  char why[PPE_STREAM_WHY];  /* why the handshake failed, or "" */
  ppe_hello mine;
  int id;                /* its number among the executor's workers */
  uint32_t cap;          /* its memory cap, KiB (hello.h's welcome) */
  int32_t far_pid;       /* its pid there, from its hello */
  int left;              /* the exit code it said it leaves with, or 0 */
  ppe_buf ctl;           /* whole frames to send before the next request:
                         ** the welcome, and asks to take tasks back */
  size_t ctlpos;
  const char *out;       /* the initializer's request being sent */
  size_t outlen, outpos;
  ppe_task *sending;     /* first task queued not wholly sent */
  size_t sendpos;
  ppe_reader rd;         /* touched by the I/O thread only */
  ppe_buf line;          /* what a task wrote, short of a whole line */
  uint64_t mark;         /* its last byte queued for stdout (forward.h) */
  int held;              /* taking stopped at a reply (or at output past
                         ** PPE_FWD_MAX) until its lines before are out */
} stream;

#define S(ch) ((stream *)(ch))


/*
** {======================================================
** Requests
** =======================================================
*/

/* Appends a whole frame to what goes first. -ENOMEM or 0. */
static int control(stream *c, uint32_t type, uint64_t id, const void *p,
                   size_t n) {
  ppe_frame f;
  memset(&f, 0, sizeof(f));
  f.type = type;
  f.id = id;
  f.len = n;
  if (ppe_buf_add(&c->ctl, &f, sizeof(f)) != 0) return -ENOMEM;
  return n > 0 ? ppe_buf_add(&c->ctl, p, n) : 0;
}

static void s_send(ppe_chan *ch, ppe_task *t) {
  stream *c = S(ch);
  t->gate = 0;  /* not asked back (s_take_back) */
  if (c->sending == NULL) {
    c->sending = t;
    c->sendpos = 0;
  }
}

static void s_send_init(ppe_chan *ch, const ppe_buf *init) {
  stream *c = S(ch);
  c->out = init->p;
  c->outlen = init->len;
  c->outpos = 0;
}

/* Nothing goes before the worker is welcomed. */
static int s_unsent(const ppe_chan *ch) {
  const stream *c = (const stream *)ch;
  return c->greeted && (c->ctlpos < c->ctl.len || c->out != NULL ||
                        c->sending != NULL);
}

/* Sends bytes of one piece; 1 once it has all gone, 0 if the socket is
** full (or dead: its end of stream will tell). */
static int piece(int fd, const char *p, size_t len, size_t *pos) {
  while (*pos < len) {
    long r = ppe_send_some(fd, p + *pos, len - *pos);
    if (r <= 0) return 0;
    *pos += (size_t)r;
  }
  return 1;
}

/* Control frames go only between two requests: a frame goes out whole. */
static int s_push(ppe_chan *ch) {
  stream *c = S(ch);
  if (!c->greeted || ch->fd < 0) return 0;
  for (;;) {
    if (c->ctlpos < c->ctl.len && c->sendpos == 0 && c->outpos == 0) {
      if (!piece(ch->fd, c->ctl.p, c->ctl.len, &c->ctlpos)) return 1;
      c->ctl.len = c->ctlpos = 0;
    }
    if (c->out != NULL) {
      if (!piece(ch->fd, c->out, c->outlen, &c->outpos)) return 1;
      c->out = NULL;
      c->outpos = 0;
      continue;
    }
    if (c->sending == NULL) return 0;
    {
      struct iovec iov[IOV_BATCH];
      ppe_task *t = c->sending;
      size_t off = c->sendpos;
      long r;
      int n = 0;
      for (; t != NULL && n < IOV_BATCH; t = t->next, off = 0) {
        iov[n].iov_base = t->req.p + off;
        iov[n].iov_len = t->req.len - off;
        n++;
      }
      r = ppe_sendv_some(ch->fd, iov, n);
      if (r <= 0) return 1;
      while (r > 0 && c->sending != NULL) {
        size_t left = c->sending->req.len - c->sendpos;
        if ((size_t)r < left) {
          c->sendpos += (size_t)r;
          break;
        }
        r -= (long)left;
        c->sending = c->sending->next;
        c->sendpos = 0;
      }
    }
  }
}

static void s_stop(ppe_chan *ch) {
  S(ch)->sending = NULL;
  S(ch)->sendpos = 0;
}

/* }====================================================== */


/*
** {======================================================
** The handshake, output, replies
** =======================================================
*/

/* The worker's hello: welcomed if it matches, else why not. */
static int greet(stream *c, const ppe_frame *f, const char *pl) {
  ppe_welcome w;
  if (!ppe_hello_match(&c->mine, pl, (size_t)f->len, c->why,
                       sizeof(c->why)))
    return -1;
  memcpy(&c->far_pid, pl + offsetof(ppe_hello, pid), sizeof(c->far_pid));
  memset(&w, 0, sizeof(w));
  ppe_mac_key(w.key);
  w.id = c->id;
  w.memory_cap = c->cap;
  /* First of all it sends: ahead of anything queued meanwhile. */
  if (control(c, PPE_F_WELCOME, 0, &w, sizeof(w)) != 0) {
    snprintf(c->why, sizeof(c->why), "not enough memory");
    return -1;
  }
  c->greeted = 1;
  return 0;
}

/* Writes what a task printed, in whole lines; with 'all', the rest too
** (its task has ended). To this process's stdout, as it stands, when it
** takes them: they are queued meanwhile. */
static void print(stream *c, const char *p, size_t n, int all) {
  size_t k;
  if (n > 0 && ppe_buf_add(&c->line, p, n) != 0) all = 1;
  for (k = c->line.len; k > 0 && c->line.p[k - 1] != '\n'; k--)
    ;
  if (all) k = c->line.len;
  if (k == 0) return;
  c->mark = ppe_fwd_put(1, c->line.p, k);
  memmove(c->line.p, c->line.p + k, c->line.len - k);
  c->line.len -= k;
}

/* 1 while lines it queued are not all out. */
static int unwritten(const stream *c) {
  return c->mark > 0 && !ppe_fwd_out(1, c->mark);
}

/* What came instead of a hello (a login banner, a shell's complaint),
** told in the reason, as far as it is text. */
static void unexpected(stream *c, const char *p, size_t n) {
  char said[64];
  size_t i, k = 0;
  for (i = 0; i < n && k < sizeof(said) - 1; i++)
    said[k++] = (p[i] >= 32 && p[i] < 127) ? p[i] : p[i] == '\n' ? '/' : '?';
  said[k] = '\0';
  ppe_hello_match(&c->mine, "", 0, c->why, sizeof(c->why));
  if (k > 0) {
    size_t len = strlen(c->why);
    snprintf(c->why + len, sizeof(c->why) - len, "; it said \"%s%s\"", said,
             i < n ? "..." : "");
  }
}

static int s_read(ppe_chan *ch) {
  stream *c = S(ch);
  /* Before its hello, a header is believed only if it is a hello's: no
  ** room is made for whatever length a stranger names. */
  if (!c->greeted && c->rd.b.len - c->rd.pos >= sizeof(ppe_frame)) {
    ppe_frame f;
    memcpy(&f, c->rd.b.p + c->rd.pos, sizeof(f));
    if (f.type != PPE_F_HELLO || f.len != sizeof(ppe_hello)) {
      c->eof = 1;
      return PPE_CHAN_END;
    }
  }
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

static int s_take(ppe_chan *ch, ppe_reply_fn fn, void *ud) {
  stream *c = S(ch);
  ppe_reply r;
  ppe_frame f;
  const char *pl;
  size_t start;
  int n;
  c->held = 0;
  for (;;) {
    start = c->rd.pos;
    if ((n = ppe_reader_next(&c->rd, &f, &pl)) != 1) break;
    if (!c->greeted) {
      if (f.type != PPE_F_HELLO) {
        c->rd.pos = start;
        goto bad;
      }
      if (greet(c, &f, pl) != 0) goto bad;
      s_push(ch);
      continue;
    }
    memset(&r, 0, sizeof(r));
    r.f = f;
    switch (f.type) {
      case PPE_F_OUT:
        if (unwritten(c) && ppe_fwd_pending(1) >= PPE_FWD_MAX) goto hold;
        print(c, pl, (size_t)f.len, 0);
        continue;
      case PPE_F_LEFT:
        c->left = (int)f.aux;
        continue;
      case PPE_F_SKIPPED:
        r.skipped = 1;
        break;
      case PPE_F_STOPPED:
        r.stopped = 1;
        break;
      case PPE_F_HOOKERR:  /* (its end follows) */
        r.payload = pl;
        r.held = PPE_HELD_COPY;
        break;
      case PPE_F_OK: case PPE_F_ERR: case PPE_F_SERR: case PPE_F_INITERR:
        print(c, NULL, 0, 1);  /* its lines before its reply */
        if (unwritten(c)) goto hold;
        r.payload = pl;
        r.held = PPE_HELD_COPY;
        if (start == 0 && c->rd.pos == c->rd.b.len && f.len >= STEAL_MIN) {
          r.held = PPE_HELD_BUF;
          r.buf = &c->rd.b;
        }
        if (c->sending != NULL && c->sending->id == f.id) {
          c->sending = c->sending->next;  /* out of step: its rest is moot */
          c->sendpos = 0;
        }
        break;
      default:
        goto bad;
    }
    fn(ud, &r);
    if (c->rd.b.p == NULL) c->rd.pos = 0;  /* the buffer went with it */
  }
  if (c->eof && !c->greeted && c->why[0] == '\0' && c->rd.pos < c->rd.b.len)
    unexpected(c, c->rd.b.p + c->rd.pos, c->rd.b.len - c->rd.pos);
  return (c->eof ? PPE_CHAN_END : 0) | (n < 0 ? PPE_CHAN_BAD : 0);
hold:  /* taken again once they are out; its end is told then */
  c->rd.pos = start;
  c->held = 1;
  return 0;
bad:
  if (!c->greeted && c->why[0] == '\0')
    unexpected(c, c->rd.b.p + c->rd.pos, c->rd.b.len - c->rd.pos);
  c->rd.pos = c->rd.b.len;
  c->eof = 1;
  return PPE_CHAN_END | PPE_CHAN_BAD;
}

/* }====================================================== */


/*
** {======================================================
** Taking back, the end
** =======================================================
*/

static int s_takes_back(const ppe_chan *ch) {
  return ((const stream *)ch)->greeted;
}

/* The worker is asked; it answers in the task's place. Asked once: the
** task keeps its mark (gate) from then on. */
static int s_take_back(ppe_chan *ch, ppe_task *t) {
  stream *c = S(ch);
  if (t->gate == UINT32_MAX) return PPE_BACK_ASKED;
  if (control(c, PPE_F_TAKEBACK, t->id, NULL, 0) != 0)
    return PPE_BACK_STARTED;
  t->gate = UINT32_MAX;
  return PPE_BACK_ASKED;
}

/* A task none of whose request has gone is not sent at all: the worker
** never hears of it. One sent, or on its way, is the worker's to settle,
** asked after its request (control frames go between requests): it
** skips it if it waits, and stops if it runs. */
static int s_cancel(ppe_chan *ch, ppe_task *t) {
  stream *c = S(ch);
  const ppe_task *u;
  if (!c->greeted || ch->fd < 0) return PPE_BACK_STARTED;
  for (u = c->sending; u != NULL && u != t; u = u->next)
    ;
  if (u != NULL && (t != c->sending || c->sendpos == 0)) {
    if (t == c->sending) c->sending = t->next;
    return PPE_BACK_SKIPPED;
  }
  if (control(c, PPE_F_CANCEL, t->id, NULL, 0) != 0) return PPE_BACK_STARTED;
  return PPE_BACK_ASKED;
}

/* One that stopped at a reply whose lines are out now (written by
** whoever flushed them, maybe another executor's thread) is taken at
** once: its descriptor may never tell. */
static int s_sleep(ppe_chan *ch) {
  const stream *c = (const stream *)ch;
  return c->held && !unwritten(c);
}

static void s_wake(ppe_chan *ch) {
  (void)ch;
}

static int s_holding(const ppe_chan *ch) {
  const stream *c = (const stream *)ch;
  return c->held && unwritten(c);
}

static int s_left(const ppe_chan *ch) {
  return ((const stream *)ch)->left;
}

static void s_end(ppe_chan *ch) {
  stream *c = S(ch);
  if (ch->fd >= 0) {
    shutdown(ch->fd, SHUT_RDWR);
    close(ch->fd);
  }
  ch->fd = -1;
  c->out = NULL;
  c->sending = NULL;
  print(c, NULL, 0, 1);
}

static void s_free(ppe_chan *ch) {
  stream *c = S(ch);
  if (ch->fd >= 0) close(ch->fd);
  ppe_reader_free(&c->rd);
  ppe_buf_free(&c->ctl);
  ppe_buf_free(&c->line);
  free(c);
}

/* }====================================================== */


static const ppe_chan_ops stream_ops = {
  .send = s_send, .send_init = s_send_init, .push = s_push,
  .unsent = s_unsent, .stop = s_stop, .read = s_read, .take = s_take,
  .takes_back = s_takes_back, .take_back = s_take_back, .cancel = s_cancel,
  .sleep = s_sleep, .wake = s_wake, .holding = s_holding, .left = s_left,
  .end = s_end, .free = s_free
};

ppe_chan *ppe_chan_stream_new(int fd, const ppe_hello *mine, int id,
                              uint32_t cap) {
  stream *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->ch.ops = &stream_ops;
  c->ch.fd = fd;
  c->mine = *mine;
  c->id = id;
  c->cap = cap;
  if (ppe_set_nonblock(fd, 1) != 0) {
    free(c);
    return NULL;
  }
  return &c->ch;
}

int ppe_chan_stream_greeted(const ppe_chan *ch) {
  return ((const stream *)ch)->greeted;
}

const char *ppe_chan_stream_why(const ppe_chan *ch) {
  return ((const stream *)ch)->why;
}

pid_t ppe_chan_stream_pid(const ppe_chan *ch) {
  return ((const stream *)ch)->far_pid;
}
