"""Webhook signing (checked against the standardwebhooks package), retry policy, one POST."""

from __future__ import annotations

import asyncio
import base64
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from libs.common.ssrf import guarded_client
from services.alerter.webhook import (
    ALERT_FIELDS,
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    BACKOFF_FACTOR,
    MAX_ATTEMPTS,
    InvalidSignature,
    backoff_seconds,
    classify,
    headers,
    new_endpoint_secret,
    payload,
    post,
    sign,
    verify,
)

# The test vector from the Standard Webhooks specification's reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

BODY = payload(
    workspace_id="ws-1",
    alert={
        "id": "a-1",
        "rule_id": "r-1",
        "rule_name": "Deletes at night",
        "rule_type": "off_hours",
        "event_id": "e-1",
        "reason": "document.delete at 03:12",
        "triggered_at": "2026-11-27T02:12:05.114000Z",
        "extra": "not sent",
    },
    event={"id": "e-1", "action": "document.delete", "actor_name": "Zoë"},
)


def test_new_secret_shape() -> None:
    secret = new_endpoint_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{32}", secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert new_endpoint_secret() != secret


def test_sign_matches_the_specification_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIG


def test_sign_matches_and_passes_the_standardwebhooks_package() -> None:
    secret = new_endpoint_secret()
    ts = int(time.time())
    ours = sign(secret, "msg_1", ts, BODY)
    theirs = Webhook(secret).sign("msg_1", datetime.fromtimestamp(ts, tz=UTC), BODY.decode())
    assert ours == theirs
    parsed = Webhook(secret).verify(BODY, headers(secret, "msg_1", ts, BODY))
    assert parsed["alert"]["id"] == "a-1"


def test_standardwebhooks_rejects_a_tampered_body() -> None:
    secret = new_endpoint_secret()
    h = headers(secret, "msg_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"a-1", b"a-2"), h)


def test_headers() -> None:
    h = headers(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY)
    assert h == {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TS),
        "webhook-signature": SPEC_SIG,
        "content-type": "application/json",
        "user-agent": "Chainlog-Webhooks/1",
    }


def test_payload_shape() -> None:
    body = orjson.loads(BODY)
    assert body["type"] == "alert.triggered"
    assert body["workspace_id"] == "ws-1"
    assert tuple(body["alert"]) == ALERT_FIELDS  # "extra" is dropped
    assert body["event"]["actor_name"] == "Zoë"


def test_verify_accepts_our_signature_with_any_header_case() -> None:
    h = {k.title(): v for k, v in headers(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY).items()}
    verify(SPEC_SECRET, h, SPEC_BODY, now=SPEC_TS + 299)
    verify(SPEC_SECRET, h, SPEC_BODY, now=SPEC_TS - 299)


def test_verify_accepts_one_of_several_signatures() -> None:
    h = headers(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY)
    other = sign(new_endpoint_secret(), SPEC_ID, SPEC_TS, SPEC_BODY)
    h["webhook-signature"] = f"v2,abc {other} garbage v1,!!! {SPEC_SIG}"
    verify(SPEC_SECRET, h, SPEC_BODY, now=SPEC_TS)
    h["webhook-signature"] = other
    with pytest.raises(InvalidSignature, match="no matching signature"):
        verify(SPEC_SECRET, h, SPEC_BODY, now=SPEC_TS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"body": SPEC_BODY + b" "}, "no matching signature"),
        ({"webhook-id": "msg_other"}, "no matching signature"),
        ({"webhook-timestamp": str(SPEC_TS + 1)}, "no matching signature"),
        ({"now": SPEC_TS + 301}, "outside the tolerance"),
        ({"now": SPEC_TS - 301}, "outside the tolerance"),
        ({"webhook-timestamp": "soon"}, "not an integer"),
        ({"webhook-signature": ""}, "missing"),
        ({"webhook-id": ""}, "missing"),
        ({"webhook-signature": SPEC_SIG.replace("v1,", "v2,")}, "no matching signature"),
    ],
)
def test_verify_rejects(change: dict[str, object], message: str) -> None:
    h = headers(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY)
    body = change.pop("body", SPEC_BODY)
    now = change.pop("now", SPEC_TS)
    h.update({k: str(v) for k, v in change.items()})
    assert isinstance(body, bytes) and isinstance(now, int)
    with pytest.raises(InvalidSignature, match=message):
        verify(SPEC_SECRET, h, body, now=now)


def test_a_malformed_secret_is_refused() -> None:
    for bad in ("whsec_", "whsec_not base64!", ""):
        with pytest.raises(ValueError, match="whsec_"):
            sign(bad, "m", 1, b"{}")


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [
        (200, None, "delivered"),
        (201, None, "delivered"),
        (204, None, "delivered"),
        (299, None, "delivered"),
        (None, "timeout: no complete answer within 5 s", "retry"),
        (None, "connection failed: [Errno 111] Connection refused", "retry"),
        (None, None, "retry"),
        (408, None, "retry"),
        (425, None, "retry"),
        (429, None, "retry"),
        (500, None, "retry"),
        (502, None, "retry"),
        (503, None, "retry"),
        (599, None, "retry"),
        (301, None, "failed"),
        (307, None, "failed"),
        (400, None, "failed"),
        (401, None, "failed"),
        (403, None, "failed"),
        (404, None, "failed"),
        (410, None, "failed"),
        (413, None, "failed"),
        (422, None, "failed"),
    ],
)
def test_classify(status: int | None, error: str | None, outcome: str) -> None:
    assert classify(status, error) == outcome


