"""``python -m bench.run`` (``make bench``): Chainlog against the local stack.

Phases, one after the other (never two systems at once):

1. Chainlog end to end: ``--clients`` clients post ``--batch``-event batches
   to ingest for ``--duration`` s; events/s counts until the last acked
   event is queryable; ack latency; freshness (ack → queryable).
2. (``--profile``) the same load again, with py-spy on ingest, chainer and
   exporter; flame graphs and top frames in ``bench/results/``.
3. Chainer, enricher and alerter events/s, one at a time: the stage
   stopped, ``--chainer-events`` queued through ingest, the stage restarted,
   its drain timed from its Kafka offsets (the alerter with one rule of
   every type).
4. Streamer events/s: a 100,000-event backlog forwarded to a local
   Elasticsearch-style receiver, alone and beside a dead destination.
4. Baseline: the same load against ``bench/baseline_app.py`` (one table,
   trigger-chained), started here and stopped afterwards.
5. Verify: GET /api/v1/verify over a ``--verify-events`` chain, and export it.
6. Proofs: the Merkle tree of that chain rebuilt, inclusion and consistency
   proofs timed, checkpoint signing, and ingest with the tree builder on and
   off (bench/proofs.py).
7. Explorer: the console's queries on a ``--explorer-events`` workspace
   (bench/explorer.py).

Our services are started if they are not running and left as found.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import uvloop

from bench import explorer, profile, proofs, report
from bench.baseline import run_baseline
from bench.drain import measure_drain
from bench.e2e import Target, measure
from bench.events import make_bodies
from bench.export import time_export
from bench.sdk import measure_raw_with_keys, measure_sdk
from bench.services import PIPELINE, Services, new_workspace, settle, wait_http
from bench.streamer import measure_streamer
from bench.verify import Fixture, time_verify
from libs.common.settings import Settings

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DISTINCT_BODIES = 32


@dataclass(frozen=True)
class Config:
    duration: float
    clients: int
    batch: int
    verify_events: int
    chainer_events: int
    skip_baseline: bool
    skip_verify: bool
    skip_chainer: bool
    skip_proofs: bool
    skip_explorer: bool
    explorer_events: int
    only: str | None
    profile: bool
    profile_seconds: int

    @property
    def drain_timeout_s(self) -> float:
        return max(60.0, 2 * self.duration)


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load per system (30)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    p.add_argument("--batch", type=int, default=100, help="events per request (100)")
    p.add_argument("--verify-events", type=int, default=1_000_000, help="chain length to verify")
    p.add_argument(
        "--chainer-events", type=int, default=200_000, help="backlog the chainer drains (200000)"
    )
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--skip-verify", action="store_true")
    p.add_argument("--skip-chainer", action="store_true")
    p.add_argument("--skip-proofs", action="store_true")
    p.add_argument("--skip-explorer", action="store_true")
    p.add_argument(
        "--explorer-events", type=int, default=10_000_000, help="events the explorer is timed on"
    )
    p.add_argument(
        "--only",
        choices=("proofs", "explorer"),
        help="run this phase alone (and what it needs), skipping the others",
    )
    p.add_argument("--profile", action="store_true", help="extra load run under py-spy")
    p.add_argument("--profile-seconds", type=int, default=20)
    a = p.parse_args(argv)
    if a.duration <= 0 or a.clients < 1 or not 1 <= a.batch <= 1000 or a.verify_events < 1:
        p.error("need --duration > 0, --clients ≥ 1, 1 ≤ --batch ≤ 1000, --verify-events ≥ 1")
    return Config(**vars(a))


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def require_loopback(settings: Settings) -> None:
    hosts = {
        "database": urlsplit(settings.database_admin_url).hostname,
        "kafka": settings.kafka_bootstrap.rsplit(":", 1)[0].strip("[]"),
    }
    remote = {k: h for k, h in hosts.items() if h not in LOOPBACK}
    if remote:
        raise SystemExit(f"bench talks to 127.0.0.1 only; configured: {remote}")


class Bench:
    def __init__(self, cfg: Config, settings: Settings, pool: asyncpg.Pool) -> None:
        self.cfg = cfg
        self.settings = settings
        self.pool = pool
        self.api = f"http://127.0.0.1:{settings.api_port}"
        self.bodies = make_bodies(DISTINCT_BODIES, cfg.batch)

    async def chainlog_load(
        self, name: str, duration_s: float, requests_per_s: float | None = None
    ) -> dict[str, Any]:
        workspace_id, key = await new_workspace(self.pool, name)
        target = Target(
            "chainlog", self.api, {"authorization": f"Bearer {key}"}, "events", workspace_id
        )
        return await measure(
            target,
            self.pool,
            self.bodies,
            clients=self.cfg.clients,
            duration_s=duration_s,
            drain_timeout_s=self.cfg.drain_timeout_s,
            requests_per_s=requests_per_s,
        )

    async def chainlog(self) -> dict[str, Any]:
        return await self.chainlog_load("bench-e2e", self.cfg.duration)

    async def sdk(self) -> dict[str, Any]:
        """The same load through the Python SDK's batching clients."""
        workspace_id, key = await new_workspace(self.pool, "bench-sdk")
        say(
            f"sdk: {self.cfg.clients} SDK clients, batches of {self.cfg.batch}, {self.cfg.duration:.0f} s"
        )
        out = await measure_sdk(
            self.api,
            self.pool,
            workspace_id,
            key,
            clients=self.cfg.clients,
            batch=self.cfg.batch,
            duration_s=self.cfg.duration,
            drain_timeout_s=self.cfg.drain_timeout_s,
        )
        await settle(self.pool)
        _, raw_key = await new_workspace(self.pool, "bench-raw-keys")
        say("sdk: the raw clients again, with an idempotency key per event")
        out["raw_with_keys"] = await measure_raw_with_keys(
            self.api,
            raw_key,
            clients=self.cfg.clients,
            batch=self.cfg.batch,
            duration_s=self.cfg.duration,
        )
        return out

    async def steady(self, saturated_events_per_s: float) -> dict[str, Any]:
        """Freshness under a steady load at half what the pipeline sustains."""
        rate = STEADY_FRACTION * saturated_events_per_s / self.cfg.batch
        out = await self.chainlog_load("bench-steady", STEADY_SECONDS, requests_per_s=rate)
        return {"offered_events_per_s": rate * self.cfg.batch, **out}

    async def profiled(self, services: Services) -> dict[str, Any]:
        pids = {n: services.pid(n) for n in ("ingest", *PIPELINE)}
        secs = self.cfg.profile_seconds

        async def sample() -> dict[str, Any]:
            await asyncio.sleep(2)  # past the start of the load
            return await profile.record(pids, report.RESULTS, secs)

        run, frames = await asyncio.gather(self.chainlog_load("bench-profile", secs + 4), sample())
        return {"pids": pids, "seconds": secs, "frames": frames, "run_under_profiler": run}

    async def drain(
        self,
        services: Services,
        stage: str,
        prepare: Callable[[str, str], Awaitable[None]] | None = None,
        instances: int = 1,
    ) -> dict[str, Any]:
        return await measure_drain(
            self.settings,
            services,
            self.pool,
            self.api,
            self.bodies,
            stage=stage,
            batch=self.cfg.batch,
            events=self.cfg.chainer_events,
            clients=self.cfg.clients,
            timeout_s=180.0,
            prepare=prepare,
            instances=instances,
        )

    async def streamer(self, services: Services) -> dict[str, Any]:
        return await measure_streamer(
            services,
            self.pool,
            self.api,
            self.bodies,
            batch=self.cfg.batch,
            events=STREAMER_EVENTS,
            clients=self.cfg.clients,
        )

    async def alert_rules(self, workspace_id: str, key: str) -> None:
        """One rule of every type, so the alerter's drain evaluates all five."""
        async with httpx.AsyncClient(base_url=self.api, timeout=10) as http:
            for rule_type, conditions in BENCH_RULES:
                r = await http.post(
                    "/api/v1/alert-rules",
                    headers={"authorization": f"Bearer {key}"},
                    json={
                        "name": f"bench {rule_type}",
                        "rule_type": rule_type,
                        "conditions": conditions,
                        "channels": ["webhook"],  # no endpoint: nothing leaves the machine
                    },
                )
                r.raise_for_status()

    async def baseline(self) -> dict[str, Any]:
        return await run_baseline(
            self.settings,
            self.pool,
            self.bodies,
            clients=self.cfg.clients,
            duration_s=self.cfg.duration,
            drain_timeout_s=self.cfg.drain_timeout_s,
        )

    async def verify(self) -> dict[str, Any]:
        n = self.cfg.verify_events
        say(f"verify: preparing a {n:,}-event chain (built once, then reused)")
        workspace_id, key, info = await Fixture(self.pool, self.settings.state_dir, n).ensure()
        how = "reused" if info["reused"] else f"built in {info['build_s']:.0f} s"
        say(f"verify: chain ready ({how}); timing GET /api/v1/verify")
        return {"workspace_id": workspace_id, **info, **await time_verify(self.api, key, n)}

    async def proofs(self, services: Services) -> dict[str, Any]:
        n = self.cfg.verify_events
        workspace_id, key, _ = await Fixture(self.pool, self.settings.state_dir, n).ensure()
        say(f"proofs: rebuilding the tree of {n:,} events with the exporter stopped")
        services.stop("exporter")
        try:
            tree = await proofs.rebuild_tree(self.pool, self.settings, workspace_id)
        finally:
            services.start("exporter")

        async def signed() -> bool:
            return bool(
                await self.pool.fetchval(
                    "SELECT 1 FROM checkpoints WHERE workspace_id = $1 AND size = $2",
                    workspace_id,
                    n,
                )
            )

        if await proofs.poll_until(signed, 120) is None:
            raise TimeoutError(f"no checkpoint of size {n} within 120 s")
        say("proofs: inclusion and consistency proofs through the API")
        timed = await proofs.time_proofs(self.api, key, self.pool, workspace_id)

        def restart_exporter(tree: bool) -> None:
            services.stop("exporter")
            os.environ["CHAINLOG_TRANSPARENCY"] = "true" if tree else "false"
            try:
                services.start("exporter")
            finally:
                os.environ.pop("CHAINLOG_TRANSPARENCY", None)

        say("proofs: ingest with the tree builder on and off, alternated")
        cost = await proofs.overhead(
            lambda name: self.chainlog_load(name, self.cfg.duration), restart_exporter, self.pool
        )
        return {
            "workspace_id": workspace_id,
            "tree_build": tree,
            **timed,
            "signing": proofs.time_signing(),
            "ingest": cost,
        }

    async def explorer(self) -> dict[str, Any]:
        n = self.cfg.explorer_events
        say(f"explorer: preparing a {n:,}-event workspace (built once, then reused)")
        workspace_id, key, info = await Fixture(self.pool, self.settings.state_dir, n).ensure()
        say("explorer: timing the console's queries")
        return {
            "workspace_id": workspace_id,
            **info,
            **await explorer.time_explorer(self.api, key, self.pool, workspace_id, n),
        }

    async def export(self) -> dict[str, Any]:
        n = self.cfg.verify_events
        workspace_id, _, _ = await Fixture(self.pool, self.settings.state_dir, n).ensure()
        say(f"export: {n:,} events as CSV and JSON Lines, then verify-export on the CSV")
        return {"workspace_id": workspace_id, **await time_export(self.pool, workspace_id, n)}


