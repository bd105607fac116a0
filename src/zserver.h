/* zserver.h - the fork server's process (see zygote.h). */
#ifndef PPE_ZSERVER_H
#define PPE_ZSERVER_H

#include <sys/types.h>

/* In the child just forked to be the zygote: serves the attaches that
** come on 'ctl' and the executors they bring, until none is left or the
** caller ('parent') has ended, then leaves with _exit. 'arena' is the
** caller's shared arena, read-only (-1 for none). Never returns. */
void ppe_zserver_main(int ctl, int arena, pid_t parent);

#endif
