/* chunk.h - a map chunk's reply, the one format both sides read from
** here: the worker writes it, the caller's map reads it.
**
** The reply's values are, per item in order, either its result count n
** and its n results, or -1 and its error's message, traceback and value.
** When every item gave exactly one value (the common case), the counts
** go and a 'true' leads the results instead, which halves what the
** caller stores and reads per item. */
#ifndef PPE_CHUNK_H
#define PPE_CHUNK_H

#include "lua.h"

/* Worker. The item's count slot at 'slot' (pushed first, any value),
** followed by its results up to the top: the slot gets their count. */
void ppe_chunk_ok(lua_State *L, int slot);
/* The same slot followed by message, traceback and value: it failed. */
void ppe_chunk_failed(lua_State *L, int slot);
/* The chunk of nitems written from 'first' to the top is packed in place
** when every item gave one value. */
void ppe_chunk_pack(lua_State *L, int first, int nitems);

/* Caller. 1 if the decoded reply whose first value is at 'first' is
** packed. */
int ppe_chunk_packed(lua_State *L, int first);
/* Pushes the next item's values from the sequence at 'vals' (the reply's
** values, in order), *pos the index of the item there, moved past it.
** Returns their count; or -1, with message, traceback and value pushed,
** for an item that raised. */
int ppe_chunk_item(lua_State *L, int vals, lua_Integer *pos, int packed);

#endif
