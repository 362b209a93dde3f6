"""``python -m services.ingest``: the HTTP gateway under uvicorn."""

from __future__ import annotations

import uvicorn

from libs.common.settings import Settings
from services.ingest.app import create_app


def main() -> None:
    settings = Settings.from_env()
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
