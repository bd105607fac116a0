# Shared by tools/sshd.sh and tools/slurm.sh (sourced, not run): installing
# Debian packages, choosing free ports, finding and ending the processes of
# one private instance, and the watcher that ends it with its owner.
#
# Every daemon a start script launches gets PPE_DAEMON=DIR in its
# environment, and what it forks or execs inherits it. A process that
# rewrites its title over its environment (sshd does, on every process)
# loses it: the scripts then name such a process by its pid file. The
# processes of one instance are those, and everything below them. Nothing
# else on the machine is touched.

# Prints a one-line reason on stderr and exits 1.
die() {
  echo "$PROG: $*" >&2
  exit 1
}

# Seconds since boot, with two decimals, for the timings the scripts print.
uptime_s() {
  cut -d' ' -f1 /proc/uptime
}

# Installs the Debian packages given that are not installed: as root with
# apt-get, as tools/deps.sh does; otherwise says which command would.
# Parallel runs wait for each other's dpkg lock instead of failing.
need_packages() {
  missing=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
      missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "$PROG: installing:$missing" >&2
    apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null 2>&1 || true
    # shellcheck disable=SC2086  # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
      install -y -qq $missing >/dev/null 2>&1 ||
      die "apt-get install$missing failed"
  else
    die "missing:$missing; run: sudo apt-get install -y$missing"
  fi
}

# A TCP port in 20000-32767 (below Linux's ephemeral range, so outgoing
# connections do not take it) that nothing on the machine uses now. A
# daemon may still lose it to a race: the callers retry on a bind failure.
free_port() {
  while :; do
    n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
    port=$((20000 + n % 12768))
    hex=$(printf '%04X' "$port")
    if ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
         grep -q "^ *[0-9]*: [0-9A-F]*:$hex "; then
      echo "$port"
      return 0
    fi
  done
}

# The absolute form of directory $1, created for a start ($2). A stop
# creates nothing: it may come after the dir was removed (the watcher's),
# and the instance's processes are still found by the path, if absolute.
# Paths with spaces or quotes are refused: the env files hold argv
# prefixes split at spaces.
absdir() {
  case "$1" in
    *[[:space:]\'\"\\]*) die "directory name with spaces or quotes: $1" ;;
  esac
  if [ "$2" = start ]; then
    mkdir -p "$1" || die "cannot create $1"
  fi
  if [ -d "$1" ]; then
    (cd "$1" && pwd -P)
  else
    case "$1" in
      /*) echo "$1" ;;
      *) die "no such directory: $1" ;;
    esac
  fi
}

# The pids of the processes that carry PPE_DAEMON=$1, one a line.
marked() {
  grep -lzxF "PPE_DAEMON=$1" /proc/[0-9]*/environ 2>/dev/null |
    sed 's|^/proc/\([0-9]*\)/environ$|\1|'
}

# The pids given, and those of every process below one of them, one a line
# (the caller's own shell left out).
below() {
  [ $# = 0 ] && return 0
  # pid and parent pid of every process; the name in parentheses may hold
  # spaces and parentheses, the greedy match takes the last ')'.
  cat /proc/[0-9]*/stat 2>/dev/null |
    sed -n 's/^\([0-9]*\) (.*) . \([0-9]*\) .*/\1 \2/p' |
    awk -v roots="$*" -v self="$$" '
      BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) want[r[i]] = 1 }
      { parent[$1] = $2 }
      END {
        do {
          changed = 0
          for (p in parent)
            if (!(p in want) && (parent[p] in want)) { want[p] = 1; changed = 1 }
        } while (changed)
        for (p in want) if ((p in parent) && p != self) print p
      }'
}

# The processes of instance $1: those marked, the pids given after $1, and
# everything below them.
instance_pids() {
  dir=$1
  shift
  # shellcheck disable=SC2046
  below $(marked "$dir") "$@"
}

# True if process $1 exists and is not a zombie.
alive() {
  [ -r "/proc/$1/stat" ] || return 1
  state=$(sed -n 's/^[0-9]* (.*) \(.\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)
  [ -n "$state" ] && [ "$state" != Z ]
}

# Waits up to $1 seconds for every pid of the list $2 to be gone; true if
# they are.
wait_gone() {
  tries=$(($1 * 10))
  while [ "$tries" -gt 0 ]; do
    left=""
    for p in $2; do alive "$p" && left="$left $p"; done
    [ -z "$left" ] && return 0
    sleep 0.1
    tries=$((tries - 1))
  done
  return 1
}

# Ends the processes given after $1, all at once so that no child is
# orphaned before it is found: TERM, KILL to those left after $1 seconds,
# then waits for them to be gone (false if some are not).
end_pids() {
  secs=$1
  shift
  [ $# = 0 ] && return 0
  kill -TERM "$@" 2>/dev/null
  wait_gone "$secs" "$*" && return 0
  kill -KILL "$@" 2>/dev/null
  wait_gone 5 "$*"
}

# Ends every process of instance $1 (see instance_pids; the pids after $2
# are roots too), with $2 seconds between TERM and KILL, then whatever was
# forked meanwhile. Sessions and job steps still running go with their
# daemon.
end_instance() {
  dir=$1
  secs=$2
  shift 2
  # shellcheck disable=SC2046
  end_pids "$secs" $(instance_pids "$dir" "$@") || true
  # shellcheck disable=SC2046
  end_pids 1 $(instance_pids "$dir") ||
    die "processes of $dir still running: $(instance_pids "$dir" | tr '\n' ' ')"
}

# With OWNER_PID set, starts a watcher that runs "$SELF stop DIR" and
# removes DIR once that process is gone, so that a caller killed before
# its own stop leaves nothing behind. It runs in a session of its own
# (setsid), away from what ends the caller's process group, and carries no
# PPE_DAEMON: the stop it runs must not end itself.
watch() {
  [ -n "${OWNER_PID:-}" ] || return 0
  env -u PPE_DAEMON setsid sh -c '
    while kill -0 "$1" 2>/dev/null; do sleep 1; done
    sh "$2" stop "$3" && rm -rf "$3"' watch "$OWNER_PID" "$SELF" "$1" \
    </dev/null >/dev/null 2>&1 &
  echo $! >"$1/watch.pid"
}

# Ends the watcher of DIR $1, unless the caller is that watcher's stop.
unwatch() {
  [ -f "$1/watch.pid" ] || return 0
  w=$(cat "$1/watch.pid")
  rm -f "$1/watch.pid"
  [ "$w" = "$PPID" ] && return 0
  # The watcher and its 'sleep', which would be left behind otherwise.
  # shellcheck disable=SC2046
  alive "$w" && { end_pids 2 $(below "$w") || true; }
  return 0
}
