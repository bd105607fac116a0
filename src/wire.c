/* wire.c - encoder and decoder of the wire format (see wire.h). */
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"  /* LUA_LOADED_TABLE only: the encoder never raises */

#include "compat.h"

#include "mac.h"
#include "vm.h"
#include "wire.h"

/* Tags. Small non-negative integers and short strings carry their value or
** length in the tag byte itself: they are the bulk of most messages.
**
** A table or Lua function met again in a message is a T_REF to the offset
** of its first record (from the message's first byte). The encoder learns
** that an object is shared only when it meets it again, and then turns
** the tag of its first record into the shared one (T_STABLE, T_SLFUNC):
** the decoder keeps only those, not every table of a tree, to resolve
** references.
**
** Strings repeat in most data (the keys of records, above all), and
** pushing one costs the decoder a hash and a lookup in the string table.
** So the message has SLOTS string slots: T_KEEP, a slot number and a
** string puts that string in the slot, T_SLOT + n pushes what slot n
** holds. Which strings go to slots is the encoder's choice (enc_string). */
enum {
  T_NIL = 0, T_FALSE, T_TRUE,
  T_I8, T_I16, T_I32, T_I64,
  T_FLT,
  T_STR,
  T_TABLE,
  T_REF,
  T_LFUNC,
  T_CFUNC,
  T_ENV,
  T_KEEP,             /* slot number, then a string (T_SHORTSTR or T_STR) */
  T_STABLE,           /* a T_TABLE referred to later in the message */
  T_SLFUNC,           /* a T_LFUNC likewise */
  T_F32,              /* a float that a 32-bit float holds exactly */
  T_SHORTSTR = 0x20,  /* 0x20..0x3f: string of length tag & 0x1f */
  T_SLOT = 0x40,      /* 0x40..0x7f: the string in slot tag & 0x3f */
  T_FIXINT = 0x80     /* 0x80..0xff: integer tag & 0x7f */
};

#define SLOTS 64

#define HEADER_SIZE 7

/* Registry keys: addresses of statics, so no name can collide. */
static const char dumpcache_key = 'd';  /* function -> tag..bytecode */
static const char cfname_key = 'c';     /* C function -> {module, field} */
static const char fncache_key = 'f';    /* the decoder's FnCache */

static int little_endian(void) {
  const uint16_t one = 1;
  return *(const unsigned char *)&one;
}

/* Fills the registry table under 'key', creating it weak-keyed (mode 'k')
** or strong, and leaves it on the stack. */
static void getcache(lua_State *L, const void *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 8);
  if (mode != NULL) {
    lua_createtable(L, 0, 1);
    lua_pushstring(L, mode);
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}


/* A function record is its tag, its bytecode, its upvalue layout and the
** values of its data upvalues. The layout is the number of upvalues and,
** for each, its kind and, for a module or a C function, its name: the
** receiver's globals and its modules and C functions go by the layout
** alone. The tag covers the bytecode and the layout, so that a genuine
** record's bytecode cannot be given another layout: an upvalue meant to
** hold data cannot be made the receiver's globals, a module or a C
** function, nor one module or C function another (string.upper made
** os.execute). The values of data upvalues are not covered: they change
** from one send to the next. */
enum { K_DATA = 0, K_ENV, K_MODULE, K_CFUNC };

/* At most 255 upvalues, as Lua allows. */
#define MAXUPS 255

/* The tag of a record: the keyed hash of the keyed hash of its bytecode
** (which the encoder caches with the dump, so a function sent again is
** not hashed whole again) and its layout. The leading 0 sets it apart
** from the bytecode the inner hash covers: a dump opens with ESC. */
static uint64_t record_tag(uint64_t code, const char *layout, size_t n) {
  unsigned char in[1 + sizeof(code)];
  in[0] = 0;
  memcpy(in + 1, &code, sizeof(code));
  return ppe_mac2(in, sizeof(in), layout, n);
}


/*
** {======================================================
** Encoder
** =======================================================
*/

#define PATH_KEEP 6

/* One entry of the map from tables and Lua functions sent so far to the
** offset of their first record, an open-addressing hash on the object's
** address: a Lua table would do, but costs a third of the time of a
** message of small tables. */
typedef struct Seen {
  const void *p;  /* NULL: free */
  size_t off;
} Seen;

/* Slots of the map kept in the encoder itself: a message with a few
** tables and functions, a task's usually, allocates none. */
#define SEEN_LOCAL 16

/* What the encoder knows of the string slot a string's address leads to:
** the string seen last there, and whether the decoder holds it. */
typedef struct Kept {
  const char *s;
  int hits;  /* 0: seen once, not in the slot; 1..3: in it, and in use */
} Kept;

typedef struct Enc {
  lua_State *L;
  ppe_buf *b;
  size_t base;     /* where the message starts in b */
  int seen;        /* stack slot of the SeenBox, once 'local' is outgrown */
  int names;       /* stack slot of the cache of C function names, or nil */
  int loaded;      /* stack slot of package.loaded, with 'names' */
  Seen *slots;     /* 'local' until it outgrows it */
  size_t cap;      /* slots, a power of 2; at most half of them in use */
  size_t nseen;
  Seen local[SEEN_LOCAL];
  uint64_t kvalid;  /* which entries of 'kept' are in use */
  Kept kept[SLOTS];
  const void *globals;  /* sent as T_ENV, wherever met */
  int depth;
  int nparts;      /* path components recorded so far */
  char path[PATH_KEEP][72];
  char *err;       /* the reason, then the whole message */
} Enc;

/* Sets the reason of a failure; the path is prepended while unwinding. */
static int enc_fail(Enc *e, const char *fmt, const char *arg) {
  snprintf(e->err, PPE_ERRSZ, fmt, arg);
  e->nparts = 0;
  return -1;
}

static int enc_oom(Enc *e) {
  return enc_fail(e, "%s", "not enough memory");
}

/* Records one component of the path to the culprit, innermost first. Only
** the outermost few are kept: they say where to look. */
static void enc_where(Enc *e, const char *comp) {
  snprintf(e->path[e->nparts % PATH_KEEP], sizeof(e->path[0]), "%s", comp);
  e->nparts++;
}

/* Joins path and reason into err: 'argument #2, field "x": reason'. */
static void enc_message(Enc *e) {
  char tmp[PPE_ERRSZ];
  size_t n = 0;
  int i, kept = e->nparts < PATH_KEEP ? e->nparts : PATH_KEEP;
  for (i = 1; i <= kept && n < sizeof(tmp); i++)
    n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, "%s%s", i > 1 ? ", " : "",
                          e->path[(e->nparts - i) % PATH_KEEP]);
  if (e->nparts > PATH_KEEP && n < sizeof(tmp))
    n += (size_t)snprintf(tmp + n, sizeof(tmp) - n, ", ...");
  if (n < sizeof(tmp))
    snprintf(tmp + n, sizeof(tmp) - n, "%s%s", kept ? ": " : "", e->err);
  memcpy(e->err, tmp, PPE_ERRSZ);
}

