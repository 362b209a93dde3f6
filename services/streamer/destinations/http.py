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

``format: ocsf`` puts each event's OCSF record in ``events``
(``base.shaper``). A batch whose records pass the 1 MB limit is sent as
several requests; each then has the ``webhook-id`` ``{batch id}/{first
seq}-{last seq}`` (the same when the same batch is sent again).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from services.alerter import webhook
from services.streamer.destinations.base import (
    ATTEMPT_TIMEOUT_S,
    Event,
    Result,
    compress,
    cut,
    request,
    send_parts,
    shaper,
    split_by,
    without_secrets,
    workspace_of,
)
from services.streamer.destinations.checks import FORMAT_KEYS, Checker, Violations

EVENT_TYPE = "events.batch"
#: The envelope around the events: ``{"type": ..., "workspace_id": ..., "events": []}``.
_ENVELOPE = 200


class HttpBatch:
    type = "http"
    SECRET_FIELDS = ("secret",)
    MAX_BATCH = 500
    #: Many receivers sit behind a proxy with a 1 MB body limit (nginx's default).
    MAX_BYTES: int | None = 1_000_000

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        c = Checker(config, ("url", "secret", "headers", "gzip", *FORMAT_KEYS))
        c.url("url")
        secret = c.secret("secret", required=False)
        if secret is not None:
            try:
                webhook.sign(secret, "check", 0, b"")
            except ValueError:
                c.out.pop("secret", None)
                c.fail("secret", "secret must be 'whsec_' followed by base64")
        c.headers("headers")
        c.boolean("gzip", default=False)
        c.record_format()
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        return str(config["url"])

    def split(
        self, events: Sequence[Event], config: Mapping[str, Any] | None = None
    ) -> list[list[Event]]:
        shape = shaper(config or {})
        return split_by(
            events,
            max_events=self.MAX_BATCH,
            max_bytes=self.MAX_BYTES,
            size=lambda e: len(orjson.dumps(shape(e))) + 1,
            overhead=_ENVELOPE,
        )

    @staticmethod
    def _envelope(workspace_id: str, entries: Sequence[bytes]) -> bytes:
        head = orjson.dumps({"type": EVENT_TYPE, "workspace_id": workspace_id})[:-1]
        return head + b',"events":[' + b",".join(entries) + b"]}"

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
        workspace_id = workspace_of(events)
        shape = shaper(config)
        entries = [orjson.dumps(shape(e)) for e in events]
        sizes = [len(x) + 1 for x in entries]
        ranges = cut(sizes, max_events=self.MAX_BATCH, max_bytes=self.MAX_BYTES, overhead=_ENVELOPE)

        async def send_one(part: range) -> Result:
            body = self._envelope(workspace_id, entries[part.start : part.stop])
            message_id = batch_id
            if len(ranges) > 1:
                first, last = events[part.start]["seq"], events[part.stop - 1]["seq"]
                message_id = f"{batch_id}/{first}-{last}"
            signed = webhook.headers(str(config["secret"]), message_id, int(time.time()), body)
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
            return answer.result(0, total=len(part))

        return await send_parts(ranges, send_one)
