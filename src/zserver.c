/* zserver.c - the fork server's process: it serves executors' requests,
** forks and starts workers, reaps them (see zygote.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>


#include "lua.h"

#include "bigblock.h"
#include "runner.h"
#include "shm.h"
#include "transport.h"
#include "vgcheck.h"
#include "worker.h"
#include "zmsg.h"
#include "zserver.h"

/* An executor, as the zygote sees it. */
typedef struct Client {
  int fds[PPE_ZF_N];   /* PPE_ZF_* */
  char *path, *cpath;  /* its workers' package paths, or NULL */
  uint32_t memory_cap; /* its workers' max_memory_per_child, KiB; 0 */
} Client;

/* A worker not yet reaped. c is NULL once its executor has gone: its end
** is then nobody's to hear of. Kills go to live pids only, so never to a
** pid reaped and maybe reused since. */
typedef struct Live {
  pid_t pid;
  Client *c;
} Live;

typedef struct Zyg {
  int ctl;             /* the caller's channel, for attaches; -1 once shut */
  int sfd;             /* SIGCHLD */
  int parent;          /* a pidfd of the caller, readable once it has ended;
                       ** or -1 */
  char comm[17];       /* the caller's name, which workers keep */
  struct rlimit nofile;  /* the caller's, which workers get back */
  ppe_peer *arena;     /* the caller's shared arena, read-only: mapped once,
                       ** every worker inherits the mapping; or NULL */
  lua_State *L;        /* every worker's start; NULL if it failed */
  Client **cl;
  int ncl, clcap;
  Live *live;
  int nlive, livecap;
  struct pollfd *pfd;  /* ctl, sfd, parent, then one per client */
  int pfdcap;
  char *msg;           /* room for an attach message */
} Zyg;

/* Room in *v (of *cap elements of size sz) for n of them. 0 or -1. */
static int reserve(void **v, int *cap, int n, size_t sz) {
  int ncap;
  void *nv;
  if (n <= *cap) return 0;
  ncap = *cap ? 2 * *cap : 16;
  while (ncap < n) ncap *= 2;
  nv = realloc(*v, (size_t)ncap * sz);
  if (nv == NULL) return -1;
  *v = nv;
  *cap = ncap;
  return 0;
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

static int find_live(Zyg *z, pid_t pid) {
  int i;
  for (i = 0; i < z->nlive; i++)
    if (z->live[i].pid == pid) return i;
  return -1;
}

/* The new worker: the caller's stdio and directory of when its executor
** was made, nothing else of the zygote's, the executor's package paths. */
static void worker_start(Zyg *z, Client *c, int fd, int id, int arena,
                         pid_t zygote) {
  sigset_t none;
  int keep[2], failed = 0;
  char why[PPE_HOOK_WHY];
  die_with_parent(zygote);
  prctl(PR_SET_NAME, z->comm);
  if (z->nofile.rlim_cur != RLIM_INFINITY)
    setrlimit(RLIMIT_NOFILE, &z->nofile);
  /* No descriptor of ours is 0-2 (ppe_zserver_main). */
  dup2(c->fds[PPE_ZF_OUT], 1);
  dup2(c->fds[PPE_ZF_ERR], 2);
  if (fchdir(c->fds[PPE_ZF_CWD]) != 0) {
    /* a placeholder (see ppe_zygote_attach): the zygote's directory,
    ** "/", then */
  }
  keep[0] = fd;
  keep[1] = arena;
  ppe_close_all_but(keep, 2);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (ppe_runner_paths(z->L, c->path, c->cpath) != 0)
    failed = PPE_EXIT_NOMEM;
  else if (ppe_runner_hook(z->L, why, sizeof(why)) != 0)
    failed = PPE_EXIT_HOOK;
  ppe_worker_set_memory_cap(c->memory_cap);
  ppe_worker_main(z->L, fd, id, arena, z->arena, failed,
                  failed == PPE_EXIT_HOOK ? why : NULL);
}

static void spawn(Zyg *z, Client *c, int id, int arena) {
  int sv[2], r;
  pid_t pid, self = getpid();
  if (reserve((void **)&z->live, &z->livecap, z->nlive + 1,
              sizeof(Live)) != 0) {
    ppe_zygote_send(c->fds[PPE_ZF_CHAN], PPE_Z_SPAWNFAIL, id, 0, ENOMEM);
    return;
  }
  r = ppe_channel(sv);
  if (r < 0) {
    ppe_zygote_send(c->fds[PPE_ZF_CHAN], PPE_Z_SPAWNFAIL, id, 0, -r);
    return;
  }
  pid = fork_plain();
  if (pid == 0) worker_start(z, c, sv[1], id, arena, self);
  r = errno;
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    ppe_zygote_send(c->fds[PPE_ZF_CHAN], PPE_Z_SPAWNFAIL, id, 0, r);
    return;
  }
  z->live[z->nlive].pid = pid;
  z->live[z->nlive++].c = c;
  {
    ppe_zmsg m = {PPE_Z_SPAWNED, id, pid, 0};
    ppe_send_packet(c->fds[PPE_ZF_CHAN], &m, sizeof(m), &sv[0], 1);
  }
  close(sv[0]);
}