def test_backoff_bounds_and_jitter() -> None:
    rng = random.Random(7)
    for attempt in range(1, MAX_ATTEMPTS + 20):
        ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * BACKOFF_FACTOR ** (attempt - 1))
        delays = [backoff_seconds(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        # jittered: spread over the upper half, not one fixed value
        assert min(delays) < ceiling * 0.55 and max(delays) > ceiling * 0.95
    assert 2.5 <= backoff_seconds(1, rng) <= 5.0
    assert backoff_seconds(10_000, rng) <= BACKOFF_CAP_S
    assert backoff_seconds(2, base=0.1) <= 0.3  # a faster schedule (the test stack's)
    # The whole schedule leaves a receiver hours to come back, never minutes.
    shortest = sum(
        min(BACKOFF_CAP_S, BACKOFF_BASE_S * BACKOFF_FACTOR ** (n - 1)) / 2
        for n in range(1, MAX_ATTEMPTS)
    )
    assert shortest > 2.5 * 3600
    with pytest.raises(ValueError, match="1-based"):
        backoff_seconds(0)


# --- post() against a real HTTP server on 127.0.0.1


@dataclass
class Receiver:
    """Answers by path; ``/hang`` reads the request and never answers."""

    port: int = 0
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


STATUSES = {"/ok": 200, "/accepted": 202, "/fail": 500, "/busy": 429, "/gone": 404}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        h = {k.lower(): v for k, v in (line.split(": ", 1) for line in head[1:] if line)}
        body = await reader.readexactly(int(h.get("content-length", "0")))
        state.received.append((path, h, body))
        if path == "/hang":
            state.hanging.set()
            await state.release.wait()
        else:
            status = STATUSES[path]
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody".encode()
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state
        state.release.set()


@pytest.mark.parametrize(
    ("path", "status", "outcome"),
    [
        ("/ok", 200, "delivered"),
        ("/accepted", 202, "delivered"),
        ("/fail", 500, "retry"),
        ("/busy", 429, "retry"),
        ("/gone", 404, "failed"),
    ],
)
async def test_post_outcomes(receiver: Receiver, path: str, status: int, outcome: str) -> None:
    secret = new_endpoint_secret()
    async with httpx.AsyncClient() as client:
        attempt = await post(client, receiver.url(path), secret, "msg_7", BODY, timeout=5)
    assert (attempt.status, attempt.error, attempt.outcome) == (status, None, outcome)
    assert attempt.duration_ms >= 0
    [(got_path, got_headers, got_body)] = receiver.received
    assert got_path == path and got_body == BODY
    assert got_headers["user-agent"] == "Chainlog-Webhooks/1"
    assert got_headers["content-type"] == "application/json"
    assert got_headers["webhook-id"] == "msg_7"
    assert abs(int(got_headers["webhook-timestamp"]) - time.time()) < 60
    # what arrived is what any Standard Webhooks receiver accepts
    Webhook(secret).verify(got_body, got_headers)
    verify(secret, got_headers, got_body)


async def test_post_times_out_when_the_receiver_never_answers(receiver: Receiver) -> None:
    async with httpx.AsyncClient() as client:
        attempt = await post(client, receiver.url("/hang"), SPEC_SECRET, "m", BODY, timeout=0.3)
    assert receiver.hanging.is_set()  # the request arrived; only the answer is missing
    assert attempt.status is None and attempt.outcome == "retry"
    assert attempt.error == "timeout: no complete answer within 0.3 s"
    assert 250 <= attempt.duration_ms < 5000


async def test_post_connection_refused_is_retried() -> None:
    # a port that was just free: nothing listens there
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with httpx.AsyncClient() as client:
        attempt = await post(client, f"http://127.0.0.1:{port}/", SPEC_SECRET, "m", BODY, timeout=5)
    assert attempt.status is None and attempt.outcome == "retry"
    assert attempt.error is not None and attempt.error.startswith("connection failed")


async def test_post_to_a_refused_destination_fails_without_retry(receiver: Receiver) -> None:
    async with guarded_client(allow_private=False, timeout=5) as client:
        attempt = await post(client, receiver.url("/ok"), SPEC_SECRET, "m", BODY, timeout=5)
    assert attempt.status is None and attempt.outcome == "failed"
    assert attempt.error is not None
    assert attempt.error.startswith("refused: url: host '127.0.0.1' is a loopback address")
    assert receiver.received == []


async def test_post_through_the_guarded_client_when_private_is_allowed(
    receiver: Receiver,
) -> None:
    async with guarded_client(allow_private=True, timeout=5) as client:
        attempt = await post(client, receiver.url("/ok"), SPEC_SECRET, "m", BODY, timeout=5)
    assert attempt.outcome == "delivered"


async def test_post_error_never_carries_the_url_or_secret() -> None:
    secret = new_endpoint_secret()
    url = "http://127.0.0.1:1/hook?token=sekrit"
    async with httpx.AsyncClient() as client:
        attempt = await post(client, url, secret, "m", BODY, timeout=5)
    assert attempt.error is not None
    assert "sekrit" not in attempt.error and secret not in attempt.error
    assert len(attempt.error) <= 200


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "http:///nohost", "http://[::1/", "http://a\r\nb/"]
)
async def test_post_to_an_unusable_url_fails_without_retry(url: str) -> None:
    async with httpx.AsyncClient() as client:
        attempt = await post(client, url, SPEC_SECRET, "m", BODY, timeout=5)
    assert (attempt.status, attempt.outcome) == (None, "failed")
    assert attempt.error == "refused: url: must be an absolute http(s) URL"
