"""The asyncio client: the same calls as :class:`~chainlog_sdk.Client`, awaited."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal

import httpx

from chainlog_sdk import _api, events
from chainlog_sdk._api import Call
from chainlog_sdk.async_batcher import AsyncBatcher
from chainlog_sdk.batching import BatchOptions, Ledger, Pending, Stats
from chainlog_sdk.download import SHA256_HEADER, Destination, Download, Sink
from chainlog_sdk.errors import ChainlogError, ClientClosed, ValidationError, error_from_response
from chainlog_sdk.events import MAX_BATCH_EVENTS, MAX_BODY_BYTES, BatchResult, ItemResult
from chainlog_sdk.retry import Backoff, next_delay

log = logging.getLogger("chainlog_sdk")


class AsyncClient:
    """Sends events to a Chainlog API and reads them back, from one event loop.

    As :class:`~chainlog_sdk.Client`, except: with ``batching``, the worker is
    an asyncio task started by the first :meth:`track`; there is no exit hook
    (no loop runs at interpreter exit), so close the client — ``async with``,
    or ``await client.close()`` in your application's shutdown (a FastAPI
    lifespan) — or queued events are lost.
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
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        url, key = _api.settings(api_url, api_key, env)
        if max_batch_events < 1 or max_body_bytes < 1:
            raise ValueError("max_batch_events and max_body_bytes must be positive")
        self._http = httpx.AsyncClient(
            base_url=url, headers=_api.headers(key), timeout=timeout, transport=transport
        )
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff = backoff or Backoff()
        self._max_batch_events = max_batch_events
        self._max_body_bytes = max_body_bytes
        self._sleep = sleep or asyncio.sleep
        self._clock = clock
        self._closed = False
        self._ledger = Ledger(batching.on_error if batching else None)
        self._batch_retries = batching.max_retries if batching else None
        self._batcher: AsyncBatcher | None = None
        if batching is not None:
            self._batcher = AsyncBatcher(batching, self._deliver, self._ledger, max_body_bytes)

    # -- sending ------------------------------------------------------------

    async def track(self, action: str, actor_id: str, **fields: Any) -> str | None:
        """As :meth:`Client.track <chainlog_sdk.Client.track>`; with ``on_full="block"``
        a full queue makes it wait."""
        event = events.prepare({"action": action, "actor_id": actor_id, **fields})
        body = events.encode(event)
        key = str(event["idempotency_key"])
        if self._batcher is not None:
            queued = await self._batcher.put(Pending(key, body, time.monotonic()))
            return key if queued else None
        try:
            answer = await self._json(Call("POST", "/api/v1/events", body=body))
        except ValidationError:
            self._ledger.count(rejected=1)
            raise
        duplicate = isinstance(answer, dict) and answer.get("status") == "duplicate"
        self._ledger.count(**{"duplicates" if duplicate else "sent": 1})
        return _api.event_id(answer)

    async def track_batch(self, batch: Iterable[Mapping[str, Any]]) -> BatchResult:
        """As :meth:`Client.track_batch <chainlog_sdk.Client.track_batch>`."""
        prepared = [events.prepare(e) for e in batch]
        bodies = [events.encode(e) for e in prepared]
        keys = [str(e["idempotency_key"]) for e in prepared]
        items: list[ItemResult] = []
        for part in events.chunks(bodies, self._max_batch_events, self._max_body_bytes):
            found = await self._post_batch(
                bodies[part.start : part.stop], keys[part.start : part.stop], part.start
            )
            self._ledger.count_results(found)
            items.extend(found)
        return BatchResult(items)

    async def flush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (as Client)
        """Wait until every event queued so far has settled; False if ``timeout`` ran out."""
        return True if self._batcher is None else await self._batcher.flush(timeout)

    @property
    def stats(self) -> Stats:
        return self._ledger.snapshot(self._batcher.pending if self._batcher else 0)

    async def close(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (as Client)
        """Send what is queued, stop the worker task, close connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._batcher is not None:
            wait = self._batcher.options.shutdown_timeout if timeout is None else timeout
            if not await self._batcher.close(wait):
                log.warning("chainlog_sdk.shutdown_incomplete", extra={"stats": self.stats})
        await self._http.aclose()

    aclose = close

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- reading --------------------------------------------------------------

    def events(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every matching event, newest first, across all pages: ``async for``."""
        return self._pages("/api/v1/events", filters)

    async def get_event(self, event_id: str) -> dict[str, Any]:
        return dict(await self._json(Call("GET", f"/api/v1/events/{_api.segment(event_id)}")))

    async def verify(
        self, from_seq: int | None = None, to_seq: int | None = None
    ) -> dict[str, Any]:
        return dict(await self._json(_api.verify_call(from_seq, to_seq)))

    # -- exports ----------------------------------------------------------------

    async def create_export(
        self, format: Literal["csv", "jsonl"] = "csv", **filters: Any
    ) -> dict[str, Any]:
        return dict(await self._json(_api.export_call(format, filters)))

    async def get_export(self, export_id: str) -> dict[str, Any]:
        return dict(await self._json(Call("GET", f"/api/v1/exports/{_api.segment(export_id)}")))

    async def wait_export(
        self,
        export_id: str,
        timeout: float = 600.0,  # noqa: ASYNC109 (as Client)
        poll: float = 2.0,
    ) -> dict[str, Any]:
        """Poll until the export completes; raises ExportFailed, or TimeoutError."""
        deadline = self._clock() + timeout
        while True:
            doc = await self.get_export(export_id)
            if _api.export_done(doc):
                return doc
            left = deadline - self._clock()
            if left <= 0:
                raise TimeoutError(
                    f"export {export_id} is still {doc.get('status')} after {timeout} s"
                )
            await self._sleep(min(poll, left))

    async def download_export(self, export_id: str, destination: Destination) -> Download:
        """As :meth:`Client.download_export <chainlog_sdk.Client.download_export>`
        (the file is written with blocking writes, chunk by chunk)."""
        call = Call("GET", f"/api/v1/exports/{_api.segment(export_id)}/download")
        sink = Sink(destination)
        try:
            response = await self._send(call, stream=True)
            try:
                async for chunk in response.aiter_bytes():
                    sink.write(chunk)
            finally:
                await response.aclose()
            expected = response.headers.get(SHA256_HEADER)
            if not expected:
                expected = (await self.get_export(export_id)).get("sha256")
        except httpx.TransportError as exc:
            sink.abort()
            raise _api.network_error(exc) from exc
        except BaseException:
            sink.abort()
            raise
        return sink.finish(expected)

    # -- alerts -------------------------------------------------------------------

    def alerts(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        return self._pages("/api/v1/alerts", filters)

    async def alert_rules(self) -> list[dict[str, Any]]:
        return _api.data(await self._json(Call("GET", "/api/v1/alert-rules")))

    async def create_alert_rule(
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
        return dict(await self._json(call))

    # -- plumbing -------------------------------------------------------------------

    async def _pages(self, path: str, filters: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        call: Call | None = _api.page(path, filters)
        while call is not None:
            body = await self._json(call)
            for item in _api.data(body):
                yield item
            call = _api.next_page(call, body)

    async def _json(self, call: Call) -> Any:
        return (await self._send(call)).json()

    async def _send(
        self, call: Call, *, background: bool = False, stream: bool = False
    ) -> httpx.Response:
        """Send with retries (see :mod:`chainlog_sdk.retry`); an answer >= 400 is raised.

        ``background``: the worker's call, retried per ``BatchOptions.max_retries``
        (``close()`` cancels it when its time runs out).
        """
        if self._closed and not background:
            raise ClientClosed()
        retries = self._batch_retries if background else self._max_retries
        headers = {"content-type": "application/json"} if call.body is not None else None
        attempt = 0
        while True:
            try:
                request = self._http.build_request(
                    call.method, call.path, params=call.params, content=call.body, headers=headers
                )
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                error: ChainlogError = _api.network_error(exc)
            else:
                if response.status_code < 400:
                    return response
                content = await response.aread()
                await response.aclose()
                error = error_from_response(response.status_code, response.headers, content)
            delay = next_delay(
                self._backoff, attempt, error, idempotent=call.idempotent, max_retries=retries
            )
            if delay is None:
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
            await self._sleep(delay)
            attempt += 1

    async def _post_batch(
        self, bodies: list[bytes], keys: list[str], offset: int, *, background: bool = False
    ) -> list[ItemResult]:
        try:
            response = await self._send(_api.batch_call(bodies), background=background)
        except ValidationError as error:
            return _api.batch_results(error, keys, offset)
        return _api.batch_results(response.json(), keys, offset)

    async def _deliver(self, batch: list[Pending]) -> None:
        """The worker's send: one request, retried per BatchOptions; settles every event."""
        try:
            items = await self._post_batch(
                [p.body for p in batch], [p.key for p in batch], 0, background=True
            )
        except ChainlogError as error:
            self._ledger.give_up(error, batch)
        else:
            self._ledger.settle(items, batch)
