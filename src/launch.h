/* launch.h - the launcher process of a far worker (ssh, srun, ...):
** started with one end of a socket as its stdin and stdout, its stderr
** passed on to ours as it comes (the last of it kept, for messages), its
** end seen through a pidfd, and reaped. Never raises; 0 or -errno. */
#ifndef PPE_LAUNCH_H
#define PPE_LAUNCH_H

#include <sys/types.h>

typedef struct ppe_launch ppe_launch;

/* What of its stderr is kept for a message: the last bytes. */
#define PPE_LAUNCH_TAIL 1024

/* Starts argv (argv[0] looked up on PATH; NULL-terminated). *sock gets
** our end of the socket it has as stdin and stdout. */
int ppe_launch_start(ppe_launch **out, char *const argv[], int *sock);
pid_t ppe_launch_pid(const ppe_launch *l);
/* The descriptors to poll for reading: its pidfd and its stderr (each
** -1 once done with). */
void ppe_launch_fds(const ppe_launch *l, int *pidfd, int *errfd);
/* 1 if its end is told by its pidfd; 0 if it must be looked for from
** time to time (a kernel before 5.3, or valgrind, has no pidfd). */
int ppe_launch_watched(const ppe_launch *l);
/* Passes on what its stderr has; 1 with its wait status in *status once
** it has ended and is reaped, else 0. Non-blocking. */
int ppe_launch_poll(ppe_launch *l, int *status);
void ppe_launch_kill(ppe_launch *l, int sig);
/* The last lines of its stderr (up to PPE_LAUNCH_TAIL bytes), or "". */
const char *ppe_launch_tail(ppe_launch *l);
/* Kills it if it still runs, waits for it, and frees l. */
void ppe_launch_free(ppe_launch *l);

#endif
