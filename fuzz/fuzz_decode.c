/* fuzz_decode.c - libFuzzer target: ppe.decode on arbitrary bytes.
**
** Each input gets a fresh Lua state with the standard libraries and ppe,
** as a worker would have. ppe.decode must either return values or raise a
** SerializationError; anything else (a crash, a sanitizer report, a leak,
** another kind of error) is a finding. Values that do decode are encoded
** and decoded again: what the decoder accepts, the encoder must be able to
** send back, and the decoder must read what the encoder wrote.
**
** The input is decoded again with { functions = false }: that must either
** raise a SerializationError or give plain data only (nil, booleans,
** numbers, strings and tables without metatables), as many values as the
** default decode gives.
**
** The input is also decoded as a worker decodes (closure cache, modules
** required by name), and once more behind the record of a function made
** by this process, up to its upvalues: a record is only loaded under this
** process's tag, so that is how the fuzzer reaches the upvalues that
** follow it. Last, the input stands for the upvalue layout and upvalues
** behind that function's bytecode, with the function in the closure
** cache: the tag covers the layout, names of modules and C functions
** included, so the record may decode only if the input starts with the
** layout the function was sent with, and then only to a function whose
** C function, module and globals upvalues are those it was sent with.
**
** Build and run: make fuzz (FUZZ_SECONDS=60 by default). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "ppe.h"
#include "src/wire.h"

/* Runs with the module and the input; returns nothing, raises only on a
** finding. Re-encoding may refuse a graph nested too deep: the message
** may reach a table by a short path and the encoder, walking keys in
** another order, by a long one. */
static const char check[] =
  "local ppe, s = ...\n"
  "local function serr(e)\n"
  "  return getmetatable(e) == ppe.Error and e.kind == 'SerializationError'\n"
  "end\n"
  "local function plain(v, seen)\n"
  "  local t = type(v)\n"
  "  if t ~= 'table' then\n"
  "    return t == 'nil' or t == 'boolean' or t == 'number' or t == 'string'\n"
  "  end\n"
  "  if seen[v] then return true end\n"
  "  seen[v] = true\n"
  "  if getmetatable(v) ~= nil then return false end\n"
  "  for k, x in next, v do\n"
  "    if not plain(k, seen) or not plain(x, seen) then return false end\n"
  "  end\n"
  "  return true\n"
  "end\n"
  "local r = table.pack(pcall(ppe.decode, s))\n"
  "local d = table.pack(pcall(ppe.decode, s, { functions = false }))\n"
  "if d[1] then\n"
  "  local seen = {}\n"
  "  for i = 2, d.n do\n"
  "    if not plain(d[i], seen) then\n"
  "      error('safe decode gave ' .. tostring(d[i]))\n"
  "    end\n"
  "  end\n"
  "  if not r[1] or r.n ~= d.n then\n"
  "    error('safe decode gave other values')\n"
  "  end\n"
  "elseif not serr(d[2]) then\n"
  "  error('safe decode raised ' .. tostring(d[2]))\n"
  "end\n"
  "if not r[1] then\n"
  "  if not serr(r[2]) then error('decode raised ' .. tostring(r[2])) end\n"
  "  return\n"
  "end\n"
  "local ok, s2 = pcall(ppe.encode, table.unpack(r, 2, r.n))\n"
  "if not ok then\n"
  "  if serr(s2) and s2.message:find('nesting deeper', 1, true) then\n"
  "    return\n"
  "  end\n"
  "  error('encode of decoded values raised ' .. tostring(s2))\n"
  "end\n"
  "local r2 = table.pack(pcall(ppe.decode, s2))\n"
  "if not r2[1] then error('re-decode raised ' .. tostring(r2[2])) end\n"
  "if r2.n ~= r.n then error('value count changed') end\n";

/* A function with upvalues of every kind: number, table, C function,
** module, and _ENV. */
static const char maker[] =
  "local ppe = require 'ppe'\n"
  "local a, b, c, str = 1, {}, print, string\n"
  "return ppe.encode(function() return a, b, c, str.rep, tostring end)\n";

static char *maker_msg;  /* its whole message */
static size_t maker_len;
static size_t code_len;    /* the message up to the end of the bytecode */
static size_t prefix_len;  /* up to the end of the layout: the upvalues */

/* The length of the name at s[at] (as the encoder writes a string) with
** its head: a short string here. */
static size_t name_len(const char *s, size_t at) {
  unsigned char tag = (unsigned char)s[at];
  if (tag < 0x20 || tag >= 0x40) abort();
  return 1 + (size_t)(tag & 0x1f);
}

static void finding(lua_State *L, const char *what) {
  fprintf(stderr, "fuzz_decode: %s: %s\n", what, lua_tostring(L, -1));
  abort();
}

