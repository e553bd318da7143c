#!/usr/bin/env bash
# A real single-node SLURM on this machine, for tests/test_slurm.py (issue 7).
#
# Idempotent and quick when already done: if `sinfo` shows this node idle it exits at once.
# Otherwise it installs Debian's slurm-wlm and munge (apt-get, noninteractive), writes a munge key,
# starts munged, writes a single-node slurm.conf (this host, partition `debug`), starts slurmctld and
# slurmd (only those this script did not already start) and waits until the node is idle.
# On any failure it prints why on stderr and exits 1; .ci/run tolerates that and the SLURM tests
# then skip with the reason. Needs root.
set -uo pipefail

CONF=/etc/slurm/slurm.conf
HOST="$(hostname -s)"
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
LOG_DIR=/var/log/slurm

say() { echo "slurm.sh: $*" >&2; }
fail() { say "SLURM NOT AVAILABLE: $*"; exit 1; }

node_state() { sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n 1; }
usable() { [[ "$1" =~ ^(idle|mixed|allocated|completing)$ ]]; }  # up and responding (no '*')

alive() {  # alive PIDFILE: the daemon whose pid the file names is running
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

if command -v sinfo >/dev/null && usable "$(node_state)"; then
    say "node $HOST already up ($(node_state))"
    exit 0
fi
[[ $(id -u) -eq 0 ]] || fail "must run as root to install and start SLURM (running as $(id -un))"

# -- packages --------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
        || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || say "apt-get update failed; trying the cached package lists"
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/tmp/slurm-apt.log 2>&1 \
        || fail "apt-get install slurm-wlm munge failed (see /tmp/slurm-apt.log): $(tail -n 2 /tmp/slurm-apt.log | tr '\n' ' ')"
fi

# -- munge -----------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none || fail "cannot write /etc/munge/munge.key"
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force || fail "munged did not start (see /var/log/munge/munged.log)"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || fail "munge credentials do not round-trip after starting munged"
fi

# -- slurm.conf ------------------------------------------------------------------------------
# The node's CPUs and memory exactly as slurmd sees them (a larger RealMemory would drain the node).
CPUS=2
MEM="$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)"
[[ -n "$MEM" ]] || MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))
[[ "$MEM" -gt 0 ]] || fail "cannot read the machine's memory for RealMemory"
install -d -m 0755 /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOG_DIR"
NEW_CONF="$(cat <<EOF
# Written by codenet_dask .ci/slurm.sh: a single-node SLURM for the tests.
ClusterName=codenet
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
MinJobAge=30
InactiveLimit=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)"
RESTART=0
if [[ ! -f "$CONF" ]] || [[ "$(cat "$CONF")" != "$NEW_CONF" ]]; then
    [[ -f "$CONF" ]] && cp "$CONF" "$CONF.bak" && say "replacing $CONF (old one kept as $CONF.bak)"
    printf '%s\n' "$NEW_CONF" > "$CONF" || fail "cannot write $CONF"
    RESTART=1
fi

# -- daemons (only the ones named by our pid files) -------------------------------------------
if [[ $RESTART -eq 1 ]]; then
    for pidfile in "$SLURMD_PID" "$CTLD_PID"; do
        if alive "$pidfile"; then kill "$(cat "$pidfile")"; sleep 1; fi
    done
fi
if ! alive "$CTLD_PID"; then
    slurmctld || fail "slurmctld did not start (see $LOG_DIR/slurmctld.log: $(tail -n 2 "$LOG_DIR/slurmctld.log" 2>/dev/null | tr '\n' ' '))"
fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
scontrol ping 2>/dev/null | grep -q UP || fail "slurmctld is not answering (see $LOG_DIR/slurmctld.log)"
if ! alive "$SLURMD_PID"; then
    slurmd || fail "slurmd did not start (see $LOG_DIR/slurmd.log: $(tail -n 2 "$LOG_DIR/slurmd.log" 2>/dev/null | tr '\n' ' '))"
fi

# -- wait for the node -----------------------------------------------------------------------
for i in $(seq 150); do
    state="$(node_state)"
    case "$state" in
        idle|mixed|allocated|completing) say "node $HOST $state (CPUs=$CPUS RealMemory=$MEM MB, partition debug)"; exit 0 ;;
        drain*|down*) [[ $i -eq 20 ]] && scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 ;;
    esac
    sleep 0.2
done
fail "node $HOST is '$(node_state)', not idle, after 30 s (see $LOG_DIR/slurmd.log and $LOG_DIR/slurmctld.log)"
