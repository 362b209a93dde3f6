"""The request context: set by the ASGI and WSGI middleware, read by track()."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from chainlog_sdk import (
    AsyncClient,
    BatchOptions,
    ChainlogMiddleware,
    ChainlogWSGIMiddleware,
    Client,
)
from chainlog_sdk.context import Extractor, RequestContext, current
from chainlog_sdk.middleware.asgi import Receive, Scope, Send
from sdk_fakes import API, KEY, FakeApi

SECRET = "s3cr3t-session-cookie"


def tracked(api: FakeApi) -> dict[str, dict[str, Any]]:
    """Every event sent, by action."""
    sent = api.bodies("/api/v1/events") + [e for b in api.batches() for e in b]
    return {e["action"]: e for e in sent}


def asgi_app(client: AsyncClient, background: Client) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path == "/track":
            await client.track("page.view", "u1")
        elif path == "/explicit":
            await client.track("page.explicit", "u1", ip_address="198.51.100.1", session_id=None)
        elif path == "/task":
            await asyncio.create_task(client.track("page.task", "u1"))
        elif path == "/queued":
            background.track("page.queued", "u1")
        state = scope.get("state", {})
        body = b"client" if state.get("chainlog") is client else b"none"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


async def call(app: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app"
    ) as h:
        return await h.get(path, headers=headers)


async def test_asgi_fills_the_events_of_the_request() -> None:
    api = FakeApi()
    async with AsyncClient(API, KEY, transport=api.transport()) as client:
        with Client(
            API, KEY, transport=api.transport(), batching=BatchOptions(flush_interval=60)
        ) as background:
            app = ChainlogMiddleware(asgi_app(client, background), client=client)
            headers = {"user-agent": "Mozilla/5.0", "x-session-id": "sess_1"}
            for path in ("/track", "/explicit", "/task", "/queued"):
                response = await call(app, path, headers)
                assert response.content == b"client"
                assert current() is None  # unset once the request is done
            await client.track("outside.request", "u1")
    sent = tracked(api)
    for action in ("page.view", "page.task", "page.queued"):
        event = sent[action]
        assert (event["ip_address"], event["user_agent"], event["session_id"]) == (
            "127.0.0.1",
            "Mozilla/5.0",
            "sess_1",
        ), action
    explicit = sent["page.explicit"]
    assert explicit["ip_address"] == "198.51.100.1" and "session_id" not in explicit
    assert explicit["user_agent"] == "Mozilla/5.0"
    assert not {"ip_address", "user_agent", "session_id"} & set(sent["outside.request"])


async def test_asgi_forwarded_for_only_when_trusted_and_valid() -> None:
    seen: list[RequestContext | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(current())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    forwarded = {"x-forwarded-for": "203.0.113.9, 10.0.0.1", "cookie": f"a=1; session={SECRET}"}
    await call(ChainlogMiddleware(app), "/", forwarded)
    await call(ChainlogMiddleware(app, trust_forwarded=True), "/", forwarded)
    await call(ChainlogMiddleware(app, trust_forwarded=True), "/", {"x-forwarded-for": "unknown"})
    assert [c.ip_address if c else None for c in seen] == ["127.0.0.1", "203.0.113.9", "127.0.0.1"]
    first = seen[0]
    assert first is not None
    # A session cookie is a credential: only its hash is recorded.
    assert first.session_id == hashlib.sha256(SECRET.encode()).hexdigest()


def wsgi_app(client: Client) -> Any:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        client.track("page.view", "u1")
        start_response("200 OK", [("content-type", "text/plain")])
        assert environ["chainlog.client"] is client

        def body() -> Iterator[bytes]:
            # A streamed body runs after the app returned, still in the request.
            client.track("page.streamed", "u1")
            yield b"ok"

        return body()

    return app


def test_wsgi_fills_the_events_of_the_request_and_its_body() -> None:
    api = FakeApi()
    with Client(API, KEY, transport=api.transport()) as client:
        app = ChainlogWSGIMiddleware(wsgi_app(client), client=client, session_cookie="sid")
        environ: dict[str, Any] = {}
        setup_testing_defaults(environ)
        environ.update(
            REMOTE_ADDR="192.0.2.5",
            HTTP_USER_AGENT="curl/8.5",
            HTTP_COOKIE="theme=dark; sid=abc",
            HTTP_X_FORWARDED_FOR="203.0.113.9",
        )
        result = app(environ, lambda status, headers, exc_info=None: lambda data: None)
        assert current() is None  # set only while the application's code runs
        assert b"".join(result) == b"ok"
        assert current() is None
        result.close()  # type: ignore[attr-defined]
        client.track("after.request", "u1")
    sent = tracked(api)
    for action in ("page.view", "page.streamed"):
        event = sent[action]
        assert (event["ip_address"], event["user_agent"], event["session_id"]) == (
            "192.0.2.5",
            "curl/8.5",
            hashlib.sha256(b"abc").hexdigest(),
        ), action
    assert "ip_address" not in sent["after.request"]


def test_wsgi_unsets_the_context_when_the_app_raises() -> None:
    def broken(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("boom")

    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    with pytest.raises(RuntimeError):
        ChainlogWSGIMiddleware(broken)(environ, lambda *a: lambda data: None)
    assert current() is None


def test_a_thread_you_start_needs_the_context_copied() -> None:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ["REMOTE_ADDR"] = "192.0.2.5"
    seen: dict[str, RequestContext | None] = {}

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        plain = threading.Thread(target=lambda: seen.update(plain=current()))
        copied = contextvars.copy_context()
        carried = threading.Thread(
            target=copied.run, args=(lambda: seen.update(carried=current()),)
        )
        for t in (plain, carried):
            t.start()
            t.join()
        start_response("204 No Content", [])
        return []

    ChainlogWSGIMiddleware(app)(environ, lambda *a: lambda data: None)
    assert seen["plain"] is None
    carried = seen["carried"]
    assert carried is not None and carried.ip_address == "192.0.2.5"


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("2001:db8::1", {}, RequestContext(ip_address="2001:db8::1")),
        ("testclient", {}, RequestContext()),
        (None, {"user-agent": "a\x00b"}, RequestContext(user_agent="ab")),
        (None, {"user-agent": "u" * 2000}, RequestContext(user_agent="u" * 1024)),
        (None, {"x-session-id": "h", "cookie": "session=c"}, RequestContext(session_id="h")),
        # Too long for the API's 256 characters: the cookie is the session then.
        (
            None,
            {"x-session-id": "h" * 300, "cookie": "session=c"},
            RequestContext(session_id=hashlib.sha256(b"c").hexdigest()),
        ),
    ],
)
def test_extract(peer: str | None, headers: dict[str, str], expected: RequestContext) -> None:
    assert Extractor().extract(peer, headers) == expected


def test_extract_forwarded_forms_and_raw_cookies() -> None:
    trusting = Extractor(trust_forwarded=True, hash_session_cookie=False, session_header=None)
    assert (
        trusting.extract(None, {"x-forwarded-for": "[2001:db8::2]:443"}).ip_address == "2001:db8::2"
    )
    assert (
        trusting.extract(None, {"x-forwarded-for": "203.0.113.9:5678"}).ip_address == "203.0.113.9"
    )
    assert trusting.extract(None, {"cookie": 'session="raw"'}).session_id == "raw"
