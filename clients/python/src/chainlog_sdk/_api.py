"""What both clients share: settings, the requests of each API call, reading answers.

Every function here is pure; ``Client`` and ``AsyncClient`` only add the I/O.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import httpx

from chainlog_sdk import events
from chainlog_sdk.errors import ChainlogError, ExportFailed, NetworkError, ValidationError
from chainlog_sdk.events import ItemResult

VERSION = "0.1.0"
USER_AGENT = f"chainlog-sdk-python/{VERSION}"
#: Events and alerts are read in pages of the API's maximum.
PAGE_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Call:
    """One API request. ``idempotent``: sending it twice does no harm (see ``retry``)."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    body: bytes | None = None
    idempotent: bool = True


def settings(
    api_url: str | None, api_key: str | None, env: Mapping[str, str] | None
) -> tuple[str, str]:
    """The API's URL and key: the arguments, else ``CHAINLOG_API_URL`` / ``CHAINLOG_API_KEY``."""
    env = os.environ if env is None else env
    url = api_url or env.get("CHAINLOG_API_URL")
    key = api_key or env.get("CHAINLOG_API_KEY")
    if not url:
        raise ValueError("no API URL: pass api_url or set CHAINLOG_API_URL")
    if not key:
        raise ValueError("no API key: pass api_key or set CHAINLOG_API_KEY")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"CHAINLOG_API_URL must be an http(s) URL, not {url!r}")
    return url.rstrip("/"), key


def headers(api_key: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {api_key}",
        "user-agent": USER_AGENT,
        "accept": "application/json",
    }


def network_error(exc: httpx.TransportError) -> NetworkError:
    # Not sent: no connection was made, or none was free in the pool.
    unsent = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
    error = NetworkError(f"{type(exc).__name__}: {exc}", sent=not isinstance(exc, unsent))
    error.__cause__ = exc
    return error


def query_params(filters: Mapping[str, Any]) -> dict[str, str]:
    """Filters as the API reads them: ``from_`` is ``from``; datetimes in RFC 3339;
    booleans ``true``/``false``; None left out."""
    out: dict[str, str] = {}
    for name, value in filters.items():
        if value is None:
            continue
        name = name[:-1] if name.endswith("_") else name  # from_ (a keyword) is from
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, datetime | date):
            out[name] = value.isoformat()
        else:
            out[name] = str(value)
    return out


def segment(value: str) -> str:
    """An id as one path segment."""
    return quote(str(value), safe="")


def page(path: str, filters: Mapping[str, Any]) -> Call:
    params = query_params(filters)
    params.setdefault("limit", str(PAGE_LIMIT))
    return Call("GET", path, params=params)


def next_page(call: Call, body: Any) -> Call | None:
    """The call for the page after ``body``, or None after the last one."""
    pagination = body.get("pagination") if isinstance(body, dict) else None
    cursor = pagination.get("next_cursor") if isinstance(pagination, dict) else None
    if not cursor:
        return None
    return Call("GET", call.path, params={**(call.params or {}), "cursor": str(cursor)})


def data(body: Any) -> list[dict[str, Any]]:
    items = body.get("data") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ChainlogError("the answer has no data list", code="protocol")
    return items


def verify_call(from_seq: int | None, to_seq: int | None) -> Call:
    return Call(
        "GET", "/api/v1/verify", params=query_params({"from_seq": from_seq, "to_seq": to_seq})
    )


def post(path: str, body: Mapping[str, Any], *, idempotent: bool) -> Call:
    return Call("POST", path, body=events.encode(body), idempotent=idempotent)


def export_call(format: str, filters: Mapping[str, Any]) -> Call:
    # Sent twice it would run twice (and count twice against the plan).
    return post("/api/v1/exports", {"format": format, **query_params(filters)}, idempotent=False)


def alert_rule_call(fields: Mapping[str, Any]) -> Call:
    body = {k: v for k, v in fields.items() if v is not None}
    return post("/api/v1/alert-rules", body, idempotent=False)


def export_done(doc: Mapping[str, Any]) -> bool:
    """True once completed; raises ExportFailed if failed; False while pending or processing."""
    status = doc.get("status")
    if status == "failed":
        raise ExportFailed(doc)
    return status == "completed"


def batch_call(bodies: Sequence[bytes]) -> Call:
    # Events always carry an idempotency_key: sending a batch again is harmless.
    return Call("POST", "/api/v1/events/batch", body=events.batch_body(bodies))


def batch_results(
    answer: Any | ValidationError, keys: Sequence[str | None], offset: int = 0
) -> list[ItemResult]:
    """Per-event results of a batch from its 202 body, or from its 422 when every event
    was invalid (the API answers 422 then); another 422 is raised."""
    if isinstance(answer, ValidationError):
        items = events.all_rejected(answer, keys, offset)
        if items is None:
            raise answer
        return items
    return events.parse_results(answer, keys, offset)


def event_id(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise ChainlogError("the answer has no event id", code="protocol")
    return str(body["id"])
