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
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND RUNNING_ON_VALGRIND
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND 0
#endif

#include "lua.h"

#include "bigblock.h"
#include "buf.h"
#include "runner.h"
#include "shm.h"
#include "transport.h"
#include "worker.h"
#include "zygote.h"

/* Descriptors an attach message carries, and a client keeps, by index. */
enum {
  C_CHANNEL,  /* the executor's */
  C_CWD,      /* the caller's working directory, stdout and stderr, when */
  C_OUT,      /* the executor was made */
  C_ERR,
  ATTACH_FDS
};

extern char **environ;

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


/*
** {======================================================
** The zygote's side
** =======================================================
*/

/* An executor, as the zygote sees it. */
typedef struct Client {
  int fds[ATTACH_FDS];  /* C_* */
  char *path, *cpath;   /* its workers' package paths, or NULL */
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
  die_with_parent(zygote);
  prctl(PR_SET_NAME, z->comm);
  if (z->nofile.rlim_cur != RLIM_INFINITY)
    setrlimit(RLIMIT_NOFILE, &z->nofile);
  dup2(c->fds[C_OUT], 1);  /* no descriptor of ours is 0-2 (zygote_main) */
  dup2(c->fds[C_ERR], 2);
  if (fchdir(c->fds[C_CWD]) != 0) {
    /* a placeholder (see attach): the zygote's directory, "/", then */
  }
  keep[0] = fd;
  keep[1] = arena;
  ppe_close_all_but(keep, 2);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (ppe_runner_paths(z->L, c->path, c->cpath) != 0)
    failed = PPE_EXIT_NOMEM;
  else if (ppe_runner_hook(z->L) != 0)
    failed = PPE_EXIT_HOOK;
  ppe_worker_main(z->L, fd, id, arena, z->arena, failed);
}

static void spawn(Zyg *z, Client *c, int id, int arena) {
  int sv[2], r;
  pid_t pid, self = getpid();
  if (reserve((void **)&z->live, &z->livecap, z->nlive + 1,
              sizeof(Live)) != 0) {
    ppe_zygote_send(c->fds[C_CHANNEL], PPE_Z_SPAWNFAIL, id, 0, ENOMEM);
    return;
  }
  r = ppe_channel(sv);
  if (r < 0) {
    ppe_zygote_send(c->fds[C_CHANNEL], PPE_Z_SPAWNFAIL, id, 0, -r);
    return;
  }
  pid = fork_plain();
  if (pid == 0) worker_start(z, c, sv[1], id, arena, self);
  r = errno;
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    ppe_zygote_send(c->fds[C_CHANNEL], PPE_Z_SPAWNFAIL, id, 0, r);
    return;
  }
  z->live[z->nlive].pid = pid;
  z->live[z->nlive++].c = c;
  {
    ppe_zmsg m = {PPE_Z_SPAWNED, id, pid, 0};
    ppe_send_packet(c->fds[C_CHANNEL], &m, sizeof(m), &sv[0], 1);
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
      ppe_zygote_send(c->fds[C_CHANNEL], PPE_Z_EXITED, 0, pid, st);
    if (block && z->nlive == 0) break;
  }
}

static void close_fds(const int *fds) {
  int i;
  for (i = 0; i < ATTACH_FDS; i++)
    if (fds[i] >= 0) close(fds[i]);
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
  close_fds(c->fds);
  free(c);
  z->cl[i] = z->cl[--z->ncl];
}

