"""Hostile and broken input at every door: a clear 4xx, never a 5xx, never a hole.

Authentication and scopes, bodies that are not what they claim, fields of
the wrong shape, query parameters out of range, random junk, and poison
records put straight onto the raw topic (which must be dead-lettered
without stopping the chain behind them).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from libs.common import keys
from libs.common.event import FIELDS
from libs.common.settings import Settings
from libs.common.timeutil import now_ts, uuid7
from libs.common.topics import Names
from tests.conftest import Workspace, event, stored_count
from tests.stack import API_PORT, NAMESPACE, wait_until

pytestmark = pytest.mark.integration

EVENTS = "/api/v1/events"
BATCH = "/api/v1/events/batch"
VERIFY = "/api/v1/verify"
JSON = {"Content-Type": "application/json"}


def violation_fields(r: httpx.Response) -> list[str]:
    assert r.status_code == 422, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == "validation_failed", body
    assert isinstance(body["message"], str) and body["message"], body
    return [v["field"] for v in body["violations"]]


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"], body


async def extra_key(admin_db: asyncpg.Pool, ws: Workspace, scopes: list[str]) -> dict[str, str]:
    async with admin_db.acquire() as conn:
        new = await keys.create_key(conn, ws.id, "-".join(scopes), scopes)
    return {"Authorization": f"Bearer {new.key}"}


async def wait_stored(admin_db: asyncpg.Pool, ws: Workspace, n: int) -> None:
    async def reached() -> bool:
        return await stored_count(admin_db, ws.id) >= n

    await wait_until(reached, what=f"{n} events of {ws.id} stored")
    assert await stored_count(admin_db, ws.id) == n


async def verify_valid(api: httpx.AsyncClient, ws: Workspace, events: int) -> None:
    r = await api.get(VERIFY, headers=ws.headers)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["valid"] is True and result["breaks"] == [], result
    assert result["events_checked"] == events, result
    if events:
        assert (result["first_seq"], result["last_seq"]) == (1, events), result


# -- authentication and scopes -------------------------------------------------

UNKNOWN_KEY = f"clk_{'a' * 10}_{'b' * 32}"
BAD_AUTHORIZATION: list[dict[str, Any]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": f"Basic {base64.b64encode(b'user:pass').decode()}"},
    {"Authorization": f"bearer {UNKNOWN_KEY}"},
    {"Authorization": f"Token {UNKNOWN_KEY}"},
    {"Authorization": UNKNOWN_KEY},
    {"Authorization": f"Bearer {UNKNOWN_KEY}"},
    {"Authorization": f"Bearer {UNKNOWN_KEY[:-1]}"},
    {"Authorization": f"Bearer {UNKNOWN_KEY}x"},
    {"Authorization": "Bearer clk___"},
    {"Authorization": "Bearer garbage"},
    {"Authorization": "Bearer " + "z" * 8000},
    {"Authorization": b"Bearer \xff\xfe\x80"},
]


@pytest.mark.parametrize(
    "headers", BAD_AUTHORIZATION, ids=[f"auth{i}" for i in range(len(BAD_AUTHORIZATION))]
)
async def test_unauthenticated(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace, headers: dict[str, Any]
) -> None:
    for method, path in (("GET", EVENTS), ("GET", VERIFY), ("POST", EVENTS), ("POST", BATCH)):
        content = orjson.dumps({"events": [event()]} if path == BATCH else event())
        r = await api.request(method, path, headers={**JSON, **headers}, content=content)
        assert_error(r, 401, "unauthenticated")
        assert r.headers.get("www-authenticate") == "Bearer"
    assert await stored_count(admin_db, workspace.id) == 0


async def test_wrong_key_of_a_real_prefix(api: httpx.AsyncClient, workspace: Workspace) -> None:
    """The right prefix with the wrong secret proves nothing."""
    prefix = keys.split_prefix(workspace.key)
    assert prefix is not None
    forged = f"clk_{prefix}_{'0' * 32}"
    r = await api.get(EVENTS, headers={"Authorization": f"Bearer {forged}"})
    assert_error(r, 401, "unauthenticated")
    assert (await api.get(EVENTS, headers=workspace.headers)).status_code == 200


async def test_revoked_key_stops_working(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    assert (await api.get(EVENTS, headers=workspace.headers)).status_code == 200
    await admin_db.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = $1",
        keys.split_prefix(workspace.key),
    )

    async def refused() -> bool:
        return (await api.get(EVENTS, headers=workspace.headers)).status_code == 401

    await wait_until(refused, within=10, what="the revoked key to be refused")
    assert_error(
        await api.post(EVENTS, json=event(), headers=workspace.headers), 401, "unauthenticated"
    )
    assert_error(await api.get(VERIFY, headers=workspace.headers), 401, "unauthenticated")


async def test_ingest_only_key_cannot_read(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    ingest = await extra_key(admin_db, workspace, ["ingest"])
    r = await api.post(EVENTS, json=event(), headers=ingest)
    assert r.status_code == 202, r.text
    event_id = r.json()["id"]
    for path in (EVENTS, VERIFY, f"{EVENTS}/{event_id}"):
        assert_error(await api.get(path, headers=ingest), 403, "forbidden")


async def test_read_only_key_cannot_write(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    read = await extra_key(admin_db, workspace, ["read"])
    assert_error(await api.post(EVENTS, json=event(), headers=read), 403, "forbidden")
    batch = {"events": [event(1), event(2)]}
    assert_error(await api.post(BATCH, json=batch, headers=read), 403, "forbidden")
    assert (await api.get(EVENTS, headers=read)).status_code == 200
    assert (await api.get(VERIFY, headers=read)).status_code == 200
    assert await stored_count(admin_db, workspace.id) == 0


# -- bodies that are not JSON objects --------------------------------------------

NOT_JSON = {
    "malformed": b'{"actor_id": "a", "action": ',
    "trailing_garbage": b'{"actor_id": "a", "action": "x.y"} x',
    "single_quotes": b"{'actor_id': 'a', 'action': 'x.y'}",
    "empty": b"",
    "non_utf8": b'{"actor_id":"\xff"}',
    "lone_surrogate": b'{"actor_id":"\\ud800", "action": "x.y"}',
    "number_1e400": b'{"actor_id": "a", "action": "x.y", "metadata": {"n": 1e400}}',
    "bare_1e400": b"1e400",
    "nan": b'{"actor_id": "a", "action": "x.y", "metadata": {"n": NaN}}',
    "bom": b'\xef\xbb\xbf{"actor_id": "a", "action": "x.y"}',
}


@pytest.mark.parametrize("path", [EVENTS, BATCH])
@pytest.mark.parametrize("body", NOT_JSON.values(), ids=NOT_JSON.keys())
async def test_not_json(
    api: httpx.AsyncClient, workspace: Workspace, path: str, body: bytes
) -> None:
    r = await api.post(path, content=body, headers={**JSON, **workspace.headers})
    assert_error(r, 400, "invalid_json")


@pytest.mark.parametrize("body", [b"[]", b'[{"actor_id": "a", "action": "x.y"}]', b"42", b'"str"'])
async def test_json_that_is_not_an_object(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace, body: bytes
) -> None:
    r = await api.post(EVENTS, content=body, headers={**JSON, **workspace.headers})
    assert violation_fields(r) == ["body"]
    r = await api.post(BATCH, content=body, headers={**JSON, **workspace.headers})
    assert violation_fields(r) == ["events"]
    assert await stored_count(admin_db, workspace.id) == 0


# -- bodies over the cap ---------------------------------------------------------

BIG = 6_000_000  # over the default cap of 5 MiB


def oversized() -> bytes:
    return b'{"actor_id": "a", "action": "x.y", "resource": "' + b"r" * BIG + b'"}'


@pytest.mark.parametrize("path", [EVENTS, BATCH])
async def test_too_large_with_content_length(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace, path: str
) -> None:
    r = await api.post(path, content=oversized(), headers={**JSON, **workspace.headers})
    assert_error(r, 413, "payload_too_large")
    assert await stored_count(admin_db, workspace.id) == 0


@pytest.mark.parametrize("path", [EVENTS, BATCH])
async def test_too_large_streamed_without_content_length(
    api: httpx.AsyncClient, workspace: Workspace, path: str
) -> None:
    """Chunked transfer: no length to trust, the cap holds while reading."""
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"actor_id": "a", "action": "x.y", "resource": "'
        while sent < BIG:
            sent += 64 * 1024
            yield b"r" * (64 * 1024)
        yield b'"}'

    r = await api.post(path, content=chunks(), headers={**JSON, **workspace.headers})
    assert "content-length" not in r.request.headers
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert_error(r, 413, "payload_too_large")


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 response (head and body) from a raw connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await asyncio.wait_for(reader.readexactly(length), 30)


def request_head(ws: Workspace, content_length: int) -> bytes:
    return (
        f"POST {EVENTS} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ws.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


async def test_content_length_claiming_too_much(
    admin_db: asyncpg.Pool, api: httpx.AsyncClient, workspace: Workspace
) -> None:
    """A declared length over the cap is refused before any body is read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", API_PORT)
    try:
        writer.write(request_head(workspace, 10 * 1024 * 1024) + b"{}")
        await writer.drain()
        answer = await read_response(reader)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b'"payload_too_large"' in answer
    assert await stored_count(admin_db, workspace.id) == 0


