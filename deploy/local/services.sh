#!/usr/bin/env bash
# Start, stop and report Chainlog's own services as background processes.
#   services.sh start [NAME...] | stop [NAME...] | restart [NAME...] | status
# Each service runs under a small supervisor that restarts it if it dies
# (as a Kubernetes Deployment would), and stops it on SIGTERM.
# Logs: $STATE/logs/<name>.log; pids: $STATE/run/<name>.pid (supervisor)
# and $STATE/run/<name>.child (the service itself).
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SERVICES=(chainer enricher exporter alerter streamer ingest)
RUN="${STATE}/run"
PY="${REPO}/.venv/bin/python"
API_PORT="${CHAINLOG_API_PORT:-8080}"
# The local stack may deliver webhooks and log streams to 127.0.0.1 (test
# receivers, a local SIEM); the container images may not.
export CHAINLOG_ALLOW_PRIVATE_DESTINATIONS="${CHAINLOG_ALLOW_PRIVATE_DESTINATIONS:-true}"

start_one() {
    local name="$1" pidfile="${RUN}/$1.pid"
    if pid_alive "$pidfile"; then
        log "${name} already runs (pid $(read_pid "$pidfile"))"
        return 0
    fi
    mkdir -p "$RUN" "$LOGS"
    cd "$REPO"
    nohup bash "${LOCAL_DIR}/services.sh" _supervise "$name" >>"${LOGS}/${name}.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    log "${name} started (pid $(read_pid "$pidfile"), log ${LOGS}/${name}.log)"
}

stop_one() {
    local name="$1" pidfile="${RUN}/$1.pid" pid tries=100
    if ! pid_alive "$pidfile"; then
        rm -f "$pidfile"
        return 0
    fi
    pid="$(read_pid "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((tries > 0)); do
        sleep 0.1
        tries=$((tries - 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    if pid_alive "${RUN}/${name}.child"; then
        kill -KILL "$(read_pid "${RUN}/${name}.child")" 2>/dev/null || true
    fi
    rm -f "$pidfile" "${RUN}/${name}.child"
    log "${name} stopped"
}

# The supervisor: restart the service when it exits with an error, after a
# second; on SIGTERM pass it on, wait for the graceful shutdown, and exit.
supervise() {
    local name="$1" child rc
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
    while :; do
        "$PY" -m "services.${name}" &
        child=$!
        echo "$child" >"${RUN}/${name}.child"
        rc=0
        wait "$child" || rc=$?
        ((rc == 0)) && exit 0
        log "${name} exited with status ${rc}; restarting in 1 s"
        sleep 1
    done
}

status_all() {
    local rc=0 name pidfile
    bash "${LOCAL_DIR}/kafka.sh" status || rc=3
    bash "${LOCAL_DIR}/postgres.sh" status || rc=3
    for name in "${SERVICES[@]}"; do
        pidfile="${RUN}/${name}.pid"
        if pid_alive "$pidfile"; then
            echo "${name}: running (pid $(read_pid "${RUN}/${name}.child" 2>/dev/null || true), supervisor $(read_pid "$pidfile"))"
        else
            echo "${name}: stopped"
            rc=3
        fi
    done
    return "$rc"
}

cmd="${1:-status}"
shift || true
names=("$@")
((${#names[@]})) || names=("${SERVICES[@]}")
case "$cmd" in
start)
    for n in "${names[@]}"; do start_one "$n"; done
    if [[ " ${names[*]} " == *" ingest "* ]]; then
        wait_for_port "$BIND_HOST" "$API_PORT" 60 || die "ingest did not open port ${API_PORT}; see ${LOGS}/ingest.log"
    fi
    ;;
stop) for n in "${names[@]}"; do stop_one "$n"; done ;;
restart)
    for n in "${names[@]}"; do stop_one "$n"; done
    for n in "${names[@]}"; do start_one "$n"; done
    ;;
status) status_all ;;
_supervise) supervise "${names[0]}" ;;
*) die "usage: services.sh start|stop|restart|status [NAME...]" ;;
esac
