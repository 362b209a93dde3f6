"""An in-memory stand-in for Chainlog's event endpoints, behind ``httpx.MockTransport``.

It answers as the gateway does (``services/ingest/app.py``): one event or a
batch, ``queued`` or ``duplicate`` by ``idempotency_key``, a per-item
``rejected`` for an event whose action is ``"bad"``, and 422 when no event of
a batch is valid. ``script`` answers (or raises) first, in order.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

API = "http://chainlog.test"
KEY = "ck_test_key"
Answer = httpx.Response | Exception


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def error(status: int, code: str, message: str = "no", **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", None)
    return answer(status, {"error": code, "message": message, **extra}, headers)


class FakeApi:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[httpx.Request] = []
        self.script: deque[Answer] = deque()
        self.keys: dict[str, str] = {}
        #: Set, the handler waits (in the caller's thread) until ``gate`` opens.
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.routes: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = {}

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            scripted = self.script.popleft() if self.script else None
        self.entered.set()
        if self.gate is not None and not self.gate.wait(5):
            raise AssertionError("the test never opened the gate")
        if isinstance(scripted, Exception):
            raise scripted
        if scripted is not None:
            return scripted
        route = self.routes.get((request.method, request.url.path))
        if route is not None:
            return route(request)
        if (request.method, request.url.path) == ("POST", "/api/v1/events"):
            return self._one(json.loads(request.content))
        if (request.method, request.url.path) == ("POST", "/api/v1/events/batch"):
            return self._batch(json.loads(request.content)["events"])
        return error(404, "not_found", f"no route {request.method} {request.url.path}")

    def _item(self, event: dict[str, Any], at: str) -> dict[str, Any]:
        if event.get("action") == "bad":
            return {
                "status": "rejected",
                "error": "validation_failed",
                "violations": [{"field": at + "action", "message": "action must be dotted words"}],
            }
        with self.lock:
            key = event["idempotency_key"]
            if key in self.keys:
                return {"id": self.keys[key], "status": "duplicate"}
            self.keys[key] = str(uuid.uuid4())
            return {"id": self.keys[key], "status": "queued"}

    def _one(self, event: dict[str, Any]) -> httpx.Response:
        item = self._item(event, "")
        if item["status"] == "rejected":
            return error(422, "validation_failed", violations=item["violations"])
        return answer(202, item)

    def _batch(self, batch: list[dict[str, Any]]) -> httpx.Response:
        results = [{"index": i, **self._item(e, f"events[{i}].")} for i, e in enumerate(batch)]
        rejected = [r for r in results if r["status"] == "rejected"]
        if len(rejected) == len(results):
            violations = [v for r in rejected for v in r["violations"]]
            return error(
                422, "validation_failed", "no event in the batch is valid", violations=violations
            )
        accepted = sum(1 for r in results if r["status"] == "queued")
        return answer(202, {"accepted": accepted, "rejected": len(rejected), "results": results})

    # -- what was sent --------------------------------------------------------

    def bodies(self, path: str) -> list[Any]:
        with self.lock:
            return [json.loads(r.content) for r in self.requests if r.url.path == path]

    def batches(self) -> list[list[dict[str, Any]]]:
        return [b["events"] for b in self.bodies("/api/v1/events/batch")]

    def recorded(self) -> set[str]:
        """The keys of every event the fake recorded."""
        with self.lock:
            return set(self.keys)


class Sleeps:
    """A sleep that only records: retries and polls take no time."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class AsyncSleeps(Sleeps):
    async def asleep(self, seconds: float) -> None:
        self.calls.append(seconds)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for another thread's progress, with a deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        time.sleep(0.002)
