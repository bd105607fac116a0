/* lmap.c - ex:map: items sent in chunks, read back through an iterator
** that is its own state, in order or as they complete. */
#include <string.h>

#include "src/lua/lppe.h"
#include "src/chunk.h"
#include "src/wire.h"

/* The iteration state of ex:map. User values: 1 executor, 2 fn, 3 items,
** 4 queue of chunks (3 slots each: future, first index, count), 5 the
** current chunk's values. */
typedef struct MapState {
  int ordered, spread, chunksize;
  lua_Integer buffersize;   /* 0: no bound */
  lua_Integer total;        /* #items for a sequence, -1 for an iterator */
  lua_Integer nread;        /* items taken from the source */
  int exhausted;
  int closed;               /* by __close or it:close(): at its end */
  int waiting;              /* in map_pick's wait, which runs callbacks */
  int packed;               /* this chunk: one value per item (chunk.h) */
  lua_Integer inflight;     /* items sent and not yet yielded */
  lua_Integer qhead, qtail; /* chunk numbers in the queue */
  lua_Integer cur;          /* chunk being yielded, 0 if none */
  lua_Integer cur_first, cur_count;  /* its items */
  lua_Integer cur_item, cur_pos;     /* next item, its place in values */
  lua_Integer nvals;        /* values in the values table */
  pid_t cur_pid;
  int cur_attempts;         /* its runs (retries) */
  const char *cur_host;     /* its worker's group, if far */
  double deadline;
  lua_Number timeout;       /* the seconds it was given */
  ppe_done *done;           /* ordered=false: chunks as they complete */
} MapState;

static MapState *tomap(lua_State *L) {
  MapState *m = (MapState *)luaL_testudata(L, 1, PPE_MAP);
  if (m == NULL) m = (MapState *)luaL_testudata(L, 1, PPE_UMAP);
  if (m == NULL) luaL_typeerror(L, 1, PPE_MAP);
  return m;
}

/* Reads up to 'want' items onto the stack from src, the sequence or the
** iterator; returns how many. */
static int map_read(lua_State *L, MapState *m, int src, int want) {
  int got = 0;
  luaL_checkstack(L, want + 4, "chunksize too large");
  while (got < want && !m->exhausted) {
    if (m->total >= 0) {
      if (m->nread >= m->total) { m->exhausted = 1; break; }
      lua_geti(L, src, m->nread + 1);
    }
    else {
      lua_pushvalue(L, src);
      lua_call(L, 0, 1);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        m->exhausted = 1;
        break;
      }
    }
    m->nread++;
    got++;
  }
  return got;
}

/* Sends chunks while items are left and buffersize allows: each request
** is fn, spread, then the chunk's items. */
static void map_fill(lua_State *L, MapState *m, Executor *e) {
  while (!m->exhausted &&
         (m->buffersize == 0 || m->inflight < m->buffersize)) {
    lua_Integer want = m->chunksize, first = m->nread + 1;
    int top = lua_gettop(L), got;
    ppe_buf *b;
    ppe_task *t;
    if (m->buffersize > 0 && want > m->buffersize - m->inflight)
      want = m->buffersize - m->inflight;
    lua_getiuservalue(L, 1, 3);  /* the items: below what is sent */
    lua_getiuservalue(L, 1, 2);
    lua_pushboolean(L, m->spread);
    got = map_read(L, m, top + 1, (int)want);
    if (got == 0) { lua_settop(L, top); break; }
    b = lppe_request(L, top + 2, got + 2, "item", (int)first - 2);
    t = lppe_submit(L, e, b, PPE_REQ_CHUNK, got, "map");
    m->qtail++;
    /* (one that is final already goes in at once) */
    if (m->done != NULL && ppe_done_add(m->done, t, m->qtail) != 0)
      luaL_error(L, "not enough memory");
    lua_getiuservalue(L, 1, 4);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 3 * m->qtail - 2);
    lua_pushinteger(L, first);
    lua_rawseti(L, -2, 3 * m->qtail - 1);
    lua_pushinteger(L, got);
    lua_rawseti(L, -2, 3 * m->qtail);
    m->inflight += got;
    lua_settop(L, top);
  }
}