BENCH_RULES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("new_country", {}),
    ("high_volume_destructive", {"threshold": 50, "window_seconds": 60}),
    ("ingestion_spike", {"window_seconds": 60}),
    ("repeated_action", {"threshold": 20, "window_seconds": 60}),
    ("off_hours", {"start": "09:00", "end": "18:00"}),
)
STREAMER_EVENTS = 100_000
STEADY_FRACTION = 0.5
STEADY_SECONDS = 20.0


def _get_rate(res: dict[str, Any]) -> float | None:
    rate = res.get("chainlog", {}).get("e2e_events_per_s")
    return float(rate) if rate else None


async def phase(
    res: dict[str, Any], name: str, run: Callable[[], Awaitable[dict[str, Any]]], pool: asyncpg.Pool
) -> None:
    await settle(pool)
    say(f"{name}: start")
    t0 = time.perf_counter()
    try:
        res[name] = await run()
    except Exception as exc:  # one failed phase must not lose the others
        traceback.print_exc()
        res[name] = {"error": repr(exc)}
    res[name]["phase_s"] = time.perf_counter() - t0
    say(f"{name}: done in {res[name]['phase_s']:.0f} s")


async def run_all(
    cfg: Config, bench: Bench, services: Services, res: dict[str, Any], pool: asyncpg.Pool
) -> None:
    await phase(res, "chainlog", bench.chainlog, pool)
    await phase(res, "sdk", bench.sdk, pool)
    saturated = _get_rate(res)
    if saturated:
        await phase(res, "steady", lambda: bench.steady(saturated), pool)
    if cfg.profile:
        await phase(res, "profile", lambda: bench.profiled(services), pool)
    if not cfg.skip_chainer:
        await phase(res, "chainer", lambda: bench.drain(services, "chainer"), pool)
        await phase(res, "chainer_x2", lambda: bench.drain(services, "chainer", instances=2), pool)
        await phase(res, "enricher", lambda: bench.drain(services, "enricher"), pool)
        await phase(
            res,
            "alerter",
            lambda: bench.drain(services, "alerter", bench.alert_rules),
            pool,
        )
    if not cfg.skip_chainer:
        await phase(res, "streamer", lambda: bench.streamer(services), pool)
    if not cfg.skip_baseline:
        await phase(res, "baseline", bench.baseline, pool)
    if not cfg.skip_verify:
        await phase(res, "verify", bench.verify, pool)
        await phase(res, "export", bench.export, pool)
    if not cfg.skip_proofs:
        await phase(res, "proofs", lambda: bench.proofs(services), pool)
    if not cfg.skip_explorer:
        await phase(res, "explorer", bench.explorer, pool)


