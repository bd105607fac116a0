/* launch.c - a far worker's launcher process. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forward.h"
#include "launch.h"
#include "vgcheck.h"
#include "transport.h"

extern char **environ;

struct ppe_launch {
  pid_t pid;
  int pidfd;                   /* readable once it has ended */
  int errfd;                   /* its stderr, read end */
  int reaped;
  char tail[PPE_LAUNCH_TAIL + 1];
  size_t ntail;
};

static int pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
  if (UNDER_VALGRIND) {  /* (vgcheck.h) */
    errno = ENOSYS;
    return -1;
  }
  return (int)syscall(SYS_pidfd_open, pid, 0);
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

int ppe_launch_start(ppe_launch **out, char *const argv[], int *sock) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, all;
  ppe_launch *l = calloc(1, sizeof(*l));
  int sv[2], ep[2], r;
  if (l == NULL) return -ENOMEM;
  l->pidfd = l->errfd = -1;
  if ((r = ppe_channel(sv)) < 0) {
    free(l);
    return r;
  }
  if (pipe2(ep, O_CLOEXEC) != 0) {
    r = -errno;
    close(sv[0]);
    close(sv[1]);
    free(l);
    return r;
  }
  /* The child gets its end as 0 and 1, the pipe as 2, and nothing else
  ** of the caller's: a file or pipe the program holds open must not be
  ** held by a launcher, or by what it starts, as long as they live. */
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
  posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  /* No signal blocked or ignored, whichever thread starts it (the I/O
  ** thread blocks them all); its own process group: a signal meant for
  ** our terminal's foreground group is not its business. */
  posix_spawnattr_init(&at);
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setpgroup(&at, 0);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
                           POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  r = posix_spawnp(&l->pid, argv[0], &fa, &at, argv, environ);
  posix_spawnattr_destroy(&at);
  posix_spawn_file_actions_destroy(&fa);
  close(sv[1]);
  close(ep[1]);
  if (r != 0) {
    close(sv[0]);
    close(ep[0]);
    free(l);
    return -r;
  }
  l->errfd = ep[0];
  ppe_set_nonblock(l->errfd, 1);
  l->pidfd = pidfd_open(l->pid);  /* without one, polled by time */
  *sock = sv[0];
  *out = l;
  return 0;
}

pid_t ppe_launch_pid(const ppe_launch *l) {
  return l->pid;
}

int ppe_launch_watched(const ppe_launch *l) {
  return l->reaped || l->pidfd >= 0;
}

void ppe_launch_fds(const ppe_launch *l, int *pidfd, int *errfd) {
  *pidfd = l->reaped ? -1 : l->pidfd;
  /* Not read while our stderr has not taken what came before: the
  ** launcher waits instead. */
  *errfd = l->reaped || ppe_fwd_pending(2) < PPE_FWD_MAX ? l->errfd : -1;
}

/* Keeps the last PPE_LAUNCH_TAIL bytes seen. */
static void keep(ppe_launch *l, const char *p, size_t n) {
  if (n >= PPE_LAUNCH_TAIL) {
    memcpy(l->tail, p + n - PPE_LAUNCH_TAIL, PPE_LAUNCH_TAIL);
    l->ntail = PPE_LAUNCH_TAIL;
    return;
  }
  if (l->ntail + n > PPE_LAUNCH_TAIL) {
    size_t drop = l->ntail + n - PPE_LAUNCH_TAIL;
    memmove(l->tail, l->tail + drop, l->ntail - drop);
    l->ntail -= drop;
  }
  memcpy(l->tail + l->ntail, p, n);
  l->ntail += n;
}

static void pass_stderr(ppe_launch *l) {
  char buf[4096];
  ssize_t n;
  /* Once it has ended, what is left is read whatever is queued: its tail
  ** tells why it failed, and nothing more comes from it. */
  while (l->errfd >= 0 && (l->reaped || ppe_fwd_pending(2) < PPE_FWD_MAX)) {
    n = read(l->errfd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      close(l->errfd);
      l->errfd = -1;
      return;
    }
    keep(l, buf, (size_t)n);
    ppe_fwd_put(2, buf, (size_t)n);  /* as it comes: ours is theirs */
  }
}

int ppe_launch_poll(ppe_launch *l, int *status) {
  pid_t r;
  pass_stderr(l);
  if (l->reaped) return 0;
  do r = waitpid(l->pid, status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return 0;
  if (r < 0) *status = 0;  /* reaped by another: nothing to tell */
  l->reaped = 1;
  if (l->pidfd >= 0) close(l->pidfd);
  l->pidfd = -1;
  pass_stderr(l);
  return 1;
}

void ppe_launch_kill(ppe_launch *l, int sig) {
  if (!l->reaped) kill(l->pid, sig);
}

const char *ppe_launch_tail(ppe_launch *l) {
  size_t start = 0, k;
  l->tail[l->ntail] = '\0';
  /* Whole lines: from the first one that begins in what is kept. */
  if (l->ntail == PPE_LAUNCH_TAIL)
    for (k = 0; k < l->ntail; k++)
      if (l->tail[k] == '\n') {
        start = k + 1;
        break;
      }
  return l->tail + start;
}

void ppe_launch_free(ppe_launch *l) {
  if (l == NULL) return;
  if (!l->reaped) {
    int st;
    kill(l->pid, SIGKILL);
    while (waitpid(l->pid, &st, 0) < 0 && errno == EINTR)
      ;
  }
  if (l->pidfd >= 0) close(l->pidfd);
  if (l->errfd >= 0) close(l->errfd);
  free(l);
}
