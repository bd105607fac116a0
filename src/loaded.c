/* loaded.c - ppe's code, kept loaded as long as the process runs. */
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loaded.h"

/* 1 if the file named is the program itself (ppe linked into a host). */
static int in_program(const char *name) {
  char exe[PATH_MAX], real[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0 || realpath(name, real) == NULL) return 0;
  exe[n] = '\0';
  return strcmp(exe, real) == 0;
}

int ppe_stay_loaded(void) {
  Dl_info info;
  void *h;
  if (dladdr((void *)ppe_stay_loaded, &info) == 0 || info.dli_fname == NULL)
    return 0;
  h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
  if (h != NULL) {
    dlclose(h);  /* the reference just taken; the library stays */
    return 1;
  }
  return in_program(info.dli_fname);  /* linked in: never unloaded */
}