/* Pushes chunk k's future (or nil); returns its task, or NULL. */
static ppe_task *map_future(lua_State *L, lua_Integer k) {
  lua_getiuservalue(L, 1, 4);
  lua_rawgeti(L, -1, 3 * k - 2);
  lua_replace(L, -2);
  return lppe_futuretask(L, -1);
}

static lua_Integer map_field(lua_State *L, lua_Integer k, int which) {
  lua_Integer v;
  lua_getiuservalue(L, 1, 4);
  lua_rawgeti(L, -1, 3 * k - 2 + which);
  v = lua_tointeger(L, -1);
  lua_pop(L, 2);
  return v;
}

/* The TimeoutError of a map whose timeout ran out. */
static int map_timed_out(lua_State *L, MapState *m) {
  lua_pushfstring(L, "map did not complete within %f s", m->timeout);
  return lppe_raise(L, "TimeoutError", lua_tostring(L, -1));
}

/* The next chunk to yield: the oldest, or with ordered=false the first to
** complete, from the map's completion list. Waits for it; raises
** TimeoutError past the map's deadline. */
static lua_Integer map_pick(lua_State *L, MapState *m) {
  lua_Integer k = m->qhead;
  ppe_task *t = NULL;
  int ok;
  if (!m->ordered) {
    lua_Integer best;
    m->waiting = 1;
    do best = (lua_Integer)ppe_done_next(m->done, m->deadline,
                                         lppe_callbacks(L));
    while (best == PPE_CALLBACKS);
    m->waiting = 0;
    if (best == 0)
      map_timed_out(L, m);
    return best;
  }
  /* The oldest chunk not dropped: see map_drop. */
  while (k <= m->qtail && (t = map_future(L, k)) == NULL) {
    lua_pop(L, 1);
    k++;
  }
  if (t == NULL) luaL_error(L, "no chunk to wait for");
  /* (its future stays on the stack: a callback run meanwhile may drop
  ** it from the map) */
  m->waiting = 1;
  do ok = ppe_await(t, m->deadline, lppe_callbacks(L));
  while (ok == PPE_CALLBACKS);
  m->waiting = 0;
  lua_pop(L, 1);
  if (!ok)
    map_timed_out(L, m);
  return k;
}

static void map_drop(lua_State *L, MapState *m, lua_Integer k) {
  int i;
  m->inflight -= map_field(L, k, 2);
  lua_getiuservalue(L, 1, 4);
  for (i = 0; i < 3; i++) {
    lua_pushnil(L);
    lua_rawseti(L, -2, 3 * k - 2 + i);
  }
  lua_pop(L, 1);
  while (m->qhead <= m->qtail) {  /* skip dropped chunks at the head */
    lua_getiuservalue(L, 1, 4);
    if (lua_rawgeti(L, -1, 3 * m->qhead - 2) != LUA_TNIL) {
      lua_pop(L, 2);
      break;
    }
    lua_pop(L, 2);
    m->qhead++;
  }
  m->cur = 0;
}

/* Raises if the futures of a map were collected (a finalizer of the
** caller's brought the map back): their tasks are gone. The map alone
** holds them, so they all go in the same collection: the one at the head
** of the queue tells for all. */
static void map_alive(lua_State *L, MapState *m) {
  int gone;
  /* A done-callback run in the map's own wait that steps or closes it
  ** would take the chunk waited for, or drop it (as a running Python
  ** generator, it refuses). Neither the wait nor its callbacks raise, so
  ** the flag is always cleared. */
  if (m->waiting)
    luaL_error(L, "map iterator used from a done-callback run in its own "
               "wait");
  if (!m->ordered && m->done == NULL)  /* its __gc has run */
    luaL_error(L, "attempt to use a collected map");
  if (m->qhead > m->qtail) return;
  gone = map_future(L, m->qhead) == NULL && !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (gone) luaL_error(L, "attempt to use a collected map");
}

