/* transport.h - framed messages over socketpairs: creation, partial I/O,
** EINTR, and passing descriptors. Never raises; returns 0 or -errno. */
#ifndef PPE_TRANSPORT_H
#define PPE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "frame.h"

/* A stream socketpair, close-on-exec, with large buffers. */
int ppe_channel(int sv[2]);
/* A datagram socketpair that keeps message boundaries, close-on-exec. */
int ppe_packet_channel(int sv[2]);

int ppe_set_nonblock(int fd, int on);

/* One attempt: bytes moved (0 when it would block), or -errno; a peer
** that closed gives -EPIPE for writes and 0 with *eof set for reads.
** Sockets, or pipes (a pipe's writer must ignore SIGPIPE itself). */
long ppe_send_some(int fd, const void *p, size_t n);
long ppe_recv_some(int fd, void *p, size_t n, int *eof);

struct iovec;
/* Like ppe_send_some, gathering n pieces in one call. */
long ppe_sendv_some(int fd, const struct iovec *iov, int n);

/* All of it, waiting as needed (blocking descriptors). */
int ppe_send_all(int fd, const void *p, size_t n);

/* Waits until fd is readable; timeout in milliseconds, -1 forever.
** 1 readable, 0 timed out, or -errno. */
int ppe_wait_readable(int fd, int timeout_ms);

/* A datagram with up to PPE_MAXFDS descriptors attached; recv fills
** fds[0..maxfds) with those that came and -1 for the rest, returns 0 at
** end of stream, -EAGAIN when none is there. */
#define PPE_MAXFDS 4
int ppe_send_packet(int fd, const void *p, size_t n, const int *fds,
                    int nfds);
long ppe_recv_packet(int fd, void *p, size_t n, int *fds, int maxfds);

/* Frames arriving on a stream: bytes are appended at the end and whole
** frames taken from the front. */
typedef struct ppe_reader {
  ppe_buf b;
  size_t pos;       /* start of the first unconsumed byte */
  int drained;      /* the last read took less than it had room for, and
                    ** ended no frame short: a stream had no more then (a
                    ** reader that loops until -EAGAIN may stop there, and
                    ** leave the rest to poll) */
} ppe_reader;

/* Reads what is available (all of it on a blocking fd, once); returns
** bytes read, 0 at end of stream, or -errno (-EAGAIN when nothing yet). */
long ppe_reader_fill(ppe_reader *r, int fd);
/* If a whole frame is buffered, points *f and *payload at it and returns
** 1; 0 if more bytes are needed; -EPROTO for an impossible header. */
int ppe_reader_next(ppe_reader *r, ppe_frame *f, const char **payload);
void ppe_reader_free(ppe_reader *r);

/* Closes every descriptor from 3 up but those listed (-1 ends the list). */
void ppe_close_all_but(const int *keep, int nkeep);

#endif
