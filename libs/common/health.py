"""Liveness and readiness of a service, as its dependencies report them.

Each service marks its dependencies as it uses them: ``kafka`` once its
clients have started, ``postgres`` after each database call that worked or
failed for want of the database. ``/healthz`` answers 200 while the process
serves HTTP at all; ``/readyz`` answers 200 only when every dependency the
service declared is marked up, else 503 naming what is not.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Health:
    #: The dependencies this service needs, e.g. ("kafka", "postgres").
    needs: tuple[str, ...]
    _state: dict[str, tuple[bool, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self, dependency: str, ok: bool, reason: str = "") -> None:
        with self._lock:
            self._state[dependency] = (ok, reason)

    def up(self, dependency: str) -> None:
        self.mark(dependency, True)

    def down(self, dependency: str, reason: str) -> None:
        self.mark(dependency, False, reason)

    def ready(self) -> tuple[bool, dict[str, str]]:
        """(ready?, dependency -> "up" or why not)."""
        with self._lock:
            report = {}
            for need in self.needs:
                ok, reason = self._state.get(need, (False, "not connected yet"))
                report[need] = "up" if ok else reason or "down"
        return all(v == "up" for v in report.values()), report
