"""OAuth 2.0 access tokens for destinations (Azure Monitor, Google SecOps).

A token is fetched with the caller's guarded client (so the token endpoint
passes the same SSRF rule as the receiver), cached per credentials until
shortly before it expires, and dropped when the receiver answers 401: the
request is then made once more with a new token.

The cache key is a digest of the token URL and the credentials, never a
secret itself. The cache lives in the process: a restarted streamer simply
fetches new tokens.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from services.streamer.destinations.base import Answer, Result, redact, request, shorten

#: A token is renewed this long before it expires, or at half its life if shorter.
REFRESH_MARGIN_S = 300.0
MAX_TOKENS = 256

Clock = Callable[[], float]
#: ``(access_token, expires_in seconds)``, or why there is none.
Fetched = tuple[str, float] | Result


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class TokenCache:
    """Access tokens by ``cache_key``; ``clock`` is monotonic seconds (a test passes its own)."""

    def __init__(self, clock: Clock = time.monotonic, max_tokens: int = MAX_TOKENS) -> None:
        self.clock = clock
        self.max_tokens = max_tokens
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, key: str) -> str | None:
        entry = self._tokens.get(key)
        if entry is None or self.clock() >= entry[1]:
            return None
        return entry[0]

    def put(self, key: str, token: str, expires_in: float) -> None:
        renew_after = max(expires_in - REFRESH_MARGIN_S, expires_in / 2)
        self._tokens[key] = (token, self.clock() + renew_after)
        self._tokens.move_to_end(key)
        while len(self._tokens) > self.max_tokens:
            self._tokens.popitem(last=False)

    def drop(self, key: str) -> None:
        self._tokens.pop(key, None)


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    form: Mapping[str, str],
    *,
    timeout: float,  # noqa: ASYNC109
    config: Mapping[str, Any],
    secret_fields: Sequence[str],
) -> Fetched:
    """POST ``form`` to a token endpoint; ``{"access_token", "expires_in"}`` back.

    Refusals keep the outcome of their status (400/401: ``failed``, the
    credentials are wrong; 5xx: ``retry``) and say the OAuth ``error`` and
    its description, with the config's secrets cut out.
    """
    answer = await request(
        client,
        "POST",
        url,
        content=urlencode(form).encode(),
        headers={"content-type": "application/x-www-form-urlencoded", "accept": "application/json"},
        timeout=timeout,
    )
    if answer.status is not None and 200 <= answer.status < 300:
        token = _token(answer.body)
        if token is None:
            return Result("retry", answer.status, "token: unreadable answer", 0)
        return token
    result = answer.result(0, total=0)
    detail = redact(_oauth_error(answer.body), config, secret_fields)
    return Result(result.outcome, result.status, shorten(f"token: {detail or result.error}"), 0)


async def authorized(
    cache: TokenCache,
    key: str,
    get_token: Callable[[], Awaitable[Fetched]],
    call: Callable[[str], Awaitable[Answer]],
) -> Answer | Result:
    """``call(token)`` with the cached token, or a new one; once more with a new one after a 401.

    A ``Result`` when no token could be had.
    """
    token = cache.get(key)
    fresh = token is None
    if token is None:
        got = await get_token()
        if isinstance(got, Result):
            return got
        token = got[0]
        cache.put(key, *got)
    answer = await call(token)
    if answer.status != 401 or fresh:
        return answer
    # revoked, or expired earlier than it said: one new token, one more try
    cache.drop(key)
    got = await get_token()
    if isinstance(got, Result):
        return got
    cache.put(key, *got)
    return await call(got[0])


def _token(body: bytes) -> tuple[str, float] | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str):
        return None
    expires_in = doc.get("expires_in", 3600)
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if type(expires_in) not in (int, float) or expires_in <= 0:
        return None
    return doc["access_token"], float(expires_in)


def _oauth_error(body: bytes) -> str:
    """``error: error_description`` of an RFC 6749 error answer."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), str):
        return ""
    description = doc.get("error_description")
    if isinstance(description, str) and description:
        return f"{doc['error']}: {description}"
    return str(doc["error"])
