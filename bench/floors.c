/* floors.c - the floors ppe is measured against, in plain C, each in the
** same run as ppe's figure: what the machine and the kernel cost before
** any serialization, pool or Lua value is involved. Prints one number.
**   floors rtt N          N round trips of 64 bytes over a socketpair
**                         between two processes, blocking; us per trip
**   floors spin N         the same, each side spinning on a non-blocking
**                         read instead of sleeping in it; us per trip
**   floors echo BYTES N   N echoes of BYTES over a socketpair; MB/s one way
**   floors state N        a fork whose child makes a Lua state with the
**                         standard libraries, closes it and exits, until
**                         the parent has reaped it; ms per child
**   floors idle           private KiB of a forked child that holds such a
**                         state and waits
**   floors warm BYTES N   memcpy of BYTES into memory written before; GB/s
**   floors fresh BYTES N  memcpy of BYTES into memory just mapped, so that
**                         every page is faulted in and zeroed; GB/s */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Moves all 'n' bytes; 'spin' retries a read that finds nothing instead
** of sleeping in it. */
static int xfer(int fd, char *p, size_t n, int out, int spin) {
  while (n > 0) {
    ssize_t r = out ? write(fd, p, n)
                    : recv(fd, p, n, spin ? MSG_DONTWAIT : 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static pid_t reap(pid_t pid) {
  pid_t r;
  do r = waitpid(pid, NULL, 0); while (r < 0 && errno == EINTR);
  return r;
}

/* 'n' exchanges of 'size' bytes with a forked echoing child; seconds. */
static double exchange(size_t size, int n, int spin) {
  int sv[2], i;
  char *buf = calloc(1, size);
  double t0, t1;
  pid_t pid;
  if (buf == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) exit(1);
  pid = fork();
  if (pid < 0) exit(1);
  if (pid == 0) {
    close(sv[0]);
    for (i = 0; i < n; i++)
      if (xfer(sv[1], buf, size, 0, spin) || xfer(sv[1], buf, size, 1, spin))
        _exit(1);
    _exit(0);
  }
  close(sv[1]);
  t0 = now();
  for (i = 0; i < n; i++)
    if (xfer(sv[0], buf, size, 1, spin) || xfer(sv[0], buf, size, 0, spin))
      exit(1);
  t1 = now();
  close(sv[0]);
  reap(pid);
  free(buf);
  return t1 - t0;
}

static lua_State *newstate(void) {
  lua_State *L = luaL_newstate();
  if (L == NULL) _exit(1);
  luaL_openlibs(L);
  return L;
}

/* A worker's start as a fork server would pay it, with nothing of ppe's:
** the fork, a fresh state, its end, and the parent told by waitpid. */
static double state(int n) {
  int i;
  double t0 = now();
  for (i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid < 0) exit(1);
    if (pid == 0) {
      lua_close(newstate());
      _exit(0);
    }
    if (reap(pid) != pid) exit(1);
  }
  return (now() - t0) / n;
}

/* What /proc/PID/smaps_rollup counts as private, in KiB, as
** bench/executor.lua reads it for a worker. */
static long private_kib(pid_t pid) {
  char path[64], line[256];
  long total = 0, k;
  FILE *f;
  snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
  if ((f = fopen(path, "r")) == NULL) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "Private_", 8) == 0 &&
        sscanf(strchr(line, ':') + 1, "%ld", &k) == 1)
      total += k;
  fclose(f);
  return total;
}

/* A child holding a fresh state, measured once it has made it; it exits
** when the parent closes its end of the pipe. */
static long idle(void) {
  int up[2], down[2];
  char c;
  long kib;
  pid_t pid;
  if (pipe(up) < 0 || pipe(down) < 0) exit(1);
  pid = fork();
  if (pid < 0) exit(1);
  if (pid == 0) {
    lua_State *L = newstate();
    close(up[0]);
    close(down[1]);
    if (write(up[1], "", 1) != 1) _exit(1);
    while (read(down[0], &c, 1) < 0 && errno == EINTR) {}
    lua_close(L);
    _exit(0);
  }
  close(up[1]);
  close(down[0]);
  if (read(up[0], &c, 1) != 1) exit(1);
  kib = private_kib(pid);
  close(down[1]);
  reap(pid);
  return kib;
}

/* 'n' copies of 'size' bytes; 'fresh' maps the destination anew for each
** (the mapping's cost counted, its unmapping not). Seconds. */
static double copy(size_t size, int n, int fresh) {
  char *src = malloc(size), *dst = NULL;
  double t = 0, t0;
  int i;
  if (src == NULL) exit(1);
  memset(src, 'x', size);
  if (!fresh) {
    /* Written once before the clock starts (a copy, not a memset of
    ** zeros, which a compiler may turn with the malloc into a calloc
    ** that writes nothing). */
    if ((dst = malloc(size)) == NULL) exit(1);
    memcpy(dst, src, size);
  }
  for (i = 0; i < n; i++) {
    t0 = now();
    if (fresh) {
      dst = mmap(NULL, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (dst == MAP_FAILED) exit(1);
    }
    memcpy(dst, src, size);
    t += now() - t0;
    /* Read back, so that the copy cannot be left out. */
    if (dst[size - 1] != 'x') exit(1);
    if (fresh) munmap(dst, size);
  }
  if (!fresh) free(dst);
  free(src);
  return t;
}

static void usage(void) {
  fprintf(stderr, "usage: floors rtt N | spin N | echo BYTES N | state N "
                  "| idle | warm BYTES N | fresh BYTES N\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *what = argc > 1 ? argv[1] : "";
  int n = argc > 2 ? atoi(argv[argc - 1]) : 0;
  size_t size = argc > 3 ? strtoul(argv[2], NULL, 10) : 0;
  if (strcmp(what, "idle") == 0) {
    printf("%ld\n", idle());
    return 0;
  }
  if (n <= 0) usage();
  if (strcmp(what, "rtt") == 0 || strcmp(what, "spin") == 0)
    printf("%.2f\n", exchange(64, n, what[0] == 's') / n * 1e6);
  else if (strcmp(what, "state") == 0)
    printf("%.3f\n", state(n) * 1e3);
  else if (size == 0)
    usage();
  else if (strcmp(what, "echo") == 0)
    printf("%.1f\n", (double)size * n / exchange(size, n, 0) / 1e6);
  else if (strcmp(what, "warm") == 0 || strcmp(what, "fresh") == 0)
    printf("%.3f\n", (double)size * n / copy(size, n, what[0] == 'f') / 1e9);
  else
    usage();
  return 0;
}
