# ppe - build, test, benchmark, install.
# LuaRocks passes CC, LUA_INCDIR, LUA_LIBDIR, LIBFLAG, CFLAGS, PREFIX, LIBDIR.

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
# Where libppe.a and ppe.pc go: the system's library directory, not Lua's
# module directory (LIBDIR, which LuaRocks sets to its tree's).
CLIBDIR ?= $(PREFIX)/lib
PKGCONFIGDIR ?= $(CLIBDIR)/pkgconfig
# The pkg-config package of the Lua that libppe.a is built for, which
# ppe.pc requires (so that 'pkg-config --libs ppe' links that Lua): found
# by its Debian name, else none; 'make install LUA_PC=luajit' for LuaJIT.
LUA_PC ?= $(shell pkg-config --exists lua$(LUA_VERSION) 2>/dev/null && \
  echo lua$(LUA_VERSION))
DESTDIR ?=
BUSTED ?= /usr/bin/busted

# What ppe itself needs, whatever CFLAGS the caller chose.
PPE_FLAGS = -std=c99 -D_GNU_SOURCE -fPIC -fvisibility=hidden -Wall -Wextra -I.
PPE_CFLAGS = $(PPE_FLAGS) -I$(LUA_INCDIR)
PPE_LIBS = -lpthread -ldl

SRC = lua_ppe.c $(wildcard src/*.c src/lua/*.c)
OBJ = $(SRC:.c=.o)
HDR = ppe.h $(wildcard src/*.h src/lua/*.h)

# The version, read from the one place it is written.
VERSION := $(shell sed -n 's/^\#define PPE_VERSION "ppe \(.*\)"$$/\1/p' ppe.h)

.PHONY: all deps bench-deps demo test bench fuzz install install-module \
  uninstall clean check-asan check-valgrind host test-compat examples \
  release-check

# The specs again under AddressSanitizer and UndefinedBehaviorSanitizer:
# the module built apart, the runtimes preloaded into the interpreter (and
# so into every worker it forks).
SAN_CFLAGS = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
  -fno-omit-frame-pointer
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)"
# What a spec starts through env (spec/vm_spec.lua: other interpreters,
# which load plain builds) and the make it runs are left untraced.
VALGRIND = valgrind -q --trace-children=yes \
  --trace-children-skip='*/env,*/make' --leak-check=full \
  --show-leak-kinds=definite --errors-for-leak-kinds=definite \
  --error-exitcode=99

all: ppe.so libppe.a

# What the objects were compiled with: other headers (another Lua) or other
# flags make every object again.
build/cflags: FORCE
	@mkdir -p build
	@echo '$(CC) $(CFLAGS) $(PPE_CFLAGS)' | cmp -s - $@ || \
	  echo '$(CC) $(CFLAGS) $(PPE_CFLAGS)' > $@

FORCE:

%.o: %.c $(HDR) build/cflags
	$(CC) $(CFLAGS) $(PPE_CFLAGS) -c $< -o $@

ppe.so: $(OBJ)
	$(CC) $(CFLAGS) $(LIBFLAG) -o $@ $(OBJ) $(PPE_LIBS)

# For hosts that link ppe statically.
libppe.a: $(OBJ)
	$(AR) rcs $@ $(OBJ)

# A C program embedding Lua and ppe, linked statically with libppe.a.
examples/host/host: examples/host/host.c libppe.a ppe.h
	$(CC) $(CFLAGS) -std=c99 -Wall -Wextra -I$(LUA_INCDIR) -I. -o $@ \
	  examples/host/host.c libppe.a -L$(LUA_LIBDIR) -llua$(LUA_VERSION) \
	  $(PPE_LIBS) -lm -ldl

host: examples/host/host
	examples/host/host

# examples/host/preload.c for another Lua, linked with ppe's sources built
# for that Lua: 'make build/lua5.1/preload', 'make build/luajit/preload'.
compat_lib = $(if $(filter luajit,$(1)),-lluajit-5.1,-l$(1))

build/%/preload: examples/host/preload.c $(SRC) $(HDR)
	@mkdir -p build/$*
	$(CC) $(CFLAGS) $(PPE_FLAGS) -I$(call compat_inc,$*) \
	  -o $@.$$$$.tmp $< $(SRC) $(call compat_lib,$*) $(PPE_LIBS) -lm && \
	  mv -f $@.$$$$.tmp $@

deps:
	@sh tools/deps.sh

# The above, and bench/far.lua's peers (dask, sshd): without root, their
# figures are left out instead of the whole run failing.
bench-deps:
	@sh tools/deps.sh bench

demo: deps all
	$(LUA) examples/process_pool.lua
	$(LUA) examples/context_manager.lua

# Every example under every Lua, each with its own Lua's build: run in
# build/<lua>/, whose ppe.so the examples' './?.so' finds, 60 s at most
# each; one marked "Lua 5.4 only" under lua5.4 alone. Its output is shown
# when it fails.
# COMPAT_LUAS is set here, before the rule whose prerequisites name it:
# make expands a rule's prerequisites when it reads them.
COMPAT_LUAS = lua5.3 lua5.2 lua5.1 luajit
EXAMPLE_LUAS = lua5.4 $(COMPAT_LUAS)

examples: $(foreach l,$(EXAMPLE_LUAS),build/$(l)/ppe.so)
	@for l in $(EXAMPLE_LUAS); do for e in examples/*.lua; do \
	  if [ $$l != lua5.4 ] && grep -q '^-- Lua 5.4 only' $$e; then \
	    echo "skipped  $$l $$e (Lua 5.4 only)"; continue; fi; \
	  t0=$$(date +%s%N); \
	  if (cd build/$$l && timeout 60 $$l ../../$$e) >build/example.log 2>&1; \
	  then echo "ok       $$l $$e ($$((($$(date +%s%N) - t0) / 1000000)) ms)"; \
	  else echo "FAILED   $$l $$e:"; cat build/example.log; exit 1; fi; \
	done; done

# C modules the specs use to misbehave on purpose (spec/fixtures/*.c).
TEST_MODS = $(patsubst %.c,%.so,$(wildcard spec/fixtures/*.c))

spec/fixtures/%.so: spec/fixtures/%.c
	$(CC) $(CFLAGS) $(PPE_CFLAGS) $(LIBFLAG) -o $@ $<

test: deps all $(TEST_MODS)
	$(LUA) $(BUSTED)

# The other Lua versions, each built apart under build/<lua>/ and run by its
# own interpreter: 'make test-lua5.1' for one, 'make test-compat' for all.
compat_inc = $(if $(filter luajit,$(1)),/usr/include/luajit-2.1,/usr/include/$(1))

# Kept once built, though only reached through test-% and check-asan-%.
.PRECIOUS: build/%/ppe.so build/%/evil.so build/asan-%/ppe.so

# spec/vm_spec.lua makes every build/<lua>/ppe.so it can, whichever suite
# runs it, and suites run side by side: each file is written apart and
# renamed into place, so a reader never loads half of one.
build/%/ppe.so: $(SRC) $(HDR)
	@mkdir -p build/$*
	$(CC) $(CFLAGS) $(PPE_FLAGS) -I$(call compat_inc,$*) $(LIBFLAG) \
	  -o $@.$$$$.tmp $(SRC) $(PPE_LIBS) && mv -f $@.$$$$.tmp $@

build/%/evil.so: spec/fixtures/evil.c src/compat.h
	@mkdir -p build/$*
	$(CC) $(CFLAGS) $(PPE_FLAGS) -I$(call compat_inc,$*) $(LIBFLAG) \
	  -o $@.$$$$.tmp $< && mv -f $@.$$$$.tmp $@

test-%: build/%/ppe.so build/%/evil.so
	$* $(BUSTED) --ignore-lua --cpath='build/$*/?.so' $(COMPAT_BUSTED)

test-compat:
	@sh tools/deps.sh compat
	@for v in $(COMPAT_LUAS); do $(MAKE) --no-print-directory test-$$v || exit 1; done

# Another version's specs under the sanitizers, as check-asan does for 5.4:
# 'make check-asan-lua5.1'. (LuaJIT's own allocator hides from the leak
# checker what its states hold: there, leaks are not checked.)
build/asan-%/ppe.so: $(SRC) $(HDR)
	@mkdir -p build/asan-$*
	$(CC) $(SAN_CFLAGS) $(PPE_FLAGS) -I$(call compat_inc,$*) $(LIBFLAG) \
	  -o $@ $(SRC) $(PPE_LIBS)

check-asan-%: build/asan-%/ppe.so build/%/evil.so
	$(SAN_ENV) $(if $(filter luajit,$*),ASAN_OPTIONS=detect_leaks=0:abort_on_error=1) \
	  $* $(BUSTED) --ignore-lua --cpath='build/asan-$*/?.so;build/$*/?.so' \
	  --exclude-tags=slow

build/asan/ppe.so: $(SRC) $(HDR)
	@mkdir -p build/asan
	$(CC) $(SAN_CFLAGS) $(PPE_CFLAGS) $(LIBFLAG) -o $@ $(SRC) $(PPE_LIBS)

check-asan: deps build/asan/ppe.so $(TEST_MODS)
	$(SAN_ENV) $(LUA) $(BUSTED) --cpath='build/asan/?.so' --exclude-tags=slow

# Under valgrind, the specs tagged slow (huge values, soaks) stay out, and
# so do those tagged novalgrind: they count the processes and descriptors
# of the process tree, which valgrind adds to, or time what it slows.
check-valgrind: deps all $(TEST_MODS)
	$(VALGRIND) $(LUA) $(BUSTED) --exclude-tags=slow,novalgrind

bench: bench-deps all bench/floors
	$(LUA) bench/run.lua

# The floors in C the executor's figures are measured against (one of them
# makes Lua states, so it links Lua).
bench/floors: bench/floors.c
	$(CC) $(CFLAGS) -std=c99 -D_GNU_SOURCE -Wall -Wextra -I$(LUA_INCDIR) \
	  -o $@ bench/floors.c -L$(LUA_LIBDIR) -llua$(LUA_VERSION) -lm -ldl

# pkg-config's file for hosts that link libppe.a, naming where 'make
# install' puts it; written again when those places or the version change.
pc_dir = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))

