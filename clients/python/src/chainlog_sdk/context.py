"""Who is calling: the request context the middleware sets and ``track()`` reads.

One :class:`contextvars.ContextVar` holds the current request's
``ip_address``, ``user_agent`` and ``session_id``. It follows the code that
handles the request:

* asyncio: every task started while handling the request gets a copy.
* ASGI frameworks running sync handlers in a thread pool (Starlette,
  FastAPI) copy the context into that thread.
* WSGI: the server calls the application in one thread, so the handler sees
  the value the middleware set in that same thread.
* A thread *you* start (``threading.Thread``, ``ThreadPoolExecutor.submit``)
  starts with an empty context: run it under ``contextvars.copy_context().run``
  or pass the fields to ``track()`` yourself.

:func:`request_context` sets it by hand, e.g. in a background job that acts
for a user.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

#: The event fields the context may fill.
FIELDS = ("ip_address", "user_agent", "session_id")
#: The API's limits for those fields.
MAX_USER_AGENT = 1024
MAX_SESSION_ID = 256


@dataclass(frozen=True, slots=True)
class RequestContext:
    ip_address: str | None = None
    user_agent: str | None = None
    session_id: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("chainlog_request", default=None)


def current() -> RequestContext | None:
    """The context of the request being handled, if a middleware (or you) set one."""
    return _current.get()


@contextmanager
def request_context(context: RequestContext) -> Iterator[RequestContext]:
    """Make ``context`` the current one for the ``with`` block."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def fill(event: MutableMapping[str, Any], context: RequestContext | None = None) -> None:
    """Add the context's fields the event does not name.

    A field the caller passed wins, even as None: ``ip_address=None`` keeps
    the request's address out of that event.
    """
    context = context or _current.get()
    if context is None:
        return
    for name in FIELDS:
        if name not in event:
            value = getattr(context, name)
            if value is not None:
                event[name] = value


@dataclass(frozen=True, slots=True)
class Extractor:
    """Reads a :class:`RequestContext` from a request's peer and headers.

    The options of both middlewares:

    * ``trust_forwarded``: take the first ``X-Forwarded-For`` address instead
      of the peer's. Only behind a proxy that *sets* that header: a client
      can send it too, and the first entry is then its choice.
    * ``session_header`` then ``session_cookie``: where the session id is
      read; None skips one.
    * ``hash_session_cookie``: store a cookie's SHA-256, not the cookie. A
      session cookie is a credential (and Flask's default ``session`` cookie
      carries the session's data): whoever reads the audit log must not be
      able to replay it. The hash still ties a session's events together.
    """

    trust_forwarded: bool = False
    session_header: str | None = "x-session-id"
    session_cookie: str | None = "session"
    hash_session_cookie: bool = True

    def extract(self, peer: str | None, headers: Mapping[str, str]) -> RequestContext:
        """``headers``: lower-case names to values (a repeated header joined by ", ")."""
        ip = None
        if self.trust_forwarded:
            first = headers.get("x-forwarded-for", "").split(",")[0]
            ip = _address(first)
        if ip is None:
            ip = _address(peer)
        agent = _clean(headers.get("user-agent"))
        return RequestContext(
            ip_address=ip,
            user_agent=agent[:MAX_USER_AGENT] if agent else None,
            session_id=self._session(headers),
        )

    def _session(self, headers: Mapping[str, str]) -> str | None:
        if self.session_header:
            value = _clean(headers.get(self.session_header.lower()))
            if value and len(value) <= MAX_SESSION_ID:
                return value
        if self.session_cookie:
            value = _cookie(headers.get("cookie", ""), self.session_cookie)
            if value:
                if self.hash_session_cookie:
                    return hashlib.sha256(value.encode()).hexdigest()
                if len(value) <= MAX_SESSION_ID:
                    return value
        return None


def _clean(value: str | None) -> str | None:
    """The value without NUL characters (the API refuses them), or None if empty."""
    if not value:
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _address(value: str | None) -> str | None:
    """An IP address as the API prints it; None for anything else (the API would refuse the event)."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.7:5678"
        value = value.split(":")[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _cookie(header: str, name: str) -> str | None:
    # By hand: http.cookies.SimpleCookie stops at the first cookie it cannot parse.
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return _clean(value.strip().strip('"'))
    return None
