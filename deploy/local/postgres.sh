#!/usr/bin/env bash
# Private local PostgreSQL (>= 15) cluster on 127.0.0.1 for Chainlog.
#
# Usage: deploy/local/postgres.sh install|start|stop|restart|status|url
#
# State: $CHAINLOG_STATE_DIR (default <repo>/.chainlog)/postgres/{data,.s.PGSQL.<port>}
# Log:   $STATE/logs/postgres.log
# Env:   CHAINLOG_PG_PORT (5433)
# PostgreSQL refuses to run as root: when run as root the server runs as the
# system user "chainlog" (created on first use); otherwise as the current user.
set -euo pipefail

# shellcheck source=deploy/local/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

PG_MIN_MAJOR=15
PG_DIR="${STATE}/postgres"
PG_DATA="${PG_DIR}/data"
PG_LOG="${LOGS}/postgres.log"
PG_DB="chainlog"
PG_SUPERUSER="postgres"
PG_RUN_USER="chainlog"
PG_URL="postgresql://${PG_SUPERUSER}@${BIND_HOST}:${PG_PORT}/${PG_DB}"
PG_BIN=""

# --------------------------------------------------------------------- binaries
# major_of BINARY : print the major version of a PostgreSQL binary ("15").
major_of() {
    # "initdb (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)" -> 15
    "$1" --version 2>/dev/null | awk 'NR == 1 { split($3, v, "."); print v[1] + 0 }'
}

# find_pg_bin : set PG_BIN to the newest bin dir (>= PG_MIN_MAJOR) holding
# initdb, pg_ctl and psql; Debian's /usr/lib/postgresql/*/bin first, then PATH.
find_pg_bin() {
    local best="" best_major=0 dir major candidate
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "${dir}/initdb" && -x "${dir}/pg_ctl" ]] || continue
        major="$(major_of "${dir}/initdb")"
        [[ -n "$major" ]] || continue
        if ((major >= PG_MIN_MAJOR && major > best_major)); then
            best="$dir"
            best_major="$major"
        fi
    done
    if [[ -z "$best" ]] && candidate="$(command -v initdb 2>/dev/null)"; then
        dir="$(dirname "$(readlink -f "$candidate")")"
        major="$(major_of "${dir}/initdb")"
        if [[ -n "$major" ]] && ((major >= PG_MIN_MAJOR)) && [[ -x "${dir}/pg_ctl" ]]; then
            best="$dir"
        fi
    fi
    [[ -n "$best" ]] || return 1
    PG_BIN="$best"
}

pg_tool() {
    # Client tools (psql, createdb, pg_isready): from PG_BIN, else PATH.
    local name="$1"
    shift
    if [[ -x "${PG_BIN}/${name}" ]]; then
        "${PG_BIN}/${name}" "$@"
    else
        "$name" "$@"
    fi
}

cmd_install() {
    if find_pg_bin; then
        return 0
    fi
    # The Debian package may create and start its own cluster on 5432; that one
    # is left alone: the private cluster below uses its own port and data dir.
    apt_install postgresql "PostgreSQL >= ${PG_MIN_MAJOR}"
    find_pg_bin || die "apt-get installed postgresql but no initdb >= ${PG_MIN_MAJOR} was found"
}

# --------------------------------------------------------------------- run-as
is_root() {
    [[ "$(id -u)" -eq 0 ]]
}

ensure_run_user() {
    is_root || return 0
    if ! id -u "$PG_RUN_USER" >/dev/null 2>&1; then
        log "creating system user ${PG_RUN_USER} (PostgreSQL refuses to run as root)"
        useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_RUN_USER"
    fi
}

# as_pg CMD... : run CMD as the server's user, from a directory it can enter.
as_pg() {
    if is_root; then
        (cd "$PG_DIR" && runuser -u "$PG_RUN_USER" -- "$@")
    else
        (cd "$PG_DIR" && "$@")
    fi
}

# Every directory from / down to PG_DIR and LOGS must be enterable by the
# server user (it writes its socket in PG_DIR and appends to LOGS/postgres.log).
ensure_traversable() {
    is_root || return 0
    local target dir path
    for target in "$PG_DIR" "$LOGS"; do
        path=""
        local -a parts
        IFS=/ read -r -a parts <<<"${target#/}"
        for dir in "${parts[@]}"; do
            path="${path}/${dir}"
            if ! runuser -u "$PG_RUN_USER" -- test -x "$path"; then
                log "chmod o+x ${path} (so user ${PG_RUN_USER} can reach ${target})"
                chmod o+x "$path"
            fi
        done
    done
}

prepare_dirs() {
    ensure_state_dirs
    mkdir -p "$PG_DIR"
    touch "$PG_LOG"
    if is_root; then
        ensure_run_user
        chown "$PG_RUN_USER:" "$PG_DIR" "$PG_LOG"
        chmod 0755 "$PG_DIR"
        if [[ -d "$PG_DATA" ]]; then
            chown -R "$PG_RUN_USER:" "$PG_DATA"
        fi
        ensure_traversable
    fi
}