ppe.pc: FORCE
	@{ echo 'prefix=$(PREFIX)'; \
	  echo 'includedir=$(call pc_dir,$(INCDIR))'; \
	  echo 'libdir=$(call pc_dir,$(CLIBDIR))'; \
	  echo; \
	  echo 'Name: ppe'; \
	  echo 'Description: A process pool executor for Lua, for hosts that embed Lua'; \
	  echo 'Version: $(VERSION)'; \
	  echo 'URL: https://github.com/ppe-lua/ppe'; \
	  $(if $(LUA_PC),echo 'Requires: $(LUA_PC)';) \
	  echo 'Cflags: -I$${includedir}$(if $(LUA_PC),, -I$(LUA_INCDIR))'; \
	  echo 'Libs: -L$${libdir} -lppe $(PPE_LIBS)'; \
	} > $@.tmp && if cmp -s $@.tmp $@; then rm -f $@.tmp; \
	  else mv -f $@.tmp $@; fi

# Installs what was built, as it was built: 'make install' after a 'make'
# with other variables (LuaRocks passes the build's apart) must not rebuild.
# The Lua module goes to LIBDIR; for hosts that embed Lua, libppe.a and
# ppe.pc to CLIBDIR and PKGCONFIGDIR, ppe.h to INCDIR. LuaRocks installs
# the module alone (install-module).
install: install-module ppe.pc
	@[ -f libppe.a ] || $(MAKE) libppe.a
	install -d $(DESTDIR)$(CLIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	  $(DESTDIR)$(INCDIR)
	install -m 0644 libppe.a $(DESTDIR)$(CLIBDIR)/libppe.a
	install -m 0644 ppe.h $(DESTDIR)$(INCDIR)/ppe.h
	install -m 0644 ppe.pc $(DESTDIR)$(PKGCONFIGDIR)/ppe.pc

install-module:
	@[ -f ppe.so ] || $(MAKE) ppe.so
	install -d $(DESTDIR)$(LIBDIR)
	install -m 0755 ppe.so $(DESTDIR)$(LIBDIR)/ppe.so

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/ppe.so $(DESTDIR)$(CLIBDIR)/libppe.a \
	  $(DESTDIR)$(INCDIR)/ppe.h $(DESTDIR)$(PKGCONFIGDIR)/ppe.pc

# What a release needs beyond the suite (run by .ci/run): 'make install'
# into a scratch prefix, then examples/host/host.c and preload.c built
# with nothing but 'pkg-config --cflags --libs ppe' against what it
# installed, and run; preload.c on Lua 5.1 and LuaJIT too, which have no
# luaL_requiref; then the release and reference specs (versions, LICENSE,
# luarocks lint and pack, every name in doc/reference.md).
RELEASE_LUAS = lua5.1 luajit

release-check: all
	@sh tools/deps.sh compat
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(MAKE) --no-print-directory install DESTDIR= PREFIX="$$tmp" && \
	  export PKG_CONFIG_PATH="$$tmp/lib/pkgconfig" && \
	  flags=$$(pkg-config --cflags --libs ppe) && \
	  echo "pkg-config --cflags --libs ppe: $$flags" && \
	  test "$$(pkg-config --modversion ppe)" = "$(VERSION)" && \
	  for p in host preload; do \
	    $(CC) -std=c99 -Wall -Wextra -o "$$tmp/$$p" \
	      examples/host/$$p.c $$flags && \
	    timeout 120 "$$tmp/$$p" || exit 1; \
	  done
	@for v in $(RELEASE_LUAS); do \
	  $(MAKE) --no-print-directory build/$$v/preload && \
	  timeout 120 build/$$v/preload || exit 1; \
	done
	$(LUA) $(BUSTED) spec/release_spec.lua spec/doc_spec.lua

clean:
	rm -rf $(OBJ) ppe.so libppe.a ppe.pc fuzz/fuzz_decode build bench/floors \
	  examples/host/host \
	  $(TEST_MODS)

# libFuzzer on ppe.decode, FUZZ_SECONDS long, on a scratch copy of the
# seed corpus (the committed one stays as it is). A crash, a leak or a
# sanitizer report fails the target and leaves its input in fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -std=c99 -D_GNU_SOURCE \
  -I$(LUA_INCDIR) -I.

fuzz/fuzz_decode: fuzz/fuzz_decode.c $(SRC) $(HDR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_decode.c $(SRC) \
	  -L$(LUA_LIBDIR) -llua$(LUA_VERSION) -lm $(PPE_LIBS)

fuzz: fuzz/fuzz_decode
	rm -rf fuzz/corpus-run
	cp -R fuzz/corpus fuzz/corpus-run
	fuzz/fuzz_decode -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	  -artifact_prefix=fuzz/ fuzz/corpus-run
