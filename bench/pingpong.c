/* pingpong.c - the floor ppe is measured against: two processes trading
** messages over a socketpair, with no serialization and no Lua.
**   pingpong rtt N         N round trips of 64 bytes; prints us per trip
**   pingpong echo BYTES N  N echoes of BYTES; prints MB/s one way */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int xfer(int fd, char *p, size_t n, int out) {
  while (n > 0) {
    ssize_t r = out ? write(fd, p, n) : read(fd, p, n);
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

int main(int argc, char **argv) {
  int sv[2], i, n, echo = argc > 1 && strcmp(argv[1], "echo") == 0;
  size_t size = echo && argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
  char *buf;
  double t0, t1;
  pid_t pid;
  n = atoi(argv[argc - 1]);
  if (argc < 3 || n <= 0) {
    fprintf(stderr, "usage: pingpong rtt N | pingpong echo BYTES N\n");
    return 2;
  }
  buf = calloc(1, size);
  if (buf == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) return 1;
  pid = fork();
  if (pid == 0) {
    close(sv[0]);
    for (i = 0; i < n; i++)
      if (xfer(sv[1], buf, size, 0) || xfer(sv[1], buf, size, 1)) _exit(1);
    _exit(0);
  }
  close(sv[1]);
  t0 = now();
  for (i = 0; i < n; i++)
    if (xfer(sv[0], buf, size, 1) || xfer(sv[0], buf, size, 0)) return 1;
  t1 = now();
  waitpid(pid, NULL, 0);
  if (echo) printf("%.1f\n", (double)size * n / (t1 - t0) / 1e6);
  else printf("%.2f\n", (t1 - t0) / n * 1e6);
  return 0;
}