async def test_content_length_claiming_too_little(
    admin_db: asyncpg.Pool, api: httpx.AsyncClient, workspace: Workspace
) -> None:
    """A short declared length frames the body: the excess never joins it."""
    body = oversized()
    reader, writer = await asyncio.open_connection("127.0.0.1", API_PORT)
    try:
        writer.write(request_head(workspace, 40) + body[:40])
        await writer.drain()
        first = await read_response(reader)
        # Answered on exactly the declared 40 bytes (cut JSON), without waiting for more.
        assert first.startswith(b"HTTP/1.1 400 "), first[:300]
        assert b'"invalid_json"' in first
        # The excess can only be a broken next request: refused, or the connection dropped.
        try:
            writer.write(body[40:])
            await asyncio.wait_for(writer.drain(), 30)
            rest = await asyncio.wait_for(reader.read(), 30)
        except ConnectionError:
            rest = b""
        assert rest == b"" or rest.startswith(b"HTTP/1.1 400 "), rest[:300]
    finally:
        writer.close()
    assert await stored_count(admin_db, workspace.id) == 0


# -- well-formed JSON, wrong fields ------------------------------------------------

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("actor_id_int", {"actor_id": 1}, "actor_id"),
    ("actor_id_empty", {"actor_id": ""}, "actor_id"),
    ("actor_id_too_long", {"actor_id": "a" * 257}, "actor_id"),
    ("action_missing", {"action": None}, "action"),
    ("action_not_dotted", {"action": "document..update"}, "action"),
    ("action_newline", {"action": "document.update\n"}, "action"),
    ("metadata_list", {"metadata": [1, 2]}, "metadata"),
    ("metadata_string", {"metadata": "x"}, "metadata"),
    ("metadata_51_keys", {"metadata": {f"k{i}": i for i in range(51)}}, "metadata"),
    ("metadata_over_64kb", {"metadata": {"blob": "x" * (64 * 1024)}}, "metadata"),
    ("metadata_int_2_60", {"metadata": {"big": 2**60}}, "metadata"),
    ("metadata_negative_2_60", {"metadata": {"big": [-(2**60)]}}, "metadata"),
    ("metadata_float_huge", {"metadata": {"big": 1e300}}, "metadata"),
    ("metadata_nul_value", {"metadata": {"k": "a\x00b"}}, "metadata"),
    ("metadata_nul_key", {"metadata": {"a\x00": 1}}, "metadata"),
    ("metadata_too_deep", {"metadata": {"a": [[[[[[[[[1]]]]]]]]]}}, "metadata"),
    ("targets_not_list", {"targets": {"type": "doc"}}, "targets"),
    ("targets_item_not_object", {"targets": ["doc"]}, "targets[0]"),
    ("target_without_type", {"targets": [{"id": "x"}]}, "targets[0].type"),
    ("target_unknown_field", {"targets": [{"type": "d", "colour": "red"}]}, "targets[0].colour"),
    (
        "target_metadata_big_int",
        {"targets": [{"type": "d", "metadata": {"n": 2**60}}]},
        "targets[0].metadata",
    ),
    ("targets_51", {"targets": [{"type": "d"}] * 51}, "targets"),
    ("occurred_at_yesterday", {"occurred_at": "yesterday"}, "occurred_at"),
    ("occurred_at_no_offset", {"occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
    ("occurred_at_month_13", {"occurred_at": "2026-13-01T00:00:00Z"}, "occurred_at"),
    ("occurred_at_year_0", {"occurred_at": "0000-01-01T00:00:00Z"}, "occurred_at"),
    ("occurred_at_overflow", {"occurred_at": "0001-01-01T00:00:00+01:00"}, "occurred_at"),
    ("occurred_at_number", {"occurred_at": 1767225600}, "occurred_at"),
    ("ip_999", {"ip_address": "999.1.1.1"}, "ip_address"),
    ("ip_int", {"ip_address": 16909060}, "ip_address"),
    ("version_true", {"version": True}, "version"),
    ("version_zero", {"version": 0}, "version"),
    ("version_string", {"version": "1"}, "version"),
    ("version_float", {"version": 1.5}, "version"),
    ("nul_in_actor", {"actor_id": "a\x00b"}, "actor_id"),
    ("nul_in_idempotency_key", {"idempotency_key": "k\x00"}, "idempotency_key"),
    ("unknown_field", {"colour": "red"}, "colour"),
    ("system_seq", {"seq": 1}, "seq"),
    ("system_hash", {"hash": "00" * 32}, "hash"),
    ("system_id", {"id": str(uuid.uuid4())}, "id"),
    ("system_workspace_id", {"workspace_id": str(uuid.uuid4())}, "workspace_id"),
    ("system_prev_hash", {"prev_hash": "0" * 64}, "prev_hash"),
    ("system_received_at", {"received_at": "2026-01-01T00:00:00Z"}, "received_at"),
]


@pytest.mark.parametrize(
    ("fields", "field"), [(f, n) for _, f, n in INVALID], ids=[i for i, _, _ in INVALID]
)
async def test_invalid_event(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    fields: dict[str, Any],
    field: str,
) -> None:
    body = {**event(), **fields}
    r = await api.post(EVENTS, json=body, headers=workspace.headers)
    assert violation_fields(r) == [field]
    # the same event inside a batch names it by its index
    batch = {"events": [body]}
    r = await api.post(BATCH, json=batch, headers=workspace.headers)
    assert violation_fields(r) == [f"events[0].{field}"]
    assert await stored_count(admin_db, workspace.id) == 0


async def test_every_violation_is_named(api: httpx.AsyncClient, workspace: Workspace) -> None:
    body = {"actor_id": 7, "metadata": [], "seq": 3, "colour": "red", "version": True}
    r = await api.post(EVENTS, json=body, headers=workspace.headers)
    assert sorted(violation_fields(r)) == sorted(
        ["actor_id", "metadata", "seq", "colour", "version", "action"]
    )


# -- batches -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"events": []},
        {"events": "x"},
        {"events": {"0": event()}},
        {"events": None},
        {},
        {"event": [event()]},
        {"events": [event(i) for i in range(1001)]},
    ],
    ids=["empty", "string", "object", "null", "no_events", "misspelt", "1001_events"],
)
async def test_bad_batch(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace, body: Any
) -> None:
    r = await api.post(BATCH, json=body, headers=workspace.headers)
    assert violation_fields(r) == ["events"]
    assert await stored_count(admin_db, workspace.id) == 0


