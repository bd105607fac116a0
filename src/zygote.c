/* zygote.c - the caller's side of the fork server: which zygote an
** executor attaches to, starting one when needed, and ending it (see
** zygote.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner.h"
#include "shm.h"
#include "transport.h"
#include "zserver.h"
#include "zygote.h"

extern char **environ;

/* What workers get from the process at the zygote's fork, and which an
** executor made since must find unchanged to use that zygote. */
typedef struct Fit {
  ppe_hook hook;     /* the host's worker hook */
  void *hook_ud;     /* and its argument */
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
  f->hook = ppe_runner_host_hook(&f->hook_ud);
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
    holders = 0;  /* the caller's count: a worker's states are its own */
    ppe_zserver_main(sv[1], arena, self);
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

int ppe_zygote_attach(const char *path, const char *cpath,
                      uint32_t memory_cap, ppe_zygote **z, int *fd) {
  size_t lp = path != NULL ? strlen(path) + 1 : 0;
  size_t lc = cpath != NULL ? strlen(cpath) + 1 : 0;
  Fit fit;
  ppe_zattach *m;
  ppe_zygote *dead[4];  /* retired here, buried once the lock is free */
  int sv[2], fds[PPE_ZF_N], i, r, tries, ndead = 0;
  if (lp + lc > PPE_PATHS_MAX) return -ENAMETOOLONG;
  m = malloc(sizeof(*m) + lp + lc);
  if (m == NULL) return -ENOMEM;
  m->type = PPE_Z_ATTACH;
  m->lpath = (int32_t)lp;
  m->lcpath = (int32_t)lc;
  m->memory_cap = memory_cap;
  if (lp) memcpy(m + 1, path, lp);
  if (lc) memcpy((char *)(m + 1) + lp, cpath, lc);
  r = ppe_packet_channel(sv);
  if (r < 0) {
    free(m);
    return r;
  }
  fds[PPE_ZF_CHAN] = sv[1];
  /* O_PATH: a directory we may not read is still one to work in. */
  fds[PPE_ZF_CWD] = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fds[PPE_ZF_CWD] < 0)
    fds[PPE_ZF_CWD] = open("/dev/null", O_RDONLY | O_CLOEXEC);
  fds[PPE_ZF_OUT] = stdio_fd(1);
  fds[PPE_ZF_ERR] = stdio_fd(2);
  fit_now(&fit);
  pthread_once(&watch_once, watch_forks);
  pthread_mutex_lock(&zlock);
  for (tries = 0; tries < 2; tries++) {
    if (fds[PPE_ZF_CWD] < 0 || fds[PPE_ZF_OUT] < 0 || fds[PPE_ZF_ERR] < 0) {
      r = -EMFILE;
      break;
    }
    if (cur != NULL && cur->owner != getpid())
      set_aside();  /* a child of a fork that ran no atfork handler */
    if (cur != NULL && memcmp(&cur->fit, &fit, sizeof(fit)) != 0)
      dead[ndead++] = retire(cur);
    if (cur == NULL && (r = start(&fit, m)) < 0) break;
    r = ppe_send_packet(cur->ctl, m, sizeof(*m) + lp + lc, fds,
                        PPE_ZF_N);
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
  if (fds[PPE_ZF_OUT] == 1) fds[PPE_ZF_OUT] = -1;
  if (fds[PPE_ZF_ERR] == 2) fds[PPE_ZF_ERR] = -1;
  ppe_zygote_close_fds(fds);
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
