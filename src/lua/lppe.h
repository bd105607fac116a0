/* lppe.h - what the binding's classes share: class names, the upvalues
** every C function of the module has, and what each file offers the
** others. Lua-facing only: the engine is reached through engine.h. */
#ifndef LPPE_H
#define LPPE_H

#include "lua.h"
#include "lauxlib.h"

#include "src/compat.h"
#include "src/engine.h"

#define PPE_ERROR "ppe.Error"
#define PPE_BUFBOX "ppe.Buffer"
#define PPE_EXECUTOR "ppe.Executor"
#define PPE_FUTURE "ppe.Future"
#define PPE_TASKREFS "ppe.TaskRefs"
#define PPE_MAP "ppe.Map"
/* An unordered map's metatable is the same but for a __gc, which frees its
** completion list: an ordered one has none to free, and a finalizer would
** keep it and its items a collection longer. */
#define PPE_UMAP "ppe.UnorderedMap"
/* A completion list held by a Lua value (lwait.c). */
#define PPE_DONEBOX "ppe.Completions"

/* Every C function of the module has the metatables of the classes met
** once or twice per task as upvalues: one is had at the cost of a stack
** slot, where the registry would take a lookup. */
#define FUTURE_MT lua_upvalueindex(1)
#define EXECUTOR_MT lua_upvalueindex(2)
#define TASKREFS lua_upvalueindex(3)  /* the futures' tasks (lfuture.c) */
#define WEAK lua_upvalueindex(4)   /* slot + 1 -> future, weak */
#define NUPS 4

/* Above this many workers, a number is a mistake rather than a wish. */
#define MAX_WORKERS 1024

/* largs.c: classes, options, arguments, request buffers. */
void *lppe_testclass(lua_State *L, int arg, int mt);
void *lppe_checkclass(lua_State *L, int arg, int mt, const char *tname);
void lppe_setclass(lua_State *L, int mt);
void lppe_setfuncs(lua_State *L, const luaL_Reg *l, int mts);
void lppe_newmeta(lua_State *L, const char *name, const luaL_Reg *l,
                  int mts);
void lppe_newclass(lua_State *L, const char *name, const luaL_Reg *meta,
                   const luaL_Reg *methods, int mts);
void lppe_options(lua_State *L, int arg, const char *const keys[],
                  const char *what);
void lppe_checkkeys(lua_State *L, int arg, const char *const keys[],
                    const char *what);
/* Raises a ValueError: the formatted message, err.option 'key', and
** err.value the value at the absolute index idx (0: none). */
int lppe_option_error(lua_State *L, const char *key, int idx,
                      const char *fmt, ...);
int lppe_optbool(lua_State *L, int arg, const char *key, int def);
lua_Integer lppe_optint(lua_State *L, int arg, const char *key,
                        lua_Integer def, lua_Integer max);
lua_Integer lppe_optcount(lua_State *L, int arg, const char *key,
                          lua_Integer def, lua_Integer max);
double lppe_optseconds(lua_State *L, int arg, const char *key, int positive,
                       double def);
double lppe_deadline(lua_State *L, int arg);
void lppe_checkcallable(lua_State *L, int arg);
ppe_buf *lppe_newbuf(lua_State *L);
ppe_buf *lppe_request(lua_State *L, int first, int n, const char *label,
                      int base);
void lppe_open_buffers(lua_State *L, int mts);

/* lerror.c: ppe.Error tables. */
void lppe_pusherror(lua_State *L, const char *kind, const char *msg);
int lppe_raise(lua_State *L, const char *kind, const char *msg);
void lppe_pushfailure(lua_State *L, const ppe_outcome *o);
int lppe_raise_outcome(lua_State *L, ppe_task *t);
void lppe_remote(lua_State *L, lua_Integer pid, int attempts);
void lppe_open_errors(lua_State *L, int mts);

/* lfuture.c: futures and their done-callbacks. */
void lppe_newfuture(lua_State *L, ppe_task *t, int inner);
ppe_task *lppe_futuretask(lua_State *L, int idx);
int lppe_outcome(lua_State *L, int idx, int as_table);
int lppe_run_callbacks(lua_State *L);
uint64_t lppe_callbacks(lua_State *L);
void lppe_push_taskrefs(lua_State *L);
void lppe_open_futures(lua_State *L, int mts);

/* Forms of a future's outcome on the Lua side (lppe_outcome). */
enum { F_NONE, F_ONE, F_MANY, F_FAIL };

/* lexecutor.c: executors. */
typedef struct Executor {
  ppe_pool *pool;  /* NULL once closed (its workers reaped) */
  int shut;        /* shutdown was called */
  ppe_stats last;  /* the figures at close, for stats() afterwards */
} Executor;

Executor *lppe_toexecutor(lua_State *L, int arg);
ppe_task *lppe_submit(lua_State *L, Executor *e, ppe_buf *b, int kind,
                      int items, const char *what);
int lppe_executor(lua_State *L);
void lppe_open_executors(lua_State *L, int mts);

/* lmap.c: ex:map and its iterators. */
int lppe_map(lua_State *L);
void lppe_open_maps(lua_State *L, int mts);

/* lwait.c: ppe.wait and ppe.as_completed, and boxes of completion lists:
** a new list in a new box (pushed), with 'extra' bytes of the caller's
** after the list's pointer; and the early end of a box's list. */
int lppe_wait(lua_State *L);
int lppe_as_completed(lua_State *L);
ppe_done **lppe_newdone(lua_State *L, size_t extra);
void lppe_closedone(ppe_done **box);
void lppe_open_waits(lua_State *L, int mts);
extern const char *const lppe_return_when[];

#endif