/* Moves to the next chunk to yield and decodes its reply into the values
** table (user value 5, reused from chunk to chunk). Returns 0 when the map
** is done; raises the failure of a whole chunk (a worker died, say). */
static int map_next_chunk(lua_State *L, MapState *m) {
  char err[PPE_ERRSZ];
  Executor *e;
  ppe_task *t;
  ppe_outcome o;
  lua_Integer i;
  int n, top;
  map_alive(L, m);
  if (m->cur != 0) map_drop(L, m, m->cur);
  lua_getiuservalue(L, 1, 1);
  e = (Executor *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!m->exhausted && e->pool != NULL && !e->shut) map_fill(L, m, e);
  if (m->qhead > m->qtail) return 0;
  m->cur = map_pick(L, m);
  m->cur_first = map_field(L, m->cur, 1);
  m->cur_count = map_field(L, m->cur, 2);
  m->cur_item = 0;
  m->cur_pos = 1;
  t = map_future(L, m->cur);
  top = lua_gettop(L);
  ppe_outcome_get(t, &o);  /* t is held till ppe_outcome_done */
  m->cur_pid = o.pid;
  m->cur_attempts = o.attempts;
  m->cur_host = o.host;
  if (o.kind != PPE_OK) {
    lppe_pushfailure(L, &o);
    ppe_outcome_done(t);
    map_drop(L, m, m->cur);
    return lua_error(L);
  }
  n = ppe_decode(L, o.bytes, o.len, 0, err);
  ppe_outcome_done(t);
  if (n < 0) {
    map_drop(L, m, m->cur);
    return lppe_raise(L, "SerializationError", err);
  }
  m->packed = n > 0 && ppe_chunk_packed(L, top + 1);
  if (lua_getiuservalue(L, 1, 5) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, n, 0);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, 5);
  }
  lua_insert(L, top + 1);
  for (i = n; i >= 1; i--) lua_rawseti(L, top + 1, i);
  for (i = n + 1; i <= m->nvals; i++) {  /* let go of the last chunk's */
    lua_pushnil(L);
    lua_rawseti(L, top + 1, i);
  }
  m->nvals = n;
  if (m->packed) m->cur_pos = 2;  /* past the leading true */
  lua_settop(L, 1);
  return 1;
}

/* The iterator: the map state is its own __call, so argument 1 is always
** the state. Yields the item's index and the values fn returned for it. */
static int map_step(lua_State *L) {
  MapState *m = (MapState *)lua_touserdata(L, 1);
  int k;
  lppe_run_callbacks(L);
  if (m->packed && m->cur != 0 && m->cur_item < m->cur_count &&
      !m->closed) {  /* the common case, in as few calls as it takes */
    lua_getiuservalue(L, 1, 5);
    lua_pushinteger(L, m->cur_first + m->cur_item++);
    lua_rawgeti(L, -2, m->cur_pos++);
    return 2;
  }
  lua_settop(L, 1);
  if (m->closed) return 0;
  while (m->cur == 0 || m->cur_item >= m->cur_count)
    if (!map_next_chunk(L, m)) return 0;
  lua_getiuservalue(L, 1, 5);
  lua_pushinteger(L, m->cur_first + m->cur_item++);
  k = ppe_chunk_item(L, 2, &m->cur_pos, m->packed);
  if (k < 0) {  /* this item raised: message, traceback, value */
    lppe_remote(L, m->cur_pid, m->cur_attempts);
    if (m->cur_host != NULL) {
      lua_pushstring(L, m->cur_host);
      lua_setfield(L, -2, "host");
    }
    return lua_error(L);
  }
  return k + 1;
}

