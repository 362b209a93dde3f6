"""``python -m services.exporter``: settings, build, run until SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import uvloop
from prometheus_client import CollectorRegistry

from libs.common import metrics
from libs.common.logs import Logger
from libs.common.settings import Settings
from services.exporter.pipeline import Materialiser


async def main() -> None:
    settings = Settings.from_env()
    registry = CollectorRegistry()
    materialiser = Materialiser(settings, Logger("exporter"), metrics.ExporterMetrics(registry))
    metrics.serve(
        registry,
        settings.metrics_port or 9102,
        host=settings.metrics_host,
        health=materialiser.health,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, materialiser.stop)
    await materialiser.run()


if __name__ == "__main__":
    uvloop.run(main())
