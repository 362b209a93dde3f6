"""Privacy settings and erasure by crypto-shredding: the API side (docs/privacy.md).

``GET /api/v1/privacy`` and ``PUT /api/v1/privacy`` (admin) turn sealing
on or off and choose the personal fields; ``POST
/api/v1/subjects/{subject}/erase`` (admin) destroys a data subject's keys
and answers a signed receipt; ``GET /api/v1/erasures`` lists them.
Every change is an admin event in the workspace's chain.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.common import checkpoint, errors, holds, logkey, subjects
from libs.common.sealing import DEFAULT_FIELDS, SEALABLE_FIELDS, Privacy
from libs.common.timeutil import format_ts, uuid7
from services.ingest.manage import Change, bad

FIELDS = ("enabled", "fields", "metadata_keys", "subject", "erased_enrichment")
ENRICHMENT = ("keep", "drop")
MAX_METADATA_KEYS = 50
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,128}\Z")
REASON_MAX = 1024


def render(privacy: Privacy | None) -> dict[str, Any]:
    shown = (privacy or Privacy()).as_doc()
    return {"enabled": privacy is not None, **shown}


def parse_settings(body: Any) -> Privacy | None:
    """The privacy settings of a PUT body (None: off); a 422 names every bad field."""
    if not isinstance(body, dict):
        raise errors.validation_failed(
            [{"field": "body", "message": "the body must be a JSON object: " + ", ".join(FIELDS)}]
        )
    v = [bad(k, f"{k} is not a privacy setting") for k in body if k not in FIELDS]
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        v.append(bad("enabled", "enabled is required: true or false"))
    fields = body.get("fields", list(DEFAULT_FIELDS))
    if (
        not isinstance(fields, list)
        or any(f not in SEALABLE_FIELDS for f in fields)
        or len(set(fields)) != len(fields)
    ):
        v.append(bad("fields", "fields must be a list of distinct: " + ", ".join(SEALABLE_FIELDS)))
    keys = body.get("metadata_keys", [])
    if (
        not isinstance(keys, list)
        or len(keys) > MAX_METADATA_KEYS
        or any(not isinstance(k, str) or not _METADATA_KEY.match(k) for k in keys)
        or len(set(keys)) != len(keys)
    ):
        v.append(
            bad(
                "metadata_keys",
                f"metadata_keys must be at most {MAX_METADATA_KEYS} distinct top-level metadata"
                " keys of 1 to 128 letters, digits, '_', '.' or '-'",
            )
        )
    subject = body.get("subject", "actor_id")
    if not isinstance(subject, str) or not (
        subject == "actor_id"
        or (subject.startswith("metadata.") and _METADATA_KEY.match(subject[9:]))
    ):
        v.append(bad("subject", "subject must be actor_id or metadata.<key>"))
    enrichment = body.get("erased_enrichment", "keep")
    if enrichment not in ENRICHMENT:
        v.append(bad("erased_enrichment", "erased_enrichment must be keep or drop"))
    if v:
        raise errors.validation_failed(v)
    if not enabled:
        return None
    if not fields and not keys:
        raise errors.validation_failed(
            [bad("fields", "with privacy enabled, name at least one field or metadata key")]
        )
    return Privacy(tuple(fields), tuple(keys), subject, enrichment)


async def get_settings(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    return render(await subjects.privacy_of(pool, workspace_id))


def put_settings(workspace_id: str, body: Any) -> Callable[[asyncpg.Connection], Awaitable[Change]]:
    new = parse_settings(body)

    async def op(conn: asyncpg.Connection) -> Change:
        old = await conn.fetchval(
            "SELECT privacy FROM workspaces WHERE id = $1 FOR UPDATE", workspace_id
        )
        before = render(None if old is None else Privacy.from_doc(orjson.loads(old)))
        await conn.execute(
            "UPDATE workspaces SET privacy = $2::jsonb WHERE id = $1",
            workspace_id,
            None if new is None else orjson.dumps(new.as_doc()).decode(),
        )
        after = render(new)
        return Change(after, workspace_id, before=before, after=after)

    return op


def _reason(body: Any) -> str | None:
    if body is None:
        return None
    if not isinstance(body, dict) or any(k != "reason" for k in body):
        raise errors.validation_failed([bad("body", 'the body, when given, is {"reason": "..."}')])
    reason = body.get("reason")
    if reason is not None and (
        not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX
    ):
        raise errors.validation_failed(
            [bad("reason", f"reason must be a non-empty string of at most {REASON_MAX}")]
        )
    return reason


class Erasure:
    """``POST /api/v1/subjects/{subject}/erase``: ``op`` in the admin-event transaction,
    then ``receipt`` once the admin event's id is known."""

    def __init__(
        self,
        workspace_id: str,
        subject: str,
        body: Any,
        requested_by: str,
        log_name: str,
        signer: tuple[str, Ed25519PrivateKey],
    ) -> None:
        self.workspace_id = workspace_id
        self.subject = subject
        self.reason = _reason(body)
        self.requested_by = requested_by
        self.log_name = log_name
        self.signer = signer
        self.id = str(uuid7())
        self.kids: list[str] = []
        self.events = 0
        self.enrichment = "kept"
        self.erased_at: datetime | None = None

    async def op(self, conn: asyncpg.Connection) -> Change:
        ws, subject = self.workspace_id, self.subject
        held = await holds.subject_held(conn, ws, subject)
        if held:
            raise errors.ApiError(
                409,
                "legal_hold",
                f"{subject!r} is under legal hold ({', '.join(held)}): release the hold first",
                holds=held,
            )
        rows = await conn.fetch(
            "UPDATE subject_keys SET wrapped = NULL, erased_at = now(), erasure_id = $3"
            " WHERE workspace_id = $1 AND subject = $2 AND erased_at IS NULL"
            " RETURNING kid, erased_at",
            ws,
            subject,
            self.id,
        )
        if not rows:
            erased = await conn.fetchval(
                "SELECT count(*) FROM subject_keys WHERE workspace_id = $1 AND subject = $2",
                ws,
                subject,
            )
            raise errors.not_found(
                f"{subject!r} has no live key: already erased"
                if erased
                else f"{subject!r} has no sealed personal data in this workspace"
            )
        self.kids = sorted(str(r["kid"]) for r in rows)
        self.erased_at = rows[0]["erased_at"]
        privacy = await subjects.privacy_of(conn, ws)
        where, args = self._events_where(privacy)
        self.events = int(await conn.fetchval(f"SELECT count(*) FROM events WHERE {where}", *args))
        if privacy is not None and privacy.erased_enrichment == "drop":
            await conn.execute(
                f"UPDATE events SET ip_country = NULL, ip_city = NULL WHERE {where}"
                " AND (ip_country IS NOT NULL OR ip_city IS NOT NULL)",
                *args,
            )
            self.enrichment = "dropped"
        after = {
            "subject": subject,
            "keys": self.kids,
            "events": self.events,
            "enrichment": self.enrichment,
            "reason": self.reason,
        }
        return Change(None, self.id, after=after)

    def _events_where(self, privacy: Privacy | None) -> tuple[str, list[Any]]:
        """The stored events sealed under the erased keys: by ``actor_id`` (its index) when
        that is the subject, else by the key ids in the bodies (a scan of the workspace)."""
        if privacy is None or privacy.subject == "actor_id":
            return "workspace_id = $1 AND actor_id = $2", [self.workspace_id, self.subject]
        patterns = [f"%enc:v1:{k}:%" for k in self.kids]
        return (
            "workspace_id = $1 AND convert_from(body, 'UTF8') LIKE ANY($2::text[])",
            [self.workspace_id, patterns],
        )

    async def receipt(self, conn: asyncpg.Connection, admin_event_id: str) -> dict[str, Any]:
        assert self.erased_at is not None
        erased_at = format_ts(self.erased_at)
        r = logkey.ErasureReceipt(
            checkpoint.workspace_origin(self.workspace_id, self.log_name),
            self.subject,
            erased_at,
            self.events,
            self.enrichment,
            admin_event_id,
            tuple(self.kids),
        )
        name, private = self.signer
        note = checkpoint.sign_note(logkey.erasure_body(r), name, private)
        await conn.execute(
            "INSERT INTO erasures (id, workspace_id, subject, requested_by, kids, events,"
            " enrichment, admin_event_id, receipt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            self.id,
            self.workspace_id,
            self.subject,
            self.requested_by,
            self.kids,
            self.events,
            self.enrichment,
            admin_event_id,
            note,
        )
        return {
            "id": self.id,
            "subject": self.subject,
            "erased_at": erased_at,
            "keys": self.kids,
            "events": self.events,
            "enrichment": self.enrichment,
            "admin_event_id": admin_event_id,
            "receipt": note,
        }


async def list_erasures(pool: asyncpg.Pool, workspace_id: str) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT id, subject, requested_by, created_at, kids, events, enrichment,"
        " admin_event_id, receipt FROM erasures WHERE workspace_id = $1"
        " ORDER BY created_at DESC, id LIMIT 1000",
        workspace_id,
    )
    return {
        "data": [
            {
                "id": str(r["id"]),
                "subject": r["subject"],
                "requested_by": r["requested_by"],
                "erased_at": format_ts(r["created_at"]),
                "keys": [str(k) for k in r["kids"]],
                "events": r["events"],
                "enrichment": r["enrichment"],
                "admin_event_id": str(r["admin_event_id"]),
                "receipt": r["receipt"],
            }
            for r in rows
        ]
    }
