"""``python -m services.streamer``: forward stored events to log streams until SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import uvloop
from prometheus_client import CollectorRegistry

from libs.common import metrics, secretbox
from libs.common.db import connect_pool
from libs.common.logs import Logger
from libs.common.settings import Settings
from services.streamer.pipeline import Streamer


async def main() -> None:
    settings = Settings.from_env()
    registry = CollectorRegistry()
    pool = await connect_pool(settings.database_url, max_size=10)
    streamer = Streamer(
        settings,
        Logger("streamer"),
        metrics.StreamerMetrics(registry),
        secretbox.for_settings(settings),
    )
    metrics.serve(
        registry, settings.metrics_port or 9105, host=settings.metrics_host, health=streamer.health
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, streamer.stop)
    try:
        await streamer.run(pool)
    finally:
        await pool.close()


if __name__ == "__main__":
    uvloop.run(main())
