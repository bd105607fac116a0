/* worker.h - the worker process main loop, and its exit codes. Lua-free:
** the executor's engine reads the codes too. */
#ifndef PPE_WORKER_H
#define PPE_WORKER_H

#include <stddef.h>
#include <stdint.h>

/* 1..max_workers inside a worker, 0 in the parent. */
int ppe_worker_id(void);
/* A far worker's number, as its executor gives it (serve.c). */
void ppe_worker_set_id(int id);

/* max_memory_per_child as it travels to a worker: KiB, 0 for none. The
** resident set is whole pages, so 'more than this many KiB' is exactly
** 'more than that many bytes'. */
uint32_t ppe_worker_memory_cap(uint64_t bytes);
/* In a worker: the cap it was given (0: none). */
void ppe_worker_set_memory_cap(uint32_t kib);
/* In a worker, after a task: 1 if its resident memory is over its cap. */
int ppe_worker_over_memory(void);

/* The exit codes of a worker that leaves by itself, other than 0 (its
** executor is done with it). A task's os.exit can give the same numbers:
** the worker also says in its ring that the code is its own (ring.h). */
enum {
  PPE_EXIT_READ = 3,   /* it could not read a request */
  PPE_EXIT_NOMEM = 4,  /* out of memory */
  PPE_EXIT_INIT = 5,   /* its initializer raised */
  PPE_EXIT_HOOK = 6,   /* the host's worker-init hook raised */
  PPE_EXIT_MEMORY = 7  /* its resident memory passed max_memory_per_child
                       ** after a task: it left once that task's reply was
                       ** out, and started none after it */
};
/* What one of those codes means, in a few words; NULL for another. */
const char *ppe_worker_exit_meaning(int code);
/* Writes the name of signal sig and what it means ("SIGPIPE: broken
** pipe") into buf, of n bytes. */
void ppe_signal_describe(char *buf, size_t n, int sig);

struct lua_State;
struct ppe_peer;
/* Serves requests from fd on L until end of stream; never returns. arena
** is its own shared arena (a descriptor, or -1), parent the caller's,
** mapped (or NULL). A worker whose state could not be set up leaves at
** once with 'failed', a PPE_EXIT_* code (0: it was), after saying 'why'
** (PPE_F_HOOKERR) if not NULL. */
void ppe_worker_main(struct lua_State *L, int fd, int id, int arena,
                     struct ppe_peer *parent, int failed, const char *why)
    __attribute__((noreturn));

/* Room for what a worker says of its host hook's error. */
#define PPE_HOOK_WHY 200

#endif
