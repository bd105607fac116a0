/* transport.c - framed messages over socketpairs (see transport.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "transport.h"

/* Large socket buffers let a whole small message, or a big slice of a
** large one, move per system call. */
#define SOCKBUF (1 << 20)

static void bigbuffers(int fd) {
  int sz = SOCKBUF;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

int ppe_channel(int sv[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    return -errno;
  bigbuffers(sv[0]);
  bigbuffers(sv[1]);
  return 0;
}

int ppe_packet_channel(int sv[2]) {
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
    return -errno;
  return 0;
}

int ppe_set_nonblock(int fd, int on) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return -errno;
  fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

long ppe_send_some(int fd, const void *p, size_t n) {
  for (;;) {
    /* MSG_NOSIGNAL: a dead peer is an error code, not a SIGPIPE that
    ** would change the whole process's behaviour. */
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
    /* A pipe (a far worker's stdout, serve.c) is written plainly. */
    if (r < 0 && errno == ENOTSOCK) r = write(fd, p, n);
    if (r >= 0) return (long)r;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -errno;
  }
}

long ppe_sendv_some(int fd, const struct iovec *iov, int n) {
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = (struct iovec *)iov;
  mh.msg_iovlen = (size_t)n;
  for (;;) {
    ssize_t r = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (r >= 0) return (long)r;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -errno;
  }
}

long ppe_recv_some(int fd, void *p, size_t n, int *eof) {
  *eof = 0;
  for (;;) {
    ssize_t r = recv(fd, p, n, 0);
    if (r < 0 && errno == ENOTSOCK) r = read(fd, p, n);  /* a pipe */
    if (r > 0) return (long)r;
    if (r == 0) { *eof = 1; return 0; }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    if (errno == ECONNRESET) { *eof = 1; return 0; }
    return -errno;
  }
}

int ppe_send_all(int fd, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    long r = ppe_send_some(fd, s, n);
    if (r < 0) return (int)r;
    if (r == 0) {  /* a non-blocking fd that is full: wait for room */
      struct pollfd pfd = {fd, POLLOUT, 0};
      if (poll(&pfd, 1, -1) < 0 && errno != EINTR) return -errno;
      continue;
    }
    s += r;
    n -= (size_t)r;
  }
  return 0;
}

int ppe_wait_readable(int fd, int timeout_ms) {
  struct pollfd pfd = {fd, POLLIN, 0};
  for (;;) {
    int r = poll(&pfd, 1, timeout_ms);
    if (r >= 0) return r > 0;
    if (errno != EINTR) return -errno;
  }
}

/* Aligned room for the descriptors a packet may carry. */
typedef union {
  char buf[CMSG_SPACE(PPE_MAXFDS * sizeof(int))];
  struct cmsghdr align;
} fdspace;

int ppe_send_packet(int fd, const void *p, size_t n, const int *fds,
                    int nfds) {
  struct iovec iov = {(void *)p, n};
  struct msghdr mh;
  fdspace ctl;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (nfds > 0 && nfds <= PPE_MAXFDS) {
    struct cmsghdr *c;
    memset(&ctl, 0, sizeof(ctl));
    mh.msg_control = ctl.buf;
    mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
  }
  for (;;) {
    if (sendmsg(fd, &mh, MSG_NOSIGNAL) >= 0) return 0;
    if (errno != EINTR) return -errno;
  }
}

long ppe_recv_packet(int fd, void *p, size_t n, int *fds, int maxfds) {
  struct iovec iov = {p, n};
  struct msghdr mh;
  struct cmsghdr *c;
  fdspace ctl;
  ssize_t r;
  int i, got = 0;
  for (i = 0; i < maxfds; i++) fds[i] = -1;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.buf;
  mh.msg_controllen = sizeof(ctl.buf);
  do r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
  while (r < 0 && errno == EINTR);
  if (r < 0) return -errno;
  for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
    int k, nc;
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    nc = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (k = 0; k < nc; k++) {
      int d;
      memcpy(&d, CMSG_DATA(c) + (size_t)k * sizeof(int), sizeof(int));
      if (got < maxfds) fds[got++] = d;
      else close(d);  /* more than asked for: not ours to keep */
    }
  }
  return (long)r;
}