async def main(cfg: Config) -> dict[str, Any]:
    settings = Settings.from_env()
    require_loopback(settings)
    services = Services()
    res: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "config": {
            **asdict(cfg),
            "namespace": settings.namespace,
            "api_port": settings.api_port,
            "partitions": settings.partitions,
        },
        "machine": report.machine(),
    }
    pool = await asyncpg.create_pool(settings.database_admin_url, min_size=1, max_size=4)
    try:
        started = services.ensure_running()
        running = services.status()
        say(f"services: {running}, started now: {started or 'none'}; pipeline: {PIPELINE}")
        res["services"] = {
            "initial": services.initial,
            "started_by_bench": started,
            "running": running,
            "pipeline_stages": {n: running[n] is not None for n in PIPELINE},
        }
        await wait_http(f"http://127.0.0.1:{settings.api_port}/healthz")
        bench = Bench(cfg, settings, pool)
        if cfg.only == "proofs":
            await phase(res, "proofs", lambda: bench.proofs(services), pool)
        elif cfg.only == "explorer":
            await phase(res, "explorer", bench.explorer, pool)
        else:
            await run_all(cfg, bench, services, res, pool)
    finally:
        await pool.close()
        services.restore()
    res["finished_at"] = datetime.now(UTC).isoformat()
    res["machine"]["loadavg_end"] = report.machine()["loadavg"]
    res["targets"] = report.targets(res)
    return res


def cli(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    res = uvloop.run(main(cfg))
    path = report.write(res)
    print(report.table(res))
    if "profile" in res and "frames" in res["profile"]:
        print(profile.describe(res["profile"]["frames"]))
    print(f"\nresults: {path} (and {path.with_name('latest.json')})")


if __name__ == "__main__":
    cli()