static void reap(Zyg *z, int block) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, block ? 0 : WNOHANG)) > 0 ||
         (pid < 0 && errno == EINTR)) {
    int i;
    Client *c;
    if (pid < 0 || (i = find_live(z, pid)) < 0) continue;
    c = z->live[i].c;
    z->live[i] = z->live[--z->nlive];
    if (c != NULL)
      ppe_zygote_send(c->fds[PPE_ZF_CHAN], PPE_Z_EXITED, 0, pid, st);
    if (block && z->nlive == 0) break;
  }
}

/* The executor of client i has gone: no worker may outlive it. */
static void drop_client(Zyg *z, int i) {
  Client *c = z->cl[i];
  int k;
  for (k = 0; k < z->nlive; k++)
    if (z->live[k].c == c) {
      kill(z->live[k].pid, SIGKILL);
      z->live[k].c = NULL;
    }
  ppe_zygote_close_fds(c->fds);
  free(c);
  z->cl[i] = z->cl[--z->ncl];
}

/* One message from an executor. 0 if it has gone. */
static int serve_client(Zyg *z, Client *c) {
  ppe_zmsg m;
  int passfd, i;
  long n = ppe_recv_packet(c->fds[PPE_ZF_CHAN], &m, sizeof(m), &passfd, 1);
  if (n == (long)sizeof(m) && m.type == PPE_Z_SPAWN)
    spawn(z, c, m.id, passfd);
  if (passfd >= 0) close(passfd);  /* the worker has its own copy */
  if (n <= 0) return 0;
  if (n == (long)sizeof(m) && m.type == PPE_Z_PING)
    ppe_zygote_send(c->fds[PPE_ZF_CHAN], PPE_Z_PONG, 0, 0, 0);
  if (n == (long)sizeof(m) && m.type == PPE_Z_KILL &&
      (i = find_live(z, m.pid)) >= 0 && z->live[i].c == c)
    kill(m.pid, m.status);
  return 1;
}

/* Reads an attach message: its header (type, the lengths of path and
** cpath with their zero bytes, 0 for none), the two strings, and the
** descriptors. 0 and the client in *c; or why not: EPROTO, EMFILE (what
** could not be received), ENOMEM. */
static int read_attach(Zyg *z, int *fds, int *eof, Client **c) {
  ppe_zattach *m = (ppe_zattach *)z->msg;
  const char *s = z->msg + sizeof(*m);
  int i, lp, lc;
  long n = ppe_recv_packet(z->ctl, z->msg, sizeof(*m) + PPE_PATHS_MAX, fds,
                           PPE_ZF_N);
  *eof = n == 0 || (n < 0 && n != -EAGAIN);
  if (n < (long)sizeof(*m) || m->type != PPE_Z_ATTACH) return EPROTO;
  lp = m->lpath;
  lc = m->lcpath;
  if (!(lp >= 0 && lc >= 0 && lp <= PPE_PATHS_MAX && lc <= PPE_PATHS_MAX &&
        n == (long)sizeof(*m) + lp + lc &&
        (lp == 0 || s[lp - 1] == '\0') && (lc == 0 || s[lp + lc - 1] == '\0')))
    return EPROTO;
  for (i = 0; i < PPE_ZF_N; i++)
    if (fds[i] < 0) return EMFILE;
  *c = malloc(sizeof(**c) + (size_t)(lp + lc));
  if (*c == NULL) return ENOMEM;
  memcpy((*c)->fds, fds, sizeof((*c)->fds));
  memcpy(*c + 1, s, (size_t)(lp + lc));
  (*c)->path = lp ? (char *)(*c + 1) : NULL;
  (*c)->cpath = lc ? (char *)(*c + 1) + lp : NULL;
  (*c)->memory_cap = m->memory_cap;
  return 0;
}

static void attach(Zyg *z) {
  int fds[PPE_ZF_N], eof, err;
  Client *c = NULL;
  err = read_attach(z, fds, &eof, &c);
  if (eof) {  /* the caller has let go of us: serve who is left */
    close(z->ctl);
    z->ctl = -1;
  }
  if (err == 0 && z->L == NULL) err = ENOMEM;
  if (err == 0 &&
      (reserve((void **)&z->cl, &z->clcap, z->ncl + 1,
               sizeof(Client *)) != 0 ||
       reserve((void **)&z->pfd, &z->pfdcap, z->ncl + 4,
               sizeof(struct pollfd)) != 0))
    err = ENOMEM;
  /* The executor hears why, if its channel came. */
  if (fds[PPE_ZF_CHAN] >= 0)
    ppe_zygote_send(fds[PPE_ZF_CHAN], PPE_Z_READY, z->arena != NULL, 0, err);
  if (err == 0) z->cl[z->ncl++] = c;
  else {
    ppe_zygote_close_fds(fds);
    free(c);
  }
}

