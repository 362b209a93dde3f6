"""Kafka and PostgreSQL from the official images, for contributors with Docker.

Used by ``tests/stack.py`` when ``CHAINLOG_TEST_INFRA=docker``, or when it is
``auto`` (the default), a Docker engine answers and no local stack was
ever set up here (no ``.chainlog/kafka``). Otherwise the suite uses the
local stack scripts (``deploy/local/``), as on machines without Docker.

Not exercised on the development machine, which has no Docker engine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:15"
#: Fixed host ports, so the broker can advertise the address clients use.
KAFKA_HOST_PORT = 19092
PG_HOST_PORT = 15433


def wanted(env: dict[str, str], state: Path) -> bool:
    mode = env.get("CHAINLOG_TEST_INFRA", "auto")
    if mode == "docker":
        return True
    if mode != "auto":
        return False
    return not (state / "kafka").exists() and _docker_answers()


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def start(env: dict[str, str]) -> list[Any]:
    """Start both containers; points ``env`` at them; returns them for stopping."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    kafka = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, KAFKA_HOST_PORT)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{KAFKA_HOST_PORT}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    postgres = (
        DockerContainer(POSTGRES_IMAGE)
        .with_bind_ports(5432, PG_HOST_PORT)
        .with_env("POSTGRES_DB", "chainlog")
        .with_env("POSTGRES_HOST_AUTH_METHOD", "trust")  # chainlog_app has no password
    )
    kafka.start()
    postgres.start()
    wait_for_logs(kafka, "Kafka Server started", timeout=120)
    wait_for_logs(postgres, "database system is ready to accept connections", timeout=60)
    env.update(
        CHAINLOG_KAFKA_BOOTSTRAP=f"127.0.0.1:{KAFKA_HOST_PORT}",
        CHAINLOG_DATABASE_URL=f"postgresql://chainlog_app@127.0.0.1:{PG_HOST_PORT}/chainlog",
        CHAINLOG_DATABASE_ADMIN_URL=f"postgresql://postgres@127.0.0.1:{PG_HOST_PORT}/chainlog",
    )
    return [kafka, postgres]
