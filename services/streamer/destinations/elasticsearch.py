"""Elasticsearch (and OpenSearch): ``POST {url}/_bulk``, NDJSON, gzipped.

Two lines per event, ``create`` with the event id as ``_id``::

    {"create": {"_index": "chainlog-audit", "_id": "0193..."}}
    {"id": "0193...", "seq": 42, ..., "@timestamp": "2026-11-27T02:12:05.114000Z"}

``@timestamp`` (= ``received_at``) is added to each document so the index
can be a data stream and Kibana has a time field; every other field is the
event as served.

``create`` makes delivery effectively once: an id already stored answers
409 for that item, counted as delivered. So a batch that came back
``retry`` (an item rejected with 429, a 5xx, a timeout) can be sent again
whole, or from ``delivered`` on, without duplicating a document.

``_bulk`` answers 200 even when items fail: the top-level ``errors`` flag
and each ``items[i].create.status`` are read. Any item that failed for
another reason (a 400 mapping error) makes the batch ``failed``, with that
item's reason: sending it again cannot help.

``format: ocsf`` indexes each event's OCSF record (``base.shaper``),
still with the event id as ``_id`` and ``@timestamp`` = ``received_at``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from services.streamer.destinations.base import (
    ATTEMPT_TIMEOUT_S,
    Answer,
    Event,
    Result,
    compress,
    cut,
    explained,
    redact,
    request,
    send_parts,
    shaper,
    shorten,
    split_by,
    without_secrets,
)
from services.streamer.destinations.checks import FORMAT_KEYS, Checker, Violations

# Lower case, none of \ / * ? " < > | space , # :, not starting with - _ + or '.'
_INDEX_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,254}\Z")
_STORED = frozenset({200, 201, 409})


class Elasticsearch:
    type = "elasticsearch"
    SECRET_FIELDS = ("password", "api_key")
    MAX_BATCH = 500
    #: Elastic's advice for a bulk request is a few MB to tens of MB.
    MAX_BYTES: int | None = 10_000_000

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        c = Checker(
            config,
            ("url", "index", "username", "password", "api_key", "verify_tls", *FORMAT_KEYS),
        )
        c.url("url", base=True)
        c.string(
            "index",
            default="chainlog-audit",
            max_len=255,
            pattern=_INDEX_RE,
            hint='must be an index name: lower case, no spaces or \\/*?"<>|,#:',
        )
        username = c.string("username", max_len=1024)
        if username is not None and ":" in username:
            c.fail("username", "username must not contain ':'")
        c.secret("password", required=False)
        c.secret("api_key", required=False)
        given = {k for k in ("username", "password", "api_key") if c.raw.get(k) is not None}
        if "username" in given and "password" not in given:
            c.fail("password", "password is required with username")
        if "password" in given and "username" not in given:
            c.fail("username", "username is required with password")
        if "api_key" in given and given & {"username", "password"}:
            c.fail("api_key", "use either api_key or username and password, not both")
        c.boolean("verify_tls", default=True)
        c.record_format()
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        return f"{config['url']}/_bulk"

    def _lines(self, config: Mapping[str, Any], event: Event) -> bytes:
        action = {"create": {"_index": config.get("index", "chainlog-audit"), "_id": event["id"]}}
        doc = {**shaper(config)(event), "@timestamp": event["received_at"]}
        return orjson.dumps(action) + b"\n" + orjson.dumps(doc) + b"\n"

    def split(
        self, events: Sequence[Event], config: Mapping[str, Any] | None = None
    ) -> list[list[Event]]:
        cfg = config or {}
        return split_by(
            events,
            max_events=self.MAX_BATCH,
            max_bytes=self.MAX_BYTES,
            size=lambda e: len(self._lines(cfg, e)),
        )

    def _auth(self, config: Mapping[str, Any]) -> dict[str, str]:
        if config.get("api_key"):
            return {"authorization": f"ApiKey {config['api_key']}"}
        if config.get("username"):
            pair = f"{config['username']}:{config.get('password', '')}".encode()
            return {"authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}

    async def send(
        self,
        client: httpx.AsyncClient,
        config: Mapping[str, Any],
        events: Sequence[Event],
        *,
        batch_id: str,
        timeout: float = ATTEMPT_TIMEOUT_S,  # noqa: ASYNC109
    ) -> Result:
        if not events:
            return Result("delivered", None, None, 0)
        entries = [self._lines(config, e) for e in events]

        async def send_one(part: range) -> Result:
            body = b"".join(entries[part.start : part.stop])
            return await self._bulk(client, config, body, len(part), timeout)

        sizes = [len(x) for x in entries]
        ranges = cut(sizes, max_events=self.MAX_BATCH, max_bytes=self.MAX_BYTES)
        return await send_parts(ranges, send_one)

    async def _bulk(
        self,
        client: httpx.AsyncClient,
        config: Mapping[str, Any],
        body: bytes,
        count: int,
        timeout: float,  # noqa: ASYNC109
    ) -> Result:
        answer = await request(
            client,
            "POST",
            self.endpoint(config),
            content=compress(body),
            headers={
                "content-type": "application/x-ndjson",
                "content-encoding": "gzip",
                "accept": "application/json",
                **self._auth(config),
            },
            timeout=timeout,
        )
        if answer.status is None or not 200 <= answer.status < 300:
            detail = redact(_top_error(answer.body), config, self.SECRET_FIELDS)
            return explained(answer.result(0, total=count), detail)
        result = _read_items(answer, count)
        if result.error is not None:
            result = Result(
                result.outcome,
                result.status,
                shorten(redact(result.error, config, self.SECRET_FIELDS)),
                result.delivered,
            )
        return result


def _read_items(answer: Answer, count: int) -> Result:
    """The batch's outcome from a 2xx ``_bulk`` answer."""
    try:
        doc = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        return Result("retry", answer.status, "unreadable _bulk answer", 0)
    if doc.get("errors") is False:
        return Result("delivered", answer.status, None, count)
    items = doc.get("items")
    if not isinstance(items, list) or len(items) != count:
        return Result("retry", answer.status, "_bulk answer without one item per event", 0)
    prefix: int | None = None
    retry_reason: str | None = None
    failed_reason: str | None = None
    for i, item in enumerate(items):
        status, reason = _item(item)
        if status in _STORED:
            continue
        if prefix is None:
            prefix = i
        # an item we cannot read is retried: sending it again is harmless
        if status is None or status == 429 or status >= 500:
            retry_reason = retry_reason or f"item {i}: {status} {reason}"
        elif failed_reason is None:
            failed_reason = f"item {i}: {status} {reason}"
    if prefix is None:
        return Result("delivered", answer.status, None, count)
    if failed_reason is not None:
        return Result("failed", answer.status, failed_reason, prefix)
    return Result("retry", answer.status, retry_reason, prefix)


def _item(item: Any) -> tuple[int | None, str]:
    """``(status, "type: reason")`` of one ``items[i]`` entry, whatever its action."""
    if not isinstance(item, dict) or len(item) != 1:
        return None, "unreadable item"
    (result,) = item.values()
    if not isinstance(result, dict):
        return None, "unreadable item"
    status = result.get("status")
    error = result.get("error")
    reason = ""
    if isinstance(error, dict):
        reason = f"{error.get('type', '')}: {error.get('reason', '')}"
    elif isinstance(error, str):
        reason = error
    return (status if isinstance(status, int) else None), reason


def _top_error(body: bytes) -> str:
    """``error.type: error.reason`` of an Elasticsearch error answer."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        return f"{error.get('type', '')}: {error.get('reason', '')}"
    return error if isinstance(error, str) else ""
