/* zmsg.c - sending the messages between executors and their fork
** server (see zmsg.h). */
#include <unistd.h>

#include "transport.h"
#include "zmsg.h"

int ppe_zygote_send(int fd, int type, int id, int pid, int status) {
  ppe_zmsg m;
  m.type = type; m.id = id; m.pid = pid; m.status = status;
  return ppe_send_packet(fd, &m, sizeof(m), NULL, 0);
}

void ppe_zygote_close_fds(const int *fds) {
  int i;
  for (i = 0; i < PPE_ZF_N; i++)
    if (fds[i] >= 0) close(fds[i]);
}
