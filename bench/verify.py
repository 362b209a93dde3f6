"""Verify 1M: a correct chain written straight into PostgreSQL, then GET /verify.

The chain is built with the real ``link``/``canonical`` and turned into rows
by the exporter's own ``segment_rows``, so the rows are what the pipeline
would have written. It is inserted once, in one transaction (an interrupted
build leaves nothing behind), and reused while a workspace named
``bench-verify-<label>`` holds exactly N events; its read key lives in
``$STATE/bench-verify.env``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.events import make_event
from libs.common import keys
from libs.common.chain import Head, encode_segment, link
from libs.common.timeutil import format_epoch_us, uuid7_batch
from services.exporter.rows import COLUMNS, Row, segment_rows

CHUNK = 50_000


def label(n: int) -> str:
    return f"{n // 1_000_000}m" if n % 1_000_000 == 0 else str(n)


def chain_rows(workspace_id: str, n: int, chunk: int = CHUNK) -> Iterator[list[Row]]:
    """Rows of a valid ``n``-event chain, ``chunk`` at a time."""
    rng = random.Random(1)
    head = Head()
    start_us = time.time_ns() // 1000 - n * 1000  # one event per ms, ending now
    for lo in range(0, n, chunk):
        size = min(chunk, n - lo)
        lines = []
        for i, event_id in enumerate(uuid7_batch(size, (start_us // 1000) + lo)):
            at = start_us + (lo + i) * 1000
            ev = make_event(rng, at - 5_000)
            ev["id"] = event_id
            ev["received_at"] = format_epoch_us(at)
            body, digest = link(head, workspace_id, ev)
            lines.append((digest, body))
        yield list(segment_rows(encode_segment(lines)))


class Fixture:
    def __init__(self, pool: asyncpg.Pool, state_dir: Path, n: int) -> None:
        self.pool = pool
        self.n = n
        self.name = f"bench-verify-{label(n)}"
        self.env_file = state_dir / "bench-verify.env"
        self._var = f"BENCH_VERIFY_{label(n).upper()}"

    async def ensure(self) -> tuple[str, str, dict[str, Any]]:
        """(workspace_id, read key, info); builds the chain when no usable one exists."""
        async with self.pool.acquire() as conn:
            for row in await conn.fetch(
                "SELECT id::text FROM workspaces WHERE name = $1 ORDER BY created_at DESC",
                self.name,
            ):
                ws = row["id"]
                if (
                    await conn.fetchval("SELECT count(*) FROM events WHERE workspace_id = $1", ws)
                    == self.n
                ):
                    # a fixture from before plans were enforced may sit on free (60 requests/min)
                    await conn.execute(
                        "UPDATE workspaces SET plan = 'enterprise' WHERE id = $1 AND plan <> 'enterprise'",
                        ws,
                    )
                    return ws, await self._key(conn, ws), {"reused": True, "build_s": 0.0}
            t0 = time.perf_counter()
            async with conn.transaction():
                ws, key = await keys.create_workspace(conn, self.name, "enterprise")
                for rows in chain_rows(ws, self.n):
                    await conn.copy_records_to_table("events", records=rows, columns=COLUMNS)
            self._save(ws, key.key)
            return ws, key.key, {"reused": False, "build_s": time.perf_counter() - t0}

    async def _key(self, conn: asyncpg.Connection, workspace_id: str) -> str:
        saved = self._load()
        if saved.get(f"{self._var}_WORKSPACE_ID") == workspace_id:
            key = saved.get(f"{self._var}_API_KEY", "")
            prefix = keys.split_prefix(key)
            if prefix and await conn.fetchval(
                "SELECT 1 FROM api_keys WHERE prefix = $1 AND workspace_id = $2"
                " AND revoked_at IS NULL",
                prefix,
                workspace_id,
            ):
                return key
        new = await keys.create_key(conn, workspace_id, "bench-verify", ["read"])
        self._save(workspace_id, new.key)
        return new.key

    def _load(self) -> dict[str, str]:
        if not self.env_file.exists():
            return {}
        pairs = (
            line.split("=", 1) for line in self.env_file.read_text().splitlines() if "=" in line
        )
        return {k: v for k, v in pairs}

    def _save(self, workspace_id: str, key: str) -> None:
        saved = self._load()
        saved[f"{self._var}_WORKSPACE_ID"] = workspace_id
        saved[f"{self._var}_API_KEY"] = key
        self.env_file.parent.mkdir(parents=True, exist_ok=True)
        self.env_file.touch(mode=0o600)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in saved.items()))


async def time_verify(base_url: str, key: str, expected: int, runs: int = 2) -> dict[str, Any]:
    """Time ``runs`` calls of GET /api/v1/verify; each must be valid over ``expected`` events."""
    times: list[float] = []
    checks: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=600.0) as http:
        for _ in range(runs):
            t0 = time.perf_counter()
            resp = await http.get("/api/v1/verify", headers={"authorization": f"Bearer {key}"})
            times.append(time.perf_counter() - t0)
            doc = resp.json() if resp.status_code == 200 else {"status": resp.status_code}
            checks.append(
                {
                    "status": resp.status_code,
                    "valid": doc.get("valid"),
                    "events_checked": doc.get("events_checked"),
                    "ok": doc.get("valid") is True and doc.get("events_checked") == expected,
                }
            )
    return {
        "events": expected,
        "seconds": times,
        "best_s": min(times),
        "events_per_s": expected / min(times),
        "checks": checks,
        "ok": all(c["ok"] for c in checks),
    }
