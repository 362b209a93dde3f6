"""Generic HTTP: JSON batches signed like the alert webhooks (Standard Webhooks).

``POST {url}`` with::

    {"type": "events.batch", "workspace_id": "...", "events": [{...}, ...]}

and the headers ``webhook-id`` (the batch id: the same on every retry, so
a receiver can drop a batch it already has), ``webhook-timestamp`` and
``webhook-signature`` made by ``services.alerter.webhook.headers``. Any
Standard Webhooks library verifies them; ``docs/webhooks.md`` shows how.

``gzip: true`` compresses the body (``Content-Encoding: gzip``); the
signature still covers the JSON, not the compressed bytes: receivers
decode the body as HTTP says, then verify it, and Standard Webhooks
libraries take the body as text. Off by default, since a receiver that
verifies the raw bytes it was sent would refuse every batch.

The secret (``whsec_...``) is made by the caller when absent
(``webhook.new_endpoint_secret``), shown once, stored encrypted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from services.alerter import webhook
from services.streamer.destinations.base import (
    ATTEMPT_TIMEOUT_S,
    Checker,
    Event,
    Result,
    Violations,
    compress,
    request,
    split_by,
    without_secrets,
    workspace_of,
)

EVENT_TYPE = "events.batch"
MAX_HEADERS = 20
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}\Z")
_HEADER_VALUE_RE = re.compile(r"^[\t\x20-\x7e]{0,1024}\Z")
#: Set by us, or a credential that ``public`` would show.
_RESERVED = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "user-agent",
    }
)


class HttpBatch:
    type = "http"
    SECRET_FIELDS = ("secret",)
    MAX_BATCH = 500
    #: Many receivers sit behind a proxy with a 1 MB body limit (nginx's default).
    MAX_BYTES: int | None = 1_000_000

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        c = Checker(config, ("url", "secret", "headers", "gzip"))
        c.url("url")
        secret = c.secret("secret", required=False)
        if secret is not None:
            try:
                webhook.sign(secret, "check", 0, b"")
            except ValueError:
                c.out.pop("secret", None)
                c.fail("secret", "secret must be 'whsec_' followed by base64")
        headers = c.raw.get("headers", {})
        if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
            c.fail("headers", f"headers must be an object of at most {MAX_HEADERS} headers")
        else:
            for name, value in headers.items():
                where = f"headers.{name}"
                lower = name.lower()
                if _HEADER_NAME_RE.match(name) is None:
                    c.fail(where, "must be an HTTP header name: letters, digits and -")
                elif lower in _RESERVED or lower.startswith("webhook-"):
                    c.fail(where, f"{name} is set by Chainlog or is a credential")
                elif not isinstance(value, str) or _HEADER_VALUE_RE.match(value) is None:
                    c.fail(where, "must be printable ASCII of at most 1024 characters")
            c.out["headers"] = dict(headers)
        c.boolean("gzip", default=False)
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        return str(config["url"])

    def split(self, events: Sequence[Event]) -> list[list[Event]]:
        return split_by(
            events,
            max_events=self.MAX_BATCH,
            max_bytes=self.MAX_BYTES,
            size=lambda e: len(orjson.dumps(e)) + 1,
            overhead=200,
        )

    def body(self, events: Sequence[Event]) -> bytes:
        return orjson.dumps(
            {"type": EVENT_TYPE, "workspace_id": workspace_of(events), "events": list(events)}
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
        if not events:
            return Result("delivered", None, None, 0)
        body = self.body(events)
        signed = webhook.headers(str(config["secret"]), batch_id, int(time.time()), body)
        headers = {**config.get("headers", {}), **signed}
        if config.get("gzip"):
            body = compress(body)
            headers["content-encoding"] = "gzip"
        answer = await request(
            client,
            "POST",
            self.endpoint(config),
            content=body,
            headers=headers,
            timeout=timeout,
            read_answer=False,
        )
        return answer.result(0, total=len(events))
