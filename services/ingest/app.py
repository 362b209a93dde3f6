"""The public HTTP edge: authenticate, validate, publish; read and verify.

Bodies are read and parsed by hand (size cap, orjson) rather than through
request models: this is the hot path, and every error must name its field.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import multiprocessing
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse

from libs.common import checkpoint, errors, logkey, secretbox, storage, topics
from libs.common.db import DATABASE_UNAVAILABLE, connect_pool
from libs.common.logs import Logger
from libs.common.metrics import IngestMetrics
from libs.common.plans import load_plans
from libs.common.settings import Settings
from libs.common.timeutil import format_ts, parse_rfc3339
from services.ingest import (
    alerts_api,
    console,
    console_api,
    exports_api,
    holds_api,
    manage,
    packs_api,
    privacy_api,
    proofs_api,
    query,
    schedules_api,
    streams_api,
)
from services.ingest.accept import Acceptor, Outcome
from services.ingest.adminlog import Actor, AdminLog
from services.ingest.auth import KeyCache, Principal
from services.ingest.instrument import RequestMetrics
from services.ingest.manage import Change
from services.ingest.ratelimit import Decision, RateLimiter
from services.ingest.readaudit import ReadAudit, Reader
from services.ingest.tenancy import Tenant, TenantCache, client_ip, parse_networks
from services.ingest.verify import verify as verify_chain

#: Management bodies (rules, endpoints) are small.
MANAGEMENT_BODY_BYTES = 64 * 1024


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.ApiError(413, "payload_too_large", f"the body must be at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.ApiError(
                413, "payload_too_large", f"the body must be at most {limit} bytes"
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise errors.ApiError(400, "invalid_json", "the body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.ApiError(
            400, "invalid_json", f"the body is not valid UTF-8 JSON: {exc}"
        ) from None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    log = Logger("ingest")
    state: dict[str, Any] = {}
    plans = load_plans(settings.plans_file)
    trusted = parse_networks(settings.trusted_proxies)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await connect_pool(settings.database_url, max_size=20)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_request_size=topics.MAX_MESSAGE_BYTES,
            request_timeout_ms=15_000,
        )
        await producer.start()
        state.update(pool=pool, producer=producer, keys=KeyCache(pool, settings.key_cache_seconds))
        state["secrets"] = secretbox.for_settings(settings)
        state["acceptor"] = Acceptor(producer, pool, settings.topics.raw, state["secrets"])
        state["storage"] = storage.from_settings(settings)
        state["admin"] = AdminLog(state["acceptor"])
        # Reads of the log, summarised into admin.read.* events (docs/audited-reads.md).
        reads = ReadAudit(
            state["admin"],
            window_s=settings.read_audit_window_s,
            max_groups=settings.read_audit_max_groups,
            default_on=settings.read_audit_default,
            dropped=metrics.read_audit_dropped,
            log=log,
        )
        reads.start()
        state["reads"] = reads
        state["tenants"] = TenantCache(pool, plans, settings.key_cache_seconds)
        state["viewer_tokens"] = console_api.ViewerTokens(
            state["secrets"], settings.viewer_token_max_ttl_s
        )
        limiter = RateLimiter(pool)
        await limiter.start()
        state["limiter"] = limiter
        # Two processes check the halves of a long chain in parallel. Spawned
        # (not forked: this process runs an event loop and threads) and
        # started now, so the first verify does not pay for it.
        workers = None
        if settings.verify_parallel_min:
            workers = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
            await asyncio.gather(
                *(asyncio.get_running_loop().run_in_executor(workers, int) for _ in range(2))
            )
        state["verify_workers"] = workers
        log.info("ingest.started", bootstrap=settings.kafka_bootstrap)
        try:
            yield
        finally:
            await reads.close()  # while the producer still runs
            if workers is not None:
                workers.shutdown(cancel_futures=True)
            await limiter.stop()
            await producer.stop()
            await pool.close()

    app = FastAPI(title="Chainlog", version="0.1.0", lifespan=lifespan)
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    app.add_middleware(RequestMetrics, metrics=metrics)

    @app.exception_handler(errors.ApiError)
    async def api_error(_: Request, exc: errors.ApiError) -> Response:
        return json_response(exc.body(), exc.status, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> Response:
        violations = [
            {"field": ".".join(str(p) for p in e["loc"][1:]) or "body", "message": e["msg"]}
            for e in exc.errors()
        ]
        return json_response(errors.validation_failed(violations).body(), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return json_response({"error": code, "message": str(exc.detail)}, exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        if isinstance(exc, DATABASE_UNAVAILABLE):
            log.warning("http.database_unavailable", error=repr(exc))
            pushback = errors.Pushback("the database is unavailable; retry", retry_after_s=2)
            return json_response(pushback.body(), pushback.status, pushback.headers)
        log.error("http.unexpected_error", error=repr(exc))
        return json_response(
            {"error": "internal", "message": "unexpected error; it was logged"}, 500
        )

    async def authorize(request: Request, scope: str) -> tuple[Principal, Tenant]:
        """Key, IP allowlist, scope; the rate limit is checked by :func:`admit`."""
        who: Principal = await state["keys"].authenticate(request.headers.get("authorization"))
        tenant: Tenant = await state["tenants"].get(who.workspace_id)
        ip = client_ip(request, trusted)
        if not tenant.allows(ip):
            raise errors.forbidden(
                f"requests from {ip} are not allowed by this workspace's IP allowlist"
            )
        who.require(scope)
        return who, tenant

    def admit(who: Principal, tenant: Tenant, events: int = 0) -> Decision:
        """Count the request (and its events) against the plan; 429 over the limit."""
        decision: Decision = state["limiter"].check(who.workspace_id, tenant.limits, events)
        if not decision.allowed:
            raise errors.ApiError(429, "rate_limited", decision.reason, headers=decision.headers())
        return decision

    async def principal(request: Request, scope: str) -> Principal:
        who, tenant = await authorize(request, scope)
        admit(who, tenant)
        return who

    def actor(request: Request, who: Principal) -> Actor:
        return Actor(
            id=f"api_key:{who.prefix}",
            type="api_key",
            name=who.name or None,
            ip=client_ip(request, trusted),
            user_agent=request.headers.get("user-agent"),
        )

    async def reader(request: Request) -> tuple[Principal, Reader]:
        """A key that may read, and how its read is noted (services/ingest/readaudit.py)."""
        who, tenant = await authorize(request, "read")
        admit(who, tenant)
        reads: ReadAudit = state["reads"]
        return who, reads.reader(who.workspace_id, actor(request, who), tenant.audit_reads)

    async def change(
        request: Request,
        who: Principal,
        action: str,
        resource: str,
        op: Callable[[asyncpg.Connection], Awaitable[Change]],
        then: Callable[[asyncpg.Connection, str], Awaitable[Any]] | None = None,
    ) -> Any:
        """Apply a management change and record it in the admin audit log, atomically.

        ``then`` runs in the same transaction with the admin event's id, and
        its result is the answer (an erasure's receipt names that event).
        """
        async with state["pool"].acquire() as conn, conn.transaction():
            done = await op(conn)
            event_id = await state["admin"].record(
                who.workspace_id,
                actor(request, who),
                action,
                resource,
                done.resource_id,
                before=done.before,
                after=done.after,
            )
            result = done.result if then is None else await then(conn, event_id)
        state["tenants"].invalidate(who.workspace_id)
        return result

    console.mount(app, viewer_frame_ancestors=settings.viewer_frame_ancestors)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def count(outcome: Outcome) -> None:
        duplicates = sum(1 for r in outcome.results if r.get("status") == "duplicate")
        metrics.events.labels("queued").inc(outcome.accepted)
        metrics.events.labels("duplicate").inc(duplicates)
        metrics.events.labels("rejected").inc(outcome.rejected)

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        """200 when PostgreSQL answers and Kafka knows the raw topic; else 503 saying which."""
        report: dict[str, str] = {}
        try:
            async with asyncio.timeout(2):
                await state["pool"].fetchval("SELECT 1")
            report["postgres"] = "up"
        except (TimeoutError, *DATABASE_UNAVAILABLE) as exc:  # type: ignore[misc]
            report["postgres"] = f"down: {type(exc).__name__}"
        try:
            async with asyncio.timeout(2):
                parts = await state["producer"].partitions_for(settings.topics.raw)
            report["kafka"] = "up" if parts else "down: the raw topic has no partitions"
        except Exception as exc:
            report["kafka"] = f"down: {type(exc).__name__}"
        ok = all(v == "up" for v in report.values())
        return json_response(
            {"status": "ok" if ok else "unavailable", **report}, 200 if ok else 503
        )

    async def ingest(
        who: Principal, tenant: Tenant, events: list[Any], prefix: str
    ) -> tuple[Outcome, Decision]:
        decision = admit(who, tenant, len(events))
        outcome: Outcome = await state["acceptor"].accept(
            who.workspace_id,
            events,
            prefix,
            schemas=tenant.schemas,
            strict=tenant.schema_mode == "strict",
            privacy=tenant.privacy,
        )
        count(outcome)
        return outcome, decision

    @app.post("/api/v1/events")
    async def post_event(request: Request) -> Response:
        who, tenant = await authorize(request, "ingest")
        body = await read_json(request, settings.max_body_bytes)
        outcome, decision = await ingest(who, tenant, [body], "")
        result = outcome.results[0]
        if result["status"] == "rejected":
            raise errors.validation_failed(result["violations"])
        doc = {"id": result["id"], "status": result["status"]}
        if request.query_params.get("receipt") == "true":
            doc["receipt"] = await receipt(who.workspace_id, outcome)
        return json_response(doc, 202, decision.headers())

    async def receipt(workspace_id: str, outcome: Outcome) -> str | None:
        """A signed promise to include the request's queued events (docs/proofs.md)."""
        queued = [r["id"] for r in outcome.results if r.get("status") == "queued"]
        if not queued or outcome.received_at is None:
            return None
        if "log_key" not in state:
            state["log_key"] = await logkey.load(state["pool"], state["secrets"], settings.log_name)
        name, private = state["log_key"]
        # the next checkpoint after the pipeline's usual delay, with a minute to spare
        by = parse_rfc3339(outcome.received_at) + timedelta(
            seconds=settings.checkpoint_seconds + 60
        )
        r = logkey.receipt_for(
            checkpoint.workspace_origin(workspace_id, settings.log_name),
            outcome.received_at,
            format_ts(by),
            queued,
        )
        return logkey.sign_receipt(r, name, private)

    @app.post("/api/v1/events/batch")
    async def post_batch(request: Request) -> Response:
        who, tenant = await authorize(request, "ingest")
        body = await read_json(request, settings.max_body_bytes)
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            raise errors.validation_failed(
                [{"field": "events", "message": "events must be a non-empty array of events"}]
            )
        if len(events) > settings.max_batch_events:
            raise errors.validation_failed(
                [
                    {
                        "field": "events",
                        "message": f"events must hold at most {settings.max_batch_events} items",
                    }
                ]
            )
        outcome, decision = await ingest(who, tenant, events, "events[{i}].")
        if outcome.accepted == 0 and outcome.rejected:
            violations = [v for r in outcome.results for v in r.get("violations", [])]
            raise errors.validation_failed(violations, "no event in the batch is valid")
        answer: dict[str, Any] = {
            "accepted": outcome.accepted,
            "rejected": outcome.rejected,
            "results": outcome.results,
        }
        if request.query_params.get("receipt") == "true":
            answer["receipt"] = await receipt(who.workspace_id, outcome)
        return json_response(
            answer,
            202,
            decision.headers(),
        )

    @app.get("/api/v1/events")
    async def get_events(request: Request) -> Response:
        who, noted = await reader(request)
        page = await query.list_events(
            state["pool"], who.workspace_id, request.query_params, state["secrets"]
        )
        noted("events", request.query_params, len(page["data"]))
        return json_response(page)

    @app.get("/api/v1/stats/activity")
    async def get_activity(request: Request) -> Response:
        who, noted = await reader(request)
        doc = await console_api.activity(state["pool"], who.workspace_id, request.query_params)
        noted("activity", request.query_params, len(doc["hours"]))
        return json_response(doc)

    @app.post("/api/v1/viewer-tokens")
    async def create_viewer_token(request: Request) -> Response:
        who = await principal(request, "read")
        who.refuse_auditor("mint viewer tokens: a token hands out access to the log")
        tokens: console_api.ViewerTokens = state["viewer_tokens"]
        tenant_id, actor_id, ttl = tokens.parse_request(
            await read_json(request, MANAGEMENT_BODY_BYTES)
        )

        async def mint(_: asyncpg.Connection) -> Change:
            token, token_id, scope = tokens.mint(who.workspace_id, tenant_id, actor_id, ttl)
            shown = scope.document()
            url = f"/viewer?token={token}"
            # the admin log names the token; only the answer holds it
            return Change({"token": token, "url": url, **shown}, token_id, after=shown)

        doc = await change(request, who, "viewer_token.created", "viewer_token", mint)
        return json_response(doc, 201)

    async def viewer(request: Request) -> tuple[console_api.ViewerScope, Reader]:
        """The viewer token's scope, counted against its workspace's rate limit, and
        how its reads are noted (the reader is the token's id, never the token)."""
        tokens: console_api.ViewerTokens = state["viewer_tokens"]
        scope = tokens.open(request.headers.get("authorization"))
        tenant: Tenant = await state["tenants"].get(scope.workspace_id)
        decision: Decision = state["limiter"].check(scope.workspace_id, tenant.limits, 0)
        if not decision.allowed:
            raise errors.ApiError(429, "rate_limited", decision.reason, headers=decision.headers())
        token = Actor(
            id=f"viewer_token:{scope.token_id}",
            type="viewer_token",
            name=f"tenant:{scope.tenant_id}",
            ip=client_ip(request, trusted),
            user_agent=request.headers.get("user-agent"),
        )
        reads: ReadAudit = state["reads"]
        return scope, reads.reader(scope.workspace_id, token, tenant.audit_reads)

    @app.get("/api/v1/viewer/scope")
    async def viewer_scope(request: Request) -> Response:
        scope, _ = await viewer(request)  # names the scope; no event is read
        name = await state["pool"].fetchval(
            "SELECT name FROM workspaces WHERE id = $1", scope.workspace_id
        )
        return json_response({**scope.document(), "workspace_name": name})

    @app.get("/api/v1/viewer/events")
    async def viewer_events(request: Request) -> Response:
        scope, noted = await viewer(request)
        params = console_api.scoped_params(scope, request.query_params)
        page = await query.list_events(state["pool"], scope.workspace_id, params, state["secrets"])
        noted("viewer_events", params, len(page["data"]))
        return json_response(page)

    @app.get("/api/v1/viewer/events.csv")
    async def viewer_events_csv(request: Request) -> Response:
        scope, noted = await viewer(request)
        params = console_api.scoped_params(scope, request.query_params)
        stream = console_api.viewer_csv(
            state["pool"],
            scope,
            params,
            lambda rows: noted("viewer_csv", params, rows),
            box=state["secrets"],
        )
        first = await anext(stream)  # a bad filter is a 422 before the 200
        return StreamingResponse(
            _chain(first, stream),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": 'attachment; filename="audit-log.csv"'},
        )

    @app.get("/api/v1/events/{event_id}")
    async def get_event(request: Request, event_id: str) -> Response:
        who, noted = await reader(request)
        doc = await query.get_event(state["pool"], who.workspace_id, event_id, state["secrets"])
        noted("event", {}, 1, item=doc["id"])
        return json_response(doc)

    @app.get("/api/v1/verify")
    async def verify(request: Request) -> Response:
        who, noted = await reader(request)
        result = await verify_chain(
            state["pool"],
            who.workspace_id,
            request.query_params,
            max_breaks=settings.verify_max_breaks,
            workers=state["verify_workers"],
            dsn=settings.database_url,
            parallel_min=settings.verify_parallel_min,
        )
        span = {k: v for k, v in request.query_params.items() if k in ("from_seq", "to_seq")}
        noted("verify", span, result["events_checked"])
        return json_response(result)

    # -- exports and scheduled verification (issue 6) -----------------------------

    @app.post("/api/v1/exports")
    async def create_export(request: Request) -> Response:
        who = await principal(request, "read")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        created = await change(
            request,
            who,
            "export.requested",
            "export",
            lambda c: exports_api.create(c, who.workspace_id, body, plans, actor(request, who).id),
        )
        # After the commit, so the exporter finds the row; a lost message only
        # delays the job until the exporter's sweep (services/exporter/jobs.py).
        with contextlib.suppress(Exception):
            await state["producer"].send_and_wait(
                settings.topics.export_requests,
                orjson.dumps({"export_id": created["id"], "workspace_id": who.workspace_id}),
                key=who.workspace_id.encode(),
            )
        return json_response(created, 202)

    @app.get("/api/v1/exports")
    async def list_exports(request: Request) -> Response:
        who, noted = await reader(request)
        doc = await exports_api.list_exports(state["pool"], who.workspace_id, settings.public_url)
        noted("exports", {}, len(doc["data"]))
        return json_response(doc)

    @app.get("/api/v1/exports/{export_id}")
    async def get_export(request: Request, export_id: str) -> Response:
        who, noted = await reader(request)
        doc = await exports_api.get(state["pool"], who.workspace_id, export_id, settings.public_url)
        noted("exports", {}, 1, item=doc["id"])
        return json_response(doc)

    @app.get("/api/v1/exports/{export_id}/download")
    async def download_export(request: Request, export_id: str) -> Response:
        who, noted = await reader(request)
        key, name, size, digest = await exports_api.download(
            state["pool"], who.workspace_id, export_id
        )
        if noted.on:
            job = await exports_api.get(
                state["pool"], who.workspace_id, export_id, settings.public_url
            )
            noted("export_download", {}, job["total_rows"] or 0, job["id"])
        media = "text/csv; charset=utf-8" if name.endswith(".csv") else "application/x-ndjson"
        return stored_file(key, name, size, digest, media)

    def stored_file(key: str, name: str, size: int, digest: str, media: str) -> Response:
        """A stored export or pack as a download, with the SHA-256 of its record."""
        return StreamingResponse(
            state["storage"].read(key),
            media_type=media,
            headers={
                "content-disposition": f'attachment; filename="{name}"',
                "content-length": str(size),
                "x-chainlog-sha256": digest,
            },
        )

    @app.get("/api/v1/verifications")
    async def list_verifications(request: Request) -> Response:
        who, noted = await reader(request)
        doc = await exports_api.list_verifications(
            state["pool"], who.workspace_id, request.query_params
        )
        noted("verifications", request.query_params, len(doc["data"]))
        return json_response(doc)

    # -- evidence packs (issue 10) --------------------------------------------

    @app.post("/api/v1/evidence-packs")
    async def create_evidence_pack(request: Request) -> Response:
        who = await principal(request, "read")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        # No Kafka message: the exporter polls for pending packs (services/exporter/packs.py).
        created = await change(
            request,
            who,
            "evidence_pack.requested",
            "evidence_pack",
            lambda c: packs_api.create(c, who.workspace_id, body, actor(request, who).id),
        )
        return json_response(created, 202)

    @app.get("/api/v1/evidence-packs")
    async def list_evidence_packs(request: Request) -> Response:
        who, noted = await reader(request)
        doc = await packs_api.list_packs(state["pool"], who.workspace_id, settings.public_url)
        noted("evidence_packs", {}, len(doc["data"]))
        return json_response(doc)

    @app.get("/api/v1/evidence-packs/{pack_id}")
    async def get_evidence_pack(request: Request, pack_id: str) -> Response:
        who, noted = await reader(request)
        doc = await packs_api.get(state["pool"], who.workspace_id, pack_id, settings.public_url)
        noted("evidence_packs", {}, 1, item=doc["id"])
        return json_response(doc)

    @app.get("/api/v1/evidence-packs/{pack_id}/download")
    async def download_evidence_pack(request: Request, pack_id: str) -> Response:
        who, noted = await reader(request)
        key, name, size, digest = await packs_api.download(state["pool"], who.workspace_id, pack_id)
        if noted.on:
            pack = await packs_api.get(
                state["pool"], who.workspace_id, pack_id, settings.public_url
            )
            rows = pack["total_events"] or 0
            noted("evidence_pack_download", {}, rows, pack["id"])
        return stored_file(key, name, size, digest, "application/zip")

    # -- checkpoints and proofs (issue 7) -------------------------------------

    @app.get("/api/v1/privacy")
    async def get_privacy(request: Request) -> Response:
        who = await principal(request, "read")
        return json_response(await privacy_api.get_settings(state["pool"], who.workspace_id))

    @app.put("/api/v1/privacy")
    async def put_privacy(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        op = privacy_api.put_settings(who.workspace_id, body)
        return json_response(await change(request, who, "privacy.updated", "workspace", op))

    @app.post("/api/v1/subjects/{subject}/erase")
    async def erase_subject(request: Request, subject: str) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES) if await request.body() else None
        if "log_key" not in state:
            state["log_key"] = await logkey.load(state["pool"], state["secrets"], settings.log_name)
        erasure = privacy_api.Erasure(
            who.workspace_id,
            subject,
            body,
            f"api_key:{who.prefix}",
            settings.log_name,
            state["log_key"],
        )
        done = await change(
            request, who, "subject.erased", "subject", erasure.op, then=erasure.receipt
        )
        return json_response(done, 200)

    @app.get("/api/v1/erasures")
    async def list_erasures(request: Request) -> Response:
        who = await principal(request, "admin")
        return json_response(await privacy_api.list_erasures(state["pool"], who.workspace_id))

    @app.get("/api/v1/log-key")
    async def get_log_key(request: Request) -> Response:
        who = await principal(request, "read")
        return json_response(
            await proofs_api.log_key(state["pool"], who.workspace_id, settings.log_name)
        )

    @app.get("/api/v1/checkpoints/latest")
    async def latest_checkpoint(request: Request) -> Response:
        who, noted = await reader(request)
        doc = await proofs_api.latest(state["pool"], who.workspace_id)
        noted("proofs", {"proof": "checkpoint_latest"}, 1)
        return json_response(doc)

    @app.get("/api/v1/checkpoints")
    async def list_checkpoints(request: Request) -> Response:
        who, noted = await reader(request)
        doc = await proofs_api.list_checkpoints(
            state["pool"], who.workspace_id, request.query_params
        )
        noted("proofs", {"proof": "checkpoints", **request.query_params}, len(doc["data"]))
        return json_response(doc)

    @app.get("/api/v1/proofs/inclusion")
    async def inclusion_proof(request: Request) -> Response:
        who, noted = await reader(request)
        doc = await proofs_api.inclusion(state["pool"], who.workspace_id, request.query_params)
        noted("proofs", {"proof": "inclusion"}, 1, item=request.query_params["event_id"])
        return json_response(doc)

    @app.get("/api/v1/proofs/consistency")
    async def consistency_proof(request: Request) -> Response:
        who, noted = await reader(request)
        doc = await proofs_api.consistency(state["pool"], who.workspace_id, request.query_params)
        sizes = f"{request.query_params.get('first')}..{request.query_params.get('second')}"
        noted("proofs", {"proof": "consistency"}, 1, item=sizes)
        return json_response(doc)

    # -- alerts (issue 3) -----------------------------------------------------

    @app.post("/api/v1/alert-rules")
    async def create_rule(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        rule = await change(
            request,
            who,
            "alert_rule.created",
            "alert_rule",
            lambda c: alerts_api.create_rule(c, who.workspace_id, body, plans),
        )
        return json_response(rule, 201)

    @app.get("/api/v1/alert-rules")
    async def list_rules(request: Request) -> Response:
        who = await principal(request, "admin")
        return json_response(await alerts_api.list_rules(state["pool"], who.workspace_id))

    @app.get("/api/v1/alert-rules/{rule_id}")
    async def get_rule(request: Request, rule_id: str) -> Response:
        who = await principal(request, "admin")
        return json_response(await alerts_api.get_rule(state["pool"], who.workspace_id, rule_id))

    @app.patch("/api/v1/alert-rules/{rule_id}")
    async def update_rule(request: Request, rule_id: str) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        rule = await change(
            request,
            who,
            "alert_rule.updated",
            "alert_rule",
            lambda c: alerts_api.update_rule(c, who.workspace_id, rule_id, body),
        )
        return json_response(rule)

    @app.delete("/api/v1/alert-rules/{rule_id}")
    async def delete_rule(request: Request, rule_id: str) -> Response:
        who = await principal(request, "admin")
        await change(
            request,
            who,
            "alert_rule.deleted",
            "alert_rule",
            lambda c: alerts_api.delete_rule(c, who.workspace_id, rule_id),
        )
        return Response(status_code=204)

    @app.post("/api/v1/webhook-endpoints")
    async def create_endpoint(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        created = await change(
            request,
            who,
            "webhook_endpoint.created",
            "webhook_endpoint",
            lambda c: alerts_api.create_endpoint(
                c,
                state["secrets"],
                who.workspace_id,
                body,
                allow_private=settings.allow_private_destinations,
            ),
        )
        return json_response(created, 201)

    @app.get("/api/v1/webhook-endpoints")
    async def list_endpoints(request: Request) -> Response:
        who = await principal(request, "admin")
        return json_response(await alerts_api.list_endpoints(state["pool"], who.workspace_id))

    @app.delete("/api/v1/webhook-endpoints/{endpoint_id}")
    async def delete_endpoint(request: Request, endpoint_id: str) -> Response:
        who = await principal(request, "admin")
        await change(
            request,
            who,
            "webhook_endpoint.deleted",
            "webhook_endpoint",
            lambda c: alerts_api.delete_endpoint(c, who.workspace_id, endpoint_id),
        )
        return Response(status_code=204)

    @app.get("/api/v1/alerts")
    async def list_alerts(request: Request) -> Response:
        who = await principal(request, "read")
        return json_response(
            await alerts_api.list_alerts(state["pool"], who.workspace_id, request.query_params)
        )

    # -- workspace management (issue 5) ------------------------------------------

    @app.get("/api/v1/workspace")
    async def get_workspace(request: Request) -> Response:
        who, tenant = await authorize(request, "read")
        admit(who, tenant)
        return json_response(
            await manage.workspace_document(
                state["pool"], who.workspace_id, tenant.plan, settings.read_audit_default
            )
        )

    @app.patch("/api/v1/workspace")
    async def patch_workspace(request: Request) -> Response:
        who, tenant = await authorize(request, "admin")
        admit(who, tenant)
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        return json_response(
            await change(
                request,
                who,
                "workspace.updated",
                "workspace",
                lambda c: manage.update_workspace(
                    c, who.workspace_id, body, tenant.plan, settings.read_audit_default
                ),
            )
        )

    @app.post("/api/v1/api-keys")
    async def create_api_key(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        created = await change(
            request,
            who,
            "api_key.created",
            "api_key",
            lambda c: manage.create_key(c, who.workspace_id, body, plans),
        )
        return json_response(created, 201)

    @app.get("/api/v1/api-keys")
    async def list_api_keys(request: Request) -> Response:
        who = await principal(request, "admin")
        return json_response(await manage.list_keys(state["pool"], who.workspace_id))

    @app.delete("/api/v1/api-keys/{key_id}")
    async def revoke_api_key(request: Request, key_id: str) -> Response:
        who = await principal(request, "admin")
        await change(
            request,
            who,
            "api_key.revoked",
            "api_key",
            lambda c: manage.revoke_key(c, who.workspace_id, key_id),
        )
        return Response(status_code=204)

    @app.get("/api/v1/members")
    async def list_members(request: Request) -> Response:
        who = await principal(request, "admin")
        return json_response(await manage.list_members(state["pool"], who.workspace_id))

    @app.post("/api/v1/members")
    async def add_member(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        added = await change(
            request,
            who,
            "member.added",
            "member",
            lambda c: manage.add_member(c, who.workspace_id, body),
        )
        return json_response(added, 201)

    @app.patch("/api/v1/members/{email}")
    async def change_member(request: Request, email: str) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        return json_response(
            await change(
                request,
                who,
                "member.role_changed",
                "member",
                lambda c: manage.change_member(c, who.workspace_id, email, body),
            )
        )

    @app.delete("/api/v1/members/{email}")
    async def remove_member(request: Request, email: str) -> Response:
        who = await principal(request, "admin")
        await change(
            request,
            who,
            "member.removed",
            "member",
            lambda c: manage.remove_member(c, who.workspace_id, email),
        )
        return Response(status_code=204)

    @app.get("/api/v1/ip-allowlist")
    async def list_allowlist(request: Request) -> Response:
        who = await principal(request, "admin")
        return json_response(await manage.list_allowlist(state["pool"], who.workspace_id))

    @app.post("/api/v1/ip-allowlist")
    async def add_allowlist(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        caller = client_ip(request, trusted)
        added = await change(
            request,
            who,
            "ip_allowlist.entry_added",
            "ip_allowlist",
            lambda c: manage.add_allowlist(c, who.workspace_id, body, plans, caller),
        )
        return json_response(added, 201)

    @app.delete("/api/v1/ip-allowlist/{entry_id}")
    async def remove_allowlist(request: Request, entry_id: str) -> Response:
        who = await principal(request, "admin")
        caller = client_ip(request, trusted)
        await change(
            request,
            who,
            "ip_allowlist.entry_removed",
            "ip_allowlist",
            lambda c: manage.remove_allowlist(c, who.workspace_id, entry_id, caller),
        )
        return Response(status_code=204)

    @app.get("/api/v1/schemas")
    async def list_schemas(request: Request) -> Response:
        who = await principal(request, "read")
        return json_response(await manage.list_schemas(state["pool"], who.workspace_id))

    @app.get("/api/v1/schemas/{schema_id}")
    async def get_schema(request: Request, schema_id: str) -> Response:
        who = await principal(request, "read")
        return json_response(await manage.get_schema(state["pool"], who.workspace_id, schema_id))

    @app.post("/api/v1/schemas")
    async def create_schema(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        created = await change(
            request,
            who,
            "schema.created",
            "schema",
            lambda c: manage.create_schema(c, who.workspace_id, body, plans),
        )
        return json_response(created, 201)

    @app.patch("/api/v1/schemas/{schema_id}")
    async def update_schema(request: Request, schema_id: str) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        return json_response(
            await change(
                request,
                who,
                "schema.updated",
                "schema",
                lambda c: manage.update_schema(c, who.workspace_id, schema_id, body),
            )
        )

    @app.delete("/api/v1/schemas/{schema_id}")
    async def delete_schema(request: Request, schema_id: str) -> Response:
        who = await principal(request, "admin")
        await change(
            request,
            who,
            "schema.deleted",
            "schema",
            lambda c: manage.delete_schema(c, who.workspace_id, schema_id),
        )
        return Response(status_code=204)

    # -- log streams (issue 4) ----------------------------------------------------

    @app.post("/api/v1/log-streams")
    async def create_stream(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        created = await change(
            request,
            who,
            "log_stream.created",
            "log_stream",
            lambda c: streams_api.create(
                c,
                state["secrets"],
                who.workspace_id,
                body,
                plans,
                allow_private=settings.allow_private_destinations,
            ),
        )
        return json_response(created, 201)

    @app.get("/api/v1/log-streams")
    async def list_streams(request: Request) -> Response:
        who = await principal(request, "admin")
        return json_response(await streams_api.list_streams(state["pool"], who.workspace_id))

    @app.get("/api/v1/log-streams/{stream_id}")
    async def get_stream(request: Request, stream_id: str) -> Response:
        who = await principal(request, "admin")
        return json_response(await streams_api.get(state["pool"], who.workspace_id, stream_id))

    @app.patch("/api/v1/log-streams/{stream_id}")
    async def update_stream(request: Request, stream_id: str) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        return json_response(
            await change(
                request,
                who,
                "log_stream.updated",
                "log_stream",
                lambda c: streams_api.update(
                    c,
                    state["secrets"],
                    who.workspace_id,
                    stream_id,
                    body,
                    allow_private=settings.allow_private_destinations,
                ),
            )
        )

    @app.delete("/api/v1/log-streams/{stream_id}")
    async def delete_stream(request: Request, stream_id: str) -> Response:
        who = await principal(request, "admin")
        await change(
            request,
            who,
            "log_stream.deleted",
            "log_stream",
            lambda c: streams_api.delete(c, who.workspace_id, stream_id),
        )
        return Response(status_code=204)

    @app.post("/api/v1/log-streams/{stream_id}/test")
    async def test_stream(request: Request, stream_id: str) -> Response:
        """Send one synthetic event now and report what the destination answered."""
        who = await principal(request, "admin")
        return json_response(
            await streams_api.send_test(
                state["pool"],
                state["secrets"],
                who.workspace_id,
                stream_id,
                allow_private=settings.allow_private_destinations,
            )
        )

    # -- legal holds (issue 12): events retention keeps, subjects erasure refuses --

    @app.post("/api/v1/legal-holds")
    async def create_legal_hold(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        created = await change(
            request,
            who,
            "legal_hold.created",
            "legal_hold",
            lambda c: holds_api.create(c, who.workspace_id, body, actor(request, who).id),
        )
        return json_response(created, 201)

    @app.get("/api/v1/legal-holds")
    async def list_legal_holds(request: Request) -> Response:
        who = await principal(request, "admin")
        return json_response(await holds_api.list_holds(state["pool"], who.workspace_id))

    @app.get("/api/v1/legal-holds/{hold_id}")
    async def get_legal_hold(request: Request, hold_id: str) -> Response:
        who = await principal(request, "admin")
        return json_response(await holds_api.get(state["pool"], who.workspace_id, hold_id))

    @app.post("/api/v1/legal-holds/{hold_id}/release")
    async def release_legal_hold(request: Request, hold_id: str) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        released = await change(
            request,
            who,
            "legal_hold.released",
            "legal_hold",
            lambda c: holds_api.release(c, who.workspace_id, hold_id, body, actor(request, who).id),
        )
        return json_response(released)

    # -- schedules (issue 12): exports and evidence packs into the workspace's bucket --

    @app.post("/api/v1/schedules")
    async def create_schedule(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        created = await change(
            request,
            who,
            "schedule.created",
            "schedule",
            lambda c: schedules_api.create(
                c,
                state["secrets"],
                who.workspace_id,
                body,
                actor(request, who).id,
                allow_private=settings.allow_private_destinations,
            ),
        )
        return json_response(created, 201)

    @app.get("/api/v1/schedules")
    async def list_schedules(request: Request) -> Response:
        who = await principal(request, "admin")
        return json_response(await schedules_api.list_schedules(state["pool"], who.workspace_id))

    @app.get("/api/v1/schedules/{schedule_id}")
    async def get_schedule(request: Request, schedule_id: str) -> Response:
        who = await principal(request, "admin")
        return json_response(await schedules_api.get(state["pool"], who.workspace_id, schedule_id))

    @app.delete("/api/v1/schedules/{schedule_id}")
    async def disable_schedule(request: Request, schedule_id: str) -> Response:
        who = await principal(request, "admin")
        await change(
            request,
            who,
            "schedule.disabled",
            "schedule",
            lambda c: schedules_api.disable(c, who.workspace_id, schedule_id),
        )
        return Response(status_code=204)

    @app.put("/api/v1/operator/workspaces/{workspace_id}/plan")
    async def operator_set_plan(request: Request, workspace_id: str) -> Response:
        """The operator's API (``CHAINLOG_OPERATOR_TOKEN``), not a workspace's."""
        token = settings.operator_token
        given = request.headers.get("authorization", "")
        if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise errors.unauthenticated("the operator token is required (CHAINLOG_OPERATOR_TOKEN)")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        wid = manage.parse_uuid(workspace_id)
        if wid is None:
            raise errors.not_found(f"no workspace {workspace_id}")
        plan_id = body.get("plan") if isinstance(body, dict) else None
        operator = Actor(
            id="operator:api",
            type="operator",
            ip=client_ip(request, trusted),
            user_agent=request.headers.get("user-agent"),
        )
        async with state["pool"].acquire() as conn, conn.transaction():
            done = await manage.set_plan(conn, wid, str(plan_id), plans)
            await state["admin"].record(
                wid,
                operator,
                "workspace.plan_changed",
                "workspace",
                wid,
                before=done.before,
                after=done.after,
            )
        state["tenants"].invalidate(wid)
        return json_response(done.result)

    return app


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk
