"""The public HTTP edge: authenticate, validate, publish; read and verify.

Bodies are read and parsed by hand (size cap, orjson) rather than through
request models: this is the hot path, and every error must name its field.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from libs.common import errors, secretbox, topics
from libs.common.db import DATABASE_UNAVAILABLE, connect_pool
from libs.common.logs import Logger
from libs.common.metrics import IngestMetrics
from libs.common.settings import Settings
from services.ingest import alerts_api, query
from services.ingest.accept import Acceptor, Outcome
from services.ingest.auth import KeyCache, Principal
from services.ingest.instrument import RequestMetrics
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
        state["acceptor"] = Acceptor(producer, pool, settings.topics.raw)
        state["secrets"] = secretbox.for_settings(settings)
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
            if workers is not None:
                workers.shutdown(cancel_futures=True)
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

    async def principal(request: Request, scope: str) -> Principal:
        who: Principal = await state["keys"].authenticate(request.headers.get("authorization"))
        who.require(scope)
        return who

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

    @app.post("/api/v1/events")
    async def post_event(request: Request) -> Response:
        who = await principal(request, "ingest")
        body = await read_json(request, settings.max_body_bytes)
        outcome: Outcome = await state["acceptor"].accept(who.workspace_id, [body], "")
        count(outcome)
        result = outcome.results[0]
        if result["status"] == "rejected":
            raise errors.validation_failed(result["violations"])
        return json_response({"id": result["id"], "status": result["status"]}, 202)

    @app.post("/api/v1/events/batch")
    async def post_batch(request: Request) -> Response:
        who = await principal(request, "ingest")
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
        outcome = await state["acceptor"].accept(who.workspace_id, events, "events[{i}].")
        count(outcome)
        if outcome.accepted == 0 and outcome.rejected:
            violations = [v for r in outcome.results for v in r.get("violations", [])]
            raise errors.validation_failed(violations, "no event in the batch is valid")
        return json_response(
            {
                "accepted": outcome.accepted,
                "rejected": outcome.rejected,
                "results": outcome.results,
            },
            202,
        )

    @app.get("/api/v1/events")
    async def get_events(request: Request) -> Response:
        who = await principal(request, "read")
        return json_response(
            await query.list_events(state["pool"], who.workspace_id, request.query_params)
        )

    @app.get("/api/v1/events/{event_id}")
    async def get_event(request: Request, event_id: str) -> Response:
        who = await principal(request, "read")
        return json_response(await query.get_event(state["pool"], who.workspace_id, event_id))

    @app.get("/api/v1/verify")
    async def verify(request: Request) -> Response:
        who = await principal(request, "read")
        result = await verify_chain(
            state["pool"],
            who.workspace_id,
            request.query_params,
            max_breaks=settings.verify_max_breaks,
            workers=state["verify_workers"],
            dsn=settings.database_url,
            parallel_min=settings.verify_parallel_min,
        )
        return json_response(result)

    # -- alerts (issue 3) -----------------------------------------------------

    @app.post("/api/v1/alert-rules")
    async def create_rule(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        return json_response(
            await alerts_api.create_rule(state["pool"], who.workspace_id, body), 201
        )

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
        return json_response(
            await alerts_api.update_rule(state["pool"], who.workspace_id, rule_id, body)
        )

    @app.delete("/api/v1/alert-rules/{rule_id}")
    async def delete_rule(request: Request, rule_id: str) -> Response:
        who = await principal(request, "admin")
        await alerts_api.delete_rule(state["pool"], who.workspace_id, rule_id)
        return Response(status_code=204)

    @app.post("/api/v1/webhook-endpoints")
    async def create_endpoint(request: Request) -> Response:
        who = await principal(request, "admin")
        body = await read_json(request, MANAGEMENT_BODY_BYTES)
        created = await alerts_api.create_endpoint(
            state["pool"],
            state["secrets"],
            who.workspace_id,
            body,
            allow_private=settings.allow_private_destinations,
        )
        return json_response(created, 201)

    @app.get("/api/v1/webhook-endpoints")
    async def list_endpoints(request: Request) -> Response:
        who = await principal(request, "admin")
        return json_response(await alerts_api.list_endpoints(state["pool"], who.workspace_id))

    @app.delete("/api/v1/webhook-endpoints/{endpoint_id}")
    async def delete_endpoint(request: Request, endpoint_id: str) -> Response:
        who = await principal(request, "admin")
        await alerts_api.delete_endpoint(state["pool"], who.workspace_id, endpoint_id)
        return Response(status_code=204)

    @app.get("/api/v1/alerts")
    async def list_alerts(request: Request) -> Response:
        who = await principal(request, "read")
        return json_response(
            await alerts_api.list_alerts(state["pool"], who.workspace_id, request.query_params)
        )

    return app
