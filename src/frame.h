/* frame.h - the header every message starts with, and the frame types:
** the one format of what goes through channels, rings and arenas. */
#ifndef PPE_FRAME_H
#define PPE_FRAME_H

#include <stdint.h>

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
  PPE_F_PAD,        /* in the ring only: the rest of it is unused */
  /* On a stream to a far worker only (hello.h, serve.c): */
  PPE_F_HELLO,      /* worker -> parent, first: a ppe_hello */
  PPE_F_WELCOME,    /* parent -> worker, first: a ppe_welcome */
  PPE_F_OUT,        /* worker -> parent: whole lines a task wrote to its
                    ** stdout, for the parent's */
  PPE_F_TAKEBACK,   /* parent -> worker: skip task 'id' if it has not
                    ** started */
  PPE_F_SKIPPED,    /* worker -> parent, in the place of task 'id''s
                    ** reply: it was skipped, as asked */
  PPE_F_LEFT,       /* worker -> parent, last: it leaves with ppe's own
                    ** exit code 'aux' (worker.h) */
  PPE_F_CANCEL,     /* parent -> worker: task 'id' is cancelled: skip it
                    ** if it waits (SKIPPED), stop if it runs (STOPPED) */
  PPE_F_STOPPED,    /* worker -> parent, last: task 'id' was running and
                    ** is stopped, as asked; no reply of it comes */
  PPE_F_HOOKERR     /* worker -> parent, first and last: the host's
                    ** worker-init hook raised; payload is its message */
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

#endif
