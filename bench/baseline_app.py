"""The baseline's HTTP edge: one endpoint, one INSERT per batch, ack after commit.

What a team would write instead of Chainlog, done well: orjson, the same
event validation as our ingest, a cached token lookup, and one multi-row
``INSERT ... SELECT FROM unnest(...)`` per batch; the table's trigger
(``bench/baseline.sql``) assigns seq and links the hash chain. The answer
comes after the commit, so an acknowledged event is already queryable.

Run: ``python -m bench.baseline_app`` (uvicorn, uvloop + httptools, one
worker, like ``services.ingest``); env ``BASELINE_DATABASE_URL``,
``BASELINE_PORT`` (8090).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response

from libs.common.db import connect_pool
from libs.common.event import validate_event
from libs.common.timeutil import uuid7_batch
from services.ingest.app import json_response

INSERT = """
INSERT INTO baseline.events
  (workspace_id, id, occurred_at, action, actor_id, resource, resource_id, tenant_id,
   session_id, event)
SELECT $1::uuid, i, coalesce(o::timestamptz, now()), a, ac, r, ri, t, s, e::jsonb
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[]) AS u(i, o, a, ac, r, ri, t, s, e)
"""
COLUMNS = (
    "occurred_at",
    "action",
    "actor_id",
    "resource",
    "resource_id",
    "tenant_id",
    "session_id",
)
TOKEN_TTL_S = 5.0
MAX_BATCH = 1000


class Tokens:
    """Bearer token -> workspace, cached like our ingest's keys."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.cache: dict[bytes, tuple[float, str | None]] = {}

    async def workspace(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        digest = hashlib.sha256(authorization[7:].strip().encode()).digest()
        now = time.monotonic()
        hit = self.cache.get(digest)
        if hit is None or hit[0] <= now:
            ws = await self.pool.fetchval(
                "SELECT workspace_id::text FROM baseline.api_tokens WHERE token_hash = $1", digest
            )
            hit = (now + TOKEN_TTL_S, ws)
            self.cache[digest] = hit
        return hit[1]


def create_app(database_url: str) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["pool"] = await connect_pool(database_url, max_size=20)
        state["tokens"] = Tokens(state["pool"])
        try:
            yield
        finally:
            await state["pool"].close()

    app = FastAPI(title="baseline", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"}, 200)

    @app.post("/api/v1/events/batch")
    async def post_batch(request: Request) -> Response:
        workspace_id = await state["tokens"].workspace(request.headers.get("authorization"))
        if workspace_id is None:
            return json_response({"error": "unauthenticated"}, 401)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return json_response({"error": "invalid_json"}, 400)
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not 0 < len(events) <= MAX_BATCH:
            return json_response({"error": "validation_failed", "field": "events"}, 422)
        results: list[dict[str, Any]] = []
        valid: list[dict[str, Any]] = []
        for i, raw in enumerate(events):
            event, violations = validate_event(raw, f"events[{i}].")
            if event is None:
                results.append({"index": i, "status": "rejected", "violations": violations})
            else:
                valid.append(event)
                results.append({"index": i})
        if not valid:
            return json_response({"error": "validation_failed", "results": results}, 422)
        ids = uuid7_batch(len(valid))
        columns = [[ev.get(c) for ev in valid] for c in COLUMNS]
        json_events = [orjson.dumps(ev).decode() for ev in valid]
        await state["pool"].execute(INSERT, workspace_id, ids, *columns, json_events)
        it = iter(ids)
        for r in results:
            if "status" not in r:
                r.update(id=next(it), status="stored")
        return json_response(
            {"accepted": len(valid), "rejected": len(events) - len(valid), "results": results}, 201
        )

    return app


def main() -> None:
    uvicorn.run(
        create_app(os.environ["BASELINE_DATABASE_URL"]),
        host="127.0.0.1",
        port=int(os.environ.get("BASELINE_PORT", "8090")),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