/* Names the table key at 'idx' as a path component. */
static void enc_where_key(Enc *e, int idx) {
  lua_State *L = e->L;
  char comp[72];
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
      snprintf(comp, sizeof(comp), "field \"%.48s\"", lua_tostring(L, idx));
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx))
        snprintf(comp, sizeof(comp), "index %lld",
                 (long long)lua_tointeger(L, idx));
      else
        snprintf(comp, sizeof(comp), "key %.14g", (double)lua_tonumber(L, idx));
      break;
    case LUA_TBOOLEAN:
      snprintf(comp, sizeof(comp), "key %s",
               lua_toboolean(L, idx) ? "true" : "false");
      break;
    default:
      snprintf(comp, sizeof(comp), "key (%s)",
               lua_typename(L, lua_type(L, idx)));
  }
  enc_where(e, comp);
}

static inline int put_byte(Enc *e, int c) {
  if (ppe_buf_reserve(e->b, 1)) return enc_oom(e);
  e->b->p[e->b->len++] = (char)c;
  return 0;
}

static inline int put_raw(Enc *e, const void *p, size_t n) {
  return ppe_buf_add(e->b, p, n) ? enc_oom(e) : 0;
}

static int put_varint(Enc *e, uint64_t v) {
  unsigned char tmp[10];
  int n = 0;
  do {
    tmp[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  return put_raw(e, tmp, (size_t)n);
}

static int enc_int(Enc *e, lua_Integer v) {
  unsigned char tmp[1 + sizeof(lua_Integer)];
  size_t n;
  if (v >= 0 && v < 0x80)
    return put_byte(e, T_FIXINT | (int)v);
  if (v >= INT8_MIN && v <= INT8_MAX) {
    int8_t x = (int8_t)v; tmp[0] = T_I8; memcpy(tmp + 1, &x, n = 1);
  }
  else if (v >= INT16_MIN && v <= INT16_MAX) {
    int16_t x = (int16_t)v; tmp[0] = T_I16; memcpy(tmp + 1, &x, n = 2);
  }
  else if (v >= INT32_MIN && v <= INT32_MAX) {
    int32_t x = (int32_t)v; tmp[0] = T_I32; memcpy(tmp + 1, &x, n = 4);
  }
  else {
    tmp[0] = T_I64; memcpy(tmp + 1, &v, n = sizeof(v));
  }
  return put_raw(e, tmp, n + 1);
}

/* A float goes in 4 bytes when a float32 holds it exactly (0.5, 1e3,
** -0.0: the conversion keeps the sign); in all its bytes otherwise, bit
** for bit (NaN payloads). The range is checked first: converting a value
** beyond it is undefined (NaN fails the check too). */
static int enc_num(Enc *e, lua_Number v) {
  unsigned char tmp[1 + sizeof(lua_Number)];
  double x = (double)v;
  if (fabs(x) <= FLT_MAX) {
    float f = (float)x;
    if ((double)f == x) {
      tmp[0] = T_F32;
      memcpy(tmp + 1, &f, sizeof(f));
      return put_raw(e, tmp, 1 + sizeof(f));
    }
  }
  tmp[0] = T_FLT;
  memcpy(tmp + 1, &v, sizeof(v));
  return put_raw(e, tmp, sizeof(tmp));
}

/* The tag (and length) of a string of len bytes. */
static inline int enc_strhead(Enc *e, size_t len) {
  if (len < 32) {
    if (ppe_buf_reserve(e->b, len + 1)) return enc_oom(e);
    e->b->p[e->b->len++] = (char)(T_SHORTSTR | (int)len);
    return 0;
  }
  return (put_byte(e, T_STR) || put_varint(e, len)) ? -1 : 0;
}

/* A string as it is, never through a slot: names in a function's layout,
** which the decoder reads as they are. */
static int enc_str(Enc *e, int idx) {
  size_t len;
  const char *s = lua_tolstring(e->L, idx, &len);
  return enc_strhead(e, len) ? -1 : put_raw(e, s, len);
}

/* A string value, through a slot when it repeats. Equal strings are one
** object in a Lua state (all of them before 5.4, short ones since; two
** long ones with the same bytes are just sent twice), so a string is
** known by its address, as the map of tables knows a table; the address
** picks a pair of entries of 'kept', each standing for one slot. A
** string's first sight only takes note of it; its second puts it in the
** slot; from its third on it costs one byte. A string met once, a
** record's name say, costs the decoder nothing more. A slot in use goes
** to another string only once strings other than its own have taken as
** many turns at it as its own lately did, so that strings sharing a pair
** of entries do not take it from each other at every turn. Addresses are
** stable while encoding, as the map's are (see seen_grow). */
static int enc_string(Enc *e, int idx) {
  size_t len;
  const char *s = lua_tolstring(e->L, idx, &len);
  uint64_t h = (uint64_t)(uintptr_t)s * 0x9e3779b97f4a7c15ULL;
  int i = (int)(h >> 59) * 2;  /* the top 5 bits: SLOTS / 2 pairs */
  Kept *k = &e->kept[i];
  if ((e->kvalid >> i & 3) != 3) {  /* a free entry: first ones first */
    if (e->kvalid >> i & 1) {
      if (k->s == s) goto found;
      k++, i++;
    }
    e->kvalid |= (uint64_t)1 << i;
    k->s = s;
    k->hits = 0;
    goto plain;
  }
  if (k->s == s) goto found;
  if (k[1].s == s) { k++, i++; goto found; }
  if (k[1].hits < k->hits) k++, i++;  /* the one less in use */
  if (k->hits > 1) k->hits--;
  else {
    k->s = s;
    k->hits = 0;
  }
  goto plain;
found:
  if (k->hits > 0) {
    if (k->hits < 3) k->hits++;
    return put_byte(e, T_SLOT | i);
  }
  k->hits = 1;
  if (ppe_buf_reserve(e->b, 2)) return enc_oom(e);
  e->b->p[e->b->len++] = (char)T_KEEP;
  e->b->p[e->b->len++] = (char)i;
plain:
  return enc_strhead(e, len) ? -1 : put_raw(e, s, len);
}

/* Where the map looks for p first. Tables made one after the other lie
** one after the other in memory, and are mostly sent in that order: the
** low bits of the address keep them in neighbouring entries (one cache
** line for several, the next line for the next ones), where a scrambling
** hash would take a cache miss for each; the bits above the first
** megabyte move each megabyte of addresses to an entry of its own. */
static size_t seen_slot(const Enc *e, const void *p) {
  uintptr_t a = (uintptr_t)p;
  size_t i = (size_t)((a >> 4) + (uint64_t)(a >> 20) * 0x9e3779b97f4a7c15ULL)
             & (e->cap - 1);
  while (e->slots[i].p != NULL && e->slots[i].p != p)
    i = (i + 1) & (e->cap - 1);
  return i;
}

/* Beyond the encoder's own slots, the map is malloc'd, owned by a
** SeenBox userdata in the 'seen' slot of the stack: a memory error (the
** one way the encoder raises) leaks nothing, its __gc frees the map; an
** encoding that returns frees it at once. Outside Lua's heap, the map
** does not count as garbage to collect: in Lua's, 8 MiB of it for 200k
** tables made the collector work through the whole heap while encoding. */
typedef struct SeenBox {
  Seen *slots;
} SeenBox;

static const char seenbox_key = 's';  /* the SeenBox metatable */

static int seenbox_gc(lua_State *L) {
  SeenBox *box = (SeenBox *)lua_touserdata(L, 1);
  free(box->slots);
  box->slots = NULL;
  return 0;
}

static SeenBox *seenbox(Enc *e) {
  lua_State *L = e->L;
  SeenBox *box;
  if (!lua_isnil(L, e->seen)) return (SeenBox *)lua_touserdata(L, e->seen);
  box = (SeenBox *)lua_newuserdatauv(L, sizeof(SeenBox), 0);
  box->slots = NULL;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &seenbox_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, seenbox_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &seenbox_key);
  }
  lua_setmetatable(L, -2);
  lua_replace(L, e->seen);
  return box;
}

