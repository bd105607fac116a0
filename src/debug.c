/* debug.c - PPE_DEBUG's lines (see debug.h). */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "debug.h"

static int on = 0;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void look(void) {
  const char *v = getenv("PPE_DEBUG");
  on = v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

int ppe_debug_on(void) {
  pthread_once(&once, look);
  return on;
}

void ppe_debug(const char *fmt, ...) {
  char line[512];
  struct timeval tv;
  struct tm tm;
  va_list ap;
  size_t n;
  int k;
  gettimeofday(&tv, NULL);
  localtime_r(&tv.tv_sec, &tm);
  k = snprintf(line, sizeof(line), "ppe[%d] %02d:%02d:%02d.%03d ",
               (int)getpid(), tm.tm_hour, tm.tm_min, tm.tm_sec,
               (int)(tv.tv_usec / 1000));
  n = k > 0 ? (size_t)k : 0;
  va_start(ap, fmt);
  k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
  va_end(ap);
  n += k < 0 ? 0 : (size_t)k < sizeof(line) - n - 1 ? (size_t)k
                                                     : sizeof(line) - n - 2;
  line[n++] = '\n';
  if (write(2, line, n) < 0) {
    /* nowhere else to say it */
  }
}
