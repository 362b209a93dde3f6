#!/usr/bin/env bash
# Local single-node Apache Kafka 4.1.1 broker (KRaft, broker+controller) on 127.0.0.1.
#
# Usage: deploy/local/kafka.sh fetch|start|stop|restart|status
#
# State: $CHAINLOG_STATE_DIR (default <repo>/.chainlog)/kafka/{jars,data,server.properties,kafka.pid}
# Log:   $STATE/logs/kafka.log (broker log4j output + JVM stdout/stderr, appended)
# Env:   CHAINLOG_KAFKA_PORT (9092), CHAINLOG_KAFKA_CONTROLLER_PORT (9093),
#        CHAINLOG_KAFKA_HEAP_OPTS ("-Xms512m -Xmx1g"), CHAINLOG_KAFKA_START_TIMEOUT (90 s)
set -euo pipefail

# shellcheck source=deploy/local/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

KAFKA_DIR="${STATE}/kafka"
KAFKA_JARS="${KAFKA_DIR}/jars"
KAFKA_DATA_DIR="${KAFKA_DIR}/data"
KAFKA_PROPS="${KAFKA_DIR}/server.properties"
KAFKA_PIDFILE="${KAFKA_DIR}/kafka.pid"
KAFKA_LOG="${LOGS}/kafka.log"
KAFKA_POM="${LOCAL_DIR}/kafka-pom.xml"
KAFKA_TEMPLATE="${LOCAL_DIR}/kafka-server.properties.in"
KAFKA_LOG4J="${LOCAL_DIR}/log4j2.properties"
KAFKA_HEAP_OPTS="${CHAINLOG_KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}"
KAFKA_START_TIMEOUT="${CHAINLOG_KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT=60
KAFKA_LOG_MAX_BYTES=$((50 * 1024 * 1024))

require_java() {
    command -v java >/dev/null 2>&1 || die "java not found on PATH (Java 17+ is required)"
}

kafka_java() {
    # Short-lived tool JVMs (StorageTool): small heap, quiet logging.
    java -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto \
        -Dlog4j2.configurationFile="${KAFKA_LOG4J}" \
        -cp "${KAFKA_JARS}/*" "$@"
}

# --------------------------------------------------------------------- fetch
have_jars() {
    compgen -G "${KAFKA_JARS}/kafka_2.13-*.jar" >/dev/null
}

pom_hash() {
    sha256sum "$KAFKA_POM" | cut -d' ' -f1
}

# Jars are (re)fetched when the kafka_2.13 jar is missing or when kafka-pom.xml
# changed since the last fetch (hash in jars/.pom.sha256). A jars/ dir without
# a stamp (filled by hand / an older script) is adopted as matching the pom.
cmd_fetch() {
    local stamp="${KAFKA_JARS}/.pom.sha256"
    if have_jars; then
        if [[ ! -f "$stamp" ]]; then
            pom_hash >"$stamp"
            return 0
        fi
        if [[ "$(cat "$stamp")" == "$(pom_hash)" ]]; then
            return 0
        fi
        log "kafka-pom.xml changed since the last fetch; re-fetching jars"
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found on PATH: install Maven (apt-get install -y maven) to fetch the Kafka jars"
    require_java
    log "fetching Kafka jars with Maven into ${KAFKA_JARS}"
    mkdir -p "$KAFKA_DIR"
    # Download into a scratch dir and move it into place only when complete, so
    # an interrupted fetch never leaves a half-filled jars/ that looks finished.
    local tmp="${KAFKA_JARS}.partial"
    rm -rf "$tmp"
    local fetch_log="${LOGS}/kafka-fetch.log"
    ensure_state_dirs
    if ! mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$fetch_log" 2>&1; then
        tail -n 30 "$fetch_log" >&2
        die "mvn dependency:copy-dependencies failed (full output: ${fetch_log})"
    fi
    compgen -G "${tmp}/kafka_2.13-*.jar" >/dev/null || die "mvn finished but no kafka_2.13 jar in ${tmp}"
    pom_hash >"${tmp}/.pom.sha256"
    rm -rf "$KAFKA_JARS"
    mv "$tmp" "$KAFKA_JARS"
    log "fetched $(find "$KAFKA_JARS" -name '*.jar' | wc -l) jars"
}