/* Frees the map now, if it was malloc'd, rather than at the next cycle. */
static void enc_free(Enc *e) {
  if (e->slots == e->local) return;
  seenbox(e)->slots = NULL;
  free(e->slots);
  e->slots = e->local;
}

/* Doubles the map; -1 if out of memory. Addresses are stable: everything
** sent is reachable from the values being encoded. */
static int seen_grow(Enc *e) {
  size_t i, cap = e->cap * 2;
  Seen *old = e->slots, *slots;
  size_t oldcap = e->cap;
  SeenBox *box = seenbox(e);
  if (cap > (size_t)-1 / sizeof(Seen) ||
      (slots = (Seen *)calloc(cap, sizeof(Seen))) == NULL)
    return enc_oom(e);
  e->slots = slots;
  e->cap = cap;
  for (i = 0; i < oldcap; i++)
    if (old[i].p != NULL) e->slots[seen_slot(e, old[i].p)] = old[i];
  free(box->slots);  /* NULL while 'old' is 'local' */
  box->slots = slots;
  return 0;
}

/* If the table or function at idx was sent already in this message, writes
** a reference to it, marks its first record shared and returns 1; else
** notes where its record starts (it is written next) and returns 0. */
static int enc_seen(Enc *e, int idx) {
  const void *p = lua_topointer(e->L, idx);
  size_t i;
  if (e->nseen >= e->cap / 2 && seen_grow(e)) return -1;
  i = seen_slot(e, p);
  if (e->slots[i].p != NULL) {
    size_t off = e->slots[i].off;
    char *tag = e->b->p + e->base + off;
    if (*tag == T_TABLE) *tag = T_STABLE;
    else if (*tag == T_LFUNC) *tag = T_SLFUNC;
    return (put_byte(e, T_REF) || put_varint(e, (uint64_t)off)) ? -1 : 1;
  }
  e->slots[i].p = p;
  e->slots[i].off = e->b->len - e->base;
  e->nseen++;
  return 0;
}

static int enc_value(Enc *e, int idx);
static int enc_cfunc(Enc *e, int idx, int lead);
static int enc_module(Enc *e, int idx);

static int enc_enter(Enc *e) {
  if (++e->depth > PPE_MAXDEPTH) {
    char lim[24];
    snprintf(lim, sizeof(lim), "%d", PPE_MAXDEPTH);
    return enc_fail(e, "nesting deeper than %s levels", lim);
  }
  /* Room for this level and for the deepest leaf below it (a C function
  ** looked up by name takes a dozen slots). */
  if (!lua_checkstack(e->L, LUA_MINSTACK))
    return enc_fail(e, "%s", "Lua stack overflow");
  return 0;
}

/* Rewrites the varint of 'width' bytes at p to say v (which needs no
** more): zero bits on continuation bytes pad it, as any varint reader
** accepts. */
static void patch_varint(char *p, uint64_t v, size_t width) {
  size_t i;
  for (i = 0; i + 1 < width; i++, v >>= 7)
    p[i] = (char)((v & 0x7f) | 0x80);
  p[i] = (char)v;
}

/* The byte after a table's array size counts its pairs, up to 127. A
** larger table has PAIRS_OPEN + b there instead, for at most 2^b pairs
** (the decoder sizes the table so, as Lua rounds sizes to powers of 2
** anyway), and a T_NIL after its last pair, where a key would be: the
** count is known only once the pairs are written, and one byte is
** reserved for it. */
#define PAIRS_OPEN 0x80

/* Writes the table at idx in one traversal. The wire puts an array part
** (items 1..narr, nil where a hole is) before the key/value pairs; Lua's
** traversal visits the array part first, in order, so the keys 1, 2, ...
** it yields at the start go to the array part, and every key after the
** first that does not continue them goes with the pairs. That keeps the
** format whatever the traversal order (a key out of line is just a
** pair), and visits each entry once.
**
** narr is written first, as the width of lua_rawlen's border, and patched
** at the end: the array part never goes beyond the border. A border can
** lie far beyond the items ({[1]=1, [2]=2, [4]=4, ..., [2^40]=40} may
** have 2^40), so a gap is filled with nils only while holes stay fewer
** than half the items; a longer gap ends the array part. */
static int enc_table(Enc *e, int idx) {
  lua_State *L = e->L;
  lua_Integer border, n = 0, holes = 0;
  uint64_t nhash = 0;
  size_t at, width, patch;
  int r = enc_seen(e, idx), inarray;
  if (r) return r < 0 ? -1 : 0;
  if (enc_enter(e) || put_byte(e, T_TABLE)) return -1;
  border = (lua_Integer)lua_rawlen(L, idx);
  at = e->b->len;
  if (put_varint(e, (uint64_t)border)) return -1;
  width = e->b->len - at;
  patch = e->b->len;
  if (put_byte(e, 0)) return -1;  /* the count of pairs, written later */
  inarray = border > 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int top = lua_gettop(L);
    if (inarray) {
      lua_Integer k = 0;
      int isint = 0;
      if (lua_type(L, top - 1) == LUA_TNUMBER)
        k = lua_tointegerx(L, top - 1, &isint);
      if (isint && k > n && k <= border && 2 * (holes + k - n - 1) <= k) {
        for (; n + 1 < k; n++, holes++)
          if (put_byte(e, T_NIL)) return -1;
        if (enc_value(e, top)) {
          char comp[32];
          snprintf(comp, sizeof(comp), "index %lld", (long long)k);
          enc_where(e, comp);
          return -1;
        }
        n = k;
        lua_pop(L, 1);
        continue;
      }
      inarray = 0;  /* the rest are pairs */
    }
    if (enc_value(e, top - 1)) {
      enc_where(e, "table key");
      return -1;
    }
    if (enc_value(e, top)) {
      enc_where_key(e, top - 1);
      return -1;
    }
    nhash++;
    lua_pop(L, 1);
  }
  if (n != border) patch_varint(e->b->p + at, (uint64_t)n, width);
  if (nhash < PAIRS_OPEN) e->b->p[patch] = (char)nhash;
  else {
    int b = 7;
    while (b < 63 && ((uint64_t)1 << b) < nhash) b++;
    e->b->p[patch] = (char)(PAIRS_OPEN + b);
    if (put_byte(e, T_NIL)) return -1;
  }
  e->depth--;
  return 0;
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  return ppe_buf_add((ppe_buf *)ud, p, sz) ? 1 : 0;
}

