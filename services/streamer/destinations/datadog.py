"""Datadog Logs: ``POST https://http-intake.logs.{site}/api/v2/logs``, a JSON array, gzipped.

One log per event::

    {"ddsource": "chainlog", "ddtags": "env:prod,team:sec", "hostname": "chainlog",
     "service": "chainlog", "message": "{\"id\":...,\"seq\":42,\"hash\":...}"}

``message`` is the event as a compact JSON string, chosen over spreading
the event into attributes: Datadog parses a JSON message into attributes
on intake (``@action``, ``@seq``, ``@metadata.*`` are searchable), and the
string keeps the exact values, so a log can still be checked against the
chain (``hash``, ``prev_hash``). No ``timestamp`` attribute is set: Datadog
drops logs dated more than 18 hours back, which would silently lose a
stream catching up on a backlog; the event's own times stay in the message.

Limits per request: 1,000 logs and 5 MB uncompressed. ``split`` cuts to
them; ``send`` given more sends several requests in order and, if one
fails, reports the ones before it as delivered (Datadog cannot
deduplicate, so the caller resends only the rest).

``format: ocsf`` makes ``message`` the event's OCSF record
(``base.shaper``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from services.streamer.destinations.base import (
    ATTEMPT_TIMEOUT_S,
    Event,
    Result,
    compress,
    cut,
    explained,
    redact,
    request,
    send_parts,
    shaper,
    split_by,
    without_secrets,
)
from services.streamer.destinations.checks import FORMAT_KEYS, Checker, Violations

SOURCE = "chainlog"
HOSTNAME = "chainlog"
MAX_TAGS = 100
_SITE_RE = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*\.[a-z]{2,}\Z")
_TAG_RE = re.compile(r"^[^\W\d][\w./-]*:[\w./:-]+\Z")
_SERVICE_RE = re.compile(r"^[\w./:-]{1,100}\Z")


class Datadog:
    type = "datadog"
    SECRET_FIELDS = ("api_key",)
    MAX_BATCH = 1000
    #: 5 MB is Datadog's limit; kept under it by the separators' margin.
    MAX_BYTES: int | None = 5_000_000

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        c = Checker(config, ("api_key", "site", "url", "service", "tags", *FORMAT_KEYS))
        c.secret("api_key")
        c.string(
            "site",
            default="datadoghq.com",
            max_len=100,
            pattern=_SITE_RE,
            hint="must be a Datadog site such as datadoghq.com or datadoghq.eu",
        )
        c.url("url", required=False)
        c.string(
            "service",
            default="chainlog",
            pattern=_SERVICE_RE,
            hint="must be a Datadog service name",
        )
        tags = c.raw.get("tags", [])
        if not isinstance(tags, list) or len(tags) > MAX_TAGS:
            c.fail("tags", f"tags must be a list of at most {MAX_TAGS} 'key:value' strings")
        else:
            for i, tag in enumerate(tags):
                if not isinstance(tag, str) or len(tag) > 200 or _TAG_RE.match(tag) is None:
                    c.fail(f"tags[{i}]", "must be a 'key:value' tag without commas or spaces")
            c.out["tags"] = list(tags)
        c.record_format()
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        url = config.get("url")
        if url:
            return str(url)
        return f"https://http-intake.logs.{config.get('site', 'datadoghq.com')}/api/v2/logs"

    def entry(self, config: Mapping[str, Any], event: Event) -> bytes:
        """One log as JSON."""
        log: dict[str, Any] = {
            "ddsource": SOURCE,
            "hostname": HOSTNAME,
            "service": config.get("service", "chainlog"),
            "message": orjson.dumps(shaper(config)(event)).decode(),
        }
        if config.get("tags"):
            log["ddtags"] = ",".join(config["tags"])
        return orjson.dumps(log)

    def split(
        self, events: Sequence[Event], config: Mapping[str, Any] | None = None
    ) -> list[list[Event]]:
        # sized with the config's tags when known; otherwise with room for them
        slack = 0 if config is not None else 4096
        cfg = config or {}
        return split_by(
            events,
            max_events=self.MAX_BATCH,
            max_bytes=self.MAX_BYTES,
            size=lambda e: len(self.entry(cfg, e)) + 1 + slack,
            overhead=2,
        )

    async def send(
        self,
        client: httpx.AsyncClient,
        config: Mapping[str, Any],
        events: Sequence[Event],
        *,
        batch_id: str,
        timeout: float = ATTEMPT_TIMEOUT_S,  # noqa: ASYNC109
    ) -> Result:
        entries = [self.entry(config, e) for e in events]

        async def send_one(part: range) -> Result:
            body = b"[" + b",".join(entries[part.start : part.stop]) + b"]"
            return await self._post(client, config, body, len(part), timeout)

        sizes = [len(x) + 1 for x in entries]
        ranges = cut(sizes, max_events=self.MAX_BATCH, max_bytes=self.MAX_BYTES, overhead=2)
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
                "dd-api-key": str(config["api_key"]),
                "content-type": "application/json",
                "content-encoding": "gzip",
            },
            timeout=timeout,
        )
        detail = redact(_error_title(answer.body), config, self.SECRET_FIELDS)
        return explained(answer.result(0, total=count), detail)


def _error_title(body: bytes) -> str:
    """The first error of a Datadog error answer: ``{"errors": [{"title", "detail"}]}`` or strings."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list) or not errors:
        return ""
    first = errors[0]
    if isinstance(first, str):
        return first
    if isinstance(first, dict):
        return str(first.get("detail") or first.get("title") or "")
    return ""
