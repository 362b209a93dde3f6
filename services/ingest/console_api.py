"""What the console and the tenant viewer need beyond the query API.

* ``GET /api/v1/stats/activity``: events per hour by action category, and
  by country, from ``event_counts_hourly`` (counted by the exporter as it
  stores events), so the chart reads hours, not events.
* Viewer tokens: ``POST /api/v1/viewer-tokens`` mints a token that reads one
  tenant's events (and, if given, one actor's) until it expires. A token is
  ``vt1.<payload>.<mac>``: the payload (base64url JSON: workspace, tenant,
  actor, expiry, a random id) and an HMAC-SHA256 over it with a key derived
  from the master key for this purpose only. Nothing is stored: any gateway
  checks any token, and one cannot be altered without the key. What a token
  reads is fixed by its payload; a filter that names another tenant or
  actor is refused (403), never widened to. Tokens cannot be revoked one by
  one: keep their lifetime short (60 s to 24 h).
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import io
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from libs.common import errors, sealing
from libs.common.exportformat import CSV_COLUMNS, PERSONAL_COLUMN, csv_cells
from libs.common.secretbox import SecretBox
from libs.common.timeutil import format_ts
from services.ingest import query

TOKEN_PREFIX = "vt1."
MIN_TTL_S = 60
#: Filters a viewer may use: no tenant or actor beyond its own.
VIEWER_FILTERS = (
    "action",
    "actor_id",
    "tenant_id",
    "resource",
    "resource_id",
    "session_id",
    "search",
    "from",
    "to",
    "cursor",
    "limit",
    "order",
)
#: Rows one viewer CSV download holds at most (newest first).
CSV_MAX_ROWS = 10_000
CSV_PAGE = 1_000
MAX_HOURS = 24 * 31


def _bad(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


# -- activity -----------------------------------------------------------------------


async def activity(
    pool: asyncpg.Pool, workspace_id: str, params: Mapping[str, str]
) -> dict[str, Any]:
    unknown = [k for k in params if k != "hours"]
    if unknown:
        raise errors.validation_failed(
            [_bad(k, f"{k} is not a parameter (hours)") for k in unknown]
        )
    hours = 24
    if params.get("hours"):
        try:
            hours = int(params["hours"])
        except ValueError:
            hours = 0
        if not 1 <= hours <= MAX_HOURS:
            raise errors.validation_failed(
                [_bad("hours", f"hours must be an integer from 1 to {MAX_HOURS}")]
            )
    now = datetime.now(UTC)
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    rows = await pool.fetch(
        "SELECT hour, category, country, count FROM event_counts_hourly"
        " WHERE workspace_id = $1 AND hour >= $2 AND hour < $3",
        workspace_id,
        start,
        end,
    )
    by_hour: dict[datetime, dict[str, int]] = {}
    countries: dict[str, int] = {}
    for r in rows:
        cats = by_hour.setdefault(r["hour"], {})
        cats[r["category"]] = cats.get(r["category"], 0) + r["count"]
        if r["country"]:
            countries[r["country"]] = countries.get(r["country"], 0) + r["count"]
    series = []
    for i in range(hours):
        hour = start + timedelta(hours=i)
        cats = by_hour.get(hour, {})
        series.append(
            {
                "hour": format_ts(hour),
                "total": sum(cats.values()),
                "by_category": dict(sorted(cats.items())),
            }
        )
    return {
        "from": format_ts(start),
        "to": format_ts(end),
        "hours": series,
        "countries": [
            {"country": c, "count": n}
            for c, n in sorted(countries.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    }


# -- viewer tokens ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ViewerScope:
    workspace_id: str
    tenant_id: str
    actor_id: str | None
    expires_at: int  # epoch seconds
    #: Names the token in the admin log (never the token itself).
    token_id: str | None = None

    def document(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "actor_id": self.actor_id,
            "expires_at": format_ts(datetime.fromtimestamp(self.expires_at, UTC)),
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ViewerTokens:
    """Mints and opens viewer tokens with a key derived for them alone."""

    def __init__(self, box: SecretBox, max_ttl_s: int) -> None:
        self._key = box.derive("chainlog viewer token v1")
        self.max_ttl_s = max_ttl_s

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def parse_request(self, body: Any) -> tuple[str, str | None, int]:
        """(tenant_id, actor_id, ttl) of a mint request; 422 naming each bad field."""
        if not isinstance(body, dict):
            raise errors.validation_failed([_bad("body", "the body must be a JSON object")])
        v = [
            _bad(k, f"{k} is not a field of a viewer token (tenant_id, actor_id, ttl)")
            for k in body
            if k not in ("tenant_id", "actor_id", "ttl")
        ]
        tenant = body.get("tenant_id")
        if not isinstance(tenant, str) or not 0 < len(tenant) <= 256:
            v.append(_bad("tenant_id", "tenant_id is required: the tenant whose events it shows"))
        actor = body.get("actor_id")
        if actor is not None and (not isinstance(actor, str) or not 0 < len(actor) <= 256):
            v.append(_bad("actor_id", "actor_id must be a string of 1 to 256 characters"))
        ttl = body.get("ttl", 3600)
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, int)
            or not MIN_TTL_S <= ttl <= self.max_ttl_s
        ):
            v.append(
                _bad("ttl", f"ttl must be an integer from {MIN_TTL_S} to {self.max_ttl_s} seconds")
            )
        if v:
            raise errors.validation_failed(v)
        assert isinstance(tenant, str)
        return tenant, actor, ttl

    def mint(
        self, workspace_id: str, tenant_id: str, actor_id: str | None, ttl: int
    ) -> tuple[str, str, ViewerScope]:
        """(token, token id, scope); the id names the token in the admin log."""
        token_id = _b64(os.urandom(9))
        scope = ViewerScope(workspace_id, tenant_id, actor_id, int(time.time()) + ttl, token_id)
        payload = _b64(
            orjson.dumps(
                {
                    "w": workspace_id,
                    "t": tenant_id,
                    "a": actor_id,
                    "e": scope.expires_at,
                    "n": token_id,
                }
            )
        )
        return f"{TOKEN_PREFIX}{payload}.{self._mac(payload)}", token_id, scope

    def open(self, authorization: str | None, now: float | None = None) -> ViewerScope:
        """The scope of a bearer viewer token; 401 for anything else or an expired one."""
        token = (authorization or "").removeprefix("Bearer ").strip()
        if not token.startswith(TOKEN_PREFIX):
            raise errors.ApiError(
                401, "unauthorized", "a viewer token is required (Bearer vt1....)"
            )
        payload, _, mac = token[len(TOKEN_PREFIX) :].partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise errors.ApiError(401, "unauthorized", "this viewer token is not valid")
        try:
            doc = orjson.loads(_unb64(payload))
            scope = ViewerScope(str(doc["w"]), str(doc["t"]), doc["a"], int(doc["e"]), doc.get("n"))
        except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise errors.ApiError(401, "unauthorized", "this viewer token is not valid") from None
        if scope.expires_at <= (time.time() if now is None else now):
            raise errors.ApiError(
                401, "token_expired", "this viewer token has expired; ask for a new link"
            )
        return scope


def scoped_params(scope: ViewerScope, params: Mapping[str, str]) -> dict[str, str]:
    """The query's filters with the token's tenant and actor imposed; 403 for any other."""
    unknown = [k for k in params if k not in VIEWER_FILTERS]
    if unknown:
        raise errors.validation_failed(
            [_bad(k, f"{k} is not a filter of the viewer") for k in unknown]
        )
    out = dict(params)
    for name, fixed in (("tenant_id", scope.tenant_id), ("actor_id", scope.actor_id)):
        if fixed is None:
            continue
        asked = out.get(name)
        if asked and asked != fixed:
            raise errors.forbidden(f"this viewer token shows {name} {fixed} only")
        out[name] = fixed
    return out


async def viewer_csv(
    pool: asyncpg.Pool,
    scope: ViewerScope,
    params: Mapping[str, str],
    counted: Callable[[int], None] | None = None,
    box: SecretBox | None = None,
) -> AsyncIterator[bytes]:
    """The newest ``CSV_MAX_ROWS`` events the viewer shows, as CSV in the export columns.

    Written oldest first, like an export, so ``chainlog verify-export
    --filtered`` checks every row's hash and the links between neighbours.
    ``counted`` is told the number of rows before the first chunk is yielded.
    """
    page = {
        k: v
        for k, v in scoped_params(scope, params).items()
        if k not in ("cursor", "limit", "order")  # seq order: what verify-export reads
    }
    chunks: list[list[asyncpg.Record]] = []
    taken = 0
    cursor: str | None = None
    while taken < CSV_MAX_ROWS:
        size = min(CSV_PAGE, CSV_MAX_ROWS - taken)
        sql, args, _ = query.build_query(
            scope.workspace_id, {**page, "cursor": cursor} if cursor else page, page_size=size
        )
        rows = await pool.fetch(sql, *args)
        chunks.append(rows[:size])
        taken += len(rows[:size])
        if len(rows) <= size:
            break
        cursor = query.next_cursor(rows[size - 1], page)
    if counted is not None:
        counted(taken)
    # Sealed personal fields (docs/privacy.md): one more column, as in an export.
    sealed = box is not None and any(sealing.MARK in r["body"] for c in chunks for r in c)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([*CSV_COLUMNS, PERSONAL_COLUMN] if sealed else CSV_COLUMNS)
    yield buffer.getvalue().encode()
    for rows in reversed(chunks):
        buffer.seek(0)
        buffer.truncate()
        events = await query.opened(pool, box if sealed else None, scope.workspace_id, rows)
        for e in reversed(events):
            cells = csv_cells(e)
            if sealed:
                shown = e.get(PERSONAL_COLUMN)
                cells.append(orjson.dumps(shown).decode() if shown else "")
            writer.writerow(cells)
        yield buffer.getvalue().encode()