# --------------------------------------------------------------------- cluster
pick_locale() {
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
        echo "C.UTF-8"
    else
        echo "C"
    fi
}

init_cluster_once() {
    if [[ -f "${PG_DATA}/PG_VERSION" ]]; then
        return 0
    fi
    local loc
    loc="$(pick_locale)"
    log "initdb ${PG_DATA} (locale ${loc}, $(basename "$(dirname "$PG_BIN")"))"
    rm -rf "$PG_DATA"
    as_pg "${PG_BIN}/initdb" -D "$PG_DATA" -U "$PG_SUPERUSER" --auth=trust \
        --encoding=UTF8 --locale="$loc" >>"$PG_LOG" 2>&1 ||
        {
            tail -n 30 "$PG_LOG" >&2
            die "initdb failed (log ${PG_LOG})"
        }
    # Our settings live in chainlog.conf, rewritten on every start (port may change).
    printf "\n# Chainlog local settings (deploy/local/postgres.sh)\ninclude_if_exists = 'chainlog.conf'\n" \
        >>"${PG_DATA}/postgresql.conf"
}

write_conf() {
    local conf="${PG_DATA}/chainlog.conf"
    cat >"${conf}.tmp" <<EOF
# Written by deploy/local/postgres.sh on each start; edits are overwritten.
listen_addresses = '${BIND_HOST}'
port = ${PG_PORT}
unix_socket_directories = '${PG_DIR}'
max_connections = 200
shared_buffers = 512MB
fsync = on
synchronous_commit = on
wal_compression = on
max_wal_size = 4GB
checkpoint_timeout = 15min
# JIT compiles plans for half a second; it only slows short OLTP queries.
jit = off
EOF
    mv "${conf}.tmp" "$conf"
    if is_root; then
        chown "$PG_RUN_USER:" "$conf"
    fi
}

pg_running() {
    [[ -f "${PG_DATA}/PG_VERSION" ]] || return 1
    [[ -n "$PG_BIN" ]] || find_pg_bin || return 1
    as_pg "${PG_BIN}/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_ready() {
    pg_tool pg_isready -q -h "$BIND_HOST" -p "$PG_PORT" -t 2 >/dev/null 2>&1
}

psql_admin() {
    pg_tool psql -X -q -v ON_ERROR_STOP=1 -h "$BIND_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" "$@"
}

ensure_database() {
    local exists
    exists="$(psql_admin -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${PG_DB}'")"
    if [[ "$exists" != "1" ]]; then
        log "creating database ${PG_DB}"
        psql_admin -d postgres -c "CREATE DATABASE ${PG_DB} OWNER ${PG_SUPERUSER}"
    fi
}

cmd_start() {
    cmd_install
    prepare_dirs
    if pg_running; then
        if pg_ready; then
            ensure_database
            log "postgres already running on ${BIND_HOST}:${PG_PORT}: ${PG_URL}"
            echo "$PG_URL"
            return 0
        fi
        die "postgres in ${PG_DATA} runs but does not answer on ${BIND_HOST}:${PG_PORT} (started with another port? run: $0 restart)"
    fi
    if port_open "$BIND_HOST" "$PG_PORT"; then
        die "port ${PG_PORT} on ${BIND_HOST} is taken by a server not started from ${PG_DATA}"
    fi
    init_cluster_once
    write_conf
    # A stale postmaster.pid from a crash is handled by postgres itself.
    local t0
    t0="$(date +%s%N)"
    printf '\n===== %s chainlog postgres.sh start (port %s) =====\n' "$(date -Is)" "$PG_PORT" >>"$PG_LOG"
    if ! as_pg "${PG_BIN}/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 start >/dev/null; then
        tail -n 30 "$PG_LOG" >&2
        die "pg_ctl start failed (log ${PG_LOG})"
    fi
    ensure_database
    log "postgres ready on ${BIND_HOST}:${PG_PORT} ($(elapsed_since "$t0") s, data ${PG_DATA}, log ${PG_LOG})"
    echo "$PG_URL"
}

cmd_stop() {
    if ! pg_running; then
        log "postgres not running"
        return 0
    fi
    as_pg "${PG_BIN}/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
    log "postgres stopped"
}

cmd_status() {
    if pg_running; then
        local pid
        pid="$(read_pid "${PG_DATA}/postmaster.pid")"
        if pg_ready; then
            echo "postgres running (pid ${pid}, ${BIND_HOST}:${PG_PORT})"
        else
            echo "postgres running but not answering on ${BIND_HOST}:${PG_PORT} (pid ${pid})"
        fi
        return 0
    fi
    echo "postgres stopped (${BIND_HOST}:${PG_PORT})"
    return 3
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart)
        cmd_stop
        cmd_start
        ;;
    status) cmd_status ;;
    url) echo "$PG_URL" ;;
    *)
        echo "usage: $0 install|start|stop|restart|status|url" >&2
        exit 2
        ;;
    esac
}

main "$@"