/* Room for at least 'need' more bytes, reclaiming consumed space first. */
static int reader_room(ppe_reader *r, size_t need) {
  if (r->pos > 0 && r->pos == r->b.len) r->pos = r->b.len = 0;
  else if (r->pos > 0 && r->b.cap - r->b.len < need) {
    memmove(r->b.p, r->b.p + r->pos, r->b.len - r->pos);
    r->b.len -= r->pos;
    r->pos = 0;
  }
  return ppe_buf_reserve(&r->b, need);
}

/* 1 if the bytes buffered end inside a frame whose header is in: the
** next read is to make room for all of it, or find that it cannot. */
static int frame_unfinished(const ppe_reader *r) {
  size_t at = r->pos;
  while (r->b.len - at >= sizeof(ppe_frame)) {
    ppe_frame f;
    memcpy(&f, r->b.p + at, sizeof(f));
    if (f.len > r->b.len - at - sizeof(f)) return 1;
    at += sizeof(f) + (size_t)f.len;
  }
  return 0;
}

long ppe_reader_fill(ppe_reader *r, int fd) {
  size_t have = r->b.len - r->pos, want = 64 * 1024;
  long n;
  int eof;
  /* A frame whose size we know is read in as few calls as possible. */
  if (have >= sizeof(ppe_frame)) {
    ppe_frame f;
    memcpy(&f, r->b.p + r->pos, sizeof(f));
    if (f.len <= PPE_MAXFRAME && f.len + sizeof(f) > have + want)
      want = (size_t)(f.len + sizeof(f) - have);
  }
  if (reader_room(r, want) < 0) return -ENOMEM;
  n = ppe_recv_some(fd, r->b.p + r->b.len, r->b.cap - r->b.len, &eof);
  if (n < 0) return n;
  if (eof) return 0;
  if (n == 0) return -EAGAIN;
  r->drained = (size_t)n < r->b.cap - r->b.len;
  r->b.len += (size_t)n;
  if (r->drained && frame_unfinished(r)) r->drained = 0;
  return n;
}

int ppe_reader_next(ppe_reader *r, ppe_frame *f, const char **payload) {
  size_t have = r->b.len - r->pos;
  if (have < sizeof(*f)) return 0;
  memcpy(f, r->b.p + r->pos, sizeof(*f));
  if (f->len > PPE_MAXFRAME) return -EPROTO;
  if (f->len > have - sizeof(*f)) return 0;
  *payload = r->b.p + r->pos + sizeof(*f);
  r->pos += sizeof(*f) + (size_t)f->len;
  return 1;
}

void ppe_reader_free(ppe_reader *r) {
  ppe_buf_free(&r->b);
  r->pos = 0;
}

static int kept(int fd, const int *keep, int nkeep) {
  int i;
  for (i = 0; i < nkeep; i++)
    if (keep[i] == fd) return 1;
  return 0;
}

void ppe_close_all_but(const int *keep, int nkeep) {
  DIR *d;
  struct dirent *de;
  int lo = 3, i;
#ifdef SYS_close_range
  /* Close the gaps between kept descriptors, in ascending order. */
  int sorted[8], n = 0, ok = 1;
  for (i = 0; i < nkeep && n < 8; i++)
    if (keep[i] >= 3) sorted[n++] = keep[i];
  for (i = 1; i < n; i++) {  /* insertion sort: n is tiny */
    int v = sorted[i], j = i - 1;
    while (j >= 0 && sorted[j] > v) { sorted[j + 1] = sorted[j]; j--; }
    sorted[j + 1] = v;
  }
  for (i = 0; i <= n && ok; i++) {
    unsigned hi = (i < n) ? (unsigned)sorted[i] - 1 : ~0U;
    if ((unsigned)lo <= hi && syscall(SYS_close_range, lo, hi, 0) < 0)
      ok = 0;
    if (i < n) lo = sorted[i] + 1;
  }
  if (ok) return;
#endif
  /* Without close_range: list the open descriptors. */
  d = opendir("/proc/self/fd");
  if (d == NULL) {
    for (i = 3; i < 1024; i++)
      if (!kept(i, keep, nkeep)) close(i);
    return;
  }
  while ((de = readdir(d)) != NULL) {
    int fd = atoi(de->d_name);
    if (fd >= 3 && fd != dirfd(d) && !kept(fd, keep, nkeep)) close(fd);
  }
  closedir(d);
}
