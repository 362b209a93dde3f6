"""Settings from the environment, prefix ``CHAINLOG_``, parsed once at start.

A bad value fails at start with the variable's name, never later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from libs.common.topics import Names

REPO_ROOT = Path(__file__).resolve().parents[2]


class SettingsError(ValueError):
    pass


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    state_dir: Path
    kafka_bootstrap: str
    database_url: str
    database_admin_url: str
    partitions: int
    api_host: str
    api_port: int
    max_body_bytes: int
    max_batch_events: int
    key_cache_seconds: int
    verify_max_breaks: int
    verify_parallel_min: int
    namespace: str
    metrics_port: int | None
    #: Where consumers serve /metrics, /healthz, /readyz (0.0.0.0 in containers).
    metrics_host: str
    #: MaxMind DB for the enricher; None: the bundled GeoLite2-City database.
    geoip_database: Path | None
    #: Let webhooks and log streams reach loopback, private and link-local
    #: addresses (the local stack allows it; container images do not).
    allow_private_destinations: bool
    #: The key that encrypts stored secrets (webhook secrets, SIEM tokens):
    #: base64 in CHAINLOG_SECRET_KEY, or a file generated on first use.
    secret_key: str | None = field(repr=False)
    secret_key_file: Path
    #: Where links in alert email point.
    public_url: str
    smtp_host: str | None
    smtp_port: int
    smtp_username: str | None
    smtp_password: str | None = field(repr=False)
    smtp_starttls: bool
    smtp_tls: bool
    smtp_sender: str
    webhook_timeout_s: int
    #: The first retry's wait; later ones grow threefold (services/alerter/webhook.py).
    webhook_backoff_base_ms: int
    #: The plans' numbers (libs/common/plans.toml unless set).
    plans_file: Path | None
    #: Peers whose X-Forwarded-For is believed (comma-separated CIDRs).
    trusted_proxies: str
    #: Bearer token of the operator API (plan changes); unset: that API is off.
    operator_token: str | None = field(repr=False)
    #: Consecutive failed batches after which a log stream goes to ``error``.
    stream_max_failures: int
    #: Export files and archives: this directory, unless an S3 bucket is set.
    storage_dir: Path
    storage_s3_bucket: str | None
    storage_s3_endpoint_url: str
    storage_s3_region: str
    storage_s3_prefix: str
    storage_s3_access_key_id: str | None = field(repr=False)
    storage_s3_secret_access_key: str | None = field(repr=False)
    #: Days a completed export can be downloaded.
    export_ttl_days: int
    #: Scheduled verification: an incremental pass this often, a full one this often.
    verify_interval_s: int
    verify_full_interval_s: int
    #: Retention runs this often, connected as the retention role (the only
    #: one that may remove archived events).
    retention_interval_s: int
    retention_database_url: str
    #: The log's name: the signing key's name and the host part of every
    #: workspace log's origin (``<name>/<workspace id>``).
    log_name: str
    #: A checkpoint after this many new events, or when the last is this old
    #: and events arrived, and on a heartbeat even when none did.
    checkpoint_events: int
    checkpoint_seconds: int
    checkpoint_heartbeat_seconds: int
    #: The exporter grows the Merkle trees and signs checkpoints. Off only to
    #: measure what that costs (make bench): no checkpoints, proofs or receipts
    #: are then kept current.
    transparency: bool
    #: Who may frame the tenant viewer (CSP frame-ancestors), e.g.
    #: ``https://app.example.com``; every origin by default.
    viewer_frame_ancestors: str
    #: The longest a viewer token may live, in seconds (60 to 86,400).
    viewer_token_max_ttl_s: int
    #: How often the exporter looks for due schedules and files to deliver
    #: (services/exporter/schedules.py); also the first delivery retry's wait.
    schedule_poll_s: int
    #: Audited reads (docs/audited-reads.md): a workspace's reads are summarised
    #: per reader, kind and filter over this many seconds, then recorded as one
    #: admin.read.* event; at most this many summaries wait in memory; and
    #: whether a workspace that never set ``audit_reads`` has its reads audited.
    read_audit_window_s: int
    read_audit_max_groups: int
    read_audit_default: bool

    @property
    def topics(self) -> Names:
        return Names(self.namespace)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        state = Path(env.get("CHAINLOG_STATE_DIR") or REPO_ROOT / ".chainlog")
        pg_port = _int(env, "CHAINLOG_PG_PORT", 5433, 1)
        kafka_port = _int(env, "CHAINLOG_KAFKA_PORT", 9092, 1)
        admin_url = env.get(
            "CHAINLOG_DATABASE_ADMIN_URL", f"postgresql://postgres@127.0.0.1:{pg_port}/chainlog"
        )
        return cls(
            state_dir=state,
            kafka_bootstrap=env.get("CHAINLOG_KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port}"),
            database_url=env.get(
                "CHAINLOG_DATABASE_URL", f"postgresql://chainlog_app@127.0.0.1:{pg_port}/chainlog"
            ),
            database_admin_url=admin_url,
            partitions=_int(env, "CHAINLOG_PARTITIONS", 12, 1),
            api_host=env.get("CHAINLOG_API_HOST", "127.0.0.1"),
            api_port=_int(env, "CHAINLOG_API_PORT", 8080, 1),
            max_body_bytes=_int(env, "CHAINLOG_MAX_BODY_BYTES", 5 * 1024 * 1024, 1024),
            max_batch_events=_int(env, "CHAINLOG_MAX_BATCH_EVENTS", 1000, 1),
            key_cache_seconds=_int(env, "CHAINLOG_KEY_CACHE_SECONDS", 5, 0),
            verify_max_breaks=_int(env, "CHAINLOG_VERIFY_MAX_BREAKS", 100, 1),
            # chains at least this long are verified by two processes; 0: never
            verify_parallel_min=_int(env, "CHAINLOG_VERIFY_PARALLEL_MIN", 200_000, 0),
            namespace=env.get("CHAINLOG_NAMESPACE", ""),
            metrics_port=_int(env, "CHAINLOG_METRICS_PORT", 0, 0) or None,
            metrics_host=env.get("CHAINLOG_METRICS_HOST", "127.0.0.1"),
            geoip_database=Path(env["CHAINLOG_GEOIP_DATABASE"])
            if env.get("CHAINLOG_GEOIP_DATABASE")
            else None,
            allow_private_destinations=_bool(env, "CHAINLOG_ALLOW_PRIVATE_DESTINATIONS", False),
            secret_key=env.get("CHAINLOG_SECRET_KEY") or None,
            secret_key_file=Path(env.get("CHAINLOG_SECRET_KEY_FILE") or state / "secret.key"),
            public_url=env.get("CHAINLOG_PUBLIC_URL", "").rstrip("/")
            or f"http://127.0.0.1:{_int(env, 'CHAINLOG_API_PORT', 8080, 1)}",
            smtp_host=env.get("CHAINLOG_SMTP_HOST") or None,
            smtp_port=_int(env, "CHAINLOG_SMTP_PORT", 25, 1),
            smtp_username=env.get("CHAINLOG_SMTP_USERNAME") or None,
            smtp_password=env.get("CHAINLOG_SMTP_PASSWORD") or None,
            smtp_starttls=_bool(env, "CHAINLOG_SMTP_STARTTLS", False),
            smtp_tls=_bool(env, "CHAINLOG_SMTP_TLS", False),
            smtp_sender=env.get("CHAINLOG_SMTP_SENDER", "chainlog@localhost"),
            webhook_timeout_s=_int(env, "CHAINLOG_WEBHOOK_TIMEOUT_SECONDS", 10, 1),
            webhook_backoff_base_ms=_int(env, "CHAINLOG_WEBHOOK_BACKOFF_BASE_MS", 5000, 1),
            plans_file=Path(env["CHAINLOG_PLANS_FILE"]) if env.get("CHAINLOG_PLANS_FILE") else None,
            trusted_proxies=env.get("CHAINLOG_TRUSTED_PROXIES", ""),
            operator_token=env.get("CHAINLOG_OPERATOR_TOKEN") or None,
            stream_max_failures=_int(env, "CHAINLOG_STREAM_MAX_FAILURES", 10, 1),
            storage_dir=Path(env.get("CHAINLOG_STORAGE_DIR") or state / "files"),
            storage_s3_bucket=env.get("CHAINLOG_STORAGE_S3_BUCKET") or None,
            storage_s3_endpoint_url=env.get(
                "CHAINLOG_STORAGE_S3_ENDPOINT_URL", "https://s3.amazonaws.com"
            ),
            storage_s3_region=env.get("CHAINLOG_STORAGE_S3_REGION", "us-east-1"),
            storage_s3_prefix=env.get("CHAINLOG_STORAGE_S3_PREFIX", ""),
            storage_s3_access_key_id=env.get("CHAINLOG_STORAGE_S3_ACCESS_KEY_ID") or None,
            storage_s3_secret_access_key=env.get("CHAINLOG_STORAGE_S3_SECRET_ACCESS_KEY") or None,
            export_ttl_days=_int(env, "CHAINLOG_EXPORT_TTL_DAYS", 7, 1),
            verify_interval_s=_int(env, "CHAINLOG_VERIFY_INTERVAL_SECONDS", 3600, 1),
            verify_full_interval_s=_int(env, "CHAINLOG_VERIFY_FULL_INTERVAL_SECONDS", 86400, 1),
            retention_interval_s=_int(env, "CHAINLOG_RETENTION_INTERVAL_SECONDS", 86400, 1),
            log_name=env.get("CHAINLOG_LOG_NAME", "chainlog.local"),
            checkpoint_events=_int(env, "CHAINLOG_CHECKPOINT_EVENTS", 1000, 1),
            checkpoint_seconds=_int(env, "CHAINLOG_CHECKPOINT_SECONDS", 60, 1),
            checkpoint_heartbeat_seconds=_int(env, "CHAINLOG_CHECKPOINT_HEARTBEAT_SECONDS", 300, 1),
            transparency=_bool(env, "CHAINLOG_TRANSPARENCY", True),
            viewer_frame_ancestors=env.get("CHAINLOG_VIEWER_FRAME_ANCESTORS", "*"),
            viewer_token_max_ttl_s=_int(env, "CHAINLOG_VIEWER_TOKEN_MAX_TTL_SECONDS", 86400, 60),
            schedule_poll_s=_int(env, "CHAINLOG_SCHEDULE_POLL_SECONDS", 60, 1),
            read_audit_window_s=_int(env, "CHAINLOG_READ_AUDIT_WINDOW_SECONDS", 60, 1),
            read_audit_max_groups=_int(env, "CHAINLOG_READ_AUDIT_MAX_GROUPS", 10_000, 1),
            read_audit_default=_bool(env, "CHAINLOG_READ_AUDIT_DEFAULT", True),
            retention_database_url=env.get(
                "CHAINLOG_RETENTION_DATABASE_URL",
                f"postgresql://chainlog_retention@127.0.0.1:{pg_port}/chainlog",
            ),
        )
