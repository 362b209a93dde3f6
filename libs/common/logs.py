"""Structured logs: one JSON object a line, one event name per behaviour.

``log.info("chain.extended", workspace_id=..., seq=...)``. Never pass a
secret as a field; API keys are logged by prefix only.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import orjson


class Logger:
    def __init__(self, service: str, stream: TextIO | None = None) -> None:
        self.service = service
        self.stream = stream or sys.stderr

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        record = {"ts": time.time(), "level": level, "service": self.service, "event": event}
        record.update(fields)
        line = orjson.dumps(record, default=str).decode()
        self.stream.write(line + "\n")
        self.stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)
