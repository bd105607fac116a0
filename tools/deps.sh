#!/bin/sh
# Installs what building and testing ppe needs on Debian, or says how.
#   tools/deps.sh      what 'make test', 'make demo' and 'make bench' need
#   tools/deps.sh ci   that, and the sanitizers', valgrind's and fuzzer's
set -e
PKGS="lua5.4 liblua5.4-dev lua-busted lua-cjson lua-luv gcc make python3"
[ "$1" = ci ] && PKGS="$PKGS valgrind clang libclang-rt-14-dev luarocks lua-check"
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
