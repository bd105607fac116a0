/* zygote.h - the fork server. One per process, forked from the caller
** when its first executor starts and kept while a Lua state has ppe
** loaded, it builds a fresh Lua state once and forks every worker of
** every executor from it, on request, at any time: forking from a
** single-threaded process is safe whatever threads the caller runs, a
** worker starts from a state already built, and a later executor starts
** without a fork of the caller. Each executor has a channel of its own to
** it; it reaps that executor's workers and reports their ends there. */
#ifndef PPE_ZYGOTE_H
#define PPE_ZYGOTE_H

#include <stdint.h>

#include "zmsg.h"

typedef struct ppe_zygote ppe_zygote;

/* Gives a new executor its channel to the zygote (*fd), starting the
** zygote first if there is none fit for it: none yet, or one forked
** before this process was (a fork's child), before the host's worker hook
** or the environment changed. Workers forked for it get path and cpath,
** its memory cap (KiB, worker.h; 0 for none), and the caller's working
** directory, stdout and stderr as they are now. Returns at once: requests
** may be sent before the zygote says PPE_Z_READY, which then comes first
** on the channel. 0 or -errno. */
int ppe_zygote_attach(const char *path, const char *cpath,
                      uint32_t memory_cap, ppe_zygote **z, int *fd);
/* After the executor closed its channel. The last one to leave a zygote
** that is no longer the current one reaps it. */
void ppe_zygote_detach(ppe_zygote *z);
/* The zygote has ended (its channel did), refused an executor or did not
** answer: the next executor gets another. */
void ppe_zygote_retire(ppe_zygote *z);
/* The zygote has left a request unanswered too long: it is stopped or
** stuck. Kills it (its workers end with it) and retires it. */
void ppe_zygote_kill(ppe_zygote *z);
/* Lua states with ppe loaded: when the last is closed, the zygote goes. */
void ppe_zygote_hold(int delta);

#endif
