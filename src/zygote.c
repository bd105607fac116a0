/* zygote.c - the fork server (see zygote.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lua.h"

#include "buf.h"
#include "runner.h"
#include "shm.h"
#include "transport.h"
#include "worker.h"
#include "zygote.h"

/* Live children, so a kill never reaches a pid already reaped (and maybe
** reused by then). */
typedef struct Zyg {
  int fd, sfd;
  ppe_peer *arena;  /* the caller's shared arena, read-only: mapped once,
                   ** every worker inherits the mapping; or NULL */
  lua_State *L;
  pid_t *live;
  int nlive, cap;
} Zyg;

int ppe_zygote_send(int fd, int type, int id, int pid, int status) {
  ppe_zmsg m;
  m.type = type; m.id = id; m.pid = pid; m.status = status;
  return ppe_send_packet(fd, &m, sizeof(m), NULL, 0);
}

int ppe_zygote_spawn(int fd, int id, int arena) {
  ppe_zmsg m;
  m.type = PPE_Z_SPAWN; m.id = id; m.pid = 0; m.status = 0;
  return ppe_send_packet(fd, &m, sizeof(m), &arena, arena >= 0);
}

/* A child of a process that dies gets SIGKILL; if the parent is already
** gone by the time this runs, leave at once. */
static void die_with_parent(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0);
}

static void default_signals(void) {
  struct sigaction sa;
  int s;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  for (s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &sa, NULL);
}

/* Forks without running the atfork handlers libraries registered in the
** caller: they would act on descriptors that in the zygote are ours (libuv
** re-creates "its" signal pipe on the numbers of a worker's channel). The
** zygote is single-threaded, so there is no lock for them to fix. */
static pid_t fork_plain(void) {
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
  return _Fork();
#else
  return (pid_t)syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
#endif
}

static void spawn(Zyg *z, int id, int arena) {
  int sv[2], r = ppe_channel(sv);
  pid_t pid, self = getpid();
  if (r < 0) {
    ppe_zygote_send(z->fd, PPE_Z_SPAWNFAIL, id, 0, -r);
    return;
  }
  if (z->nlive == z->cap) {
    int ncap = z->cap ? 2 * z->cap : 16;
    pid_t *nl = realloc(z->live, (size_t)ncap * sizeof(pid_t));
    if (nl == NULL) {
      close(sv[0]); close(sv[1]);
      ppe_zygote_send(z->fd, PPE_Z_SPAWNFAIL, id, 0, ENOMEM);
      return;
    }
    z->live = nl;
    z->cap = ncap;
  }
  pid = fork_plain();
  if (pid == 0) {
    sigset_t none;
    close(sv[0]);
    close(z->fd);
    close(z->sfd);
    die_with_parent(self);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (ppe_runner_hook(z->L) != 0) _exit(6);
    ppe_worker_main(z->L, sv[1], id, arena, z->arena);
  }
  r = errno;
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    ppe_zygote_send(z->fd, PPE_Z_SPAWNFAIL, id, 0, r);
    return;
  }
  z->live[z->nlive++] = pid;
  {
    ppe_zmsg m = {PPE_Z_SPAWNED, id, pid, 0};
    ppe_send_packet(z->fd, &m, sizeof(m), &sv[0], 1);
  }
  close(sv[0]);
}

static int is_live(Zyg *z, pid_t pid) {
  int i;
  for (i = 0; i < z->nlive; i++)
    if (z->live[i] == pid) return i;
  return -1;
}

static void reap(Zyg *z, int block) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, block ? 0 : WNOHANG)) > 0 ||
         (pid < 0 && errno == EINTR)) {
    int i;
    if (pid < 0) continue;
    i = is_live(z, pid);
    if (i >= 0) z->live[i] = z->live[--z->nlive];
    ppe_zygote_send(z->fd, PPE_Z_EXITED, 0, pid, st);
    if (block && z->nlive == 0) break;
  }
}

static void serve(Zyg *z) {
  for (;;) {
    struct pollfd pfd[2] = {{z->fd, POLLIN, 0}, {z->sfd, POLLIN, 0}};
    if (poll(pfd, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pfd[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(z->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        ;
      reap(z, 0);
    }
    if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ppe_zmsg m;
      int passfd;
      long n = ppe_recv_packet(z->fd, &m, sizeof(m), &passfd, 1);
      if (n == (long)sizeof(m) && m.type == PPE_Z_SPAWN)
        spawn(z, m.id, passfd);
      if (passfd >= 0) close(passfd);  /* the worker has its own copy */
      if (n <= 0) break;  /* the executor is gone */
      if (n != (long)sizeof(m)) continue;
      if (m.type == PPE_Z_KILL && is_live(z, m.pid) >= 0)
        kill(m.pid, m.status);
    }
  }
  /* Nobody is left to serve: no worker may outlive its executor. */
  {
    int i;
    for (i = 0; i < z->nlive; i++) kill(z->live[i], SIGKILL);
    if (z->nlive > 0) reap(z, 1);
  }
  _exit(0);
}

static void zygote_main(int fd, pid_t parent, const char *path,
                        const char *cpath, int arena) {
  Zyg z;
  sigset_t chld;
  int keep[2], null;
  die_with_parent(parent);
  ppe_big_after_fork();
  default_signals();
  keep[0] = fd;
  keep[1] = arena;
  ppe_close_all_but(keep, 2);
  memset(&z, 0, sizeof(z));
  if (arena >= 0) {
    z.arena = ppe_peer_open(arena, 0);
    close(arena);
  }
  null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);  /* workers read no input of the caller's */
    close(null);
  }
  z.fd = fd;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  z.sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  sigprocmask(SIG_SETMASK, &chld, NULL);  /* only SIGCHLD stays queued */
  z.L = ppe_runner_state(path, cpath);
  if (z.sfd < 0 || z.L == NULL) {
    ppe_zygote_send(fd, PPE_Z_READY, 0, 0, z.sfd < 0 ? errno : ENOMEM);
    _exit(1);
  }
  ppe_zygote_send(fd, PPE_Z_READY, z.arena != NULL, 0, 0);
  serve(&z);
}

/* The caller's arena, for the zygote's workers: opened anew read-only, so
** that they can read what the caller sends and write nothing of its. The
** child of a fork lets go of the arena it inherits (shm.c); the zygote
** maps it again from this descriptor. -1 if it can't be had. */
static int readonly(int fd) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  return open(path, O_RDONLY | O_CLOEXEC);
}

int ppe_zygote_start(const char *path, const char *cpath, pid_t *pid,
                     int *fd) {
  sigset_t all, old;
  pid_t child, self = getpid();
  int sv[2], r = ppe_packet_channel(sv), saved, arena = ppe_shm_own();
  if (r < 0) return r;
  if (arena >= 0) arena = readonly(arena);
  /* No signal handler of the caller's may run in the child before it has
  ** reset them; and buffered output must not be written twice. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  fflush(NULL);
  child = fork();
  if (child == 0) zygote_main(sv[1], self, path, cpath, arena);
  saved = errno;
  if (arena >= 0) close(arena);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(sv[1]);
  if (child < 0) {
    close(sv[0]);
    return -saved;
  }
  *pid = child;
  *fd = sv[0];
  return 0;
}