/* Writes the bytecode of the Lua function at idx after room for the
** record's tag, at *at; *code is the bytecode's own tag. The function is
** dumped and hashed only the first time it is sent (the dump is cached
** with that tag, weak-keyed). */
static int enc_bytecode(Enc *e, int idx, size_t *at, uint64_t *code) {
  lua_State *L = e->L;
  size_t len, start;
  uint32_t blen;
  uint64_t tag = 0;
  getcache(L, &dumpcache_key, "k");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TSTRING) {
    const char *s = lua_tolstring(L, -1, &len);
    blen = (uint32_t)(len - sizeof(tag));
    if (put_byte(e, T_LFUNC) || put_raw(e, &blen, sizeof(blen)))
      return -1;
    *at = e->b->len;
    if (put_raw(e, s, len)) return -1;
    memcpy(code, s, sizeof(*code));
    lua_pop(L, 2);
    return 0;
  }
  lua_pop(L, 1);
  if (put_byte(e, T_LFUNC) || put_raw(e, &tag, sizeof(blen))) return -1;
  start = e->b->len;
  if (put_raw(e, &tag, sizeof(tag))) return -1;
  lua_pushvalue(L, idx);
  if (lua_dump(L, dump_writer, e->b, 0) != 0) return enc_oom(e);
  lua_pop(L, 1);
  len = e->b->len - start - sizeof(tag);
  if (len > UINT32_MAX) return enc_fail(e, "%s", "function too large");
  blen = (uint32_t)len;
  tag = ppe_mac(e->b->p + start + sizeof(tag), len);
  memcpy(e->b->p + start - sizeof(blen), &blen, sizeof(blen));
  memcpy(e->b->p + start, &tag, sizeof(tag));
  *at = start;
  *code = tag;
  lua_pushvalue(L, idx);
  lua_pushlstring(L, e->b->p + start, len + sizeof(tag));
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return 0;
}

/* Writes the layout's entry for the upvalue 'name' at idx: the globals
** (an upvalue named _ENV, or holding the globals table), a module, a C
** function, or data. Returns the kind, or -1. */
static int enc_kind(Enc *e, int idx, const char *name) {
  lua_State *L = e->L;
  int r;
  switch (lua_type(L, idx)) {
    case LUA_TTABLE:
      if (strcmp(name, "_ENV") == 0 || lua_topointer(L, idx) == e->globals)
        return put_byte(e, K_ENV) ? -1 : K_ENV;
      if ((r = enc_module(e, idx)) != 0) return r < 0 ? -1 : K_MODULE;
      break;
    case LUA_TFUNCTION:
      if (lua_iscfunction(L, idx))
        return enc_cfunc(e, idx, K_CFUNC) ? -1 : K_CFUNC;
      break;
    default: break;
  }
  return put_byte(e, K_DATA) ? -1 : K_DATA;
}

static void enc_where_upvalue(Enc *e, const char *name) {
  char comp[72];
  snprintf(comp, sizeof(comp), "upvalue \"%.48s\"", name);
  enc_where(e, comp);
}

/* Writes a function record: bytecode, layout, then the tag over both,
** and last the values of the data upvalues. */
static int enc_lfunc(Enc *e, int idx) {
  lua_State *L = e->L;
  size_t at, layout;
  uint64_t code, tag;
  unsigned char kinds[MAXUPS];
  int i, nups, r = enc_seen(e, idx);
  if (r) return r < 0 ? -1 : 0;
  if (enc_enter(e) || enc_bytecode(e, idx, &at, &code)) return -1;
  for (nups = 0; lua_getupvalue(L, idx, nups + 1) != NULL; nups++)
    lua_pop(L, 1);
  if (nups > MAXUPS) return enc_fail(e, "%s", "too many upvalues");
  layout = e->b->len;
  if (put_varint(e, (uint64_t)nups)) return -1;
  for (i = 1; i <= nups; i++) {
    const char *name = lua_getupvalue(L, idx, i);
    if ((r = enc_kind(e, lua_gettop(L), name)) < 0) {
      enc_where_upvalue(e, name);
      return -1;
    }
    kinds[i - 1] = (unsigned char)r;
    lua_pop(L, 1);
  }
  tag = record_tag(code, e->b->p + layout, e->b->len - layout);
  memcpy(e->b->p + at, &tag, sizeof(tag));
  for (i = 1; i <= nups; i++) {
    const char *name;
    if (kinds[i - 1] != K_DATA) continue;
    name = lua_getupvalue(L, idx, i);
    if (enc_value(e, lua_gettop(L))) {
      enc_where_upvalue(e, name);
      return -1;
    }
    lua_pop(L, 1);
  }
  e->depth--;
  return 0;
}

/* Fills the slots 'names' and 'loaded', once per message: a message of
** many C functions looks them up once. */
static void enc_loaded(Enc *e) {
  if (!lua_isnil(e->L, e->loaded)) return;
  getcache(e->L, &cfname_key, "k");
  lua_replace(e->L, e->names);
  lua_getfield(e->L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_replace(e->L, e->loaded);
}

/* Records every C function of every table in package.loaded (at
** 'loaded') not yet known in 'cache', as {module name, field name}: the
** strings are the keys themselves, so an entry costs no new string, and a
** check of the name needs no string to be made. A module whose name holds
** a NUL is skipped: on the wire, a NUL ends the module's part of the name. */
static void scan_loaded(lua_State *L, int cache, int loaded) {
  lua_pushnil(L);
  while (lua_next(L, loaded)) {
    size_t len;
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1) &&
        strlen(lua_tolstring(L, -2, &len)) == len) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
          lua_pushvalue(L, -1);
          if (lua_rawget(L, cache) == LUA_TNIL) {
            lua_pushvalue(L, -2);
            lua_createtable(L, 2, 0);
            lua_pushvalue(L, -7);
            lua_rawseti(L, -2, 1);
            lua_pushvalue(L, -5);
            lua_rawseti(L, -2, 2);
            lua_rawset(L, cache);
          }
          lua_pop(L, 1);
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
}

/* 1 if the entry {module, field} on the top leads to the C function at idx
** in package.loaded (at 'loaded') now, with the two names pushed; else 0,
** nothing pushed. A name found by an earlier scan is checked, not trusted:
** the module may have gone or the field changed since, and the receiver
** would not find the function. Two lookups, against a scan. */
static int name_holds(lua_State *L, int loaded, int idx) {
  int entry = lua_gettop(L);
  lua_rawgeti(L, entry, 1);
  lua_rawgeti(L, entry, 2);
  lua_pushvalue(L, -2);
  if (lua_rawget(L, loaded) == LUA_TTABLE) {
    lua_pushvalue(L, -2);
    lua_rawget(L, -2);
    if (lua_rawequal(L, -1, idx)) {
      lua_pop(L, 2);
      return 1;
    }
  }
  lua_settop(L, entry);
  return 0;
}

