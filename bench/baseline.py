"""Running the baseline: its schema, its server process, its measurement."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench.e2e import Target, measure
from bench.services import wait_http
from libs.common.settings import REPO_ROOT, Settings

SCHEMA = Path(__file__).with_name("baseline.sql")
PORT = 8090
URL = f"http://127.0.0.1:{PORT}"


async def prepare(pool: asyncpg.Pool) -> tuple[str, str]:
    """Recreate the (empty) schema; a workspace and its token: (workspace_id, token)."""
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA.read_text())
        workspace_id, token = str(uuid.uuid4()), secrets.token_urlsafe(32)
        await conn.execute(
            "INSERT INTO baseline.api_tokens VALUES ($1, $2)",
            hashlib.sha256(token.encode()).digest(),
            workspace_id,
        )
    return workspace_id, token


class BaselineServer:
    """``python -m bench.baseline_app`` as a child process for the run's duration."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log_path = settings.state_dir / "logs" / "bench-baseline.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", PORT)) == 0:
                raise RuntimeError(f"port {PORT} is taken; the baseline needs it")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "BASELINE_DATABASE_URL": self.settings.database_admin_url,
            "BASELINE_PORT": str(PORT),
        }
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.baseline_app"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def __aenter__(self) -> BaselineServer:
        self.start()
        try:
            await wait_http(f"{URL}/healthz", 30)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"the baseline did not start; see {self.log_path}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)


async def run_baseline(
    settings: Settings,
    pool: asyncpg.Pool,
    bodies: Sequence[bytes],
    *,
    clients: int,
    duration_s: float,
    drain_timeout_s: float,
) -> dict[str, Any]:
    workspace_id, token = await prepare(pool)
    target = Target(
        "baseline", URL, {"authorization": f"Bearer {token}"}, "baseline.events", workspace_id
    )
    async with BaselineServer(settings):
        return await measure(
            target,
            pool,
            bodies,
            clients=clients,
            duration_s=duration_s,
            drain_timeout_s=drain_timeout_s,
        )
