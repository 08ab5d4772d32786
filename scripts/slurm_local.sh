#!/usr/bin/env bash
# A one-node Slurm cluster on localhost for the Slurm tests (tests/integration/test_slurm.py), from Debian's
# packages (Slurm 22.05): munge, slurmctld and slurmd, as ../shared/notes/vllm-on-cpu.md says ran here.
#
#   scripts/slurm_local.sh start   # install if missing (root, apt), then start what is not running; idempotent
#   scripts/slurm_local.sh stop    # stop the daemons this script started (by their pid files)
#
# It writes /etc/slurm/slurm.conf only when there is none or it is this script's own (first line below), so a
# machine's real Slurm configuration is never replaced.
set -euo pipefail
MARK="# openrs scripts/slurm_local.sh: one-node test cluster"
CONF=/etc/slurm/slurm.conf
PIDS=/run/openrs-slurm
cmd=${1:-start}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
  for f in "$PIDS/slurmd.pid" "$PIDS/slurmctld.pid" "$PIDS/munged.pid"; do
    if alive "$f"; then kill "$(cat "$f")" && echo "slurm_local: stopped $(basename "$f" .pid) ($(cat "$f"))"; fi
    rm -f "$f"
  done
}

start() {
  if ! command -v sbatch >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "slurm_local: Slurm is not installed; run as root to install it" >&2; exit 2; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
  mkdir -p "$PIDS" /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/log/munge \
    /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    head -c 1024 /dev/urandom > /etc/munge/munge.key
  fi
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
  chmod 400 /etc/munge/munge.key
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- munged --force --pid-file="/run/munge/munged.pid"
    cp /run/munge/munged.pid "$PIDS/munged.pid"
  fi
  if [ ! -f "$CONF" ] || [ "$(head -n1 "$CONF")" = "$MARK" ]; then
    # the node line as slurmd itself detects this machine (CPUs, sockets, cores, threads, memory)
    node=$(slurmd -C | head -n1 | sed -e 's/^NodeName=[^ ]*/NodeName=localhost/' -e 's/ UpTime=.*//')
    cat > "$CONF.new" <<EOF
$MARK
ClusterName=openrs
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
ReturnToService=2
MpiDefault=none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$node State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    if cmp -s "$CONF.new" "$CONF"; then rm "$CONF.new"; else mv "$CONF.new" "$CONF"; fi
  fi
  alive "$PIDS/slurmctld.pid" || slurmctld
  alive "$PIDS/slurmd.pid" || slurmd -N localhost
  for _ in $(seq 60); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    case "$state" in
      idle*|alloc*|mix*) echo "slurm_local: node localhost $state"; return 0 ;;
      down*|drain*) scontrol update nodename=localhost state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  echo "slurm_local: the node did not become idle (state: ${state:-none}); see /var/log/slurm/" >&2
  exit 1
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
