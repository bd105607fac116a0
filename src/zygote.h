/* zygote.h - the fork server. Forked once from the caller when an
** executor starts, it builds a fresh Lua state and forks every worker from
** it, on request, at any time: forking from a single-threaded process is
** safe whatever threads the caller runs, and a worker starts from a state
** that is already built. It reaps its workers and reports their ends. */
#ifndef PPE_ZYGOTE_H
#define PPE_ZYGOTE_H

#include <stdint.h>
#include <sys/types.h>

/* Messages on the zygote's channel (one datagram each). */
enum {
  PPE_Z_READY = 1,  /* z -> p: state built (status 0) or errno; 'id' is
                    ** 1 if workers read the caller's arena (shm.h) */
  PPE_Z_SPAWN,      /* p -> z: fork worker 'id'; its arena attached */
  PPE_Z_SPAWNED,    /* z -> p: worker 'id' is 'pid'; its channel attached */
  PPE_Z_SPAWNFAIL,  /* z -> p: worker 'id' could not be forked (errno) */
  PPE_Z_KILL,       /* p -> z: send signal 'status' to 'pid' if alive */
  PPE_Z_EXITED      /* z -> p: 'pid' ended with wait status 'status' */
};

typedef struct ppe_zmsg {
  int32_t type;
  int32_t id;
  int32_t pid;
  int32_t status;
} ppe_zmsg;

/* Forks the zygote, and returns at once: requests may be sent before it
** says PPE_Z_READY (which then comes first on the channel, with status 0,
** or an errno before the zygote ends). 0 or -errno. */
int ppe_zygote_start(const char *path, const char *cpath, pid_t *pid,
                     int *fd);
int ppe_zygote_send(int fd, int type, int id, int pid, int status);
/* Asks for worker 'id', handing it its shared arena (-1 for none). */
int ppe_zygote_spawn(int fd, int id, int arena);

#endif