# --------------------------------------------------------------------- helpers
render_properties() {
    mkdir -p "$KAFKA_DIR" "$KAFKA_DATA_DIR"
    local tmp="${KAFKA_PROPS}.tmp"
    sed -e "s|@BIND_HOST@|${BIND_HOST}|g" \
        -e "s|@KAFKA_PORT@|${KAFKA_PORT}|g" \
        -e "s|@KAFKA_CONTROLLER_PORT@|${KAFKA_CONTROLLER_PORT}|g" \
        -e "s|@KAFKA_DATA_DIR@|${KAFKA_DATA_DIR}|g" \
        "$KAFKA_TEMPLATE" >"$tmp"
    if grep -q '@[A-Z_]*@' "$tmp"; then
        die "unrendered placeholder in ${tmp}: $(grep -o '@[A-Z_]*@' "$tmp" | head -n1)"
    fi
    mv "$tmp" "$KAFKA_PROPS"
}

format_storage_once() {
    if [[ -f "${KAFKA_DATA_DIR}/meta.properties" ]]; then
        return 0
    fi
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid | tail -n1)"
    [[ -n "$cluster_id" ]] || die "StorageTool random-uuid printed nothing"
    log "formatting KRaft storage in ${KAFKA_DATA_DIR} (cluster id ${cluster_id})"
    # Static controller.quorum.voters => plain format (no --standalone, which is
    # only for the dynamic controller.quorum.bootstrap.servers setup).
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_PROPS" >>"$KAFKA_LOG" 2>&1 ||
        {
            tail -n 30 "$KAFKA_LOG" >&2
            die "kafka storage format failed"
        }
}

