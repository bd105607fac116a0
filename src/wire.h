/* wire.h - the wire format: Lua values to bytes and back.
**
** A message is a header (magic, format version, byte order and the sizes
** of lua_Integer and lua_Number) followed by a count of values and the
** values themselves. A table or Lua function met again is a reference to
** its first record, so shared references and cycles arrive as they left;
** a string met again is taken from one of the message's string slots. A
** Lua function's record carries a keyed tag over its bytecode and its
** upvalue layout (the kind of each upvalue, and the name of each module
** and C function among them): a decoder loads only records made by its
** own process tree, as they were made. */
#ifndef PPE_WIRE_H
#define PPE_WIRE_H

#include "lua.h"

#include "buf.h"

#define PPE_WIRE_VERSION 3

/* Tables and functions nested deeper than this are refused, both ways. */
#define PPE_MAXDEPTH 1000

/* Room for an error message: a path to the culprit and the reason. */
#define PPE_ERRSZ 320

/* Decoder flags. */
/* Reuse the closure loaded for the same bytecode by an earlier message
** (once per message: two closures of one function in a message stay two).
** Its upvalues are then set anew, so a closure kept from an earlier
** message sees them change. */
#define PPE_DEC_FNCACHE 1
#define PPE_DEC_REQUIRE 2  /* 'require' modules named by C functions */
/* Plain data only: nil, booleans, numbers, strings and tables. A function
** (by value or by name) or the globals refuse the message. */
#define PPE_DEC_DATA 4

/* Appends values first..first+n-1 of L to b. 'label' names them in errors
** ("argument" gives "argument #2, field "x": ..."), counting from 'base';
** a value whose number would be negative is named by the label alone.
** Returns 0, or -1 with err set. Raises only on Lua memory errors, so b
** must be owned by something Lua can free. */
int ppe_encode(lua_State *L, ppe_buf *b, int first, int n,
               const char *label, int base, char *err);

/* Pushes the values of message s; returns how many, or -1 with err set and
** the stack as it was. Never trusts s. */
int ppe_decode(lua_State *L, const char *s, size_t len, int flags,
               char *err);

#endif
