/* forward.h - what far workers and their launchers write, on its way to
** this process's stdout (fd 1) and stderr (fd 2), never waiting on them.
** The I/O thread writes there under the lock that guards every executor:
** a stdout that nobody reads must not stop them all. Bytes are queued,
** and written as the descriptor takes them; whoever needs them out first
** (a task's reply comes after its lines) asks whether they are. Callable
** from any thread. */
#ifndef PPE_FORWARD_H
#define PPE_FORWARD_H

#include <stddef.h>
#include <stdint.h>

/* Bytes queued on one descriptor past which a writer waits: it stops
** reading what it would forward, so it is the far side that waits. */
#define PPE_FWD_MAX (256u * 1024)

/* Queues n bytes for fd (1 or 2) and writes what it takes now. Returns
** the mark of the last byte: ppe_fwd_out(fd, mark) once it is out. Bytes
** that cannot be written at all (a closed descriptor, a pipe without
** reader) are dropped, and count as out. */
uint64_t ppe_fwd_put(int fd, const char *p, size_t n);
/* 1 once every byte up to mark has gone out (or was dropped). */
int ppe_fwd_out(int fd, uint64_t mark);
/* Bytes of fd's queue not yet out. */
size_t ppe_fwd_pending(int fd);
/* The descriptor to poll for writing while fd's queue has bytes, or -1. */
int ppe_fwd_pollfd(int fd);
/* Writes what each queue's descriptor takes now. */
void ppe_fwd_flush(void);
/* An executor begins (1) or ends (-1) to use these: once none does,
** bytes still queued are dropped (nobody would write them) and the
** descriptors ppe opened are closed. */
void ppe_fwd_use(int delta);

#endif
