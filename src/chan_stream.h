/* chan_stream.h - the channel to a far worker, started through a
** launcher (ssh, srun, ...): frames over one stream socket, which the
** launcher has as its stdin and stdout. The worker is serve.c. */
#ifndef PPE_CHAN_STREAM_H
#define PPE_CHAN_STREAM_H

#include <stdint.h>
#include <sys/types.h>

#include "channel.h"
#include "hello.h"

#define PPE_STREAM_WHY 200

/* A channel on fd (ours: the launcher has the other end), to a worker
** that must say 'mine' back in its hello; it is welcomed as worker 'id',
** with memory cap 'cap' (hello.h's welcome). NULL without memory. */
ppe_chan *ppe_chan_stream_new(int fd, const ppe_hello *mine, int id,
                              uint32_t cap);
/* 1 once the worker's hello came and matched. */
int ppe_chan_stream_greeted(const ppe_chan *ch);
/* Why the handshake failed, or "". */
const char *ppe_chan_stream_why(const ppe_chan *ch);
/* The worker's pid on its own machine, from its hello; 0 before. */
pid_t ppe_chan_stream_pid(const ppe_chan *ch);

#endif
