/* debug.h - PPE_DEBUG: a line on stderr for each event of a worker's
** life and each failed task, for a user who asks what the pool did. */
#ifndef PPE_DEBUG_H
#define PPE_DEBUG_H

/* 1 if the environment variable PPE_DEBUG was set, and not to "" or "0",
** when it was first looked at. */
int ppe_debug_on(void);

/* Writes "ppe[PID] HH:MM:SS.mmm " and the formatted text as one line to
** stderr, in one write: lines of several processes do not mix. */
void ppe_debug(const char *fmt, ...)
#if defined(__GNUC__)
  __attribute__((format(printf, 1, 2)))
#endif
  ;

/* Only when it is on: the arguments are not even computed otherwise. */
#define PPE_DEBUG(args) do { if (ppe_debug_on()) ppe_debug args; } while (0)

#endif