/* A C function goes as its name "module\0field", written as a string
** after the byte 'lead': its tag among values, its kind in a layout. */
static int enc_cfunc(Enc *e, int idx, int lead) {
  lua_State *L = e->L;
  size_t mlen, flen;
  const char *mod, *field;
  enc_loaded(e);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->names) != LUA_TTABLE ||
      !name_holds(L, e->loaded, idx)) {
    /* Unknown, or known under a name that leads elsewhere now: forget
    ** that name, so the scan records the one it has now, if any. */
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, e->names);
    scan_loaded(L, e->names, e->loaded);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, e->names) != LUA_TTABLE)
      return enc_fail(e, "%s", "C function cannot be sent "
                      "(not reachable by name from package.loaded)");
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
  }
  mod = lua_tolstring(L, -2, &mlen);
  field = lua_tolstring(L, -1, &flen);
  if (put_byte(e, lead) || enc_strhead(e, mlen + 1 + flen) ||
      put_raw(e, mod, mlen + 1) || put_raw(e, field, flen))
    return -1;
  lua_pop(L, 3);
  return 0;
}

/* A table that is a loaded module goes by its name, in a layout:
** 'local json = require "cjson"' captured by a task means the worker's
** own cjson. 1 if sent so, 0 if not a module (nothing written), -1 on
** failure. */
static int enc_module(Enc *e, int idx) {
  lua_State *L = e->L;
  int found = 0;
  enc_loaded(e);
  lua_pushnil(L);
  while (!found && lua_next(L, e->loaded)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, idx)) {
      if (put_byte(e, K_MODULE) || enc_str(e, -2)) return -1;
      found = 1;
      lua_pop(L, 1);  /* the key stays for the pop below */
    }
    else lua_pop(L, 1);
  }
  if (found) lua_pop(L, 1);
  return found;
}

static int enc_value(Enc *e, int idx) {
  lua_State *L = e->L;
  int t = lua_type(L, idx);
  switch (t) {
    case LUA_TNIL: return put_byte(e, T_NIL);
    case LUA_TBOOLEAN:
      return put_byte(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) return enc_int(e, lua_tointeger(L, idx));
      return enc_num(e, lua_tonumber(L, idx));
    case LUA_TSTRING: return enc_string(e, idx);
    case LUA_TTABLE:
      /* The globals become the receiver's globals: they are an
      ** environment, not data to copy. */
      if (lua_topointer(L, idx) == e->globals) return put_byte(e, T_ENV);
      return enc_table(e, idx);
    case LUA_TFUNCTION:
      return lua_iscfunction(L, idx) ? enc_cfunc(e, idx, T_CFUNC)
                                     : enc_lfunc(e, idx);
    default:
      return enc_fail(e, "%s cannot be sent", lua_typename(L, t));
  }
}

int ppe_encode(lua_State *L, ppe_buf *b, int first, int n,
               const char *label, int base, char *err) {
  Enc e;
  unsigned char hdr[HEADER_SIZE] = {'p', 'p', 'e', PPE_WIRE_VERSION, 0,
                                    sizeof(lua_Integer), sizeof(lua_Number)};
  int i, top = lua_gettop(L);
  e.L = L; e.b = b; e.base = b->len; e.nseen = 0; e.depth = 0;
  e.nparts = 0; e.err = err; e.kvalid = 0;
  memset(e.local, 0, sizeof(e.local));
  e.slots = e.local; e.cap = SEEN_LOCAL;
  hdr[4] = (unsigned char)little_endian();
  if (!lua_checkstack(L, LUA_MINSTACK))
    return enc_fail(&e, "%s", "Lua stack overflow");
  lua_pushglobaltable(L);
  e.globals = lua_topointer(L, -1);  /* kept alive by the registry */
  lua_pop(L, 1);
  lua_pushnil(L);
  e.seen = lua_gettop(L);
  lua_pushnil(L);
  e.names = lua_gettop(L);
  lua_pushnil(L);
  e.loaded = lua_gettop(L);
  if (put_raw(&e, hdr, sizeof(hdr)) || put_varint(&e, (uint64_t)n))
    goto fail;
  for (i = 0; i < n; i++) {
    if (enc_value(&e, first + i)) {
      char comp[64];
      if (base + i < 0)  /* a lone value: its label says enough */
        snprintf(comp, sizeof(comp), "%s", label);
      else
        snprintf(comp, sizeof(comp), "%s #%d", label, base + i);
      enc_where(&e, comp);
      enc_message(&e);
      goto fail;
    }
  }
  enc_free(&e);
  lua_settop(L, top);
  return 0;
fail:
  enc_free(&e);
  lua_settop(L, top);
  return -1;
}

/* }====================================================== */


/*
** {======================================================
** Decoder
** =======================================================
*/

/* Cached closures a message may take; more take fresh ones. */
#define DEC_CLAIMS 8

typedef struct Dec {
  lua_State *L;
  const unsigned char *s;
  size_t len, pos;
  size_t budget;   /* table slots we may still preallocate on trust */
  int refs;        /* stack slot of the shared objects by offset, or nil */
  int slots;       /* stack slot of the string slots, or nil */
  int depth, flags;
  int nclaims;
  long claims[DEC_CLAIMS];  /* cache entries this message has used */
  char *err;
} Dec;

static int dec_fail(Dec *d, const char *msg) {
  snprintf(d->err, PPE_ERRSZ, "%s at byte %zu", msg, d->pos);
  return -1;
}

#define REMAINING(d) ((d)->len - (d)->pos)

static int get_raw(Dec *d, void *out, size_t n) {
  if (n > REMAINING(d)) return dec_fail(d, "truncated message");
  memcpy(out, d->s + d->pos, n);
  d->pos += n;
  return 0;
}

static int get_varint(Dec *d, uint64_t *out) {
  uint64_t v = 0;
  int shift;
  for (shift = 0; shift < 64; shift += 7) {
    unsigned char c;
    if (d->pos >= d->len) return dec_fail(d, "truncated message");
    c = d->s[d->pos++];
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) { *out = v; return 0; }
  }
  return dec_fail(d, "malformed length");
}

static int dec_lstr(Dec *d, size_t n) {
  if (n > REMAINING(d)) return dec_fail(d, "truncated string");
  lua_pushlstring(d->L, (const char *)d->s + d->pos, n);
  d->pos += n;
  return 0;
}

/* A shared object (T_STABLE, T_SLFUNC), at idx, is kept in the refs
** table under the offset of its tag, 'at'. */
static void dec_register(Dec *d, int idx, size_t at) {
  lua_State *L = d->L;
  if (lua_isnil(L, d->refs)) {
    lua_createtable(L, 0, 4);
    lua_replace(L, d->refs);
  }
  lua_pushinteger(L, (lua_Integer)at);
  lua_pushvalue(L, idx);
  lua_rawset(L, d->refs);
}

/* Pushes the shared object whose tag is at offset 'at': one met already,
** or one being decoded (a cycle). */
static int dec_getref(Dec *d, uint64_t at) {
  lua_State *L = d->L;
  if (at >= d->len || lua_isnil(L, d->refs))
    return dec_fail(d, "bad reference");
  lua_pushinteger(L, (lua_Integer)at);
  if (lua_rawget(L, d->refs) == LUA_TNIL) {
    lua_pop(L, 1);
    return dec_fail(d, "bad reference");
  }
  return 0;
}

