#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by infra/slurm/start.sh (slurmd, slurmctld).
# munged is left running unless --munge is given (other tools may use it).
set -euo pipefail
SLURM_DIR="${GNOMON_SLURM_DIR:-/tmp/gnomon-slurm}"

stop_pidfile() {
    local pidfile=$1
    [ -f "$pidfile" ] || return 0
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

if [ -f "$SLURM_DIR/slurm.conf" ]; then
    SLURM_CONF="$SLURM_DIR/slurm.conf" timeout 5 scancel --user="$(id -un)" 2>/dev/null || true
fi
stop_pidfile "$SLURM_DIR/slurmd.pid"
stop_pidfile "$SLURM_DIR/slurmctld.pid"
if [ "${1:-}" = "--munge" ] && [ -f /run/munge/munged.pid ]; then
    stop_pidfile /run/munge/munged.pid
fi
echo "slurm: stopped" >&2
