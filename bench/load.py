"""The load generator: concurrent clients posting pre-serialised batches.

One shared ``httpx.AsyncClient`` with one connection per client; each
client sends its next batch as soon as the previous one is answered
(closed loop), so the offered load follows what the server sustains.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import httpx
import orjson

BATCH_PATH = "/api/v1/events/batch"
#: A sampled event: (event id, perf_counter() when its request was acked).
OnSample = Callable[[str, float], None]


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def summary_ms(values_s: Sequence[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": pct(ms, 50),
        "p90_ms": pct(ms, 90),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms) if ms else None,
    }


@dataclass
class LoadResult:
    started: float = 0.0  # perf_counter() of the first send
    last_ack: float = 0.0  # perf_counter() of the last acknowledgement
    requests: int = 0
    events_acked: int = 0
    events_rejected: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0  # CPU time of this (generator) process during the run

    @property
    def window_s(self) -> float:
        return max(self.last_ack - self.started, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "events_acked": self.events_acked,
            "events_rejected": self.events_rejected,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "window_s": self.window_s,
            "acked_events_per_s": self.events_acked / self.window_s,
            "ack_latency": summary_ms(self.latencies_s),
            "generator_cpu_pct": 100 * self.cpu_s / self.window_s,
            "raw_ack_latencies_ms": [round(v * 1000, 3) for v in self.latencies_s],
        }


async def run_load(
    base_url: str,
    headers: dict[str, str],
    bodies: Sequence[bytes],
    *,
    clients: int,
    duration_s: float | None = None,
    max_requests: int | None = None,
    sample_every: int = 10,
    on_sample: OnSample | None = None,
    requests_per_s: float | None = None,
) -> LoadResult:
    """Post batches until ``duration_s`` has passed or ``max_requests`` were sent.

    Closed loop by default; with ``requests_per_s`` each client paces itself
    so that all of them together offer that rate (an open, steady load).

    Every ``sample_every``-th acknowledged request hands the id of its last
    event to ``on_sample``, with the time of the acknowledgement.
    """
    if duration_s is None and max_requests is None:
        raise ValueError("give duration_s or max_requests")
    res = LoadResult()
    tickets = count()
    send_headers = {**headers, "content-type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0) as http:
        cpu0 = time.process_time()
        res.started = time.perf_counter()
        deadline = res.started + duration_s if duration_s is not None else float("inf")

        interval = clients / requests_per_s if requests_per_s else 0.0

        async def client(k: int) -> None:
            due = res.started + k * interval / clients
            while time.perf_counter() < deadline:
                if interval:
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    due += interval
                n = next(tickets)
                if max_requests is not None and n >= max_requests:
                    return
                await _one(
                    http, bodies[n % len(bodies)], send_headers, res, n, sample_every, on_sample
                )

        await asyncio.gather(*(client(k) for k in range(clients)))
        res.cpu_s = time.process_time() - cpu0
    return res


async def _one(
    http: httpx.AsyncClient,
    body: bytes,
    headers: dict[str, str],
    res: LoadResult,
    n: int,
    sample_every: int,
    on_sample: OnSample | None,
) -> None:
    t0 = time.perf_counter()
    try:
        resp = await http.post(BATCH_PATH, content=body, headers=headers)
    except httpx.HTTPError as exc:
        _failed(res, repr(exc))
        await asyncio.sleep(0.05)
        return
    t1 = time.perf_counter()
    res.requests += 1
    if resp.status_code not in (200, 201, 202):
        _failed(res, f"HTTP {resp.status_code}: {resp.text[:200]}")
        await asyncio.sleep(0.05)
        return
    doc = orjson.loads(resp.content)
    res.latencies_s.append(t1 - t0)
    res.last_ack = max(res.last_ack, t1)
    res.events_acked += doc["accepted"]
    res.events_rejected += doc.get("rejected", 0)
    if on_sample is not None and n % sample_every == 0:
        on_sample(doc["results"][-1]["id"], t1)


def _failed(res: LoadResult, message: str) -> None:
    res.errors += 1
    if len(res.error_samples) < 5:
        res.error_samples.append(message)