async def test_batch_of_one_thousand_is_accepted(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    r = await api.post(
        BATCH, json={"events": [event(i) for i in range(1000)]}, headers=workspace.headers
    )
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1000
    await wait_stored(admin_db, workspace, 1000)


async def test_batch_with_one_invalid_event(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    events = [
        event(0, action="batch.first"),
        event(1, actor_id=12345, metadata={"big": 2**60}),
        event(2, action="batch.third"),
    ]
    r = await api.post(BATCH, json={"events": events}, headers=workspace.headers)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (2, 1), body
    results = body["results"]
    assert [x["index"] for x in results] == [0, 1, 2]
    assert [x["status"] for x in results] == ["queued", "rejected", "queued"]
    assert results[1]["error"] == "validation_failed"
    assert sorted(v["field"] for v in results[1]["violations"]) == [
        "events[1].actor_id",
        "events[1].metadata",
    ]
    assert "id" not in results[1]

    await wait_stored(admin_db, workspace, 2)
    for result, seq, action in ((results[0], 1, "batch.first"), (results[2], 2, "batch.third")):
        got = await api.get(f"{EVENTS}/{result['id']}", headers=workspace.headers)
        assert got.status_code == 200, got.text
        stored = got.json()
        assert (stored["seq"], stored["action"]) == (seq, action)
    await verify_valid(api, workspace, 2)


async def test_batch_where_every_event_is_invalid(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    events = [event(0, seq=1), event(1, version=True)]
    r = await api.post(BATCH, json={"events": events}, headers=workspace.headers)
    assert violation_fields(r) == ["events[0].seq", "events[1].version"]
    assert await stored_count(admin_db, workspace.id) == 0


# -- query parameters ----------------------------------------------------------------


def cursor_of(doc: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")


BAD_QUERY: list[tuple[str, dict[str, str], str]] = [
    ("limit_0", {"limit": "0"}, "limit"),
    ("limit_101", {"limit": "101"}, "limit"),
    ("limit_negative", {"limit": "-1"}, "limit"),
    ("limit_abc", {"limit": "abc"}, "limit"),
    ("limit_float", {"limit": "2.5"}, "limit"),
    ("limit_huge", {"limit": "9" * 40}, "limit"),
    ("cursor_garbage", {"cursor": "not a cursor!"}, "cursor"),
    ("cursor_non_ascii", {"cursor": "ÿÿÿ"}, "cursor"),
    ("cursor_not_json", {"cursor": base64.urlsafe_b64encode(b"\x00\x01").decode()}, "cursor"),
    ("cursor_no_seq", {"cursor": cursor_of({})}, "cursor"),
    ("cursor_list", {"cursor": cursor_of([1])}, "cursor"),
    ("cursor_seq_zero", {"cursor": cursor_of({"s": 0})}, "cursor"),
    ("cursor_seq_string", {"cursor": cursor_of({"s": "5"})}, "cursor"),
    ("cursor_seq_beyond_bigint", {"cursor": cursor_of({"s": 2**63})}, "cursor"),
    ("from_garbage", {"from": "garbage"}, "from"),
    ("to_garbage", {"to": "last tuesday"}, "to"),
    ("from_no_offset", {"from": "2026-01-01T00:00:00"}, "from"),
    ("from_out_of_range", {"from": "0001-01-01T00:00:00+01:00"}, "from"),
    ("to_out_of_range", {"to": "9999-12-31T23:59:59-01:00"}, "to"),
    ("unknown_filter", {"colour": "red"}, "colour"),
    ("system_field_as_filter", {"seq": "1"}, "seq"),
]


@pytest.mark.parametrize(
    ("params", "field"), [(p, f) for _, p, f in BAD_QUERY], ids=[i for i, _, _ in BAD_QUERY]
)
async def test_bad_query_parameter(
    api: httpx.AsyncClient, workspace: Workspace, params: dict[str, str], field: str
) -> None:
    r = await api.get(EVENTS, params=params, headers=workspace.headers)
    assert violation_fields(r) == [field]


async def test_several_bad_query_parameters_are_all_named(
    api: httpx.AsyncClient, workspace: Workspace
) -> None:
    params = {"limit": "0", "from": "x", "to": "y", "colour": "red"}
    r = await api.get(EVENTS, params=params, headers=workspace.headers)
    assert sorted(violation_fields(r)) == ["colour", "from", "limit", "to"]


@pytest.mark.parametrize(
    "params",
    [
        {"from_seq": "0"},
        {"from_seq": "abc"},
        {"to_seq": "-3"},
        {"to_seq": "1.5"},
        {"from_seq": "9" * 30},
        {"to_seq": "9" * 30},
    ],
    ids=["from_zero", "from_abc", "to_negative", "to_float", "from_huge", "to_huge"],
)
async def test_bad_verify_range(
    api: httpx.AsyncClient, workspace: Workspace, params: dict[str, str]
) -> None:
    r = await api.get(VERIFY, params=params, headers=workspace.headers)
    assert violation_fields(r) == [next(iter(params))]


async def test_unknown_routes_and_methods(api: httpx.AsyncClient, workspace: Workspace) -> None:
    assert_error(await api.get("/api/v1/nothing", headers=workspace.headers), 404, "not_found")
    assert_error(await api.delete(EVENTS, headers=workspace.headers), 405, "method_not_allowed")
    r = await api.get(f"{EVENTS}/{uuid.uuid4()}", headers=workspace.headers)
    assert_error(r, 404, "not_found")
    r = await api.get(f"{EVENTS}/%00", headers=workspace.headers)
    assert r.status_code == 404, r.text


# -- random junk -----------------------------------------------------------------------

JUNK_CHARS = 'a.Z_-0 é☃𝄞\x00\n\t"\\/{}[]:,\u2028\ufeff'
JUNK_VALUES: list[Any] = [
    "2026-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "9999-12-31T23:59:59.999999999-23:59",
    "0001-01-01T00:00:00+23:59",
    "::1",
    "1.2.3.4",
    "::ffff:1.2.3.4",
    "fe80::1%eth0",
    "document.update",
    "a" * 300,
    0,
    -1,
    2**31,
    2**53,
    2**53 - 1,
    -(2**63),
    2**64 - 1,
    0.1,
    -0.0,
    1e-320,
    5e-324,
    1.7976931348623157e308,
    True,
    False,
    None,
    [],
    {},
]


def junk_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.choice(JUNK_VALUES)
    if kind == 1:
        return "".join(rng.choice(JUNK_CHARS) for _ in range(rng.randrange(0, 12)))
    if kind == 2:
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == 3:
        return rng.uniform(-1e6, 1e6)
    if kind == 4:
        return rng.choice(["x", "a.b", "user-1", ""])
    if kind in (5, 6):
        keys_ = [*FIELDS, "seq", "hash", "type", "id", "name", "metadata", "", "é", "\x00"]
        return {
            rng.choice(keys_) if rng.random() < 0.7 else junk_text(rng): junk_value(rng, depth + 1)
            for _ in range(rng.randrange(0, 6))
        }
    return [junk_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]


def junk_text(rng: random.Random) -> str:
    return "".join(rng.choice(JUNK_CHARS) for _ in range(rng.randrange(1, 8)))


def junk_event(rng: random.Random) -> Any:
    """Mostly a plausible event with a few fields replaced by junk."""
    if rng.random() < 0.15:
        return junk_value(rng)
    ev: dict[str, Any] = event(rng.randrange(100))
    for _ in range(rng.randrange(0, 4)):
        name = rng.choice([*FIELDS, "seq", "colour"])
        ev[name] = junk_value(rng)
    return ev


def junk_body(rng: random.Random, batch: bool) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 300))
    if kind == 1:  # JSON cut short or spliced with random bytes
        text = orjson.dumps(junk_event(rng))
        cut = rng.randrange(len(text) + 1)
        return text[:cut] + (rng.randbytes(rng.randrange(0, 4)) if rng.random() < 0.5 else b"")
    if kind == 2:
        return orjson.dumps(junk_value(rng))
    if batch:
        events = [junk_event(rng) for _ in range(rng.randrange(0, 6))]
        doc: Any = {"events": events} if rng.random() < 0.9 else events
        return orjson.dumps(doc)
    return orjson.dumps(junk_event(rng))


@pytest.mark.parametrize("path", [EVENTS, BATCH])
async def test_random_junk_never_breaks_anything(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace, path: str
) -> None:
    rng = random.Random(f"chainlog-junk-{path}")
    queued = 0
    statuses: dict[int, int] = {}
    for i in range(200):
        body = junk_body(rng, batch=path == BATCH)
        r = await api.post(path, content=body, headers={**JSON, **workspace.headers})
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (i, body[:300], r.text)
        assert r.status_code in (202, 400, 422), (i, body[:300], r.text)
        answer = r.json()
        if r.status_code == 202:
            results = answer["results"] if path == BATCH else [answer]
            queued += sum(1 for x in results if x.get("status") == "queued")
        else:
            assert answer["error"] in ("invalid_json", "validation_failed"), answer
    # the junk covered every kind of answer, and whatever was accepted is chained
    assert statuses.get(400) and statuses.get(422) and statuses.get(202), statuses
    await wait_stored(admin_db, workspace, queued)
    await verify_valid(api, workspace, queued)


# -- poison on the raw topic ----------------------------------------------------------------


async def test_poison_records_are_dead_lettered(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, settings: Settings, workspace: Workspace
) -> None:
    names = Names(NAMESPACE)
    marker = os.urandom(8).hex()
    valid_event = {"id": uuid7(), "received_at": now_ts(), "actor_id": "a", "action": "x.y"}
    no_action = {k: v for k, v in valid_event.items() if k != "action"}
    poison = {
        b"not JSON": f"not json {marker}".encode(),
        b"workspace_id is not a UUID": orjson.dumps(
            {"workspace_id": f"ws-{marker}", "events": [valid_event]}
        ),
        b"events[0].action is missing": orjson.dumps(
            {"workspace_id": workspace.id, "events": [no_action | {"actor_id": marker}]}
        ),
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        partitions = {
            (await producer.send_and_wait(names.raw, value, key=workspace.id.encode())).partition
            for value in poison.values()
        }
    finally:
        await producer.stop()
    assert len(partitions) == 1
    partition = partitions.pop()

    r = await api.post(EVENTS, json=event(action="after.poison"), headers=workspace.headers)
    assert r.status_code == 202, r.text
    await wait_stored(admin_db, workspace, 1)
    stored = (await api.get(f"{EVENTS}/{r.json()['id']}", headers=workspace.headers)).json()
    assert (stored["seq"], stored["action"], stored["prev_hash"]) == (1, "after.poison", "0" * 64)
    await verify_valid(api, workspace, 1)

    found: dict[bytes, Any] = {}
    wanted = set(poison.values())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tp = TopicPartition(names.dead_letter, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)

        async def all_dead_lettered() -> bool:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                found.update({r.value: r for r in records if r.value in wanted})
            return len(found) == len(wanted)

        await wait_until(all_dead_lettered, what="the poison records on the dead-letter topic")
    finally:
        await consumer.stop()
    for reason, value in poison.items():
        record = found[value]
        headers = dict(record.headers)
        assert record.key == workspace.id.encode()
        assert reason in headers["chainlog-reason"], headers
        assert headers["chainlog-stage"] == b"chainer"
        assert headers["chainlog-source"].startswith(f"{names.raw}/{partition}/".encode())
