"""Each destination against a real local receiver that speaks its wire format (tests/siem_receivers.py)."""

from __future__ import annotations

import gzip
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from libs.common.ssrf import guarded_client
from libs.common.timeutil import parse_rfc3339
from services.alerter.webhook import new_endpoint_secret
from services.streamer.destinations import DESTINATIONS
from services.streamer.destinations.base import Result
from services.streamer.destinations.datadog import Datadog
from services.streamer.destinations.elasticsearch import Elasticsearch
from services.streamer.destinations.http import HttpBatch
from services.streamer.destinations.s3 import S3
from services.streamer.destinations.splunk import SplunkHec
from tests.siem_receivers import (
    DatadogReceiver,
    ElasticReceiver,
    HecReceiver,
    HttpReceiver,
    Reply,
    Request,
    S3Server,
    WebhookBatchReceiver,
)

WS = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
TOKEN = "5e6f7a8b-hec-token-9c0d"
DD_KEY = "dd0123456789abcdef0123456789abcd"
HEC, DD, ES, HTTP, S3D = SplunkHec(), Datadog(), Elasticsearch(), HttpBatch(), S3()


def make_events(n: int, start: int = 1, ws: str = WS, **extra: Any) -> list[dict[str, Any]]:
    out = []
    prev = "0" * 64
    for seq in range(start, start + n):
        digest = f"{seq:064x}"
        out.append(
            {
                "id": str(uuid.UUID(int=(0x0193 << 112) + seq)),
                "workspace_id": ws,
                "seq": seq,
                "prev_hash": prev,
                "hash": digest,
                "received_at": f"2026-11-27T02:12:{seq % 60:02d}.114000Z",
                "occurred_at": "2026-11-27T02:12:04Z",
                "action": "document.delete",
                "actor_id": "user_42",
                "metadata": {"n": seq, **extra},
                "ip_country": "DE",
                "ip_city": "Berlin",
            }
        )
        prev = digest
    return out


