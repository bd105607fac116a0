# ppe - build, test, benchmark, install.
# LuaRocks passes LUA_INCDIR, LUA_LIBDIR, LIBFLAG, CFLAGS, PREFIX, LIBDIR.

LUA_VERSION ?= 5.4
LUA ?= lua$(LUA_VERSION)
LUA_INCDIR ?= /usr/include/lua$(LUA_VERSION)
LUA_LIBDIR ?= /usr/lib/x86_64-linux-gnu
CC ?= cc
CFLAGS ?= -O2 -g
LIBFLAG ?= -shared
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
INCDIR ?= $(PREFIX)/include
DESTDIR ?=
BUSTED ?= /usr/bin/busted

# What ppe itself needs, whatever CFLAGS the caller chose.
PPE_CFLAGS = -std=c99 -D_GNU_SOURCE -fPIC -fvisibility=hidden \
  -Wall -Wextra -I$(LUA_INCDIR) -I.
PPE_LIBS = -lpthread

SRC = lua_ppe.c $(wildcard src/*.c)
OBJ = $(SRC:.c=.o)
HDR = ppe.h $(wildcard src/*.h)

.PHONY: all deps demo test bench fuzz install clean

all: ppe.so libppe.a

%.o: %.c $(HDR)
	$(CC) $(CFLAGS) $(PPE_CFLAGS) -c $< -o $@

ppe.so: $(OBJ)
	$(CC) $(CFLAGS) $(LIBFLAG) -o $@ $(OBJ) $(PPE_LIBS)

# For hosts that link ppe statically.
libppe.a: $(OBJ)
	$(AR) rcs $@ $(OBJ)

deps:
	@sh tools/deps.sh

demo: deps all
	$(LUA) examples/process_pool.lua
	$(LUA) examples/context_manager.lua

test: deps all
	$(LUA) $(BUSTED)

bench: deps all
	$(LUA) bench/run.lua

install: ppe.so
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR)
	install -m 0755 ppe.so $(DESTDIR)$(LIBDIR)/ppe.so
	install -m 0644 ppe.h $(DESTDIR)$(INCDIR)/ppe.h

clean:
	rm -f $(OBJ) ppe.so libppe.a fuzz/fuzz_decode
