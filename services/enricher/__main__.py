"""``python -m services.enricher``: settings, build, run until SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import uvloop
from prometheus_client import CollectorRegistry

from libs.common import metrics
from libs.common.logs import Logger
from libs.common.settings import Settings
from services.enricher.geo import Locator
from services.enricher.pipeline import Enricher


async def main() -> None:
    settings = Settings.from_env()
    registry = CollectorRegistry()
    locator = Locator.open(settings.geoip_database)
    enricher = Enricher(settings, Logger("enricher"), metrics.EnricherMetrics(registry), locator)
    metrics.serve(
        registry, settings.metrics_port or 9103, host=settings.metrics_host, health=enricher.health
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, enricher.stop)
    try:
        await enricher.run()
    finally:
        locator.close()


if __name__ == "__main__":
    uvloop.run(main())