/* T_KEEP: a slot number and a string, which is pushed and kept there. */
static int dec_keep(Dec *d) {
  lua_State *L = d->L;
  uint64_t n;
  int slot, tag;
  if (REMAINING(d) < 2) return dec_fail(d, "truncated message");
  slot = d->s[d->pos++];
  if (slot >= SLOTS) return dec_fail(d, "bad string slot");
  tag = d->s[d->pos++];
  if (tag >= T_SHORTSTR && tag < T_SHORTSTR + 32) n = (uint64_t)(tag & 0x1f);
  else if (tag != T_STR) return dec_fail(d, "string slot given no string");
  else if (get_varint(d, &n)) return -1;
  if (n > REMAINING(d)) return dec_fail(d, "truncated string");
  if (lua_isnil(L, d->slots)) {
    lua_createtable(L, SLOTS, 0);
    lua_replace(L, d->slots);
  }
  dec_lstr(d, (size_t)n);
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->slots, slot + 1);
  return 0;
}

/* T_SLOT: the string a T_KEEP put in the slot. */
static int dec_slot(Dec *d, int slot) {
  lua_State *L = d->L;
  if (lua_isnil(L, d->slots)) return dec_fail(d, "empty string slot");
  if (lua_rawgeti(L, d->slots, slot + 1) == LUA_TNIL) {
    lua_pop(L, 1);
    return dec_fail(d, "empty string slot");
  }
  return 0;
}

static int dec_value(Dec *d);

static int dec_enter(Dec *d) {
  if (++d->depth > PPE_MAXDEPTH) return dec_fail(d, "nesting too deep");
  if (!lua_checkstack(d->L, LUA_MINSTACK))
    return dec_fail(d, "Lua stack overflow");
  return 0;
}

/* A claim of size is trusted for preallocation only within a budget the
** size of the message, so nested claims cannot multiply memory. */
static int dec_prealloc(Dec *d, uint64_t claim) {
  if (claim > d->budget) claim = d->budget;
  if (claim > INT_MAX / 2) claim = INT_MAX / 2;
  d->budget -= claim;
  return (int)claim;
}

/* A table whose tag is at offset 'at'; shared: T_STABLE. */
static int dec_table(Dec *d, size_t at, int shared) {
  lua_State *L = d->L;
  uint64_t narr, i, nhash, j;
  int t, c, open;
  if (dec_enter(d) || get_varint(d, &narr)) return -1;
  if (d->pos >= d->len) return dec_fail(d, "truncated message");
  c = d->s[d->pos++];
  open = c >= PAIRS_OPEN;
  if (open && c - PAIRS_OPEN > 62) return dec_fail(d, "malformed table");
  nhash = open ? (uint64_t)1 << (c - PAIRS_OPEN) : (uint64_t)c;
  /* Every value takes at least one byte, every pair two. */
  if (narr > REMAINING(d) || narr > (uint64_t)LUA_MAXINTEGER ||
      (!open && nhash > REMAINING(d) / 2))
    return dec_fail(d, "table size beyond message");
  if (nhash > REMAINING(d) / 2) nhash = REMAINING(d) / 2;  /* a bound */
  lua_createtable(L, dec_prealloc(d, narr), dec_prealloc(d, nhash));
  t = lua_gettop(L);
  if (shared) dec_register(d, t, at);
  for (i = 1; i <= narr; i++) {
    if (dec_value(d)) return -1;
    lua_rawseti(L, t, (lua_Integer)i);
  }
  for (j = 0; open || j < nhash; j++) {
    if (open) {
      if (d->pos >= d->len) return dec_fail(d, "truncated message");
      if (d->s[d->pos] == T_NIL) {  /* the end of the pairs */
        d->pos++;
        break;
      }
    }
    if (dec_value(d)) return -1;
    if (lua_isnil(L, -1)) return dec_fail(d, "nil table key");
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
        isnan((double)lua_tonumber(L, -1)))
      return dec_fail(d, "NaN table key");
    if (dec_value(d)) return -1;
    lua_rawset(L, t);
  }
  d->depth--;
  return 0;
}

static const char *bc_reader(lua_State *L, void *ud, size_t *size) {
  size_t *left = (size_t *)ud;
  const char *p = (const char *)left[1];
  (void)L;
  *size = left[0];
  left[0] = 0;
  return *size ? p : NULL;
}

/* Loads bytecode p..p+n and leaves the closure on the stack. */
static int dec_load(Dec *d, const char *p, size_t n) {
  size_t rd[2];
  rd[0] = n;
  rd[1] = (size_t)p;
  if (lua_load(d->L, bc_reader, rd, "=(ppe)", "b") != LUA_OK) {
    lua_pop(d->L, 1);
    return dec_fail(d, "bytecode does not load");
  }
  return 0;
}

/* The closures of records met before, for PPE_DEC_FNCACHE: a function
** sent again is neither verified nor loaded again. An entry is found by
** its tag, a keyed hash and so well spread, and matches only bytes equal
** to those verified when it was made. The userdata's user value holds
** entry k's string (tag, bytecode and layout) at 2k+1 and its closure at
** 2k+2; the entry points into the string, which Lua never moves. */
typedef struct FnEntry {
  uint64_t tag;
  const char *p;
  size_t n;
} FnEntry;

typedef struct FnCache {
  FnEntry *ents;
  size_t n, cap;
  uint32_t *slots;  /* open addressing on the tag: entry + 1, or 0 */
  size_t nslots;    /* a power of 2, over twice n */
} FnCache;

static int fncache_gc(lua_State *L) {
  FnCache *c = (FnCache *)lua_touserdata(L, 1);
  free(c->ents);
  free(c->slots);
  memset(c, 0, sizeof(*c));
  return 0;
}

/* Returns the cache, its table of strings and closures pushed. */
static FnCache *fncache(lua_State *L) {
  FnCache *c;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &fncache_key) == LUA_TUSERDATA) {
    c = (FnCache *)lua_touserdata(L, -1);
    lua_getiuservalue(L, -1, 1);
    lua_remove(L, -2);
    return c;
  }
  lua_pop(L, 1);
  c = (FnCache *)lua_newuserdatauv(L, sizeof(FnCache), 1);
  memset(c, 0, sizeof(*c));
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, fncache_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, -3, 1);
  lua_insert(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &fncache_key);
  return c;
}

static long fncache_find(const FnCache *c, uint64_t tag, const char *p,
                         size_t n) {
  size_t mask = c->nslots - 1, i;
  if (c->nslots == 0) return -1;
  for (i = (size_t)tag & mask; c->slots[i] != 0; i = (i + 1) & mask) {
    const FnEntry *e = &c->ents[c->slots[i] - 1];
    if (e->tag == tag && e->n == n && memcmp(e->p, p, n) == 0)
      return (long)c->slots[i] - 1;
  }
  return -1;
}

static void fncache_slot(FnCache *c, size_t k) {
  size_t mask = c->nslots - 1, i = (size_t)c->ents[k].tag & mask;
  while (c->slots[i] != 0) i = (i + 1) & mask;
  c->slots[i] = (uint32_t)k + 1;
}

