"""OpenTelemetry: OTLP/HTTP logs to a collector or any OTLP endpoint.

``POST {endpoint}/v1/logs`` with one ``ExportLogsServiceRequest`` per
batch (``formats.otlp``): ``Content-Type: application/json`` (the default)
or ``application/x-protobuf`` (``encoding: protobuf``), gzipped unless
``gzip: false``. ``headers`` (an API key: ``Authorization``,
``x-honeycomb-team``...) are a secret: stored sealed, never returned.

The answer follows the OTLP/HTTP specification: 2xx is delivered (a
``partialSuccess`` with rejected records is the receiver's final word
and is not retried, as the specification says); 429 and 5xx are retried;
any other status is final. OTLP receivers do not de-duplicate:
every record carries ``chainlog.id`` and ``chainlog.seq`` for queries that do.
"""

from __future__ import annotations

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
    split_by,
    without_secrets,
    workspace_of,
)
from services.streamer.destinations.checks import Checker, Violations
from services.streamer.formats import otlp

PATH = "/v1/logs"
ENCODINGS = ("json", "protobuf")
_CONTENT_TYPES = {"json": "application/json", "protobuf": "application/x-protobuf"}
#: The request around the records: resource, scope and their attributes.
_ENVELOPE = 512


class Otlp:
    type = "otlp"
    SECRET_FIELDS = ("headers",)
    MAX_BATCH = 500
    #: gRPC's default message limit; collectors' HTTP receivers take at least as much.
    MAX_BYTES: int | None = 4_000_000

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        c = Checker(
            config, ("endpoint", "encoding", "headers", "gzip", "service_name", "verify_tls")
        )
        url = c.url("endpoint", base=True)
        if url is not None and url.endswith(PATH):
            # people paste the signal's whole URL
            c.out["endpoint"] = url.removesuffix(PATH)
        c.choice("encoding", ENCODINGS, default="json")
        c.headers("headers", secret=True)
        c.boolean("gzip", default=True)
        c.string("service_name", default=otlp.SERVICE_NAME, max_len=128)
        c.boolean("verify_tls", default=True)
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        return f"{config['endpoint']}{PATH}"

    def split(
        self, events: Sequence[Event], config: Mapping[str, Any] | None = None
    ) -> list[list[Event]]:
        return split_by(
            events,
            max_events=self.MAX_BATCH,
            max_bytes=self.MAX_BYTES,
            size=lambda e: len(orjson.dumps(otlp.log_record(e))) + 1,
            overhead=_ENVELOPE,
        )

    def body(self, config: Mapping[str, Any], events: Sequence[Event]) -> bytes:
        """The uncompressed request body in the config's encoding."""
        return self._encode(config, workspace_of(events), [otlp.log_record(e) for e in events])

    @staticmethod
    def _encode(
        config: Mapping[str, Any], workspace_id: str, records: Sequence[Mapping[str, Any]]
    ) -> bytes:
        doc = otlp.request(
            records,
            workspace_id=workspace_id,
            service_name=str(config.get("service_name", otlp.SERVICE_NAME)),
        )
        if config.get("encoding") == "protobuf":
            return otlp.protobuf(doc)
        return orjson.dumps(doc)

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
        records = [otlp.log_record(e) for e in events]
        zipped = bool(config.get("gzip", True))
        headers = {
            **config.get("headers", {}),
            "content-type": _CONTENT_TYPES[str(config.get("encoding", "json"))],
        }
        if zipped:
            headers["content-encoding"] = "gzip"

        async def send_one(part: range) -> Result:
            body = self._encode(config, workspace_id, records[part.start : part.stop])
            answer = await request(
                client,
                "POST",
                self.endpoint(config),
                content=compress(body) if zipped else body,
                headers=headers,
                timeout=timeout,
            )
            detail = redact(_status_message(answer.body), config, self.SECRET_FIELDS)
            return explained(answer.result(0, total=len(part)), detail)

        sizes = [len(orjson.dumps(r)) + 1 for r in records]
        ranges = cut(sizes, max_events=self.MAX_BATCH, max_bytes=self.MAX_BYTES, overhead=_ENVELOPE)
        return await send_parts(ranges, send_one)


def _status_message(body: bytes) -> str:
    """The ``message`` of an OTLP error answer (a JSON ``google.rpc.Status``)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    message = doc.get("message") if isinstance(doc, dict) else None
    return message if isinstance(message, str) else ""
