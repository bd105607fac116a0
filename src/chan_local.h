/* chan_local.h - the channel to a worker the zygote forked on this
** machine: frames through a socketpair; large messages where they are,
** in the sender's shared arena; small replies through the worker's ring,
** whose gates let tasks sent be taken back (ring.h). */
#ifndef PPE_CHAN_LOCAL_H
#define PPE_CHAN_LOCAL_H

#include "channel.h"

/* A channel for a worker about to be forked, with an arena of its own,
** mapped here, for its large replies: in *arena, that arena's descriptor
** for the zygote, which hands it to the worker; -1 if it could not be had
** (the worker then replies through the socket alone). NULL without
** memory. */
ppe_chan *ppe_chan_local_new(int *arena);

/* The worker is forked: fd is our end of its socketpair, which ch takes
** in any case. 'shared': it reads large requests where they are in our
** own arena. 0, or -errno if the channel cannot be used (end it then). */
int ppe_chan_local_open(ppe_chan *ch, int fd, int shared);

#endif
