"""``python -m services.alerter``: the evaluator and the deliverer, until SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import uvloop
from prometheus_client import CollectorRegistry

from libs.common import metrics, secretbox
from libs.common.db import connect_pool
from libs.common.logs import Logger
from libs.common.settings import Settings
from services.alerter.delivery import Deliverer
from services.alerter.pipeline import Alerter


async def main() -> None:
    settings = Settings.from_env()
    registry = CollectorRegistry()
    alerter_metrics = metrics.AlerterMetrics(registry)
    log = Logger("alerter")
    pool = await connect_pool(settings.database_url, max_size=8)
    deliverer = Deliverer(settings, pool, log, alerter_metrics, secretbox.for_settings(settings))
    alerter = Alerter(settings, log, alerter_metrics, on_alerts=deliverer.notify)
    metrics.serve(
        registry, settings.metrics_port or 9104, host=settings.metrics_host, health=alerter.health
    )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        alerter.stop()
        deliverer.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(alerter.run(pool), deliverer.run())
    finally:
        await pool.close()


if __name__ == "__main__":
    uvloop.run(main())