/* Adds entry c->n; -1 if out of memory (the function is then not kept). */
static int fncache_add(FnCache *c, uint64_t tag, const char *p, size_t n) {
  size_t k;
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 16;
    FnEntry *e;
    if (cap > UINT32_MAX / 4) return -1;
    if ((e = (FnEntry *)realloc(c->ents, cap * sizeof(*e))) == NULL)
      return -1;
    c->ents = e;
    c->cap = cap;
  }
  if (2 * (c->n + 1) > c->nslots) {
    size_t ns = c->nslots ? 2 * c->nslots : 32;
    uint32_t *s = (uint32_t *)calloc(ns, sizeof(*s));
    if (s == NULL) return -1;
    free(c->slots);
    c->slots = s;
    c->nslots = ns;
    for (k = 0; k < c->n; k++) fncache_slot(c, k);
  }
  c->ents[c->n].tag = tag;
  c->ents[c->n].p = p;
  c->ents[c->n].n = n;
  fncache_slot(c, c->n++);
  return 0;
}

/* Entry k serves this message, unless it has served it already; 1 if so
** (full claims count as served: a fresh load is always right). */
static int dec_claimed(Dec *d, long k) {
  int i;
  for (i = 0; i < d->nclaims; i++)
    if (d->claims[i] == k) return 1;
  if (d->nclaims == DEC_CLAIMS) return 1;
  d->claims[d->nclaims++] = k;
  return 0;
}

/* Leaves on the stack the closure of the record p..p+n: tag, blen bytes
** of bytecode, layout. With PPE_DEC_FNCACHE, a cached closure serves once
** per message: two closures of one function in a message (two counters
** made by one factory, say) each need their own upvalues, so a second
** copy is loaded anew. Under LuaJIT one with upvalues ('nups') is always
** loaded anew: its compiled traces may hold an upvalue's value as a
** constant, which lua_setupvalue does not undo. */
static int dec_closure(Dec *d, uint64_t tag, const char *p, size_t n,
                       size_t blen, uint64_t nups) {
  lua_State *L = d->L;
  FnCache *c = NULL;
  long k = -1;
  int tab = 0;  /* the cache's table, on the stack when caching */
  if (d->flags & PPE_DEC_FNCACHE) {
    c = fncache(L);
    tab = lua_gettop(L);
    k = fncache_find(c, tag, p, n);
    if (k >= 0 && !(nups > 0 && ppe_luajit()) && !dec_claimed(d, k)) {
      lua_rawgeti(L, tab, 2 * k + 2);
      lua_remove(L, tab);
      return 0;
    }
  }
  /* Bytes equal to a cache entry's were verified when it was made. (On
  ** failure the decoder drops what is on the stack.) */
  if (k < 0) {
    const char *code = p + sizeof(tag), *layout = code + blen;
    if (tag != record_tag(ppe_mac(code, blen), layout,
                          n - sizeof(tag) - blen))
      return dec_fail(d, "function record not made by this process tree");
  }
  if (dec_load(d, p + sizeof(tag), blen)) return -1;
  if (tab == 0) return 0;
  if (k < 0 && d->nclaims < DEC_CLAIMS) {
    const char *s;
    k = (long)c->n;
    lua_pushlstring(L, p, n);  /* returns void before 5.3 */
    s = lua_tostring(L, -1);
    lua_rawseti(L, tab, 2 * k + 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, tab, 2 * k + 2);
    if (fncache_add(c, tag, s, n) == 0) d->claims[d->nclaims++] = k;
  }
  lua_remove(L, tab);
  return 0;
}

/* Reads the head of a string written by enc_str, leaving pos at its
** bytes, *n of them (within the message); the decoder's names come so. */
static int dec_namehead(Dec *d, size_t *n) {
  int tag;
  uint64_t len;
  if (d->pos >= d->len) return dec_fail(d, "truncated message");
  tag = d->s[d->pos++];
  if (tag >= T_SHORTSTR && tag < T_SHORTSTR + 32)
    len = (uint64_t)(tag & 0x1f);
  else if (tag != T_STR) return dec_fail(d, "malformed name");
  else if (get_varint(d, &len)) return -1;
  if (len > REMAINING(d)) return dec_fail(d, "truncated string");
  *n = (size_t)len;
  return 0;
}

/* Pushes a name. */
static int dec_name(Dec *d) {
  size_t n;
  return dec_namehead(d, &n) || dec_lstr(d, n);
}

static int dec_module(Dec *d);
static int dec_cfunc(Dec *d);

/* Checks a layout's entry and steps over it, its name unread. */
static int dec_skipkind(Dec *d) {
  size_t n;
  int kind;
  if (d->pos >= d->len) return dec_fail(d, "truncated function");
  kind = d->s[d->pos++];
  if (kind > K_CFUNC) return dec_fail(d, "malformed upvalue layout");
  if (kind == K_MODULE || kind == K_CFUNC) {
    if (dec_namehead(d, &n)) return -1;
    d->pos += n;
  }
  return 0;
}

/* A function record: the tag is checked against bytecode and layout,
** names included, before anything is loaded or looked up. Then each
** upvalue is set as the layout says: the globals, a module or a C
** function by the name there, or the next data value, which must not be
** the globals or a C function (those are the layout's to give). */
static int dec_lfunc(Dec *d, size_t at, int shared) {
  lua_State *L = d->L;
  uint32_t blen;
  uint64_t tag, nups, i;
  const char *p;
  size_t lay, vals;
  int f;
  if (dec_enter(d) || get_raw(d, &blen, sizeof(blen))) return -1;
  if ((uint64_t)blen + sizeof(tag) > REMAINING(d))
    return dec_fail(d, "truncated function");
  p = (const char *)d->s + d->pos;
  memcpy(&tag, p, sizeof(tag));
  d->pos += sizeof(tag) + blen;
  if (get_varint(d, &nups)) return -1;
  if (nups > MAXUPS)
    return dec_fail(d, "upvalue count does not match the function");
  lay = d->pos;
  for (i = 0; i < nups; i++)
    if (dec_skipkind(d)) return -1;
  if (dec_closure(d, tag, p, (size_t)((const char *)d->s + d->pos - p),
                  blen, nups))
    return -1;
  f = lua_gettop(L);
  if (shared) dec_register(d, f, at);
  vals = d->pos;
  for (i = 1; i <= nups; i++) {
    int kind = d->s[lay++];
    if (lua_getupvalue(L, f, (int)i) == NULL)
      return dec_fail(d, "upvalue count does not match the function");
    lua_pop(L, 1);
    if (kind == K_DATA) {
      d->pos = vals;
      if (d->pos < d->len &&
          (d->s[d->pos] == T_ENV || d->s[d->pos] == T_CFUNC))
        return dec_fail(d, "upvalue of another kind than its record says");
      if (dec_value(d)) return -1;
      vals = d->pos;
    }
    else if (kind == K_ENV) lua_pushglobaltable(L);
    else {
      d->pos = lay;
      if (kind == K_MODULE ? dec_module(d) : dec_cfunc(d)) return -1;
      lay = d->pos;
    }
    lua_setupvalue(L, f, (int)i);
  }
  d->pos = vals;
  if (lua_getupvalue(L, f, (int)nups + 1) != NULL)
    return dec_fail(d, "upvalue count does not match the function");
  d->depth--;
  return 0;
}