static void serve(Zyg *z) {
  while (z->ctl >= 0 || z->ncl > 0) {
    int i;
    z->pfd[0].fd = z->ctl;  /* -1: not polled */
    z->pfd[0].events = POLLIN;
    z->pfd[1].fd = z->sfd;
    z->pfd[1].events = POLLIN;
    z->pfd[2].fd = z->parent;
    z->pfd[2].events = POLLIN;
    for (i = 0; i < z->ncl; i++) {
      z->pfd[i + 3].fd = z->cl[i]->fds[PPE_ZF_CHAN];
      z->pfd[i + 3].events = POLLIN;
    }
    if (poll(z->pfd, (nfds_t)z->ncl + 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    /* The caller has ended; a child it forked may still hold our
    ** channels, which then never end. */
    if (z->pfd[2].revents) break;
    if (z->pfd[1].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(z->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        ;
      reap(z, 0);
    }
    /* Backwards: a client dropped takes the last one's place. */
    for (i = z->ncl - 1; i >= 0; i--)
      if ((z->pfd[i + 3].revents & (POLLIN | POLLHUP | POLLERR)) &&
          !serve_client(z, z->cl[i]))
        drop_client(z, i);
    if (z->pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) attach(z);
  }
  /* Nobody is left to serve: no worker may outlive its executor. */
  {
    int i;
    for (i = 0; i < z->nlive; i++) kill(z->live[i].pid, SIGKILL);
    if (z->nlive > 0) reap(z, 1);
  }
  _exit(0);
}

/* The caller's end, seen from here: through a pidfd, which (unlike
** PR_SET_PDEATHSIG) is not tied to the thread that forked us; where
** there is none (-1), the parent-death signal it is. Leaves at once if
** the caller has ended already. */
static int watch_parent(pid_t parent) {
  int fd = -1;
#ifdef SYS_pidfd_open
  if (!UNDER_VALGRIND)  /* (vgcheck.h) */
    fd = (int)syscall(SYS_pidfd_open, parent, 0);
#endif
  if (fd < 0) die_with_parent(parent);
  else if (getppid() != parent) _exit(0);  /* the pid may be another's */
  else fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

/* Room for the descriptors of many executors: four each. The caller's
** limit is kept in *old for the workers. */
static void raise_fd_limit(struct rlimit *old) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, old) != 0) old->rlim_cur = RLIM_INFINITY;
  else if (old->rlim_cur < old->rlim_max) {
    rl.rlim_cur = rl.rlim_max = old->rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void ppe_zserver_main(int ctl, int arena, pid_t parent) {
  Zyg z;
  sigset_t chld;
  int keep[2], null, i;
  memset(&z, 0, sizeof(z));
  prctl(PR_GET_NAME, z.comm);
  prctl(PR_SET_NAME, "ppe zygote");
  ppe_big_after_fork();
  default_signals();
  keep[0] = ctl;
  keep[1] = arena;
  ppe_close_all_but(keep, 2);
  /* Workers read no input of the caller's, and write to their executor's
  ** stdout and stderr: ours are no pipe's or terminal's to hold open for
  ** the process's life. Nothing of ours is 0-2 then. */
  null = open("/dev/null", O_RDWR | O_CLOEXEC);
  for (i = 0; i <= 2 && null >= 0; i++)
    if (null != i) dup2(null, i);
  if (null > 2) close(null);
  z.parent = watch_parent(parent);
  raise_fd_limit(&z.nofile);
  /* No directory of the caller's stays in use for our life (a worker
  ** goes to its executor's). */
  if (chdir("/") != 0) {
    /* then the caller's it is */
  }
  if (arena >= 0) {
    z.arena = ppe_peer_open(arena, 0);
    close(arena);
  }
  z.ctl = ctl;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  z.sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  sigprocmask(SIG_SETMASK, &chld, NULL);  /* only SIGCHLD stays queued */
  z.msg = malloc(sizeof(ppe_zattach) + PPE_PATHS_MAX);
  if (z.sfd < 0 || z.msg == NULL ||
      reserve((void **)&z.pfd, &z.pfdcap, 3, sizeof(struct pollfd)) != 0)
    _exit(1);  /* an executor then finds its channel closed */
  /* Each worker sets its executor's package paths. If NULL, attaches are
  ** refused. */
  z.L = ppe_runner_state();
  serve(&z);
}