def valid(destination: Any, raw: dict[str, Any]) -> dict[str, Any]:
    config, violations = destination.validate(raw)
    assert violations == []
    return dict(config)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with guarded_client(allow_private=True, timeout=5.0) as c:
        yield c


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def refused_url() -> str:
    """A local port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---- registry, validation, public ------------------------------------------------------------

FULL_CONFIGS: dict[str, dict[str, Any]] = {
    "splunk_hec": {"url": "https://splunk.example.com:8088", "token": TOKEN, "index": "audit"},
    "datadog": {"api_key": DD_KEY, "site": "datadoghq.eu", "tags": ["env:prod"]},
    "elasticsearch": {"url": "https://es.example.com:9200", "username": "u", "password": "pw-1"},
    "http": {"url": "https://hooks.example.com/in?x=1", "secret": new_endpoint_secret()},
    "s3": {
        "bucket": "audit-logs",
        "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": "s3-secret/key+value",
        "endpoint_url": "https://minio.example.com:9000",
    },
}


def test_registry_holds_every_type_under_its_name() -> None:
    assert set(DESTINATIONS) == {
        "splunk_hec",
        "datadog",
        "elasticsearch",
        "http",
        "s3",
        "syslog",
        "sentinel",
        "chronicle",
        "otlp",
        "security_lake",
    }
    for name, destination in DESTINATIONS.items():
        assert destination.type == name
        assert destination.MAX_BATCH > 0
        assert destination.SECRET_FIELDS


@pytest.mark.parametrize("kind", sorted(FULL_CONFIGS))
def test_public_hides_every_secret(kind: str) -> None:
    destination = DESTINATIONS[kind]
    raw = dict(FULL_CONFIGS[kind])
    if kind == "elasticsearch":
        raw = {"url": raw["url"], "api_key": "es-api-key-1"}  # the other secret
    config = valid(destination, raw)
    shown = destination.public(config)
    secrets = [config[k] for k in destination.SECRET_FIELDS if k in config]
    assert secrets, "the config under test holds a secret"
    assert not set(shown) & set(destination.SECRET_FIELDS)
    text = orjson.dumps(shown).decode()
    assert not [s for s in secrets if s in text]
    assert {k: v for k, v in config.items() if k not in destination.SECRET_FIELDS} == shown


def test_defaults_are_filled() -> None:
    assert valid(HEC, {"url": "https://splunk:8088/", "token": "t"}) == {
        "url": "https://splunk:8088",
        "token": "t",
        "source": "chainlog",
        "sourcetype": "chainlog:audit",
        "verify_tls": True,
        "format": "chainlog",
    }
    assert valid(DD, {"api_key": "k"}) == {
        "api_key": "k",
        "site": "datadoghq.com",
        "service": "chainlog",
        "tags": [],
        "format": "chainlog",
    }
    assert valid(ES, {"url": "http://es:9200"})["index"] == "chainlog-audit"
    assert valid(HTTP, {"url": "https://h.example/x"}) == {
        "url": "https://h.example/x",
        "headers": {},
        "gzip": False,
        "format": "chainlog",
    }
    s3 = valid(S3D, {"bucket": "b-1", "access_key_id": "AK", "secret_access_key": "s"})
    assert (s3["prefix"], s3["region"]) == ("chainlog/", "us-east-1")


def test_a_pasted_hec_endpoint_is_cut_to_its_base() -> None:
    config = valid(HEC, {"url": "https://splunk:8088/services/collector/event", "token": "t"})
    assert config["url"] == "https://splunk:8088"


def fields(destination: Any, raw: object) -> set[str]:
    return {v["field"] for v in destination.validate(raw)[1]}


@pytest.mark.parametrize(
    ("destination", "raw", "expected"),
    [
        (HEC, "nope", {"config"}),
        (HEC, {}, {"config.url", "config.token"}),
        (HEC, {"url": "ftp://x", "token": "t", "colour": 1}, {"config.url", "config.colour"}),
        (HEC, {"url": "https://s:8088?a=1", "token": "t"}, {"config.url"}),
        (HEC, {"url": "https://s", "token": "t", "index": "Bad Index"}, {"config.index"}),
        (HEC, {"url": "https://s", "token": "t", "verify_tls": "no"}, {"config.verify_tls"}),
        (DD, {}, {"config.api_key"}),
        (
            DD,
            {"api_key": "k", "tags": ["env:prod", "bad tag", 3]},
            {"config.tags[1]", "config.tags[2]"},
        ),
        (DD, {"api_key": "k", "site": "not a site"}, {"config.site"}),
        (DD, {"api_key": "k", "url": "http://"}, {"config.url"}),
        (ES, {"url": "http://es", "username": "u"}, {"config.password"}),
        (ES, {"url": "http://es", "password": "p"}, {"config.username"}),
        (
            ES,
            {"url": "http://es", "api_key": "k", "username": "u", "password": "p"},
            {"config.api_key"},
        ),
        (ES, {"url": "http://es", "index": "Upper"}, {"config.index"}),
        (HTTP, {"url": "https://h", "secret": "plain"}, {"config.secret"}),
        (
            HTTP,
            {
                "url": "https://h",
                "headers": {"Authorization": "Bearer x", "X Bad": "v", "X-Ok": "\n"},
            },
            {"config.headers.Authorization", "config.headers.X Bad", "config.headers.X-Ok"},
        ),
        (HTTP, {"url": "https://h", "headers": {"webhook-id": "x"}}, {"config.headers.webhook-id"}),
        (S3D, {}, {"config.bucket", "config.access_key_id", "config.secret_access_key"}),
        (
            S3D,
            {
                "bucket": "Bad_Bucket",
                "access_key_id": "a",
                "secret_access_key": "s",
                "prefix": "a/../b/",
            },
            {"config.bucket", "config.prefix"},
        ),
        (
            S3D,
            {
                "bucket": "b-1",
                "access_key_id": "a",
                "secret_access_key": "s",
                "endpoint_url": "file:///x",
            },
            {"config.endpoint_url"},
        ),
    ],
)
def test_validation_names_each_bad_field(destination: Any, raw: object, expected: set[str]) -> None:
    assert fields(destination, raw) == expected


def test_a_url_with_credentials_is_refused_without_echoing_them() -> None:
    _, violations = ES.validate({"url": "https://elastic:hunter2@es.example.com"})
    assert [v["field"] for v in violations] == ["config.url"]
    assert "hunter2" not in violations[0]["message"]
    assert "user name or password" in violations[0]["message"]


def test_a_bad_secret_is_not_echoed() -> None:
    _, violations = HTTP.validate({"url": "https://h", "secret": "whsec_not base64!"})
    assert violations == [
        {"field": "config.secret", "message": "secret must be 'whsec_' followed by base64"}
    ]


# ---- splitting ----------------------------------------------------------------------------------


def test_split_keeps_order_and_limits() -> None:
    events = make_events(1201)
    for destination in DESTINATIONS.values():
        parts = destination.split(events)
        assert [e for part in parts for e in part] == events
        assert all(len(p) <= destination.MAX_BATCH for p in parts)


def test_datadog_split_respects_five_megabytes() -> None:
    events = make_events(200, blob="x" * 30_000)  # about 6 MB as Datadog logs
    parts = DD.split(events, valid(DD, {"api_key": "k"}))
    assert len(parts) == 2
    for part in parts:
        body = b"[" + b",".join(DD.entry({}, e) for e in part) + b"]"
        assert len(body) <= 5_000_000


# ---- Splunk HEC -----------------------------------------------------------------------------


async def test_hec_delivers_gzipped_concatenated_events(client: httpx.AsyncClient) -> None:
    hec = HecReceiver(TOKEN, indexes={"audit"}).start()
    try:
        config = valid(HEC, {"url": hec.url, "token": TOKEN, "index": "audit"})
        events = make_events(3)
        result = await HEC.send(client, config, events, batch_id="b-1")
        assert result == Result("delivered", 200, None, 3)
        (request,) = hec.requests
        assert request.path == "/services/collector/event"
        assert request.headers["authorization"] == f"Splunk {TOKEN}"
        assert request.headers["content-encoding"] == "gzip"
        assert [e["event"] for e in hec.events] == events
        for got, event in zip(hec.events, events, strict=True):
            assert got["time"] == pytest.approx(parse_rfc3339(event["received_at"]).timestamp())
            assert (got["host"], got["source"], got["sourcetype"], got["index"]) == (
                "chainlog",
                "chainlog",
                "chainlog:audit",
                "audit",
            )
            assert {"seq", "hash", "prev_hash"} <= set(got["event"])
    finally:
        hec.stop()


async def test_hec_bad_token_fails_without_the_token(client: httpx.AsyncClient) -> None:
    hec = HecReceiver("the-right-token").start()
    try:
        config = valid(HEC, {"url": hec.url, "token": TOKEN})
        result = await HEC.send(client, config, make_events(2), batch_id="b-1")
        assert (result.outcome, result.status, result.delivered) == ("failed", 403, 0)
        assert result.error == "HEC code 4: Invalid token"
        assert hec.events == []
    finally:
        hec.stop()


async def test_hec_wrong_index_fails(client: httpx.AsyncClient) -> None:
    hec = HecReceiver(TOKEN, indexes={"audit"}).start()
    try:
        config = valid(HEC, {"url": hec.url, "token": TOKEN, "index": "other"})
        result = await HEC.send(client, config, make_events(2), batch_id="b-1")
        assert (result.outcome, result.error) == ("failed", "HEC code 7: Incorrect index")
    finally:
        hec.stop()


async def test_hec_busy_is_retried_and_then_delivered_once(client: httpx.AsyncClient) -> None:
    hec = HecReceiver(TOKEN).start()
    try:
        hec.fail_next(2, 503)
        config = valid(HEC, {"url": hec.url, "token": TOKEN})
        events = make_events(4)
        first = await HEC.send(client, config, events, batch_id="b-1")
        assert first == Result("retry", 503, "HEC code 9: Server is busy", 0)
        assert (await HEC.send(client, config, events, batch_id="b-1")).outcome == "retry"
        assert (await HEC.send(client, config, events, batch_id="b-1")).outcome == "delivered"
        assert [e["event"]["seq"] for e in hec.events] == [1, 2, 3, 4]
    finally:
        hec.stop()


async def test_hec_reports_the_events_before_an_invalid_one(client: httpx.AsyncClient) -> None:
    class FailsThird(HecReceiver):
        def handle(self, request: Request) -> Reply:
            return Reply(400, b'{"text":"Invalid data format","code":6,"invalid-event-number":2}')

    hec = FailsThird(TOKEN).start()
    try:
        config = valid(HEC, {"url": hec.url, "token": TOKEN})
        result = await HEC.send(client, config, make_events(4), batch_id="b-1")
        assert (result.outcome, result.delivered) == ("failed", 2)
    finally:
        hec.stop()


async def test_no_listener_is_retried(client: httpx.AsyncClient, refused_url: str) -> None:
    config = valid(HEC, {"url": refused_url, "token": TOKEN})
    result = await HEC.send(client, config, make_events(1), batch_id="b-1")
    assert (result.outcome, result.status) == ("retry", None)
    assert result.error is not None and result.error.startswith("connection failed")
    assert TOKEN not in result.error


async def test_a_silent_receiver_times_out_into_retry(client: httpx.AsyncClient) -> None:
    # The kernel accepts the connection from the backlog; nobody ever answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        config = valid(
            HTTP, {"url": f"http://127.0.0.1:{port}/in", "secret": new_endpoint_secret()}
        )
        result = await HTTP.send(client, config, make_events(1), batch_id="b-1", timeout=0.3)
    assert result == Result("retry", None, "timeout: no complete answer within 0.3 s", 0)


async def test_a_private_address_is_refused_by_the_guard() -> None:
    hec = HecReceiver(TOKEN).start()
    try:
        config = valid(HEC, {"url": hec.url, "token": TOKEN})
        async with guarded_client(allow_private=False, timeout=5.0) as guarded:
            result = await HEC.send(guarded, config, make_events(1), batch_id="b-1")
        assert (result.outcome, result.status) == ("failed", None)
        assert result.error is not None and result.error.startswith("refused: url:")
        assert hec.requests == []
    finally:
        hec.stop()


# ---- Datadog ----------------------------------------------------------------------------------


async def test_datadog_delivers_logs_with_the_event_as_json_message(
    client: httpx.AsyncClient,
) -> None:
    dd = DatadogReceiver(DD_KEY).start()
    try:
        config = valid(
            DD, {"api_key": DD_KEY, "url": dd.intake_url, "tags": ["env:test", "team:sec"]}
        )
        events = make_events(3)
        assert await DD.send(client, config, events, batch_id="b-1") == Result(
            "delivered", 202, None, 3
        )
        (request,) = dd.requests
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["dd-api-key"] == DD_KEY
        for log, event in zip(dd.logs, events, strict=True):
            assert {k: v for k, v in log.items() if k != "message"} == {
                "ddsource": "chainlog",
                "ddtags": "env:test,team:sec",
                "hostname": "chainlog",
                "service": "chainlog",
            }
            assert orjson.loads(log["message"]) == event
    finally:
        dd.stop()


async def test_datadog_sends_at_most_1000_logs_a_request(client: httpx.AsyncClient) -> None:
    dd = DatadogReceiver(DD_KEY).start()
    try:
        config = valid(DD, {"api_key": DD_KEY, "url": dd.intake_url})
        events = make_events(2500)
        assert await DD.send(client, config, events, batch_id="b-1") == Result(
            "delivered", 202, None, 2500
        )
        assert dd.batch_sizes == [1000, 1000, 500]
        assert [orjson.loads(x["message"])["seq"] for x in dd.logs] == list(range(1, 2501))
    finally:
        dd.stop()


async def test_datadog_keeps_each_request_under_five_megabytes(client: httpx.AsyncClient) -> None:
    dd = DatadogReceiver(DD_KEY).start()
    try:
        config = valid(DD, {"api_key": DD_KEY, "url": dd.intake_url})
        events = make_events(200, blob="x" * 30_000)
        assert (await DD.send(client, config, events, batch_id="b-1")).outcome == "delivered"
        assert len(dd.requests) == 2
        assert all(len(r.decoded()) <= 5_000_000 for r in dd.requests)
        assert len(dd.logs) == 200
    finally:
        dd.stop()


async def test_datadog_partial_success_is_not_resent(client: httpx.AsyncClient) -> None:
    dd = DatadogReceiver(DD_KEY).start()
    try:
        dd.fail_next(1, 503, after=1)
        config = valid(DD, {"api_key": DD_KEY, "url": dd.intake_url})
        events = make_events(1500)
        first = await DD.send(client, config, events, batch_id="b-1")
        assert (first.outcome, first.status, first.delivered) == ("retry", 503, 1000)
        rest = await DD.send(client, config, events[first.delivered :], batch_id="b-1")
        assert rest.outcome == "delivered"
        assert [orjson.loads(x["message"])["seq"] for x in dd.logs] == list(range(1, 1501))
    finally:
        dd.stop()


@pytest.mark.parametrize(("status", "outcome"), [(429, "retry"), (503, "retry"), (400, "failed")])
async def test_datadog_statuses(client: httpx.AsyncClient, status: int, outcome: str) -> None:
    dd = DatadogReceiver(DD_KEY).start()
    try:
        dd.fail_next(1, status)
        config = valid(DD, {"api_key": DD_KEY, "url": dd.intake_url})
        result = await DD.send(client, config, make_events(1), batch_id="b-1")
        assert (result.outcome, result.status) == (outcome, status)
    finally:
        dd.stop()


async def test_datadog_bad_key_fails(client: httpx.AsyncClient) -> None:
    dd = DatadogReceiver("another-key").start()
    try:
        config = valid(DD, {"api_key": DD_KEY, "url": dd.intake_url})
        result = await DD.send(client, config, make_events(1), batch_id="b-1")
        assert result == Result("failed", 403, "HTTP 403: Forbidden", 0)
    finally:
        dd.stop()


async def test_an_echoed_secret_is_cut_from_the_error(client: httpx.AsyncClient) -> None:
    class Echo(HttpReceiver):
        def handle(self, request: Request) -> Reply:
            detail = f"key {request.headers['dd-api-key']} is revoked"
            return Reply(403, orjson.dumps({"errors": [{"detail": detail}]}))

    echo = Echo().start()
    try:
        config = valid(DD, {"api_key": DD_KEY, "url": echo.url + "/api/v2/logs"})
        result = await DD.send(client, config, make_events(1), batch_id="b-1")
        assert result.error == "HTTP 403: key *** is revoked"
    finally:
        echo.stop()


def test_datadog_site_sets_the_intake() -> None:
    assert DD.endpoint(valid(DD, {"api_key": "k", "site": "datadoghq.eu"})) == (
        "https://http-intake.logs.datadoghq.eu/api/v2/logs"
    )


# ---- Elasticsearch ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        {"username": "streamer", "password": "pw-1"},
        {"api_key": "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="},
    ],
)
async def test_elastic_creates_each_event_by_id(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    es = ElasticReceiver(**auth).start()
    try:
        config = valid(ES, {"url": es.url, "index": "audit", **auth})
        events = make_events(3)
        assert await ES.send(client, config, events, batch_id="b-1") == Result(
            "delivered", 200, None, 3
        )
        (request,) = es.requests
        assert request.path == "/_bulk"
        assert request.headers["content-type"] == "application/x-ndjson"
        lines = request.decoded().decode().splitlines()
        assert orjson.loads(lines[0]) == {"create": {"_index": "audit", "_id": events[0]["id"]}}
        assert es.docs("audit") == {e["id"]: {**e, "@timestamp": e["received_at"]} for e in events}
    finally:
        es.stop()


async def test_elastic_bad_credentials_fail(client: httpx.AsyncClient) -> None:
    es = ElasticReceiver(username="streamer", password="right").start()
    try:
        config = valid(ES, {"url": es.url, "username": "streamer", "password": "wrong-pw"})
        result = await ES.send(client, config, make_events(1), batch_id="b-1")
        assert (result.outcome, result.status) == ("failed", 401)
        assert result.error is not None and "security_exception" in result.error
        assert "wrong-pw" not in result.error
    finally:
        es.stop()


async def test_elastic_partial_items_retry_without_duplicates(client: httpx.AsyncClient) -> None:
    es = ElasticReceiver().start()
    try:
        config = valid(ES, {"url": es.url})
        events = make_events(5)
        assert (await ES.send(client, config, events[:1], batch_id="b-0")).outcome == "delivered"
        es.reject_once([events[2]["id"]])
        first = await ES.send(client, config, events, batch_id="b-1")
        # item 0 answers 409 (already stored: delivered), item 2 answers 429
        assert (first.outcome, first.status, first.delivered) == ("retry", 200, 2)
        assert first.error is not None and "429 es_rejected_execution_exception" in first.error
        assert await ES.send(client, config, events, batch_id="b-1") == Result(
            "delivered", 200, None, 5
        )
        assert sorted(es.created) == sorted(e["id"] for e in events)
        assert len(es.docs("chainlog-audit")) == 5
    finally:
        es.stop()


async def test_elastic_mapping_error_fails_the_batch(client: httpx.AsyncClient) -> None:
    es = ElasticReceiver().start()
    try:
        config = valid(ES, {"url": es.url})
        events = make_events(3)
        es.refuse([events[1]["id"]])
        result = await ES.send(client, config, events, batch_id="b-1")
        assert (result.outcome, result.delivered) == ("failed", 1)
        assert result.error is not None
        assert result.error.startswith("item 1: 400 document_parsing_exception")
    finally:
        es.stop()


@pytest.mark.parametrize("status", [429, 503])
async def test_elastic_whole_request_refused_is_retried(
    client: httpx.AsyncClient, status: int
) -> None:
    es = ElasticReceiver().start()
    try:
        es.fail_next(1, status)
        config = valid(ES, {"url": es.url})
        result = await ES.send(client, config, make_events(2), batch_id="b-1")
        assert (result.outcome, result.status, result.delivered) == ("retry", status, 0)
        assert es.created == []
    finally:
        es.stop()


async def test_elastic_unreadable_answer_is_retried(client: httpx.AsyncClient) -> None:
    class Garbled(HttpReceiver):
        def handle(self, request: Request) -> Reply:
            return Reply(200, b"<html>proxy</html>", "text/html")

    garbled = Garbled().start()
    try:
        config = valid(ES, {"url": garbled.url})
        result = await ES.send(client, config, make_events(2), batch_id="b-1")
        assert result == Result("retry", 200, "unreadable _bulk answer", 0)
    finally:
        garbled.stop()


# ---- HTTP (Standard Webhooks) -----------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
async def test_http_batches_are_signed(client: httpx.AsyncClient, compressed: bool) -> None:
    secret = new_endpoint_secret()
    hook = WebhookBatchReceiver(secret).start()
    try:
        config = valid(
            HTTP,
            {
                "url": hook.url + "/in",
                "secret": secret,
                "headers": {"X-Tenant": "acme"},
                "gzip": compressed,
            },
        )
        events = make_events(3)
        assert await HTTP.send(client, config, events, batch_id="batch-7") == Result(
            "delivered", 204, None, 3
        )
        assert hook.batches == [{"type": "events.batch", "workspace_id": WS, "events": events}]
        (request,) = hook.requests
        assert hook.ids == ["batch-7"]
        assert request.headers["x-tenant"] == "acme"
        assert ("content-encoding" in request.headers) is compressed
    finally:
        hook.stop()


async def test_http_retry_keeps_the_webhook_id(client: httpx.AsyncClient) -> None:
    secret = new_endpoint_secret()
    hook = WebhookBatchReceiver(secret).start()
    try:
        hook.fail_next(1, 429)
        config = valid(HTTP, {"url": hook.url, "secret": secret})
        events = make_events(2)
        assert (await HTTP.send(client, config, events, batch_id="b-9")).outcome == "retry"
        assert (await HTTP.send(client, config, events, batch_id="b-9")).outcome == "delivered"
        assert [r.headers["webhook-id"] for r in hook.requests] == ["b-9", "b-9"]
        assert len(hook.batches) == 1
    finally:
        hook.stop()


async def test_http_wrong_secret_is_refused_by_the_receiver(client: httpx.AsyncClient) -> None:
    hook = WebhookBatchReceiver(new_endpoint_secret()).start()
    try:
        config = valid(HTTP, {"url": hook.url, "secret": new_endpoint_secret()})
        result = await HTTP.send(client, config, make_events(1), batch_id="b-1")
        assert result == Result("failed", 401, "HTTP 401", 0)
        assert hook.rejected == 1
    finally:
        hook.stop()


async def test_a_batch_mixing_workspaces_is_a_bug(client: httpx.AsyncClient) -> None:
    config = valid(HTTP, {"url": "http://127.0.0.1:9/in", "secret": new_endpoint_secret()})
    mixed = make_events(1) + make_events(1, start=2, ws="another")
    with pytest.raises(ValueError, match="one workspace"):
        await HTTP.send(client, config, mixed, batch_id="b-1")


# ---- S3 ---------------------------------------------------------------------------------------


def lines_of(body: bytes) -> list[dict[str, Any]]:
    text = gzip.decompress(body).decode()
    assert text.endswith("\n")
    return [orjson.loads(line) for line in text.splitlines()]


async def test_s3_writes_one_gzipped_json_lines_object(
    client: httpx.AsyncClient, s3: S3Server
) -> None:
    config = valid(S3D, s3.config(prefix="run-1/"))
    events = make_events(3, start=5)
    assert await S3D.send(client, config, events, batch_id="b-1") == Result(
        "delivered", 200, None, 3
    )
    key = f"run-1/{WS}/2026/11/27/{5:020d}-{7:020d}.jsonl.gz"
    assert s3.list_keys("run-1/") == [key]
    stored = s3.get(key)
    assert (stored.content_type, stored.content_encoding) == ("application/x-ndjson", "gzip")
    assert lines_of(stored.body) == events
    assert [e["seq"] for e in lines_of(stored.body)] == [5, 6, 7]


async def test_s3_retry_overwrites_the_same_object(client: httpx.AsyncClient, s3: S3Server) -> None:
    config = valid(S3D, s3.config(prefix="run-2/"))
    events = make_events(4, start=10)
    s3.fail_next(1, 503)
    first = await S3D.send(client, config, events, batch_id="b-1")
    assert first == Result("retry", 503, "S3 503 SlowDown", 0)
    for _ in range(2):
        assert (await S3D.send(client, config, events, batch_id="b-1")).outcome == "delivered"
    key = f"run-2/{WS}/2026/11/27/{10:020d}-{13:020d}.jsonl.gz"
    assert s3.list_keys("run-2/") == [key]
    assert s3.puts.count(f"/{s3.bucket}/{key}") == 3
    assert lines_of(s3.get(key).body) == events


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"secret_access_key": "not-the-secret"}, "SignatureDoesNotMatch"),
        ({"access_key_id": "AKIAUNKNOWN0000"}, "InvalidAccessKeyId"),
    ],
)
async def test_s3_bad_credentials_fail(
    client: httpx.AsyncClient, s3: S3Server, override: dict[str, str], code: str
) -> None:
    config = valid(S3D, s3.config(prefix="run-3/", **override))
    result = await S3D.send(client, config, make_events(1), batch_id="b-1")
    assert result == Result("failed", 403, f"S3 403 {code}", 0)
    assert not s3.list_keys("run-3/")


async def test_s3_missing_bucket_fails(client: httpx.AsyncClient, s3: S3Server) -> None:
    config = valid(S3D, s3.config(bucket="no-such-bucket-here"))
    result = await S3D.send(client, config, make_events(1), batch_id="b-1")
    assert result == Result("failed", 404, "S3 404 NoSuchBucket", 0)


def test_s3_urls_for_aws() -> None:
    base = {"access_key_id": "AK", "secret_access_key": "s", "region": "eu-west-1"}
    assert S3D.endpoint(valid(S3D, {"bucket": "logs", **base})) == (
        "https://logs.s3.eu-west-1.amazonaws.com"
    )
    assert S3D.endpoint(valid(S3D, {"bucket": "my.logs", **base})) == (
        "https://s3.eu-west-1.amazonaws.com/my.logs"
    )