# kafka_probe: send a raw Metadata v4 request (api_key 3, no topics) and check
# the reply carries our correlation id and at least one broker, i.e. the broker
# is serving requests and is unfenced. Pure bash, no JVM / Python needed.
kafka_probe() {
    local out
    # size=15 | api_key=3 | api_version=4 | correlation_id=7 | client_id=null | topics=[] | allow_auto_create=0
    # shellcheck disable=SC2016
    out="$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "\x00\x00\x00\x0f\x00\x03\x00\x04\x00\x00\x00\x07\xff\xff\x00\x00\x00\x00\x00" >&3
        head -c 16 <&3 | od -An -tx1 -v
    ' "$BIND_HOST" "$KAFKA_PORT" 2>/dev/null | tr -d ' \n')" || return 1
    # reply: size(4) correlation_id(4) throttle_time_ms(4) brokers_count(4)
    [[ ${#out} -eq 32 && "${out:8:8}" == "00000007" && "${out:24:8}" != "00000000" ]]
}

# kafka_running: the pidfile names a live process that is our broker (guards
# against a stale pidfile whose pid was reused by something else).
kafka_running() {
    pid_alive "$KAFKA_PIDFILE" &&
        grep -qa 'kafka\.Kafka' "/proc/$(read_pid "$KAFKA_PIDFILE")/cmdline" 2>/dev/null
}

rotate_log_if_big() {
    if [[ -f "$KAFKA_LOG" ]] && (($(stat -c %s "$KAFKA_LOG") > KAFKA_LOG_MAX_BYTES)); then
        mv -f "$KAFKA_LOG" "${KAFKA_LOG}.1"
    fi
}

# --------------------------------------------------------------------- start
cmd_start() {
    ensure_state_dirs
    if kafka_running; then
        if kafka_probe; then
            log "kafka already running (pid $(read_pid "$KAFKA_PIDFILE")) on ${BIND_HOST}:${KAFKA_PORT}"
            return 0
        fi
        log "kafka pid $(read_pid "$KAFKA_PIDFILE") alive but not answering yet; waiting"
        wait_ready "$(date +%s%N)"
        return 0
    fi
    rm -f "$KAFKA_PIDFILE"
    if port_open "$BIND_HOST" "$KAFKA_PORT" || port_open "$BIND_HOST" "$KAFKA_CONTROLLER_PORT"; then
        if kafka_probe; then
            die "a Kafka broker not started from ${KAFKA_DIR} already answers on ${BIND_HOST}:${KAFKA_PORT}; stop it first"
        fi
        die "port ${KAFKA_PORT} or ${KAFKA_CONTROLLER_PORT} on ${BIND_HOST} is taken by another process"
    fi

    require_java
    cmd_fetch
    render_properties
    rotate_log_if_big
    format_storage_once

    local t0
    t0="$(date +%s%N)"
    printf '\n===== %s chainlog kafka.sh start (port %s) =====\n' "$(date -Is)" "$KAFKA_PORT" >>"$KAFKA_LOG"
    # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of JVM flags
    nohup java -server $KAFKA_HEAP_OPTS \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="${KAFKA_LOG4J}" \
        -Dkafka.logs.dir="${LOGS}" \
        -cp "${KAFKA_JARS}/*" kafka.Kafka "$KAFKA_PROPS" \
        </dev/null >>"$KAFKA_LOG" 2>&1 &
    echo $! >"$KAFKA_PIDFILE"
    wait_ready "$t0"
}

wait_ready() {
    local t0="$1" tries=$((KAFKA_START_TIMEOUT * 2))
    while ((tries > 0)); do
        if ! kafka_running; then
            tail -n 30 "$KAFKA_LOG" >&2 || true
            rm -f "$KAFKA_PIDFILE"
            die "kafka exited during startup (log: ${KAFKA_LOG})"
        fi
        if kafka_probe; then
            log "kafka ready on ${BIND_HOST}:${KAFKA_PORT} (controller ${KAFKA_CONTROLLER_PORT}, pid $(read_pid "$KAFKA_PIDFILE"), $(elapsed_since "$t0") s, log ${KAFKA_LOG})"
            return 0
        fi
        sleep 0.5
        tries=$((tries - 1))
    done
    tail -n 30 "$KAFKA_LOG" >&2 || true
    die "kafka not ready after ${KAFKA_START_TIMEOUT} s (pid $(read_pid "$KAFKA_PIDFILE") still running; log ${KAFKA_LOG})"
}

# --------------------------------------------------------------------- stop
cmd_stop() {
    if ! kafka_running; then
        rm -f "$KAFKA_PIDFILE"
        log "kafka not running"
        return 0
    fi
    local pid tries=$((KAFKA_STOP_TIMEOUT * 2)) t0
    pid="$(read_pid "$KAFKA_PIDFILE")"
    t0="$(date +%s%N)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((tries > 0)); do
        sleep 0.5
        tries=$((tries - 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "kafka pid ${pid} still alive after ${KAFKA_STOP_TIMEOUT} s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    rm -f "$KAFKA_PIDFILE"
    log "kafka stopped (pid ${pid}, $(elapsed_since "$t0") s)"
}

# --------------------------------------------------------------------- status
cmd_status() {
    if kafka_running; then
        if kafka_probe; then
            echo "kafka running (pid $(read_pid "$KAFKA_PIDFILE"), ${BIND_HOST}:${KAFKA_PORT})"
        else
            echo "kafka running but not answering yet (pid $(read_pid "$KAFKA_PIDFILE"), ${BIND_HOST}:${KAFKA_PORT})"
        fi
        return 0
    fi
    echo "kafka stopped (${BIND_HOST}:${KAFKA_PORT})"
    return 3
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart)
        cmd_stop
        cmd_start
        ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 fetch|start|stop|restart|status" >&2
        exit 2
        ;;
    esac
}

main "$@"
