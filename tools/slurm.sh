#!/bin/sh
# A private single-node Slurm cluster on 127.0.0.1, for the specs of workers
# started through 'srun': munged, slurmctld and slurmd with their keys,
# config, state, spool, pid files and logs in DIR.
#   tools/slurm.sh start DIR   installs slurm-wlm and munge if missing,
#                              starts the three daemons, waits until the
#                              node is idle and 'srun true' works, and
#                              writes DIR/env (see below)
#   tools/slurm.sh stop DIR    cancels what still runs there and ends the
#                              daemons, by pid
# DIR/env holds shell assignments: SLURM_CONF (which srun, sinfo and the
# rest need in their environment to find this cluster), MUNGED_PID,
# SLURMCTLD_PID, SLURMD_PID, and SRUN_LAUNCHER, the argv prefix of a task
# as words split at spaces. With OWNER_PID set, the cluster is stopped and
# DIR removed once that process is gone (see watch in tools/daemon-lib.sh).
# On failure: exit status 1, one line on stderr saying why.
set -eu
# shellcheck disable=SC2034  # die, in tools/daemon-lib.sh, names it
PROG=slurm.sh
SELF=$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")
. "$(dirname "$SELF")/daemon-lib.sh"

[ $# = 2 ] || die "usage: tools/slurm.sh start|stop DIR"
DIR=$(absdir "$2" "$1")
CONF=$DIR/slurm.conf
# Every Slurm command of this script talks to this cluster only.
SLURM_CONF=$CONF
export SLURM_CONF
# The node is this machine as "localhost": slurmctld takes that name as
# its own, and with NoInAddrAny (below) every daemon and srun listens on
# the address the name resolves to, 127.0.0.1, whatever the host's name
# resolves to.
NODE=localhost

# Polls the command "$2..." every 0.1 s until it succeeds, for at most $1
# seconds (each try is bounded by the command itself). True if it did.
poll() {
  secs=$1
  shift
  tries=$((secs * 10))
  while [ "$tries" -gt 0 ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
    tries=$((tries - 1))
  done
  return 1
}

node_idle() {
  timeout 5 sinfo -h -n "$NODE" -o %t | grep -qx idle
}

ctld_up() {
  timeout 5 scontrol ping | grep -q "is UP"
}

no_jobs() {
  [ -z "$(timeout 5 squeue -h -o %i)" ]
}

write_config() {
  cat >"$CONF" <<EOF
# A private single-node cluster for ppe's specs (tools/slurm.sh): every
# file it keeps is in this dir, every address is 127.0.0.1.
ClusterName=ppe
SlurmctldHost=$NODE
SlurmctldPort=$1
SlurmdPort=$2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.sock
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
# Plain process groups, no cgroups, no task binding, no accounting.
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Listen on 127.0.0.1 only (the address "localhost" resolves to), not on
# every address of the machine.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# A node back after a restart is usable at once; the task of an srun that
# died is ended after InactiveLimit; a cancelled step gets KillWait
# seconds between SIGTERM and SIGKILL.
ReturnToService=2
InactiveLimit=10
KillWait=2
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=ppe Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

# Waits up to $1 seconds for the check $2 to pass while daemon $3 (pid $4)
# runs; prints "up", "taken" (its port was: its log says so), or why not.
ready() {
  tries=$(($1 * 10))
  while [ "$tries" -gt 0 ]; do
    if $2 >/dev/null 2>&1; then echo up; return 0; fi
    if grep -qi "address already in use" "$DIR/$3.log" 2>/dev/null; then
      echo taken
      return 0
    fi
    if ! alive "$4"; then
      echo "exited: $(tail -n 1 "$DIR/$3.log" 2>/dev/null)"
      return 0
    fi
    sleep 0.1
    tries=$((tries - 1))
  done
  echo "not ready within $1 s: $(tail -n 1 "$DIR/$3.log" 2>/dev/null)"
}

# Ends slurmd and slurmctld of this instance (munged stays), soon killed:
# a slurmctld that lost its port hangs on after its "fatal" line.
end_daemons() {
  for f in slurmd.pid slurmctld.pid; do
    [ -f "$DIR/$f" ] || continue
    # shellcheck disable=SC2046
    end_pids 1 $(below "$(cat "$DIR/$f")") || true
    rm -f "$DIR/$f"
  done
  # shellcheck disable=SC2046,SC2086  # either pid may be empty
  end_pids 1 $(below $slurmd_pid $ctld_pid) || true
}

# Ends the whole instance, then dies with reason "$*".
fail() {
  end_instance "$DIR" 2
  die "$*"
}

# Starts daemon "$2..." in the background, in a session of its own and
# marked as this instance's, with its output in DIR/$1.out; its pid.
launch() {
  out=$DIR/$1.out
  shift
  env PPE_DAEMON="$DIR" setsid "$@" </dev/null >"$out" 2>&1 &
  echo $!
}

start() {
  t0=$(uptime_s)
  if [ -f "$DIR/env" ] && [ -n "$(instance_pids "$DIR")" ]; then
    die "a cluster of $DIR runs already"
  fi
  need_packages slurm-wlm munge
  rm -f "$DIR/env"
  # munged refuses to use a directory that others cannot read: mktemp's
  # 0700 is too strict for it.
  chmod 0755 "$DIR"
  mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool"
  chmod 0755 "$DIR/munge"

  # munge: a fresh key, and a munged with its own socket, seed, pid, log.
  rm -f "$DIR/munge/munge.key"
  mungekey -c -k "$DIR/munge/munge.key" 2>"$DIR/munge/mungekey.err" ||
    die "mungekey failed: $(tail -n 1 "$DIR/munge/mungekey.err")"
  env PPE_DAEMON="$DIR" munged -S "$DIR/munge/munge.sock" \
    --key-file="$DIR/munge/munge.key" --log-file="$DIR/munge/munged.log" \
    --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munged.seed" \
    </dev/null >"$DIR/munge/munged.out" 2>&1 ||
    die "munged failed: $(tail -n 1 "$DIR/munge/munged.out")"
  munged_pid=$(cat "$DIR/munge/munged.pid")
  ctld_pid=""
  slurmd_pid=""

  # slurmctld, then slurmd, each on a free port. Neither exits when its
  # port is taken (a race with another program): its log says so, and
  # both start again on other ports, as the config names both.
  started=""
  for _ in 1 2 3 4 5; do
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    [ "$ctld_port" = "$slurmd_port" ] && continue
    write_config "$ctld_port" "$slurmd_port"
    rm -f "$DIR/slurmctld.log" "$DIR/slurmd.log"
    ctld_pid=$(launch slurmctld slurmctld -D -c -i -f "$CONF")
    v=$(ready 20 ctld_up slurmctld "$ctld_pid")
    [ "$v" = taken ] && { end_daemons; continue; }
    [ "$v" = up ] || fail "slurmctld $v"
    slurmd_pid=$(launch slurmd slurmd -D -N "$NODE" -f "$CONF")
    v=$(ready 30 node_idle slurmd "$slurmd_pid")
    [ "$v" = taken ] && { end_daemons; continue; }
    [ "$v" = up ] || fail "slurmd $v (node not idle)"
    started=1
    break
  done
  [ -n "$started" ] || fail "no free ports for slurmctld and slurmd in 5 tries"

  timeout 30 srun -N1 -n1 true </dev/null >"$DIR/srun.err" 2>&1 ||
    fail "srun -N1 -n1 true failed: $(tail -n 1 "$DIR/srun.err")"

  cat >"$DIR/env" <<EOF
SLURM_DIR='$DIR'
SLURM_CONF='$CONF'
MUNGED_PID=$munged_pid
SLURMCTLD_PID=$ctld_pid
SLURMD_PID=$slurmd_pid
SRUN_LAUNCHER='srun --ntasks=1 -u'
EOF
  watch "$DIR"
  echo "slurm.sh: slurmctld pid $ctld_pid on 127.0.0.1:$ctld_port," \
    "slurmd pid $slurmd_pid, munged pid $munged_pid, up in" \
    "$(echo "$(uptime_s) $t0" | awk '{ printf "%.2f", $1 - $2 }') s" >&2
}

stop() {
  t0=$(uptime_s)
  unwatch "$DIR"
  # Jobs still running are cancelled while the daemons can still do it,
  # so that steps end as Slurm ends them; bounded, whatever Slurm says.
  if [ -f "$CONF" ] && [ -n "$(instance_pids "$DIR")" ]; then
    timeout 10 scancel --full --signal=KILL --partition=ppe \
      >/dev/null 2>&1 || true
    poll 5 no_jobs || true
  fi
  # Then the daemons by their pids (if they still carry this instance's
  # marker: a pid may be another process's by now), one after the other as
  # they depend on each other, each with what runs below it; last, every
  # process left that carries the marker.
  for f in slurmd.pid slurmctld.pid munge/munged.pid; do
    [ -f "$DIR/$f" ] || continue
    pid=$(cat "$DIR/$f")
    if alive "$pid" && grep -qzxF "PPE_DAEMON=$DIR" "/proc/$pid/environ"; then
      # shellcheck disable=SC2046
      end_pids 5 $(below "$pid") || die "$f: pid $pid still running after KILL"
    fi
  done
  end_instance "$DIR" 3
  echo "slurm.sh: stopped in" \
    "$(echo "$(uptime_s) $t0" | awk '{ printf "%.2f", $1 - $2 }') s" >&2
}

case "$1" in
  start) start ;;
  stop) stop ;;
  *) die "usage: tools/slurm.sh start|stop DIR" ;;
esac
