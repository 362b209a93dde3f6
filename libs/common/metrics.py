"""Prometheus metrics, one registry per process, passed in (never global).

Names are ``chainlog_<service>_<what>``. Consumers serve theirs on
``CHAINLOG_METRICS_PORT`` (chainer 9101, exporter 9102, enricher 9103, alerter 9104, streamer 9105 by default); the
gateway serves ``/metrics`` on its API port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from libs.common.health import Health

RECORD_BUCKETS = (1, 10, 50, 100, 500, 1000, 2000, 5000, 20000)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "chainlog_ingest_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "chainlog_ingest_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.events = Counter(
            "chainlog_ingest_events",
            "Events answered, by outcome (queued, duplicate, rejected)",
            ["outcome"],
            registry=registry,
        )
        self.read_audit_dropped = Counter(
            "chainlog_ingest_read_audit_dropped",
            "Read requests left out of the read audit, by reason (full, refused, shutdown)",
            ["reason"],
            registry=registry,
        )


class ChainerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_records = Histogram(
            "chainlog_chainer_batch_records",
            "Records taken from the input topic per fetch",
            buckets=RECORD_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "chainlog_chainer_lag",
            "Records left in the input topic after the last batch, by partition",
            ["partition"],
            registry=registry,
        )
        self.events = Counter("chainlog_chainer_events", "Events chained", registry=registry)
        self.duplicates = Counter(
            "chainlog_chainer_duplicates", "Events dropped by idempotency key", registry=registry
        )
        self.dead_lettered = Counter(
            "chainlog_chainer_dead_lettered",
            "Raw records sent to the dead-letter topic",
            registry=registry,
        )
        self.transactions = Counter(
            "chainlog_chainer_transactions",
            "Kafka transactions by outcome (committed, failed, fenced)",
            ["outcome"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "chainlog_chainer_batch_seconds",
            "Time to chain and commit one partition's batch",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )


class ExporterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_records = Histogram(
            "chainlog_exporter_batch_records",
            "Records taken from the input topic per fetch",
            buckets=RECORD_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "chainlog_exporter_lag",
            "Records left in the input topic after the last batch, by partition",
            ["partition"],
            registry=registry,
        )
        self.rows = Counter("chainlog_exporter_rows", "Event rows written", registry=registry)
        self.dead_lettered = Counter(
            "chainlog_exporter_dead_lettered",
            "Chained records sent to the dead-letter topic",
            registry=registry,
        )
        self.write_seconds = Histogram(
            "chainlog_exporter_write_seconds",
            "Time to write one batch to PostgreSQL",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.database_retries = Counter(
            "chainlog_exporter_database_retries",
            "Writes retried while the database was away",
            registry=registry,
        )


class EnricherMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_records = Histogram(
            "chainlog_enricher_batch_records",
            "Records taken from the input topic per fetch",
            buckets=RECORD_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "chainlog_enricher_lag",
            "Records left in the input topic after the last batch, by partition",
            ["partition"],
            registry=registry,
        )
        self.events = Counter("chainlog_enricher_events", "Events enriched", registry=registry)
        self.cache_hits = Gauge(
            "chainlog_enricher_cache_hits", "GeoIP lookups answered by the cache", registry=registry
        )
        self.cache_misses = Gauge(
            "chainlog_enricher_cache_misses",
            "GeoIP lookups that read the database",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "chainlog_enricher_batch_seconds",
            "Time to enrich and publish one batch",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )


class AlerterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_records = Histogram(
            "chainlog_alerter_batch_records",
            "Records taken from the input topic per fetch",
            buckets=RECORD_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "chainlog_alerter_lag",
            "Records left in the input topic after the last batch, by partition",
            ["partition"],
            registry=registry,
        )
        self.events = Counter("chainlog_alerter_events", "Events evaluated", registry=registry)
        self.alerts = Counter("chainlog_alerter_alerts", "Alerts raised", registry=registry)
        self.conflicts = Counter(
            "chainlog_alerter_conflicts",
            "Batches refused because another member had advanced the workspace",
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "chainlog_alerter_batch_seconds",
            "Time to evaluate and commit one batch",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.attempts = Counter(
            "chainlog_alerter_delivery_attempts",
            "Delivery attempts by channel and outcome (delivered, retry, failed)",
            ["channel", "outcome"],
            registry=registry,
        )


class StreamerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter(
            "chainlog_streamer_delivered",
            "Events delivered, by stream",
            ["stream"],
            registry=registry,
        )
        self.checkpoints = Counter(
            "chainlog_streamer_checkpoints",
            "Signed checkpoints delivered, by stream",
            ["stream"],
            registry=registry,
        )
        self.retried = Counter(
            "chainlog_streamer_retried",
            "Batches that failed and will be retried, by stream",
            ["stream"],
            registry=registry,
        )
        self.failed = Counter(
            "chainlog_streamer_failed",
            "Batches refused for good (the stream goes to error), by stream",
            ["stream"],
            registry=registry,
        )
        self.lag_events = Gauge(
            "chainlog_streamer_lag_events",
            "Events of the workspace after the stream's cursor",
            ["stream"],
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "chainlog_streamer_lag_seconds",
            "Age of the oldest event in the batch last read (0 when caught up)",
            ["stream"],
            registry=registry,
        )
        self.send_seconds = Histogram(
            "chainlog_streamer_send_seconds",
            "Time of one delivery attempt, by stream",
            ["stream"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )


def serve(
    registry: CollectorRegistry, port: int, host: str = "127.0.0.1", health: Health | None = None
) -> None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` from a background thread."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ok, report = (True, {}) if health is None or path == "/healthz" else health.ready()
            body = json.dumps({"status": "ok" if ok else "unavailable", **report}).encode()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        result: Iterable[bytes] = metrics_app(environ, start_response)
        return result

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
