"""The real local stack for end-to-end tests: Kafka, PostgreSQL, our services.

Tests run their own chainer, exporter and gateway processes under the
namespace ``CHAINLOG_TEST_NAMESPACE`` (default ``test``: own topics and
consumer groups) and on their own API port, so they never disturb a
running ``make up``, and they can kill and restart them at will.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("CHAINLOG_STATE_DIR") or REPO / ".chainlog")
PYTHON = str(REPO / ".venv" / "bin" / "python")
NAMESPACE = os.environ.get("CHAINLOG_TEST_NAMESPACE", "test")
API_PORT = int(os.environ.get("CHAINLOG_TEST_API_PORT", "18080"))
API_URL = f"http://127.0.0.1:{API_PORT}"
#: Metrics ports of the test services, derived from the API port so that
#: parallel namespaces do not collide.
METRICS_PORTS = {
    "chainer": API_PORT + 1001,
    "exporter": API_PORT + 1002,
    "enricher": API_PORT + 1003,
    "alerter": API_PORT + 1004,
    "streamer": API_PORT + 1005,
}
OPERATOR_TOKEN = "test-operator-token"
#: The suite's own SMTP server (aiosmtpd, in the test process).
SMTP_PORT = API_PORT + 1025
#: The deterministic GeoIP database the suite builds (tests/geoip_fixture.py).
GEOIP_DATABASE = STATE / f"{NAMESPACE}-geoip.mmdb"

T = TypeVar("T")


def stack_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CHAINLOG_STATE_DIR=str(STATE),
        CHAINLOG_NAMESPACE=NAMESPACE,
        CHAINLOG_API_PORT=str(API_PORT),
        CHAINLOG_KEY_CACHE_SECONDS="1",
        # Verify even short chains in two halves, so every verification in
        # the suite also checks how the halves are joined.
        CHAINLOG_VERIFY_PARALLEL_MIN="4",
        CHAINLOG_GEOIP_DATABASE=str(GEOIP_DATABASE),
        # Test receivers listen on 127.0.0.1.
        CHAINLOG_ALLOW_PRIVATE_DESTINATIONS="true",
        CHAINLOG_SMTP_HOST="127.0.0.1",
        CHAINLOG_SMTP_PORT=str(SMTP_PORT),
        CHAINLOG_SMTP_SENDER="alerts@chainlog.test",
        CHAINLOG_WEBHOOK_TIMEOUT_SECONDS="3",
        CHAINLOG_WEBHOOK_BACKOFF_BASE_MS="200",
        CHAINLOG_OPERATOR_TOKEN=OPERATOR_TOKEN,
        CHAINLOG_STREAM_MAX_FAILURES="4",
        # Scheduled verification often enough for a test to see it (tests/test_exports.py).
        CHAINLOG_VERIFY_INTERVAL_SECONDS="5",
        CHAINLOG_VERIFY_FULL_INTERVAL_SECONDS="20",
        # Checkpoints within seconds, heartbeats too (tests/test_proofs.py).
        CHAINLOG_CHECKPOINT_SECONDS="1",
        CHAINLOG_CHECKPOINT_HEARTBEAT_SECONDS="3",
        # Schedules looked at every second, deliveries retried within seconds
        # (tests/test_schedules.py).
        CHAINLOG_SCHEDULE_POLL_SECONDS="1",
        # Reads are audited only in workspaces that turn it on (other suites
        # count events exactly), in windows short enough to wait for
        # (tests/test_audited_reads.py).
        CHAINLOG_READ_AUDIT_DEFAULT="false",
        CHAINLOG_READ_AUDIT_WINDOW_SECONDS="3",
    )
    return env


def ensure_infra(env: dict[str, str], *, local: bool = True) -> None:
    """Start (or reuse) the broker and the database; migrate; create topics.

    ``local=False``: they run in containers (tests/containers.py) already.
    """
    for script in ("postgres.sh", "kafka.sh") if local else ():
        subprocess.run(
            ["bash", str(REPO / "deploy" / "local" / script), "start"], check=True, env=env
        )
    from tests.geoip_fixture import write_test_database

    write_test_database(GEOIP_DATABASE)
    chainlog = str(REPO / ".venv" / "bin" / "chainlog")
    subprocess.run([chainlog, "migrate"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([chainlog, "topics"], check=True, env=env, stdout=subprocess.DEVNULL)


@dataclass
class Service:
    """One of our services as a real OS process (so it can be SIGKILLed)."""

    name: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    instance: str = ""

    @property
    def log_path(self) -> Path:
        return STATE / "logs" / f"{NAMESPACE}-{self.name}{self.instance}.log"

    @classmethod
    def with_metrics_port(
        cls, name: str, env: dict[str, str], port: int, instance: str = ""
    ) -> Service:
        return cls(name, env | {"CHAINLOG_METRICS_PORT": str(port)}, instance=instance)

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already runs"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [PYTHON, "-m", f"services.{self.name}"],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets but does nothing (a long GC pause)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


async def wait_until(
    probe: Callable[[], Awaitable[T]],
    *,
    within: float = 60.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        last = await probe()
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {within:.0f}s waiting for {what}; last: {last!r}"
            )
        await asyncio.sleep(interval)


async def wait_for_api(client: httpx.AsyncClient, within: float = 60.0) -> None:
    async def up() -> bool:
        try:
            return (await client.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(up, within=within, what="the gateway to answer /healthz")
