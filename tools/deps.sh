#!/bin/sh
# Installs what building and testing ppe needs on Debian, or says how.
#   tools/deps.sh      what 'make test', 'make demo' and 'make bench' need
#   tools/deps.sh bench  that, and the peers of bench/far.lua: dask's
#                      distributed and OpenSSH (see tools/sshd.sh), and
#                      gnuplot for bench/scaling.lua's plots; without
#                      root, those are only said to be missing, as far.lua
#                      leaves their figures out and scaling.lua its plots
#   tools/deps.sh compat  that, and Lua 5.3, 5.2, 5.1 and LuaJIT with headers
#   tools/deps.sh launchers  that, and OpenSSH and Slurm with munge, which
#                      tools/sshd.sh and tools/slurm.sh run for the specs
#   tools/deps.sh love  that, and LÖVE with a virtual X server (xvfb-run,
#                      which needs xauth) and LuaJIT's headers, for
#                      examples/love and spec/love_spec.lua
#   tools/deps.sh ci   the compat, launchers and love sets, and the
#                      sanitizers', valgrind's and fuzzer's
set -e
PKGS="lua5.4 liblua5.4-dev lua-busted lua-cjson lua-luv gcc make python3"
COMPAT="lua5.3 liblua5.3-dev lua5.2 liblua5.2-dev lua5.1 liblua5.1-0-dev luajit
  libluajit-5.1-dev"
LAUNCHERS="openssh-server openssh-client slurm-wlm munge"
LOVE="love xvfb xauth libluajit-5.1-dev"
# Wanted, not needed: what the benchmarks compare against.
OPTIONAL=""
[ "$1" = bench ] &&
  OPTIONAL="python3-distributed openssh-server openssh-client gnuplot-nox"
[ "$1" = compat ] && PKGS="$PKGS $COMPAT"
[ "$1" = launchers ] && PKGS="$PKGS $LAUNCHERS"
[ "$1" = love ] && PKGS="$PKGS $LOVE"
[ "$1" = ci ] && PKGS="$PKGS $COMPAT $LAUNCHERS $LOVE valgrind clang
  libclang-rt-14-dev luarocks lua-check"
# The packages given that are not installed, each after a space.
not_installed() {
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
      printf ' %s' "$p"
  done
}
# shellcheck disable=SC2086  # one word per package
missing=$(not_installed $PKGS)
# shellcheck disable=SC2086
optional=$(not_installed $OPTIONAL)
[ -z "$missing$optional" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing:$missing$optional"
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing $optional \
    >/dev/null
elif [ -n "$missing" ]; then
  echo "missing:$missing$optional"
  echo "run: sudo apt-get install -y$missing$optional"
  exit 1
else
  echo "missing, so left out of the benchmarks:$optional"
  echo "run: sudo apt-get install -y$optional"
fi