/* One message from an executor. 0 if it has gone. */
static int serve_client(Zyg *z, Client *c) {
  ppe_zmsg m;
  int passfd, i;
  long n = ppe_recv_packet(c->fds[C_CHANNEL], &m, sizeof(m), &passfd, 1);
  if (n == (long)sizeof(m) && m.type == PPE_Z_SPAWN)
    spawn(z, c, m.id, passfd);
  if (passfd >= 0) close(passfd);  /* the worker has its own copy */
  if (n <= 0) return 0;
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
  ppe_zmsg *m = (ppe_zmsg *)z->msg;
  const char *s = z->msg + sizeof(*m);
  int i;
  long n = ppe_recv_packet(z->ctl, z->msg, sizeof(*m) + PPE_PATHS_MAX, fds,
                           ATTACH_FDS);
  *eof = n == 0 || (n < 0 && n != -EAGAIN);
  if (!(n >= (long)sizeof(*m) && m->type == PPE_Z_ATTACH && m->id >= 0 &&
        m->pid >= 0 && m->id <= PPE_PATHS_MAX && m->pid <= PPE_PATHS_MAX &&
        n == (long)sizeof(*m) + m->id + m->pid &&
        (m->id == 0 || s[m->id - 1] == '\0') &&
        (m->pid == 0 || s[m->id + m->pid - 1] == '\0')))
    return EPROTO;
  for (i = 0; i < ATTACH_FDS; i++)
    if (fds[i] < 0) return EMFILE;
  *c = malloc(sizeof(**c) + (size_t)(m->id + m->pid));
  if (*c == NULL) return ENOMEM;
  memcpy((*c)->fds, fds, sizeof((*c)->fds));
  memcpy(*c + 1, s, (size_t)(m->id + m->pid));
  (*c)->path = m->id ? (char *)(*c + 1) : NULL;
  (*c)->cpath = m->pid ? (char *)(*c + 1) + m->id : NULL;
  return 0;
}

