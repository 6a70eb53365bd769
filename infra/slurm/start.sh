#!/usr/bin/env bash
# Start a single-node SLURM cluster on localhost: munged, slurmctld, slurmd.
#
#   infra/slurm/start.sh            # state under $GNOMON_SLURM_DIR (default /tmp/gnomon-slurm)
#   eval "$(infra/slurm/start.sh --env)"   # also export SLURM_CONF for this shell
#
# Idempotent: a cluster already answering `sinfo` is left alone. Needs root (munge key,
# slurmd) and the Debian packages slurm-wlm and munge (infra/install-system-deps.sh).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SLURM_DIR="${GNOMON_SLURM_DIR:-/tmp/gnomon-slurm}"
CONF="$SLURM_DIR/slurm.conf"
PRINT_ENV=0
[ "${1:-}" = "--env" ] && PRINT_ENV=1

log() { echo "slurm: $*" >&2; }

for exe in munged slurmctld slurmd sinfo; do
    command -v "$exe" >/dev/null || { log "$exe not found: run infra/install-system-deps.sh"; exit 2; }
done

export SLURM_CONF="$CONF"
if [ -f "$CONF" ] && timeout 5 sinfo -h >/dev/null 2>&1; then
    log "already running ($CONF)"
    [ $PRINT_ENV = 1 ] && echo "export SLURM_CONF=$CONF"
    exit 0
fi

mkdir -p "$SLURM_DIR/state" "$SLURM_DIR/spool"

# munge: a key, a socket directory, the daemon.
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null 2>&1 || true; fi
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
MUNGE_USER=$(id -u munge >/dev/null 2>&1 && echo munge || echo root)
chown "$MUNGE_USER" /etc/munge/munge.key 2>/dev/null || true
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown "$MUNGE_USER" /run/munge /var/lib/munge /var/log/munge /etc/munge 2>/dev/null || true
chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [ "$MUNGE_USER" = munge ] && command -v runuser >/dev/null; then
        runuser -u munge -- munged --force
    else
        munged --force
    fi
    for _ in $(seq 1 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null || { log "munged did not start"; exit 1; }

CPUS=$(nproc)
MEMORY_MB=$(awk '/MemTotal/ {printf "%d", $2/1024*0.9}' /proc/meminfo)
sed -e "s|@SLURM_DIR@|$SLURM_DIR|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEMORY_MB@|$MEMORY_MB|g" \
    -e "s|@SLURM_USER@|$(id -un)|g" "$HERE/slurm.conf.template" > "$CONF"

# Commands that do not see SLURM_CONF (a login shell, another tool) find the default path.
if [ -w /etc ] && { [ ! -e /etc/slurm/slurm.conf ] || grep -q "gnomon local cluster" /etc/slurm/slurm.conf; }; then
    mkdir -p /etc/slurm
    cp "$CONF" /etc/slurm/slurm.conf
fi

# Stale daemons from an earlier run (pid files in our directory only).
for pidfile in "$SLURM_DIR/slurmctld.pid" "$SLURM_DIR/slurmd.pid"; do
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then kill "$(cat "$pidfile")" || true; fi
    rm -f "$pidfile"
done
sleep 0.5

slurmctld -f "$CONF" -i
slurmd -f "$CONF" -N localhost

for _ in $(seq 1 100); do
    if timeout 5 sinfo -h -o "%t" 2>/dev/null | grep -qE "^(idle|mix|alloc)"; then
        log "up: $(sinfo -h -o '%P %D %t %c CPUs' 2>/dev/null) (SLURM_CONF=$CONF)"
        [ $PRINT_ENV = 1 ] && echo "export SLURM_CONF=$CONF"
        exit 0
    fi
    sleep 0.3
done
log "node did not become idle; see $SLURM_DIR/slurmctld.log and slurmd.log"
sinfo -N -l >&2 || true
exit 1