static int req_module(lua_State *L) {
  lua_getglobal(L, "require");
  lua_insert(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

/* Pushes the loaded module 'name' (requiring it, if allowed), or nil. */
static void dec_getmodule(Dec *d, const char *name) {
  lua_State *L = d->L;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  if (lua_isnil(L, -1) && (d->flags & PPE_DEC_REQUIRE)) {
    lua_pop(L, 1);
    lua_pushcfunction(L, req_module);
    lua_pushstring(L, name);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
  }
}

/* A module sent by name (in a layout). */
static int dec_module(Dec *d) {
  lua_State *L = d->L;
  char msg[120];
  if (dec_name(d)) return -1;
  dec_getmodule(d, lua_tostring(L, -1));
  if (!lua_istable(L, -1)) {
    snprintf(msg, sizeof(msg), "module \"%.60s\" not found",
             lua_tostring(L, -2));
    lua_pop(L, 2);
    return dec_fail(d, msg);
  }
  lua_remove(L, -2);
  return 0;
}

/* A C function, found again by its name "module\0field" (among values or
** in a layout). */
static int dec_cfunc(Dec *d) {
  lua_State *L = d->L;
  char msg[160];
  const char *name, *field;
  size_t len;
  int top = lua_gettop(L);
  if (dec_name(d)) return -1;
  name = lua_tolstring(L, -1, &len);
  field = memchr(name, '\0', len);
  if (field == NULL) return dec_fail(d, "malformed C function name");
  field++;
  dec_getmodule(d, name);  /* the module name ends at the NUL */
  if (lua_istable(L, -1)) {
    lua_pushlstring(L, field, len - (size_t)(field - name));
    lua_rawget(L, -2);
  }
  else lua_pushnil(L);  /* a module that is no table has no fields */
  if (!lua_iscfunction(L, -1)) {
    snprintf(msg, sizeof(msg), "C function \"%.60s.%.60s\" not found",
             name, field);
    lua_settop(L, top);
    return dec_fail(d, msg);
  }
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return 0;
}

/* With PPE_DEC_DATA, fails on a function or the globals, saying what it
** is (a C function by its name, which is read but never looked up). A
** module only ever comes in a function's layout. */
static int dec_refuse(Dec *d, int tag) {
  char msg[200];
  const char *name, *field;
  size_t len, at = d->pos;  /* the error points after the tag, as others */
  switch (tag) {
    case T_LFUNC: case T_SLFUNC:
      return dec_fail(d, "Lua function refused (functions = false)");
    case T_CFUNC:
      if (dec_name(d)) return -1;
      name = lua_tolstring(d->L, -1, &len);
      field = memchr(name, '\0', len);
      if (field == NULL) {
        lua_pop(d->L, 1);
        return dec_fail(d, "malformed C function name");
      }
      snprintf(msg, sizeof(msg), "C function \"%.60s.%.60s\" refused "
               "(functions = false)", name, field + 1);
      lua_pop(d->L, 1);
      d->pos = at;
      return dec_fail(d, msg);
    default:
      return dec_fail(d, "globals table refused (functions = false)");
  }
}

static int dec_value(Dec *d) {
  lua_State *L = d->L;
  size_t at = d->pos;
  int tag;
  if (d->pos >= d->len) return dec_fail(d, "truncated message");
  tag = d->s[d->pos++];
  if (tag >= T_FIXINT) { lua_pushinteger(L, tag & 0x7f); return 0; }
  if (tag >= T_SLOT) return dec_slot(d, tag & 0x3f);
  if (tag >= T_SHORTSTR) return dec_lstr(d, (size_t)(tag & 0x1f));
  switch (tag) {
    case T_NIL: lua_pushnil(L); return 0;
    case T_FALSE: lua_pushboolean(L, 0); return 0;
    case T_TRUE: lua_pushboolean(L, 1); return 0;
    case T_I8: { int8_t v;
      if (get_raw(d, &v, sizeof(v))) return -1;
      lua_pushinteger(L, v); return 0; }
    case T_I16: { int16_t v;
      if (get_raw(d, &v, sizeof(v))) return -1;
      lua_pushinteger(L, v); return 0; }
    case T_I32: { int32_t v;
      if (get_raw(d, &v, sizeof(v))) return -1;
      lua_pushinteger(L, v); return 0; }
    case T_I64: { lua_Integer v;
      if (get_raw(d, &v, sizeof(v))) return -1;
      lua_pushinteger(L, v); return 0; }
    case T_FLT: { lua_Number v;
      if (get_raw(d, &v, sizeof(v))) return -1;
      lua_pushnumber(L, v); return 0; }
    case T_F32: { float v;
      if (get_raw(d, &v, sizeof(v))) return -1;
      lua_pushnumber(L, (lua_Number)v); return 0; }
    case T_STR: { uint64_t n;
      if (get_varint(d, &n)) return -1;
      if (n > REMAINING(d)) return dec_fail(d, "truncated string");
      return dec_lstr(d, (size_t)n); }
    case T_TABLE: case T_STABLE: return dec_table(d, at, tag == T_STABLE);
    case T_KEEP: return dec_keep(d);
    case T_REF: { uint64_t off;
      if (get_varint(d, &off)) return -1;
      return dec_getref(d, off); }
    case T_LFUNC: case T_SLFUNC: case T_CFUNC: case T_ENV:
      if (d->flags & PPE_DEC_DATA) return dec_refuse(d, tag);
      if (tag != T_CFUNC && tag != T_ENV)
        return dec_lfunc(d, at, tag == T_SLFUNC);
      if (tag == T_CFUNC) return dec_cfunc(d);
      lua_pushglobaltable(L);  /* the globals, sent as T_ENV wherever met */
      return 0;
    default: return dec_fail(d, "unknown tag");
  }
}

int ppe_decode(lua_State *L, const char *s, size_t len, int flags,
               char *err) {
  Dec d;
  const unsigned char *u = (const unsigned char *)s;
  uint64_t n, i;
  int top = lua_gettop(L);
  d.L = L; d.s = u; d.len = len; d.pos = 0; d.budget = len;
  d.depth = 0; d.flags = flags; d.err = err; d.nclaims = 0;
  if (len < HEADER_SIZE || memcmp(s, "ppe", 3) != 0)
    return dec_fail(&d, "not a ppe message");
  if (u[3] != PPE_WIRE_VERSION)
    return dec_fail(&d, "unsupported format version");
  if (u[4] != little_endian() || u[5] != sizeof(lua_Integer) ||
      u[6] != sizeof(lua_Number))
    return dec_fail(&d, "message from a different number format");
  d.pos = HEADER_SIZE;
  if (get_varint(&d, &n)) return -1;
  if (n > REMAINING(&d)) return dec_fail(&d, "value count beyond message");
  if (n > INT_MAX / 2 || !lua_checkstack(L, (int)n + LUA_MINSTACK))
    return dec_fail(&d, "too many values");
  lua_pushnil(L);
  d.refs = lua_gettop(L);
  lua_pushnil(L);
  d.slots = lua_gettop(L);
  for (i = 0; i < n; i++)
    if (dec_value(&d)) goto fail;
  if (d.pos != d.len) { dec_fail(&d, "trailing bytes"); goto fail; }
  lua_remove(L, d.slots);
  lua_remove(L, d.refs);
  return (int)n;
fail:
  lua_settop(L, top);
  return -1;
}

/* }====================================================== */