static void attach(Zyg *z) {
  int fds[ATTACH_FDS], eof, err;
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
  if (fds[C_CHANNEL] >= 0)
    ppe_zygote_send(fds[C_CHANNEL], PPE_Z_READY, z->arena != NULL, 0, err);
  if (err == 0) z->cl[z->ncl++] = c;
  else {
    close_fds(fds);
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
      z->pfd[i + 3].fd = z->cl[i]->fds[C_CHANNEL];
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
  /* Valgrind 3.19 knows no pidfd_open, and says so on stderr. */
  if (!UNDER_VALGRIND) fd = (int)syscall(SYS_pidfd_open, parent, 0);
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

static int holders;  /* the caller's side's, below */

static void zygote_main(int ctl, int arena, pid_t parent) {
  Zyg z;
  sigset_t chld;
  int keep[2], null, i;
  holders = 0;  /* the caller's count: a worker's states are its own */
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
  z.msg = malloc(sizeof(ppe_zmsg) + PPE_PATHS_MAX);
  if (z.sfd < 0 || z.msg == NULL ||
      reserve((void **)&z.pfd, &z.pfdcap, 3, sizeof(struct pollfd)) != 0)
    _exit(1);  /* an executor then finds its channel closed */
  /* Each worker sets its executor's package paths. If NULL, attaches are
  ** refused. */
  z.L = ppe_runner_state();
  serve(&z);
}

/* }====================================================== */


/*
** {======================================================
** The caller's side
** =======================================================
*/

/* What workers get from the process at the zygote's fork, and which an
** executor made since must find unchanged to use that zygote. */
typedef struct Fit {
  ppe_hook hook;     /* the host's worker hook */
  uint64_t env;      /* a hash of the environment */
  uid_t uid, euid;
  gid_t gid, egid;
  dev_t rootdev;     /* the root directory, which chroot changes */
  ino_t rootino;
} Fit;

struct ppe_zygote {
  pid_t pid;
  pid_t owner;       /* the process that forked it */
  int ctl;           /* for attaches; -1 once it is retired */
  int refs;          /* executors attached, and one while current */
  Fit fit;
  struct ppe_zygote *older;  /* in a fork's child, see forget */
};

static pthread_mutex_t zlock = PTHREAD_MUTEX_INITIALIZER;
static ppe_zygote *cur = NULL;  /* the one new executors attach to */
static ppe_zygote *forgotten = NULL;  /* the parents', in a fork's child */
static int holders = 0;         /* Lua states with ppe loaded */
static pthread_once_t watch_once = PTHREAD_ONCE_INIT;

/* In the child of a fork the zygote is not its own: it starts one when
** it needs one (the zygote is such a child too), and lets go of its copy
** of the channel, which would keep the parent's zygote up. Executors
** copied from the parent still point to the parent's record, which stays,
** and stays reachable. */
static void set_aside(void) {
  if (cur != NULL) {
    if (cur->ctl >= 0) close(cur->ctl);
    cur->ctl = -1;
    cur->older = forgotten;
    forgotten = cur;
    cur = NULL;
  }
}

/* Another thread may have held the lock at the fork. */
static void forget(void) {
  set_aside();
  pthread_mutex_init(&zlock, NULL);
}

static void watch_forks(void) {
  pthread_atfork(NULL, NULL, forget);
}

static void fit_now(Fit *f) {
  uint64_t h = 14695981039346656037u;  /* FNV-1a */
  char **e;
  struct stat st;
  memset(f, 0, sizeof(*f));  /* padding too: fits compare by memcmp */
  for (e = environ; e != NULL && *e != NULL; e++) {
    const unsigned char *s = (const unsigned char *)*e;
    do {
      h ^= *s;
      h *= 1099511628211u;
    } while (*s++ != '\0');
  }
  f->hook = ppe_runner_host_hook();
  f->env = h;
  f->uid = getuid();
  f->euid = geteuid();
  f->gid = getgid();
  f->egid = getegid();
  if (stat("/", &st) == 0) {
    f->rootdev = st.st_dev;
    f->rootino = st.st_ino;
  }
}

/* Zygote z loses a reference. Returns z if that was the last, for
** bury() once the lock is let go; a parent's record in a fork's child
** stays (see set_aside). */
static ppe_zygote *unref(ppe_zygote *z) {
  if (--z->refs > 0 || z->owner != getpid()) return NULL;
  return z;
}

/* A zygote with no reference serves nobody: its channel is closed and no
** executor is attached. It would end by itself; one that is stopped or
** stuck must not hold us up. It is killed only while it is our child not
** yet reaped, whose pid no other process can have: a host's own wait
** may have reaped it. */
static void bury(ppe_zygote *z) {
  pid_t r;
  if (z == NULL) return;
  while ((r = waitpid(z->pid, NULL, WNOHANG)) < 0 && errno == EINTR)
    ;
  if (r == 0) {
    kill(z->pid, SIGKILL);
    while (waitpid(z->pid, NULL, 0) < 0 && errno == EINTR)
      ;
  }
  free(z);
}

/* Makes z no longer the current zygote; returns it if it is to be
** buried. */
static ppe_zygote *retire(ppe_zygote *z) {
  if (z != cur) return NULL;
  cur = NULL;
  close(z->ctl);
  z->ctl = -1;
  return unref(z);
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

/* Forks a new zygote and makes it the current one. 'msg' is the attach
** message being sent, which the child frees with the rest of what the
** caller's thread had allocated here: a worker that calls exit must not
** find it leaked. */
static int start(const Fit *fit, void *msg) {
  sigset_t all, old;
  ppe_zygote *z = calloc(1, sizeof(*z));
  pid_t child, self = getpid();
  int sv[2], r, saved, arena;
  if (z == NULL) return -ENOMEM;
  r = ppe_packet_channel(sv);
  if (r < 0) {
    free(z);
    return r;
  }
  arena = ppe_shm_own();
  if (arena >= 0) arena = readonly(arena);
  /* No signal handler of the caller's may run in the child before it has
  ** reset them; and buffered output must not be written twice. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  fflush(NULL);
  child = fork();
  if (child == 0) {
    free(z);
    free(msg);
    zygote_main(sv[1], arena, self);
  }
  saved = errno;
  if (arena >= 0) close(arena);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(sv[1]);
  if (child < 0) {
    close(sv[0]);
    free(z);
    return -saved;
  }
  z->pid = child;
  z->owner = self;
  z->ctl = sv[0];
  z->refs = 1;
  z->fit = *fit;
  cur = z;
  return 0;
}

/* A descriptor for the worker's stdout or stderr: the caller's, or
** /dev/null where the caller has none. */
static int stdio_fd(int fd) {
  if (fcntl(fd, F_GETFD) >= 0) return fd;
  return open("/dev/null", O_WRONLY | O_CLOEXEC);
}

int ppe_zygote_attach(const char *path, const char *cpath, ppe_zygote **z,
                      int *fd) {
  size_t lp = path != NULL ? strlen(path) + 1 : 0;
  size_t lc = cpath != NULL ? strlen(cpath) + 1 : 0;
  Fit fit;
  ppe_zmsg *m;
  ppe_zygote *dead[4];  /* retired here, buried once the lock is free */
  int sv[2], fds[ATTACH_FDS], i, r, tries, ndead = 0;
  if (lp + lc > PPE_PATHS_MAX) return -ENAMETOOLONG;
  m = malloc(sizeof(*m) + lp + lc);
  if (m == NULL) return -ENOMEM;
  m->type = PPE_Z_ATTACH;
  m->id = (int32_t)lp;
  m->pid = (int32_t)lc;
  m->status = 0;
  if (lp) memcpy(m + 1, path, lp);
  if (lc) memcpy((char *)(m + 1) + lp, cpath, lc);
  r = ppe_packet_channel(sv);
  if (r < 0) {
    free(m);
    return r;
  }
  fds[C_CHANNEL] = sv[1];
  /* O_PATH: a directory we may not read is still one to work in. */
  fds[C_CWD] = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fds[C_CWD] < 0) fds[C_CWD] = open("/dev/null", O_RDONLY | O_CLOEXEC);
  fds[C_OUT] = stdio_fd(1);
  fds[C_ERR] = stdio_fd(2);
  fit_now(&fit);
  pthread_once(&watch_once, watch_forks);
  pthread_mutex_lock(&zlock);
  for (tries = 0; tries < 2; tries++) {
    if (fds[C_CWD] < 0 || fds[C_OUT] < 0 || fds[C_ERR] < 0) {
      r = -EMFILE;
      break;
    }
    if (cur != NULL && cur->owner != getpid())
      set_aside();  /* a child of a fork that ran no atfork handler */
    if (cur != NULL && memcmp(&cur->fit, &fit, sizeof(fit)) != 0)
      dead[ndead++] = retire(cur);
    if (cur == NULL && (r = start(&fit, m)) < 0) break;
    r = ppe_send_packet(cur->ctl, m, sizeof(*m) + lp + lc, fds,
                        ATTACH_FDS);
    if (r == 0) {
      cur->refs++;
      *z = cur;
      break;
    }
    if (r != -EPIPE && r != -ECONNRESET && r != -ENOTCONN &&
        r != -ECONNREFUSED)
      break;  /* this executor's trouble, not the zygote's */
    dead[ndead++] = retire(cur);  /* it has ended: once more, anew */
  }
  pthread_mutex_unlock(&zlock);
  for (i = 0; i < ndead; i++) bury(dead[i]);
  free(m);
  /* Ours, not the caller's stdout and stderr, which went as they are. */
  if (fds[C_OUT] == 1) fds[C_OUT] = -1;
  if (fds[C_ERR] == 2) fds[C_ERR] = -1;
  close_fds(fds);
  if (r < 0) {
    close(sv[0]);
    return r;
  }
  *fd = sv[0];
  return 0;
}

void ppe_zygote_detach(ppe_zygote *z) {
  pthread_mutex_lock(&zlock);
  z = unref(z);
  pthread_mutex_unlock(&zlock);
  bury(z);
}

void ppe_zygote_retire(ppe_zygote *z) {
  pthread_mutex_lock(&zlock);
  z = retire(z);
  pthread_mutex_unlock(&zlock);
  bury(z);
}

void ppe_zygote_kill(ppe_zygote *z) {
  siginfo_t si;
  pthread_mutex_lock(&zlock);
  /* Only our child that has not ended: its pid is no other process's. A
  ** fork's child has the record but not the process. */
  memset(&si, 0, sizeof(si));
  if (z != NULL && z->owner == getpid() &&
      waitid(P_PID, (id_t)z->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
      si.si_pid == 0)
    kill(z->pid, SIGKILL);
  z = retire(z);
  pthread_mutex_unlock(&zlock);
  bury(z);
}

void ppe_zygote_hold(int delta) {
  ppe_zygote *z = NULL;
  pthread_mutex_lock(&zlock);
  holders += delta;
  if (holders <= 0) {
    holders = 0;
    if (cur != NULL && cur->owner != getpid()) set_aside();
    else if (cur != NULL) z = retire(cur);
  }
  pthread_mutex_unlock(&zlock);
  bury(z);
}

/* }====================================================== */
