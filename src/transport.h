/* transport.h - framed messages over socketpairs: creation, partial I/O,
** EINTR, and passing descriptors. Never raises; returns 0 or -errno. */
#ifndef PPE_TRANSPORT_H
#define PPE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Every message starts with this header, in host byte order: both ends
** are the same binary on the same machine. */
typedef struct ppe_frame {
  uint32_t type;
  uint32_t aux;     /* type-specific: a worker id, a signal, ... */
  uint64_t id;      /* the task the frame is about */
  uint64_t len;     /* payload bytes that follow */
} ppe_frame;

/* Frame types. */
enum {
  PPE_F_TASK = 1,   /* parent -> worker: payload is fn, args... */
  PPE_F_INIT,       /* parent -> worker: payload is initializer, args... */
  PPE_F_OK,         /* worker -> parent: payload is the results */
  PPE_F_ERR,        /* worker -> parent: message, traceback, value */
  PPE_F_SERR,       /* worker -> parent: results could not be sent */
  PPE_F_INITERR,    /* worker -> parent: the initializer raised */
  PPE_F_CHUNK,      /* parent -> worker: fn, spread, items...; the reply
                    ** (OK) is per item: count and values, or -1 and
                    ** message, traceback, value; or, when every item
                    ** gave one value, true and the values alone */
  PPE_F_REF,        /* either way: the message is in the sender's shared
                    ** arena (shm.h); the payload says where, aux its
                    ** type */
  PPE_F_BELL,       /* worker -> parent, empty: replies wait in the ring */
  PPE_F_PAD         /* in the ring only: the rest of it is unused */
};

/* A PPE_F_REF frame and its payload: the offset of a whole message
** (header and payload) in the sender's arena, and its length. */
typedef struct ppe_ref {
  ppe_frame f;
  uint64_t off, len;
} ppe_ref;

/* A payload larger than this is refused: it protects a reader from a peer
** that went astray, not from legitimate data. */
#define PPE_MAXFRAME ((uint64_t)1 << 40)

/* A stream socketpair, close-on-exec, with large buffers. */
int ppe_channel(int sv[2]);
/* A datagram socketpair that keeps message boundaries, close-on-exec. */
int ppe_packet_channel(int sv[2]);

int ppe_set_nonblock(int fd, int on);

/* One attempt: bytes moved (0 when it would block), or -errno; a peer
** that closed gives -EPIPE for writes and 0 with *eof set for reads. */
long ppe_send_some(int fd, const void *p, size_t n);
long ppe_recv_some(int fd, void *p, size_t n, int *eof);

struct iovec;
/* Like ppe_send_some, gathering n pieces in one call. */
long ppe_sendv_some(int fd, const struct iovec *iov, int n);

/* All of it, waiting as needed (blocking descriptors). */
int ppe_send_all(int fd, const void *p, size_t n);
int ppe_recv_all(int fd, void *p, size_t n);  /* -EPIPE on end of stream */

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
