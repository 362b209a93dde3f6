# shellcheck shell=bash
# Shared helpers for the local stack scripts (kafka.sh, postgres.sh).
# Source it; do not execute it.

# Repo root: two levels above this file (deploy/local/lib.sh).
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL_DIR="${REPO}/deploy/local"
STATE="${CHAINLOG_STATE_DIR:-${REPO}/.chainlog}"
LOGS="${STATE}/logs"

BIND_HOST="127.0.0.1"
KAFKA_PORT="${CHAINLOG_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${CHAINLOG_KAFKA_CONTROLLER_PORT:-9093}"
PG_PORT="${CHAINLOG_PG_PORT:-5433}"

export REPO LOCAL_DIR STATE LOGS BIND_HOST KAFKA_PORT KAFKA_CONTROLLER_PORT PG_PORT

# log MSG... : print "[chainlog] MSG" to stderr.
log() {
    printf '[chainlog] %s\n' "$*" >&2
}

# die MSG... : log and exit 1.
die() {
    log "ERROR: $*"
    exit 1
}

# apt_install PACKAGE WHAT : install an OS package with apt-get, as root;
# WHAT names what was missing, for the error when that cannot be done.
apt_install() {
    local package="$1" what="$2"
    [[ "$(id -u)" -eq 0 ]] || die "no ${what} found and not root: install the '${package}' package"
    command -v apt-get >/dev/null 2>&1 || die "no ${what} found and no apt-get to install it"
    log "installing ${package} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists only when apt does not know the package yet.
    if ! apt-cache show "${package}" >/dev/null 2>&1; then
        apt-get update -q
    fi
    apt-get install -y -q "${package}"
}

# port_open HOST PORT : true if a TCP connect succeeds right now.
port_open() {
    local host="$1" port="$2"
    (exec 3<>"/dev/tcp/${host}/${port}") 2>/dev/null
}

# wait_for_port HOST PORT TIMEOUT_SECONDS : poll every 0.5 s; 0 when open, 1 on timeout.
wait_for_port() {
    local host="$1" port="$2" timeout="$3"
    local tries=$((timeout * 2))
    while ((tries > 0)); do
        if port_open "$host" "$port"; then
            return 0
        fi
        sleep 0.5
        tries=$((tries - 1))
    done
    return 1
}

# pid_alive PIDFILE : true if the pid on PIDFILE's first line is a live process.
pid_alive() {
    local pidfile="$1" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(read_pid "$pidfile")"
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null
}

# read_pid PIDFILE : print the pid stored in PIDFILE (first line, digits only).
read_pid() {
    head -n1 "$1" 2>/dev/null | tr -dc '0-9'
}

# elapsed_since START_EPOCH_NS : print seconds (1 decimal) since START.
elapsed_since() {
    local start="$1" now
    now="$(date +%s%N)"
    awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'
}

ensure_state_dirs() {
    mkdir -p "$STATE" "$LOGS"
}
