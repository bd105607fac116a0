/* vgcheck.h - UNDER_VALGRIND: whether this process runs under valgrind,
** whose 3.19 knows no pidfd_open (and says so on stderr at each call):
** where it does not, ends of processes are looked for by polling. */
#ifndef PPE_VGCHECK_H
#define PPE_VGCHECK_H

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND RUNNING_ON_VALGRIND
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND 0
#endif

#endif
