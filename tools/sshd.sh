#!/bin/sh
# A private OpenSSH server on 127.0.0.1, for the specs of workers started
# through 'ssh': its keys, config, pid file and log live in DIR.
#   tools/sshd.sh start DIR   installs openssh-server if missing, starts the
#                             server on a free port, waits until a login
#                             works and writes DIR/env (see below)
#   tools/sshd.sh stop DIR    ends that server and its sessions, by pid
# DIR/env holds shell assignments: SSHD_PORT, SSHD_KEY (the user's private
# key), SSHD_PID, and SSH_LAUNCHER, the argv prefix of a login as words
# split at spaces. With OWNER_PID set, the server is stopped and DIR removed
# once that process is gone, whatever ended it (see watch in
# tools/daemon-lib.sh).
# On failure: exit status 1, one line on stderr saying why.
set -eu
# shellcheck disable=SC2034  # die, in tools/daemon-lib.sh, names it
PROG=sshd.sh
SELF=$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")
. "$(dirname "$SELF")/daemon-lib.sh"

[ $# = 2 ] || die "usage: tools/sshd.sh start|stop DIR"
DIR=$(absdir "$2" "$1")

# The client options that make a login quiet and non-interactive: no
# prompt, no known_hosts of the caller's (the host key is a throw-away
# one), no ~/.ssh/config, only the key given.
client_opts() {
  echo "-p $1 -i $DIR/id_ed25519 -o BatchMode=yes" \
    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null" \
    "-o IdentitiesOnly=yes -o LogLevel=ERROR -F /dev/null"
}

# The pids of this config's listeners: sshd rewrites the titles of its
# processes over their environment, so they carry no PPE_DAEMON marker,
# but the listener's title names its config ("sshd: /usr/sbin/sshd -f
# DIR/sshd_config ... [listener]"). Its sessions are its children.
listeners() {
  for f in $(grep -lzF -- "$DIR/sshd_config" /proc/[0-9]*/cmdline \
               2>/dev/null); do
    p=${f#/proc/}
    p=${p%/cmdline}
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = sshd ] && echo "$p"
  done
  return 0
}

write_config() {
  cat >"$DIR/sshd_config" <<EOF
# A private sshd for ppe's specs (tools/sshd.sh): keys and state in this dir.
Port $1
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# No PAM session and no owner checks of the temp dir's files.
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
# Many workers log in at once: room for all of them.
MaxStartups 200:30:400
MaxSessions 200
# bash sources ~/.bashrc for a command run by sshd only while SHLVL < 2;
# a login then costs ~0.3 s instead of ~0.8 s where .bashrc is slow.
SetEnv SHLVL=1
# One key exchange only: the fastest of both sides.
KexAlgorithms curve25519-sha256
LogLevel INFO
EOF
}

start() {
  t0=$(uptime_s)
  if [ -f "$DIR/sshd.pid" ] && alive "$(cat "$DIR/sshd.pid")"; then
    die "an sshd of $DIR runs already (pid $(cat "$DIR/sshd.pid"))"
  fi
  need_packages openssh-server openssh-client
  [ -x /usr/sbin/sshd ] || die "/usr/sbin/sshd not found after install"

  # Throw-away keys: the host's, and the one the launcher logs in with.
  rm -f "$DIR/host_ed25519" "$DIR/host_ed25519.pub" \
    "$DIR/id_ed25519" "$DIR/id_ed25519.pub" "$DIR/sshd.pid" "$DIR/env"
  ssh-keygen -q -t ed25519 -N '' -C ppe-host -f "$DIR/host_ed25519" ||
    die "ssh-keygen failed for the host key"
  ssh-keygen -q -t ed25519 -N '' -C ppe-user -f "$DIR/id_ed25519" ||
    die "ssh-keygen failed for the user key"
  cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"

  # The privilege separation directory is fixed at build time.
  if [ ! -d /run/sshd ]; then
    if ! mkdir -p /run/sshd 2>/dev/null || ! chmod 0755 /run/sshd; then
      die "cannot create /run/sshd (privilege separation dir; needs root)"
    fi
  fi

  # sshd forks into the background before it binds, so a taken port shows
  # only in its log: wait for the pid file (bound and listening) or for
  # the log's fatal line, and try another port after a bind failure.
  port=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    p=$(free_port)
    write_config "$p"
    : >"$DIR/sshd.log"
    env PPE_DAEMON="$DIR" /usr/sbin/sshd -f "$DIR/sshd_config" \
      -E "$DIR/sshd.log" </dev/null >/dev/null 2>&1 ||
      die "sshd refused to start: $(tail -n 1 "$DIR/sshd.log")"
    verdict=""
    for _ in $(seq 100); do
      if [ -s "$DIR/sshd.pid" ]; then verdict=up; break; fi
      if grep -q "Cannot bind\|Address already in use" "$DIR/sshd.log"; then
        verdict=taken; break
      fi
      if grep -q "fatal" "$DIR/sshd.log"; then
        die "sshd failed: $(grep fatal "$DIR/sshd.log" | tail -n 1)"
      fi
      sleep 0.05
    done
    [ "$verdict" = up ] && { port=$p; break; }
    [ "$verdict" = taken ] && continue
    # shellcheck disable=SC2046
    end_instance "$DIR" 2 $(listeners)
    die "sshd wrote no pid file within 5 s: $(tail -n 1 "$DIR/sshd.log")"
  done
  [ -n "$port" ] || die "no free port found for sshd in 10 tries"
  pid=$(cat "$DIR/sshd.pid")

  # Ready when a login runs a command; bounded, then the server goes.
  ok=""
  for _ in $(seq 20); do
    # shellcheck disable=SC2046  # the options are words
    if timeout 10 ssh $(client_opts "$port") -o ConnectTimeout=5 \
         127.0.0.1 true </dev/null >/dev/null 2>"$DIR/login.err"; then
      ok=1
      break
    fi
    sleep 0.25
  done
  if [ -z "$ok" ]; then
    # shellcheck disable=SC2046
    end_instance "$DIR" 2 $(listeners)
    die "sshd runs but refuses a login: $(tail -n 1 "$DIR/login.err")"
  fi

  cat >"$DIR/env" <<EOF
SSHD_DIR='$DIR'
SSHD_PORT=$port
SSHD_KEY='$DIR/id_ed25519'
SSHD_PID=$pid
SSH_LAUNCHER='ssh $(client_opts "$port") 127.0.0.1'
EOF
  watch "$DIR"
  echo "sshd.sh: sshd pid $pid on 127.0.0.1:$port, up in" \
    "$(echo "$(uptime_s) $t0" | awk '{ printf "%.2f", $1 - $2 }') s" >&2
}

stop() {
  t0=$(uptime_s)
  unwatch "$DIR"
  # The listener, by its title rather than its pid file alone (the pid of
  # a server that died may be another process's by now), and with it its
  # sessions and whatever runs in them, which would outlive it otherwise.
  # shellcheck disable=SC2046
  end_instance "$DIR" 5 $(listeners)
  rm -f "$DIR/sshd.pid"
  echo "sshd.sh: stopped in" \
    "$(echo "$(uptime_s) $t0" | awk '{ printf "%.2f", $1 - $2 }') s" >&2
}

case "$1" in
  start) start ;;
  stop) stop ;;
  *) die "usage: tools/sshd.sh start|stop DIR" ;;
esac
