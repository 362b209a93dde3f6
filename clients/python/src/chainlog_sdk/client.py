"""The synchronous client."""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal

import httpx

from chainlog_sdk import _api, events
from chainlog_sdk._api import Call
from chainlog_sdk.batching import BatchOptions, Ledger, Pending, Stats
from chainlog_sdk.download import SHA256_HEADER, Destination, Download, Sink
from chainlog_sdk.errors import ChainlogError, ClientClosed, ValidationError, error_from_response
from chainlog_sdk.events import MAX_BATCH_EVENTS, MAX_BODY_BYTES, BatchResult, ItemResult
from chainlog_sdk.retry import Backoff, next_delay
from chainlog_sdk.thread_batcher import ThreadBatcher

log = logging.getLogger("chainlog_sdk")


class Client:
    """Sends events to a Chainlog API and reads them back; thread-safe.

    ``api_url`` and ``api_key`` default to ``CHAINLOG_API_URL`` and
    ``CHAINLOG_API_KEY`` (read from ``env``, by default ``os.environ``).
    With ``batching``, :meth:`track` queues events and a background thread
    sends them; :meth:`close` (or leaving the ``with`` block, or the end of
    the interpreter) sends what is left. ``max_batch_events`` and
    ``max_body_bytes`` are the gateway's limits per request
    (``CHAINLOG_MAX_BATCH_EVENTS``, ``CHAINLOG_MAX_BODY_BYTES``); keep
    ``max_batch_events`` within the plan's ``events_per_second`` too.
    ``transport``, ``sleep`` and ``clock`` are for tests.
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff: Backoff | None = None,
        batching: BatchOptions | None = None,
        max_batch_events: int = MAX_BATCH_EVENTS,
        max_body_bytes: int = MAX_BODY_BYTES,
        env: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        url, key = _api.settings(api_url, api_key, env)
        if max_batch_events < 1 or max_body_bytes < 1:
            raise ValueError("max_batch_events and max_body_bytes must be positive")
        self._http = httpx.Client(
            base_url=url, headers=_api.headers(key), timeout=timeout, transport=transport
        )
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff = backoff or Backoff()
        self._max_batch_events = max_batch_events
        self._max_body_bytes = max_body_bytes
        self._sleep = sleep
        self._clock = clock
        self._closed = False
        self._ledger = Ledger(batching.on_error if batching else None)
        self._batch_retries = batching.max_retries if batching else None
        self._batcher: ThreadBatcher | None = None
        if batching is not None:
            self._batcher = ThreadBatcher(batching, self._deliver, self._ledger, max_body_bytes)
            atexit.register(self._close_at_exit)

    # -- sending ------------------------------------------------------------

    def track(self, action: str, actor_id: str, **fields: Any) -> str | None:
        """Record that ``actor_id`` did ``action``; ``fields`` are the other event fields.

        Without batching: sends the event now and returns the id the API gave
        it (raises :class:`ValidationError` if refused). With batching: queues
        it and returns its ``idempotency_key`` (the API assigns ids on
        arrival), or None if the queue was full and the policy is ``"drop"``.
        The request context (see :mod:`chainlog_sdk.context`) fills
        ``ip_address``, ``user_agent`` and ``session_id`` unless given.
        """
        event = events.prepare({"action": action, "actor_id": actor_id, **fields})
        body = events.encode(event)
        key = str(event["idempotency_key"])
        if self._batcher is not None:
            return key if self._batcher.put(Pending(key, body, time.monotonic())) else None
        try:
            answer = self._json(Call("POST", "/api/v1/events", body=body))
        except ValidationError:
            self._ledger.count(rejected=1)
            raise
        duplicate = isinstance(answer, dict) and answer.get("status") == "duplicate"
        self._ledger.count(**{"duplicates" if duplicate else "sent": 1})
        return _api.event_id(answer)

    def track_batch(self, batch: Iterable[Mapping[str, Any]]) -> BatchResult:
        """Send events now, in requests of at most 1,000; per-event results in order.

        Each event gets an ``idempotency_key`` and the request context as in
        :meth:`track`. If a request fails after its retries, the error is
        raised and the events of earlier requests stay recorded: give the
        events your own keys to make sending the whole list again harmless.
        """
        prepared = [events.prepare(e) for e in batch]
        bodies = [events.encode(e) for e in prepared]
        keys = [str(e["idempotency_key"]) for e in prepared]
        items: list[ItemResult] = []
        for part in events.chunks(bodies, self._max_batch_events, self._max_body_bytes):
            found = self._post_batch(
                bodies[part.start : part.stop], keys[part.start : part.stop], part.start
            )
            self._ledger.count_results(found)
            items.extend(found)
        return BatchResult(items)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event queued so far has settled; False if ``timeout`` ran out."""
        return True if self._batcher is None else self._batcher.flush(timeout)

    @property
    def stats(self) -> Stats:
        return self._ledger.snapshot(self._batcher.pending if self._batcher else 0)

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued, stop the worker, close connections. Idempotent.

        ``timeout`` defaults to ``BatchOptions.shutdown_timeout``; events still
        unsent then count as failed and go to ``on_error``.
        """
        if self._closed:
            return
        self._closed = True
        if self._batcher is not None:
            atexit.unregister(self._close_at_exit)
            wait = self._batcher.options.shutdown_timeout if timeout is None else timeout
            if not self._batcher.close(wait, grace=self._timeout):
                log.warning("chainlog_sdk.shutdown_incomplete", extra={"stats": self.stats})
        self._http.close()

    def _close_at_exit(self) -> None:
        self.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading --------------------------------------------------------------

    def events(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every event matching the filters of ``GET /api/v1/events``, newest first,
        across all pages (``from_`` for ``from``)."""
        return self._pages("/api/v1/events", filters)

    def get_event(self, event_id: str) -> dict[str, Any]:
        return dict(self._json(Call("GET", f"/api/v1/events/{_api.segment(event_id)}")))

    def verify(self, from_seq: int | None = None, to_seq: int | None = None) -> dict[str, Any]:
        """Verify the chain (or a seq range): ``valid``, ``breaks``, ``head_hash``, ..."""
        return dict(self._json(_api.verify_call(from_seq, to_seq)))

    # -- exports ----------------------------------------------------------------

    def create_export(
        self, format: Literal["csv", "jsonl"] = "csv", **filters: Any
    ) -> dict[str, Any]:
        """Request an export of the events matching ``filters``; returns the pending job."""
        return dict(self._json(_api.export_call(format, filters)))

    def get_export(self, export_id: str) -> dict[str, Any]:
        return dict(self._json(Call("GET", f"/api/v1/exports/{_api.segment(export_id)}")))

    def wait_export(
        self, export_id: str, timeout: float = 600.0, poll: float = 2.0
    ) -> dict[str, Any]:
        """Poll until the export completes; raises ExportFailed, or TimeoutError."""
        deadline = self._clock() + timeout
        while True:
            doc = self.get_export(export_id)
            if _api.export_done(doc):
                return doc
            left = deadline - self._clock()
            if left <= 0:
                raise TimeoutError(
                    f"export {export_id} is still {doc.get('status')} after {timeout} s"
                )
            (self._sleep or time.sleep)(min(poll, left))

    def download_export(self, export_id: str, destination: Destination) -> Download:
        """Stream a completed export to a path or a binary file, checking its SHA-256.

        Raises Conflict (409) before it completes, Gone (410) once expired,
        ChecksumMismatch if the bytes do not match (a path is then left untouched).
        """
        call = Call("GET", f"/api/v1/exports/{_api.segment(export_id)}/download")
        sink = Sink(destination)
        try:
            response = self._send(call, stream=True)
            try:
                for chunk in response.iter_bytes():
                    sink.write(chunk)
            finally:
                response.close()
            # The header is the check; a proxy that strips it leaves the job's own hash.
            expected = response.headers.get(SHA256_HEADER) or self.get_export(export_id).get(
                "sha256"
            )
        except httpx.TransportError as exc:
            sink.abort()
            raise _api.network_error(exc) from exc
        except BaseException:
            sink.abort()
            raise
        return sink.finish(expected)

    # -- alerts -------------------------------------------------------------------

    def alerts(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every alert matching ``rule_type``, ``rule_id``, ``from_``, ``to``, newest first."""
        return self._pages("/api/v1/alerts", filters)

    def alert_rules(self) -> list[dict[str, Any]]:
        """The workspace's alert rules (admin key)."""
        return _api.data(self._json(Call("GET", "/api/v1/alert-rules")))

    def create_alert_rule(
        self,
        name: str,
        rule_type: str,
        conditions: Mapping[str, Any],
        channels: list[str],
        *,
        email_recipients: list[str] | None = None,
        webhook_endpoint_ids: list[str] | None = None,
        cooldown_seconds: int | None = None,
        enabled: bool | None = None,
    ) -> dict[str, Any]:
        """Create an alert rule (admin key); see docs/alerts.md for the conditions."""
        call = _api.alert_rule_call(
            {
                "name": name,
                "rule_type": rule_type,
                "conditions": dict(conditions),
                "channels": channels,
                "email_recipients": email_recipients,
                "webhook_endpoint_ids": webhook_endpoint_ids,
                "cooldown_seconds": cooldown_seconds,
                "enabled": enabled,
            }
        )
        return dict(self._json(call))

    # -- plumbing -------------------------------------------------------------------

    def _pages(self, path: str, filters: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        call: Call | None = _api.page(path, filters)
        while call is not None:
            body = self._json(call)
            yield from _api.data(body)
            call = _api.next_page(call, body)

    def _json(self, call: Call) -> Any:
        return self._send(call).json()

    def _send(
        self, call: Call, *, stop: threading.Event | None = None, stream: bool = False
    ) -> httpx.Response:
        """Send with retries (see :mod:`chainlog_sdk.retry`); an answer >= 400 is raised.

        ``stop`` is the worker's: its calls retry per ``BatchOptions.max_retries``,
        and give up (raise the last error) once it is set.
        """
        if self._closed and stop is None:
            raise ClientClosed()
        retries = self._max_retries if stop is None else self._batch_retries
        headers = {"content-type": "application/json"} if call.body is not None else None
        attempt = 0
        while True:
            try:
                request = self._http.build_request(
                    call.method, call.path, params=call.params, content=call.body, headers=headers
                )
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                error: ChainlogError = _api.network_error(exc)
            else:
                if response.status_code < 400:
                    return response
                content = response.read()
                response.close()
                error = error_from_response(response.status_code, response.headers, content)
            delay = next_delay(
                self._backoff, attempt, error, idempotent=call.idempotent, max_retries=retries
            )
            if delay is None or (stop is not None and stop.is_set()):
                raise error
            self._ledger.count(retries=1)
            log.info(
                "chainlog_sdk.retrying",
                extra={
                    "path": call.path,
                    "attempt": attempt + 1,
                    "delay": delay,
                    "error": str(error),
                },
            )
            if self._sleep is not None:
                self._sleep(delay)
            elif stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
            if stop is not None and stop.is_set():
                raise error
            attempt += 1

    def _post_batch(
        self,
        bodies: list[bytes],
        keys: list[str],
        offset: int,
        stop: threading.Event | None = None,
    ) -> list[ItemResult]:
        try:
            response = self._send(_api.batch_call(bodies), stop=stop)
        except ValidationError as error:
            return _api.batch_results(error, keys, offset)
        return _api.batch_results(response.json(), keys, offset)

    def _deliver(self, batch: list[Pending], stop: threading.Event) -> None:
        """The worker's send: one request, retried per BatchOptions; settles every event."""
        try:
            items = self._post_batch([p.body for p in batch], [p.key for p in batch], 0, stop)
        except ChainlogError as error:
            self._ledger.give_up(error, batch)
        else:
            self._ledger.settle(items, batch)
