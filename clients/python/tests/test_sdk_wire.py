"""Pure pieces: error mapping, retry decisions, event preparation and splitting."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from chainlog_sdk import errors
from chainlog_sdk.context import RequestContext, request_context
from chainlog_sdk.errors import error_from_response
from chainlog_sdk.events import (
    BATCH_OVERHEAD,
    all_rejected,
    batch_body,
    chunks,
    encode,
    parse_results,
    prepare,
)
from chainlog_sdk.retry import Backoff, next_delay, retryable

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def body(code: str, **extra: object) -> bytes:
    return json.dumps({"error": code, "message": f"{code} happened", **extra}).encode()


# -- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (401, "unauthenticated", errors.Unauthenticated),
        (403, "forbidden", errors.Forbidden),
        (404, "not_found", errors.NotFound),
        (409, "export_not_ready", errors.Conflict),
        (410, "export_expired", errors.Gone),
        (413, "payload_too_large", errors.ChainlogError),
        (422, "validation_failed", errors.ValidationError),
        (429, "too_many_exports", errors.RateLimited),
        (500, "internal", errors.ServerError),
        (503, "unavailable", errors.Unavailable),
    ],
)
def test_each_status_is_its_class(status: int, code: str, cls: type[errors.ChainlogError]) -> None:
    err = error_from_response(status, {}, body(code))
    assert type(err) is cls
    assert (err.status, err.code, err.message) == (status, code, f"{code} happened")
    assert str(err) == f"{status} {code}: {code} happened"


def test_plan_limit_is_a_forbidden_with_its_numbers() -> None:
    err = error_from_response(403, {}, body("plan_limit_reached", limit=5, used=5))
    assert isinstance(err, errors.PlanLimitReached) and isinstance(err, errors.Forbidden)
    assert (err.limit, err.used) == (5, 5)


def test_validation_error_carries_the_violations() -> None:
    violations = [{"field": "action", "message": "action is required"}]
    err = error_from_response(422, {}, body("validation_failed", violations=violations))
    assert isinstance(err, errors.ValidationError)
    assert err.violations == violations


def test_rate_limited_reads_retry_after_and_the_rate_limit_headers() -> None:
    headers = {
        "Retry-After": "17",
        "X-RateLimit-Limit": "60",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "17",
    }
    err = error_from_response(429, headers, body("rate_limited"))
    assert isinstance(err, errors.RateLimited)
    assert (err.retry_after, err.limit, err.remaining, err.reset) == (17.0, 60, 0, 17)


def test_an_answer_without_a_json_body_still_maps() -> None:
    err = error_from_response(502, {}, b"<html>bad gateway</html>")
    assert isinstance(err, errors.ServerError)
    assert (err.code, err.message) == ("http_502", "<html>bad gateway</html>")


def test_retry_after_as_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    seconds = errors.parse_retry_after(later)
    assert seconds is not None and 25 < seconds <= 30
    assert errors.parse_retry_after("soon") is None


# -- retry decisions -----------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    low, high = Backoff(rng=lambda: 0.0), Backoff(rng=lambda: 0.999999)
    assert [low.delay(n) for n in range(8)] == [0.25, 0.5, 1, 2, 4, 8, 15, 15]
    assert [round(high.delay(n), 3) for n in range(3)] == [0.5, 1.0, 2.0]
    assert low.delay(10_000) == 15


UNAVAILABLE = errors.Unavailable("x", status=503)
SERVER = errors.ServerError("x", status=500)
LIMITED = errors.RateLimited("x", status=429, headers={"Retry-After": "9"})
INVALID = errors.ValidationError("x", status=422)
UNSENT = errors.NetworkError("refused", sent=False)
SENT = errors.NetworkError("read timeout", sent=True)


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        (UNAVAILABLE, True, True),
        (UNAVAILABLE, False, False),
        (SERVER, True, True),
        (SERVER, False, False),
        (LIMITED, False, True),
        (UNSENT, False, True),
        (SENT, True, True),
        (SENT, False, False),
        (INVALID, True, False),
        (errors.Unauthenticated("x", status=401), True, False),
    ],
)
def test_what_is_retried(error: errors.ChainlogError, idempotent: bool, expected: bool) -> None:
    assert retryable(error, idempotent=idempotent) is expected


def test_retry_after_is_a_floor_and_max_retries_a_ceiling() -> None:
    backoff = Backoff(rng=lambda: 0.0)
    assert next_delay(backoff, 0, LIMITED, idempotent=True, max_retries=3) == 9
    # Past the floor the backoff's own wait wins.
    assert next_delay(backoff, 6, LIMITED, idempotent=True, max_retries=10) == 15
    assert next_delay(backoff, 3, UNAVAILABLE, idempotent=True, max_retries=3) is None
    assert next_delay(backoff, 500, UNAVAILABLE, idempotent=True, max_retries=None) == 15
    assert next_delay(backoff, 0, INVALID, idempotent=True, max_retries=3) is None


# -- events ----------------------------------------------------------------------


def test_prepare_adds_a_key_and_the_time_and_drops_nones() -> None:
    event = prepare({"action": "a.b", "actor_id": "u", "resource": None}, now=lambda: NOW)
    assert uuid.UUID(event["idempotency_key"]).version == 4
    assert event["occurred_at"] == NOW
    assert "resource" not in event
    given = prepare({"action": "a", "actor_id": "u", "idempotency_key": "k", "occurred_at": None})
    assert given["idempotency_key"] == "k" and "occurred_at" not in given


def test_two_events_never_share_a_key() -> None:
    keys = {prepare({"action": "a", "actor_id": "u"})["idempotency_key"] for _ in range(100)}
    assert len(keys) == 100


def test_prepare_fills_the_request_context_unless_the_caller_names_the_field() -> None:
    ctx = RequestContext(ip_address="203.0.113.7", user_agent="ua", session_id="s1")
    with request_context(ctx):
        filled = prepare({"action": "a", "actor_id": "u", "user_agent": "mine"})
        opted_out = prepare({"action": "a", "actor_id": "u", "ip_address": None})
    assert (filled["ip_address"], filled["user_agent"], filled["session_id"]) == (
        "203.0.113.7",
        "mine",
        "s1",
    )
    assert "ip_address" not in opted_out and opted_out["session_id"] == "s1"
    assert "session_id" not in prepare({"action": "a", "actor_id": "u"})


def test_encode_is_compact_utf8_with_rfc3339_times() -> None:
    event = {"action": "a", "actor_id": "Ada Lovelace ✓", "occurred_at": NOW}
    assert (
        encode(event)
        == (
            '{"action":"a","actor_id":"Ada Lovelace ✓","occurred_at":"2026-03-01T12:00:00+00:00"}'
        ).encode()
    )
    with pytest.raises(TypeError, match="timezone-aware"):
        encode({"occurred_at": datetime(2026, 3, 1)})
    with pytest.raises(ValueError):
        encode({"metadata": {"x": float("nan")}})


def test_chunks_respect_the_count_and_the_body_size() -> None:
    items = [b"x" * 10] * 25
    assert chunks(items, max_events=10) == [range(0, 10), range(10, 20), range(20, 25)]
    # Three items and two commas fit exactly; the fourth does not.
    limit = BATCH_OVERHEAD + 3 * 10 + 2
    assert chunks(items[:7], max_bytes=limit) == [range(0, 3), range(3, 6), range(6, 7)]
    assert len(batch_body(items[:3])) == limit
    # An event bigger than the limit goes alone (the API answers 413).
    assert chunks([b"x", b"y" * 100, b"z"], max_bytes=50) == [range(0, 1), range(1, 2), range(2, 3)]
    assert chunks([]) == []


def test_batch_results_keep_their_index_and_key() -> None:
    answer = {
        "results": [
            {"index": 0, "id": "e1", "status": "queued"},
            {"index": 1, "status": "rejected", "error": "validation_failed", "violations": [{}]},
        ]
    }
    items = parse_results(answer, ["k1", "k2"], offset=1000)
    assert [(i.index, i.status, i.idempotency_key, i.id) for i in items] == [
        (1000, "queued", "k1", "e1"),
        (1001, "rejected", "k2", None),
    ]
    with pytest.raises(errors.ChainlogError, match="one result per event"):
        parse_results(answer, ["k1"])


def test_a_batch_422_names_each_event_or_is_not_per_item() -> None:
    per_item = errors.ValidationError(
        "no event in the batch is valid",
        status=422,
        code="validation_failed",
        body={
            "violations": [
                {"field": "events[0].action", "message": "action is required"},
                {"field": "events[1].actor_id", "message": "actor_id is required"},
                {"field": "events[1].action", "message": "action is required"},
            ]
        },
    )
    items = all_rejected(per_item, ["a", "b"])
    assert items is not None
    assert [len(i.violations) for i in items] == [1, 2]
    whole = errors.ValidationError(
        "x", status=422, body={"violations": [{"field": "events", "message": "too many"}]}
    )
    assert all_rejected(whole, ["a"]) is None