/* A state as a worker has, but with nothing to 'require' from disk: the
** decoder may require modules named in the input. */
static lua_State *newstate(void) {
  lua_State *L = luaL_newstate();
  if (L == NULL) abort();
  luaL_openlibs(L);
  luaL_requiref(L, "ppe", luaopen_ppe, 0);
  lua_pop(L, 1);
  if (luaL_dostring(L, "package.path = '' package.cpath = ''") != LUA_OK)
    finding(L, "setup");
  return L;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  lua_State *L = newstate();
  const char *s;
  size_t len;
  uint32_t blen;
  int i, kind;
  (void)argc; (void)argv;
  if (luaL_dostring(L, maker) != LUA_OK) finding(L, "maker");
  s = lua_tolstring(L, -1, &len);
  /* header 7, count 1, T_LFUNC 1, length 4, tag 8, bytecode, then the
  ** layout: a varint count of upvalues (one byte here) and for each its
  ** kind, followed by a name for a module (2) or a C function (3) */
  memcpy(&blen, s + 9, sizeof(blen));
  code_len = 21 + (size_t)blen;
  if (code_len >= len) abort();
  prefix_len = code_len + 1;
  for (i = 0; i < (unsigned char)s[code_len]; i++) {
    if (prefix_len >= len) abort();
    kind = (unsigned char)s[prefix_len++];
    if (kind == 2 || kind == 3) prefix_len += name_len(s, prefix_len);
  }
  if (prefix_len > len || (maker_msg = malloc(len)) == NULL) abort();
  memcpy(maker_msg, s, len);
  maker_len = len;
  lua_close(L);
  return 0;
}

/* Decodes as a worker does; returns how many values, or -1. Beyond
** that the result does not matter, only that it neither crashes nor
** leaves the stack out of order. */
static int worker_decode(lua_State *L, const char *s, size_t len) {
  char err[PPE_ERRSZ];
  int top = lua_gettop(L);
  int n = ppe_decode(L, s, len, PPE_DEC_FNCACHE | PPE_DEC_REQUIRE, err);
  if (n < 0 ? lua_gettop(L) != top : lua_gettop(L) != top + n) {
    lua_pushstring(L, "stack out of order");
    finding(L, "worker decode");
  }
  lua_settop(L, top);
  return n;
}

/* Decodes s, the maker's record with other upvalues, as a worker does. If
** that gives a function, its upvalues 3 to 5 must be those it was sent
** with, print, string and the globals: only data upvalues may differ. */
static void check_spliced(lua_State *L, const char *s, size_t len) {
  char err[PPE_ERRSZ];
  int i, top = lua_gettop(L);
  if (ppe_decode(L, s, len, PPE_DEC_FNCACHE | PPE_DEC_REQUIRE, err) == 1 &&
      lua_isfunction(L, -1)) {
    lua_getglobal(L, "print");
    lua_getglobal(L, "string");
    lua_pushglobaltable(L);
    for (i = 0; i < 3; i++) {
      if (lua_getupvalue(L, top + 1, 3 + i) == NULL ||
          !lua_rawequal(L, -1, top + 2 + i)) {
        lua_pushstring(L, "a genuine record decoded with another C "
                       "function, module or globals");
        finding(L, "worker decode");
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
}

/* Runs the check (at 1, the module at 2) on s. */
static void run_check(lua_State *L, const char *s, size_t len) {
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushlstring(L, s, len);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) finding(L, "check failed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = newstate();
  size_t layout_len = prefix_len - code_len;
  char *withfn = malloc(prefix_len + size);
  char *withcode = malloc(code_len + size);
  if (withfn == NULL || withcode == NULL) abort();
  memcpy(withfn, maker_msg, prefix_len);
  if (size) memcpy(withfn + prefix_len, data, size);
  memcpy(withcode, maker_msg, code_len);
  if (size) memcpy(withcode + code_len, data, size);
  if (luaL_loadbuffer(L, check, sizeof(check) - 1, "=check") != LUA_OK)
    finding(L, "check does not compile");
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "ppe");
  lua_remove(L, -2);
  run_check(L, (const char *)data, size);
  run_check(L, withfn, prefix_len + size);
  worker_decode(L, (const char *)data, size);
  worker_decode(L, withfn, prefix_len + size);
  worker_decode(L, withfn, prefix_len + size);  /* from the cache */
  if (worker_decode(L, maker_msg, maker_len) != 1) {
    lua_pushstring(L, "the function's own message does not decode");
    finding(L, "worker decode");
  }
  if (worker_decode(L, withcode, code_len + size) >= 0 &&
      (size < layout_len ||
       memcmp(data, maker_msg + code_len, layout_len) != 0)) {
    lua_pushstring(L, "a record decoded with a layout it was not sent with");
    finding(L, "worker decode");
  }
  check_spliced(L, withfn, prefix_len + size);
  check_spliced(L, withcode, code_len + size);
  free(withcode);
  free(withfn);
  lua_close(L);
  return 0;
}
