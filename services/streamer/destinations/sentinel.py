"""Microsoft Sentinel: the Azure Monitor Logs Ingestion API (not the retired Data Collector API).

``POST {endpoint}/dataCollectionRules/{dcr_immutable_id}/streams/{stream_name}?api-version=2023-01-01``
with a JSON array, gzipped, and ``Authorization: Bearer <token>``. The
token is an OAuth 2.0 client-credentials token of an Entra ID app
(``tenant_id``, ``client_id``, ``client_secret``) for the scope
``https://monitor.azure.com/.default``, from
``{authority}/{tenant_id}/oauth2/v2.0/token``; it is cached until five
minutes before it expires, and a 401 drops it and retries once with a new
one (``oauth``). The app needs the *Monitoring Metrics Publisher* role on
the data collection rule.

One record per event::

    {"TimeGenerated": "<received_at>", "EventId": "<id>", ...the event...}

(``format: ocsf``: the OCSF record instead of the event, still with both
columns). The rule's stream declares the columns it keeps; ``EventId``
lets a query drop the duplicates an at-least-once delivery can make::

    Chainlog_CL | summarize arg_max(TimeGenerated, *) by EventId

The API takes at most 1 MB per call (compressed or not): a batch is sent
as several calls of at most 1 MB of JSON, in order; if one fails, the
calls before it count as delivered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from services.streamer.destinations import oauth
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
    split_by,
    without_secrets,
)
from services.streamer.destinations.checks import FORMAT_KEYS, Checker, Violations

AUTHORITY = "https://login.microsoftonline.com"
SCOPE = "https://monitor.azure.com/.default"
API_VERSION = "2023-01-01"
_GUID = r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}"
_GUID_RE = re.compile(rf"^{_GUID}\Z")
_TENANT_RE = re.compile(rf"^(?:{_GUID}|[a-z0-9][a-z0-9.-]{{0,252}}[a-z0-9])\Z")
_DCR_RE = re.compile(r"^dcr-[0-9a-f]{32}\Z")
_STREAM_RE = re.compile(r"^Custom-[A-Za-z0-9_]{1,200}\Z")


class Sentinel:
    type = "sentinel"
    SECRET_FIELDS = ("client_secret",)
    MAX_BATCH = 500
    #: The Logs Ingestion API's limit for one call.
    MAX_BYTES: int | None = 1_000_000

    def __init__(self, tokens: oauth.TokenCache | None = None) -> None:
        self.tokens = tokens or oauth.TokenCache()

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        keys = ("tenant_id", "client_id", "client_secret", "endpoint", "dcr_immutable_id")
        c = Checker(config, (*keys, "stream_name", "authority", "gzip", *FORMAT_KEYS))
        c.string(
            "tenant_id",
            required=True,
            pattern=_TENANT_RE,
            hint="must be a directory (tenant) id or its domain name",
        )
        c.string("client_id", required=True, pattern=_GUID_RE, hint="must be an application id")
        c.secret("client_secret")
        c.url("endpoint", base=True)
        c.string(
            "dcr_immutable_id",
            required=True,
            pattern=_DCR_RE,
            hint="must be a data collection rule's immutable id: dcr- and 32 hex digits",
        )
        c.string(
            "stream_name",
            required=True,
            pattern=_STREAM_RE,
            hint="must be the rule's custom stream: Custom- and letters, digits and _",
        )
        c.url("authority", required=False, base=True)
        c.boolean("gzip", default=True)
        c.record_format()
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        dcr, stream = quote(str(config["dcr_immutable_id"])), quote(str(config["stream_name"]))
        return (
            f"{config['endpoint']}/dataCollectionRules/{dcr}/streams/{stream}"
            f"?api-version={API_VERSION}"
        )

    def token_url(self, config: Mapping[str, Any]) -> str:
        authority = config.get("authority") or AUTHORITY
        return f"{authority}/{quote(str(config['tenant_id']))}/oauth2/v2.0/token"

    def entry(self, config: Mapping[str, Any], event: Event) -> bytes:
        """One record: the columns Sentinel needs, then the event (or its OCSF record)."""
        record = {"TimeGenerated": event["received_at"], "EventId": event["id"]}
        return orjson.dumps({**record, **shaper(config)(event)})

    def split(
        self, events: Sequence[Event], config: Mapping[str, Any] | None = None
    ) -> list[list[Event]]:
        cfg = config or {}
        return split_by(
            events,
            max_events=self.MAX_BATCH,
            max_bytes=self.MAX_BYTES,
            size=lambda e: len(self.entry(cfg, e)) + 1,
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
        token_url = self.token_url(config)
        key = oauth.cache_key(token_url, str(config["client_id"]), str(config["client_secret"]))

        async def get_token() -> oauth.Fetched:
            form = {
                "grant_type": "client_credentials",
                "client_id": str(config["client_id"]),
                "client_secret": str(config["client_secret"]),
                "scope": SCOPE,
            }
            return await oauth.fetch(
                client,
                token_url,
                form,
                timeout=timeout,
                config=config,
                secret_fields=self.SECRET_FIELDS,
            )

        async def send_one(part: range) -> Result:
            body = b"[" + b",".join(entries[part.start : part.stop]) + b"]"
            headers = {"content-type": "application/json"}
            if config.get("gzip", True):
                body = compress(body)
                headers["content-encoding"] = "gzip"

            async def post(token: str) -> Answer:
                return await request(
                    client,
                    "POST",
                    self.endpoint(config),
                    content=body,
                    headers={**headers, "authorization": f"Bearer {token}"},
                    timeout=timeout,
                )

            answer = await oauth.authorized(self.tokens, key, get_token, post)
            if isinstance(answer, Result):
                return answer
            detail = redact(_error(answer.body), config, self.SECRET_FIELDS)
            return explained(answer.result(0, total=len(part)), detail)

        sizes = [len(x) + 1 for x in entries]
        ranges = cut(sizes, max_events=self.MAX_BATCH, max_bytes=self.MAX_BYTES, overhead=2)
        return await send_parts(ranges, send_one)


def _error(body: bytes) -> str:
    """``code: message`` of an Azure error answer ``{"error": {"code", "message"}}``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code', '')}: {error.get('message', '')}"
    return ""
