"""ASGI middleware (Starlette, FastAPI, any ASGI app): pure ASGI, no framework imported."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from chainlog_sdk.async_client import AsyncClient
from chainlog_sdk.client import Client
from chainlog_sdk.context import Extractor, request_context

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ChainlogMiddleware:
    """Sets the request context (IP address, user agent, session id) around each
    HTTP and WebSocket request, so ``track()`` fills it in.

    ``client``, if given, is also put in the request state
    (``request.state.chainlog`` in Starlette and FastAPI). The options are
    :class:`~chainlog_sdk.context.Extractor`'s.
    """

    def __init__(
        self,
        app: ASGIApp,
        client: Client | AsyncClient | None = None,
        *,
        trust_forwarded: bool = False,
        session_header: str | None = "x-session-id",
        session_cookie: str | None = "session",
        hash_session_cookie: bool = True,
    ) -> None:
        self.app = app
        self.client = client
        self.extractor = Extractor(
            trust_forwarded=trust_forwarded,
            session_header=session_header,
            session_cookie=session_cookie,
            hash_session_cookie=hash_session_cookie,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        context = self.extractor.extract(peer[0] if peer else None, _headers(scope))
        if self.client is not None:
            scope.setdefault("state", {})["chainlog"] = self.client
        with request_context(context):
            await self.app(scope, receive, send)


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-case names to values; repeated headers joined (cookies by "; ")."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in out:
            out[name] += ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    return out
