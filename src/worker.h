/* worker.h - the worker process main loop. */
#ifndef PPE_WORKER_H
#define PPE_WORKER_H

/* 1..max_workers inside a worker, 0 in the parent. */
int ppe_worker_id(void);

#endif
