"""Request metrics as an ASGI wrapper: count and time every request."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.metrics import IngestMetrics

_ROUTES = ("/api/v1/events/batch", "/api/v1/events", "/api/v1/verify", "/healthz", "/metrics")


def route_label(path: str) -> str:
    """A bounded label: the route template, never the raw path."""
    if path in _ROUTES:
        return path
    if path.startswith("/api/v1/events/"):
        return "/api/v1/events/{event_id}"
    return "other"


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: IngestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_label(scope["path"])
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
