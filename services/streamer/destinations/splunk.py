"""Splunk HTTP Event Collector: ``POST {url}/services/collector/event``.

The body is HEC events concatenated (no separator needed, one per line
here), gzipped::

    {"time": 1764209525.114, "host": "chainlog", "source": "chainlog",
     "sourcetype": "chainlog:audit", "index": "audit", "event": {...}}

``time`` is ``received_at`` (ours, and monotone with the chain), not the
producer's ``occurred_at``, which stays in the event. HEC answers
``{"text": "Success", "code": 0}``; on errors the ``code`` says more than
the status: 9 (server busy) and 8 (internal error) are retried whatever
the status, and code 6 names the first invalid event, the ones before it
being indexed.

Indexer acknowledgement is not used: a token with it enabled answers
code 10 (no data channel), reported as a configuration error.

``format: ocsf`` sends each event's OCSF record as ``event``
(``base.shaper``); ``time`` stays ``received_at``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from libs.common.timeutil import parse_rfc3339
from services.streamer.destinations.base import (
    ATTEMPT_TIMEOUT_S,
    Event,
    Result,
    compress,
    cut,
    redact,
    request,
    send_parts,
    shaper,
    shorten,
    split_by,
    without_secrets,
)
from services.streamer.destinations.checks import FORMAT_KEYS, Checker, Violations

PATH = "/services/collector/event"
HOST = "chainlog"
_INDEX_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}\Z")
_RETRY_CODES = frozenset({8, 9})
_HINTS = {
    10: "the token has indexer acknowledgement enabled; disable it for Chainlog's token",
}


class SplunkHec:
    type = "splunk_hec"
    SECRET_FIELDS = ("token",)
    MAX_BATCH = 500
    #: Splunk Cloud's advice for one HEC request (Enterprise allows far more).
    MAX_BYTES: int | None = 1_000_000

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        c = Checker(
            config,
            ("url", "token", "index", "source", "sourcetype", "verify_tls", *FORMAT_KEYS),
        )
        url = c.url("url", base=True)
        if url is not None and url.endswith(PATH):
            # people paste the whole endpoint from Splunk's docs
            c.out["url"] = url.removesuffix(PATH)
        c.secret("token")
        c.string(
            "index",
            max_len=80,
            pattern=_INDEX_RE,
            hint="must be a Splunk index name: lower-case letters, digits, '_' and '-'",
        )
        c.string("source", default="chainlog")
        c.string("sourcetype", default="chainlog:audit")
        c.boolean("verify_tls", default=True)
        c.record_format()
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        return f"{config['url']}{PATH}"

    def split(
        self, events: Sequence[Event], config: Mapping[str, Any] | None = None
    ) -> list[list[Event]]:
        cfg = config or {}
        return split_by(
            events,
            max_events=self.MAX_BATCH,
            max_bytes=self.MAX_BYTES,
            size=lambda e: len(self.entry(cfg, e)) + 1,
        )

    def entry(self, config: Mapping[str, Any], event: Event) -> bytes:
        """One HEC event as JSON."""
        hec: dict[str, Any] = {
            "time": round(parse_rfc3339(event["received_at"]).timestamp(), 6),
            "host": HOST,
            "source": config.get("source", "chainlog"),
            "sourcetype": config.get("sourcetype", "chainlog:audit"),
        }
        if config.get("index"):
            hec["index"] = config["index"]
        hec["event"] = shaper(config)(event)
        return orjson.dumps(hec)

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
        entries = [self.entry(config, e) for e in events]
        sizes = [len(x) + 1 for x in entries]

        async def send_one(part: range) -> Result:
            body = b"\n".join(entries[part.start : part.stop])
            return await self._post(client, config, body, len(part), timeout)

        ranges = cut(sizes, max_events=self.MAX_BATCH, max_bytes=self.MAX_BYTES)
        return await send_parts(ranges, send_one)

    async def _post(
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
                "authorization": f"Splunk {config['token']}",
                "content-type": "application/json",
                "content-encoding": "gzip",
            },
            timeout=timeout,
        )
        result = answer.result(0, total=count)
        if result.outcome == "delivered" or answer.status is None:
            return result
        code, text, invalid_at = _hec_error(answer.body)
        if code is None:
            return result
        outcome = "retry" if code in _RETRY_CODES else result.outcome
        delivered = invalid_at if invalid_at is not None and invalid_at <= count else 0
        text = _HINTS.get(code) or redact(text, config, self.SECRET_FIELDS)
        message = f"HEC code {code}: {text}"
        return Result(outcome, answer.status, shorten(message), delivered)


def _hec_error(body: bytes) -> tuple[int | None, str, int | None]:
    """HEC's ``code``, ``text`` and ``invalid-event-number`` from an error answer."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, "", None
    if not isinstance(doc, dict) or not isinstance(doc.get("code"), int):
        return None, "", None
    text = doc.get("text") if isinstance(doc.get("text"), str) else ""
    invalid = doc.get("invalid-event-number")
    return doc["code"], str(text), invalid if isinstance(invalid, int) and invalid >= 0 else None
