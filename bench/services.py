"""Our services (``deploy/local/services.sh``), workspaces and the database."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import asyncpg
import httpx

from libs.common import keys
from libs.common.settings import REPO_ROOT

SCRIPT = REPO_ROOT / "deploy" / "local" / "services.sh"
NAMES = ("chainer", "enricher", "exporter", "alerter", "streamer", "ingest")
#: The pipeline stages between ingest and the query table, in order.
PIPELINE = ("chainer", "enricher", "exporter")
_STATUS = re.compile(r"^(\w+): (running|stopped)(?: \(pid (\d+)(?:, supervisor \d+)?\))?$")


class Services:
    """Starts what is not running, and at the end leaves things as found."""

    def __init__(self) -> None:
        self.initial = self.status()

    @staticmethod
    def status() -> dict[str, int | None]:
        """name -> pid if running, else None."""
        out = subprocess.run(
            ["bash", str(SCRIPT), "status"], capture_output=True, text=True, check=False
        ).stdout
        pids: dict[str, int | None] = dict.fromkeys(NAMES)
        for line in out.splitlines():
            m = _STATUS.match(line.strip())
            if m and m.group(1) in pids and m.group(2) == "running":
                pids[m.group(1)] = int(m.group(3))
        return pids

    def pid(self, name: str) -> int:
        pid = self.status()[name]
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        return pid

    @staticmethod
    def _call(action: str, *names: str) -> None:
        subprocess.run(["bash", str(SCRIPT), action, *names], check=True)

    def start(self, *names: str) -> None:
        self._call("start", *names)

    def stop(self, *names: str) -> None:
        self._call("stop", *names)

    def ensure_running(self) -> list[str]:
        """Start every stopped service; returns the names started."""
        stopped = [n for n, pid in self.status().items() if pid is None]
        if stopped:
            self.start(*stopped)
        return stopped

    def restore(self) -> None:
        """Back to what ran when the benchmark began (same set of services)."""
        now = self.status()
        start = [n for n in NAMES if self.initial[n] is not None and now[n] is None]
        stop = [n for n in NAMES if self.initial[n] is None and now[n] is not None]
        if start:
            self.start(*start)
        if stop:
            self.stop(*stop)


async def wait_http(url: str, within_s: float = 60.0) -> None:
    """Wait until GET ``url`` answers 200."""
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {within_s:.0f} s")
            await asyncio.sleep(0.2)


async def new_workspace(pool: asyncpg.Pool, name: str) -> tuple[str, str]:
    """A fresh workspace and its all-scopes key: (workspace_id, key)."""
    async with pool.acquire() as conn:
        workspace_id, key = await keys.create_workspace(conn, name, "enterprise")
    return workspace_id, key.key


async def settle(pool: asyncpg.Pool, pause_s: float = 2.0) -> None:
    """Before a phase: flush dirty buffers, so an earlier phase's checkpoint does not land in it."""
    await pool.execute("CHECKPOINT")
    await asyncio.sleep(pause_s)
