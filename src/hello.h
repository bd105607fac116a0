/* hello.h - the handshake with a far worker, over a launcher's stream:
** what each side says first, and whether the two can work together. */
#ifndef PPE_HELLO_H
#define PPE_HELLO_H

#include <stddef.h>
#include <stdint.h>

#include "lua.h"

#include "mac.h"

/* What a worker says first (frame PPE_F_HELLO), and what the executor
** holds of its own side to compare: every field must be the same but
** the pid. Plain bytes: read before anything is known of the other
** side, its byte order included. */
typedef struct ppe_hello {
  char magic[8];             /* "ppe\x01helo" */
  uint32_t order;            /* 0x01020304, as the writer stores it */
  uint32_t wire;             /* PPE_WIRE_VERSION (wire.h) */
  char ppe[24];              /* PPE_VERSION (ppe.h) */
  char lua[40];              /* the VM: "Lua 5.4", "LuaJIT 2.1.0-beta3" */
  unsigned char code[32];    /* how its bytecode starts (string.dump) */
  uint32_t ncode;
  int32_t pid;               /* the worker's, as getpid says it there */
} ppe_hello;

/* What the executor answers (frame PPE_F_WELCOME): the key that tags
** its bytecode, the worker's number (ppe.worker_id), and its memory cap
** (max_memory_per_child in KiB, worker.h; 0 for none). */
typedef struct ppe_welcome {
  unsigned char key[PPE_MAC_KEYLEN];
  int32_t id;
  uint32_t memory_cap;
} ppe_welcome;

/* Fills h with this side's own (L: any state of this process's VM). 0,
** or -1 if a function could not be dumped (out of memory). */
int ppe_hello_make(lua_State *L, ppe_hello *h);

/* 1 if a worker that said 'far' (n bytes of it) can work for 'mine'; else
** 0, with why in 'why' (n bytes), naming both sides' versions. */
int ppe_hello_match(const ppe_hello *mine, const void *far, size_t n,
                    char *why, size_t whysz);

#endif