/* Leaving the loop early cancels what has not started. */
static int map_close(lua_State *L) {
  MapState *m = tomap(L);
  lua_Integer k;
  map_alive(L, m);
  for (k = m->qhead; k <= m->qtail; k++) {
    ppe_task *t = map_future(L, k);
    if (t != NULL) ppe_cancel(t);
    lua_pop(L, 1);
  }
  m->exhausted = m->closed = 1;
  return 0;
}

static int map_gc(lua_State *L) {
  MapState *m = (MapState *)lua_touserdata(L, 1);
  lppe_closedone(&m->done);
  return 0;
}

static const char *const map_options[] = {
  "chunksize", "timeout", "ordered", "buffersize", "unpack", NULL
};

int lppe_map(lua_State *L) {
  Executor *e = lppe_toexecutor(L, 1);
  MapState *m;
  char err[PPE_ERRSZ];
  ppe_buf *probe;
  double secs;
  lppe_checkcallable(L, 2);
  if (lua_type(L, 3) != LUA_TTABLE && lua_type(L, 3) != LUA_TFUNCTION)
    luaL_typeerror(L, 3, "sequence or iterator function");
  lppe_options(L, 4, map_options, "map");
  if (e->shut || e->pool == NULL)
    return lppe_raise(L, "ShutdownError", "cannot map after shutdown");
  /* The function is checked once here, so its faults name it. */
  probe = lppe_newbuf(L);
  if (ppe_encode(L, probe, 2, 1, "argument", 1, err) != 0)
    return lppe_raise(L, "SerializationError", err);
  lua_pop(L, 1);
  m = (MapState *)lua_newuserdatauv(L, sizeof(MapState), 5);
  memset(m, 0, sizeof(*m));
  m->qhead = 1;
  m->chunksize = (int)lppe_optint(L, 4, "chunksize", 1, INT32_MAX);
  m->buffersize = lppe_optint(L, 4, "buffersize", 0, LUA_MAXINTEGER);
  m->ordered = lppe_optbool(L, 4, "ordered", 1);
  m->spread = lppe_optbool(L, 4, "unpack", 0);
  secs = lppe_optseconds(L, 4, "timeout", 0, -1);
  m->deadline = secs >= 0 ? ppe_deadline(secs) : -1;
  m->timeout = (lua_Number)secs;
  m->total = lua_istable(L, 3) ? luaL_len(L, 3) : -1;
  /* From here on, __gc frees what it has. */
  luaL_setmetatable(L, m->ordered ? PPE_MAP : PPE_UMAP);
  if (!m->ordered && (m->done = ppe_done_open()) == NULL)
    return luaL_error(L, "not enough memory");
  lua_pushvalue(L, 1); lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, 2); lua_setiuservalue(L, -2, 2);
  lua_pushvalue(L, 3); lua_setiuservalue(L, -2, 3);
  lua_newtable(L); lua_setiuservalue(L, -2, 4);
  /* Everything is sent at once, as Python does, unless buffersize says
  ** how much may be in flight. */
  lua_replace(L, 1);
  lua_settop(L, 1);
  map_fill(L, m, e);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_pushvalue(L, 1);  /* to-be-closed: breaking out cancels the rest */
  return 4;
}

static const luaL_Reg map_meta[] = {
  {"__close", map_close},
  {"__call", map_step},
  {NULL, NULL}
};

static const luaL_Reg umap_meta[] = {
  {"__close", map_close},
  {"__gc", map_gc},
  {"__call", map_step},
  {NULL, NULL}
};

/* it:close(), for Luas whose for loop closes nothing (before 5.4). */
static const luaL_Reg map_methods[] = {
  {"close", map_close},
  {NULL, NULL}
};

void lppe_open_maps(lua_State *L, int mts) {
  lppe_newclass(L, PPE_MAP, map_meta, map_methods, mts);
  lppe_newclass(L, PPE_UMAP, umap_meta, map_methods, mts);
}
