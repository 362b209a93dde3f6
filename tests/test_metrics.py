"""Every service exposes Prometheus metrics that move with the traffic."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Workspace, event
from tests.stack import METRICS_PORTS, Service, wait_until

pytestmark = pytest.mark.integration


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(url)).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_what_flows(
    api: httpx.AsyncClient, workspace: Workspace, services: dict[str, Service]
) -> None:
    chainer_url = f"http://127.0.0.1:{METRICS_PORTS['chainer']}/metrics"
    exporter_url = f"http://127.0.0.1:{METRICS_PORTS['exporter']}/metrics"
    before_chained = (await scrape(chainer_url)).get(("chainlog_chainer_events_total", ()), 0.0)
    before_rows = (await scrape(exporter_url)).get(("chainlog_exporter_rows_total", ()), 0.0)
    batch = [event(i, action="metrics.probe") for i in range(7)] + [{"actor_id": "no-action"}]
    r = await api.post("/api/v1/events/batch", json={"events": batch}, headers=workspace.headers)
    assert r.status_code == 202

    ingest = await scrape(str(api.base_url) + "/metrics")
    assert ingest[("chainlog_ingest_events_total", (("outcome", "queued"),))] >= 7
    assert ingest[("chainlog_ingest_events_total", (("outcome", "rejected"),))] >= 1
    assert (
        ingest[
            (
                "chainlog_ingest_requests_total",
                (("route", "/api/v1/events/batch"), ("status", "202")),
            )
        ]
        >= 1
    )

    async def chained() -> bool:
        now = await scrape(chainer_url)
        return now.get(("chainlog_chainer_events_total", ()), 0.0) >= before_chained + 7

    async def written() -> bool:
        now = await scrape(exporter_url)
        return now.get(("chainlog_exporter_rows_total", ()), 0.0) >= before_rows + 7

    await wait_until(chained, what="the chainer's counter to move by 7")
    await wait_until(written, what="the exporter's counter to move by 7")
    committed = await scrape(chainer_url)
    assert committed[("chainlog_chainer_transactions_total", (("outcome", "committed"),))] >= 1


async def test_every_service_says_whether_it_is_alive_and_ready(
    api: httpx.AsyncClient, services: dict[str, Service]
) -> None:
    """/healthz and /readyz on each consumer's metrics port and on the gateway."""
    urls = {name: f"http://127.0.0.1:{port}" for name, port in METRICS_PORTS.items()}
    urls["ingest"] = str(api.base_url).rstrip("/")
    async with httpx.AsyncClient(timeout=10) as client:
        for name, url in urls.items():
            assert (await client.get(f"{url}/healthz")).status_code == 200, name

            async def ready(url: str = url) -> dict[str, str] | None:
                r = await client.get(f"{url}/readyz")
                return dict(r.json()) if r.status_code == 200 else None

            report = await wait_until(ready, what=f"{name} to be ready")
            assert report["status"] == "ok"
            assert all(v == "up" for k, v in report.items() if k != "status"), (name, report)
