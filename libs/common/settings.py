"""Settings from the environment, prefix ``CHAINLOG_``, parsed once at start.

A bad value fails at start with the variable's name, never later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
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
        )
