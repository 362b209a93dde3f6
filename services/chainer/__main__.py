"""``python -m services.chainer``: settings, build, run until SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import uvloop
from prometheus_client import CollectorRegistry

from libs.common import metrics
from libs.common.logs import Logger
from libs.common.settings import Settings
from services.chainer.pipeline import Chainer


async def main() -> None:
    settings = Settings.from_env()
    registry = CollectorRegistry()
    chainer = Chainer(settings, Logger("chainer"), metrics.ChainerMetrics(registry))
    metrics.serve(
        registry, settings.metrics_port or 9101, host=settings.metrics_host, health=chainer.health
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, chainer.stop)
    await chainer.run()


if __name__ == "__main__":
    uvloop.run(main())
