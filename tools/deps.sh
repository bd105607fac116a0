#!/bin/sh
# Installs what building and testing ppe needs on Debian, or says how.
#   tools/deps.sh      what 'make test', 'make demo' and 'make bench' need
#   tools/deps.sh compat  that, and Lua 5.3, 5.2, 5.1 and LuaJIT with headers
#   tools/deps.sh launchers  that, and OpenSSH and Slurm with munge, which
#                      tools/sshd.sh and tools/slurm.sh run for the specs
#   tools/deps.sh ci   all that, and the sanitizers', valgrind's and fuzzer's
set -e
PKGS="lua5.4 liblua5.4-dev lua-busted lua-cjson lua-luv gcc make python3"
COMPAT="lua5.3 liblua5.3-dev lua5.2 liblua5.2-dev lua5.1 liblua5.1-0-dev luajit
  libluajit-5.1-dev"
LAUNCHERS="openssh-server openssh-client slurm-wlm munge"
[ "$1" = compat ] && PKGS="$PKGS $COMPAT"
[ "$1" = launchers ] && PKGS="$PKGS $LAUNCHERS"
[ "$1" = ci ] && PKGS="$PKGS $COMPAT $LAUNCHERS valgrind clang libclang-rt-14-dev
  luarocks lua-check"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  echo "missing:$missing"
  echo "run: sudo apt-get install -y$missing"
  exit 1
fi
