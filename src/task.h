/* task.h - a task from outside the engine: a handle, and its states. */
#ifndef PPE_TASK_H
#define PPE_TASK_H

/* Defined in future.h, which only the engine includes. */
typedef struct ppe_task ppe_task;
/* A list of tasks in the order they complete (future.h). */
typedef struct ppe_done ppe_done;

/* A task's states, in this order: >= PPE_FINISHED is final. */
enum { PPE_PENDING, PPE_RUNNING, PPE_FINISHED, PPE_FAILED, PPE_CANCELLED };

#endif
