/* forward.c - what far workers and their launchers write, on its way to
** this process's stdout and stderr, never waiting on them (forward.h).
** A descriptor is written without blocking, however the caller opened it:
** a pipe, FIFO or terminal is opened again through /proc, with a file
** description of our own set non-blocking (setting the caller's would
** change its own writes); a socket is sent to with MSG_DONTWAIT; a
** regular file takes what it is given. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "forward.h"

enum {
  W_PLAIN,     /* write(2) on the descriptor: a regular file */
  W_SEND,      /* send(2), MSG_DONTWAIT: a socket */
  W_OWN,       /* write(2) on our own non-blocking opening of it */
  W_SMALL      /* one that could not be opened again: written a pipe's
               ** atomic size at a time, once poll says there is room */
};

typedef struct sink {
  int fd;            /* 1 or 2 */
  int to;            /* what is written: fd, or our own opening of it,
                     ** kept while executors are (ppe_fwd_use); -1 */
  int how;           /* W_* */
  dev_t dev;         /* what fd was when 'to' was chosen: a caller that */
  ino_t ino;         /* puts another file there (dup2) is followed */
  ppe_buf q;         /* bytes not yet out, from qpos */
  size_t qpos;
  uint64_t queued;   /* bytes ever queued */
  uint64_t out;      /* bytes ever written or dropped */
} sink;

static sink sinks[2] = {{1, -1, W_PLAIN, 0, 0, PPE_BUF_INIT, 0, 0, 0},
                        {2, -1, W_PLAIN, 0, 0, PPE_BUF_INIT, 0, 0, 0}};
static pthread_mutex_t fwd_lock = PTHREAD_MUTEX_INITIALIZER;
static int users = 0;  /* executors: while there are, what 'to' is stays
                       ** open, for an I/O thread may be polling it */

static sink *sink_of(int fd) {
  return &sinks[fd == 2];
}

/* Chooses how to write fd as it stands now; 0, or -1 if it is closed. */
static int choose(sink *s) {
  struct stat st;
  if (fstat(s->fd, &st) != 0) return -1;
  if (s->to >= 0 && st.st_dev == s->dev && st.st_ino == s->ino) return 0;
  if (s->to >= 0 && s->to != s->fd) close(s->to);
  s->to = s->fd;
  s->how = W_PLAIN;
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  if (S_ISSOCK(st.st_mode)) s->how = W_SEND;
  else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
    char path[32];
    int fd;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", s->fd);
    fd = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0) {
      s->to = fd;
      s->how = W_OWN;
    }
    else if (errno == ENXIO) {  /* a FIFO that nobody reads any more */
      s->to = -1;
      return -1;
    }
    else s->how = W_SMALL;
  }
  return 0;
}

/* write(2) that raises no SIGPIPE in this thread: a pipe without reader
** is an error code here, whatever the host does with the signal. */
static ssize_t write_quiet(int fd, const char *p, size_t n) {
  sigset_t pipe, old, pending;
  ssize_t r;
  int was;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &old);
  sigpending(&pending);
  was = sigismember(&pending, SIGPIPE);
  r = write(fd, p, n);
  if (r < 0 && errno == EPIPE && !was) {
    struct timespec none = {0, 0};
    int e = errno;
    while (sigtimedwait(&pipe, NULL, &none) < 0 && errno == EINTR)
      ;
    errno = e;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return r;
}

/* Writes some of p without waiting: bytes written, 0 for no room now,
** -1 for a descriptor that takes nothing any more. */
static ssize_t write_some(sink *s, const char *p, size_t n) {
  ssize_t r;
  if (s->how == W_SMALL) {
    struct pollfd pf = {s->to, POLLOUT, 0};
    if (poll(&pf, 1, 0) <= 0) return 0;
    if (pf.revents & (POLLERR | POLLNVAL)) return -1;
    if (n > PIPE_BUF) n = PIPE_BUF;
  }
  do {
    r = s->how == W_SEND
          ? send(s->to, p, n, MSG_DONTWAIT | MSG_NOSIGNAL)
          : write_quiet(s->to, p, n);
  } while (r < 0 && errno == EINTR);
  if (r >= 0) return r;
  return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
}

/* Writes what s's descriptor takes; lock held. */
static void drain(sink *s) {
  size_t left = s->q.len - s->qpos;
  if (left > 0 && choose(s) != 0) {
    s->out += left;  /* nowhere to go: dropped */
    s->q.len = s->qpos = 0;
    return;
  }
  while (s->qpos < s->q.len) {
    ssize_t r = write_some(s, s->q.p + s->qpos, s->q.len - s->qpos);
    if (r == 0) break;
    if (r < 0) r = (ssize_t)(s->q.len - s->qpos);  /* dropped */
    s->qpos += (size_t)r;
    s->out += (uint64_t)r;
  }
  if (s->qpos == s->q.len) s->q.len = s->qpos = 0;
  else if (s->qpos >= s->q.len / 2) {  /* room at the end, not the start */
    memmove(s->q.p, s->q.p + s->qpos, s->q.len - s->qpos);
    s->q.len -= s->qpos;
    s->qpos = 0;
  }
}

uint64_t ppe_fwd_put(int fd, const char *p, size_t n) {
  sink *s = sink_of(fd);
  uint64_t mark;
  pthread_mutex_lock(&fwd_lock);
  s->queued += n;
  if (ppe_buf_add(&s->q, p, n) != 0) s->out += n;  /* no memory: dropped */
  drain(s);
  mark = s->queued;
  pthread_mutex_unlock(&fwd_lock);
  return mark;
}

int ppe_fwd_out(int fd, uint64_t mark) {
  int out;
  pthread_mutex_lock(&fwd_lock);
  out = sink_of(fd)->out >= mark;
  pthread_mutex_unlock(&fwd_lock);
  return out;
}

size_t ppe_fwd_pending(int fd) {
  size_t n;
  sink *s = sink_of(fd);
  pthread_mutex_lock(&fwd_lock);
  n = s->q.len - s->qpos;
  pthread_mutex_unlock(&fwd_lock);
  return n;
}

int ppe_fwd_pollfd(int fd) {
  int to;
  sink *s = sink_of(fd);
  pthread_mutex_lock(&fwd_lock);
  to = s->qpos < s->q.len ? s->to : -1;
  pthread_mutex_unlock(&fwd_lock);
  return to;
}

void ppe_fwd_use(int delta) {
  int i;
  pthread_mutex_lock(&fwd_lock);
  users += delta;
  for (i = 0; i < 2 && users <= 0; i++) {
    sink *s = &sinks[i];
    s->out += s->q.len - s->qpos;  /* nobody is left to write them */
    ppe_buf_free(&s->q);
    s->qpos = 0;
    if (s->to >= 0 && s->to != s->fd) close(s->to);
    s->to = -1;
  }
  pthread_mutex_unlock(&fwd_lock);
}

void ppe_fwd_flush(void) {
  pthread_mutex_lock(&fwd_lock);
  drain(&sinks[0]);
  drain(&sinks[1]);
  pthread_mutex_unlock(&fwd_lock);
}
