/* zmsg.h - the messages between executors and their fork server
** (zygote.h), which both sides send. Never raises; returns 0 or -errno. */
#ifndef PPE_ZMSG_H
#define PPE_ZMSG_H

#include <stdint.h>

/* Messages on an executor's channel (one datagram each). */
enum {
  PPE_Z_READY = 1,  /* z -> p: attached (status 0) or errno; 'id' is 1 if
                    ** workers read the caller's arena (shm.h) */
  PPE_Z_SPAWN,      /* p -> z: fork worker 'id'; its arena attached */
  PPE_Z_SPAWNED,    /* z -> p: worker 'id' is 'pid'; its channel attached */
  PPE_Z_SPAWNFAIL,  /* z -> p: worker 'id' could not be forked (errno) */
  PPE_Z_KILL,       /* p -> z: send signal 'status' to 'pid' if alive */
  PPE_Z_EXITED,     /* z -> p: 'pid' ended with wait status 'status' */
  PPE_Z_ATTACH,     /* caller -> z, on the zygote's own channel: a new
                    ** executor (ppe_zattach, then path and cpath);
                    ** PPE_ZF_N descriptors */
  PPE_Z_PING,       /* p -> z: answer PPE_Z_PONG (are you serving?) */
  PPE_Z_PONG        /* z -> p: the answer, after every earlier request */
};

typedef struct ppe_zmsg {
  int32_t type;
  int32_t id;
  int32_t pid;
  int32_t status;
} ppe_zmsg;

/* The header of an attach message: the lengths of the executor's path and
** cpath that follow, with their zero bytes (0 for none), and what its
** workers are given. */
typedef struct ppe_zattach {
  int32_t type;      /* PPE_Z_ATTACH */
  int32_t lpath;
  int32_t lcpath;
  uint32_t memory_cap;  /* max_memory_per_child, in KiB (worker.h); 0 */
} ppe_zattach;

/* An executor's package.path and package.cpath, with a zero byte each, at
** most this many bytes: they reach the zygote in one datagram. */
#define PPE_PATHS_MAX 65536

/* Descriptors an attach message carries, and the zygote keeps for each
** executor, by index. */
enum {
  PPE_ZF_CHAN,  /* the executor's channel */
  PPE_ZF_CWD,   /* the caller's working directory, stdout and stderr, when */
  PPE_ZF_OUT,   /* the executor was made */
  PPE_ZF_ERR,
  PPE_ZF_N
};

int ppe_zygote_send(int fd, int type, int id, int pid, int status);

/* Closes those of the PPE_ZF_N descriptors that are not -1. */
void ppe_zygote_close_fds(const int *fds);

#endif
