"""Syslog, Sentinel, Google SecOps, OTLP and Security Lake against local fakes of their receivers,
and the ``format`` setting of the JSON destinations (tests/siem_receivers.py)."""

from __future__ import annotations

import gzip
import io
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest

from libs.common.ssrf import (
    UnsafeDestination,
    check_endpoint,
    guard_of,
    guarded_client,
    parse_socket_endpoint,
)
from services.alerter.webhook import new_endpoint_secret
from services.streamer.destinations import DESTINATIONS
from services.streamer.destinations.base import Result
from services.streamer.destinations.chronicle import Chronicle
from services.streamer.destinations.oauth import TokenCache
from services.streamer.destinations.otlp import Otlp
from services.streamer.destinations.security_lake import SecurityLake
from services.streamer.destinations.sentinel import Sentinel
from services.streamer.destinations.syslog import Syslog
from services.streamer.formats import cef, leef, ocsf, udm
from services.streamer.tests.test_destinations import WS, make_events, valid
from services.streamer.tests.test_formats import LOGIN, chained, ocsf_problems
from tests.siem_receivers import (
    ChronicleReceiver,
    HecReceiver,
    LogsIngestionReceiver,
    OtlpReceiver,
    S3Server,
    SyslogReceiver,
    TestCA,
    UdpSyslogReceiver,
    WebhookBatchReceiver,
    service_account,
)

SYSLOG, SENTINEL, OTLP, LAKE = Syslog(), Sentinel(), Otlp(), SecurityLake()
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
CLIENT_SECRET = "az-Secret~value.42"
DCR = "dcr-" + "0123456789abcdef" * 2
STREAM = "Custom-Chainlog_CL"
INSTANCE = "7c1a2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with guarded_client(allow_private=True, timeout=5.0) as c:
        yield c


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fields(destination: Any, raw: object) -> set[str]:
    return {v["field"] for v in destination.validate(raw)[1]}


# ---- syslog -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(ca: TestCA) -> Iterator[SyslogReceiver]:
    cert, key = ca.issue("syslog.test", "127.0.0.1")
    server = SyslogReceiver(cert_pem=cert, key_pem=key).start()
    yield server
    server.stop()


def tls_config(port: int, ca_pem: str, **extra: Any) -> dict[str, Any]:
    return valid(SYSLOG, {"host": "127.0.0.1", "port": port, "ca_pem": ca_pem, **extra})


async def test_syslog_over_tls_delivers_one_verified_frame_per_event(
    client: httpx.AsyncClient, ca: TestCA, tls_server: SyslogReceiver
) -> None:
    before = len(tls_server.messages)
    config = tls_config(tls_server.port, ca.pem)
    events = [*make_events(3), {**LOGIN, "workspace_id": WS, "seq": 4}]
    assert await SYSLOG.send(client, config, events, batch_id="b-1") == Result(
        "delivered", None, None, 4
    )
    tls_server.wait_for(lambda: len(tls_server.messages) == before + 4)
    got = tls_server.messages[before:]
    assert [m.json() for m in got] == events
    first = got[0]
    assert (first.version, first.facility, first.severity) == (1, 13, 6)
    assert (first.hostname, first.app_name, first.procid, first.msgid) == (
        "chainlog",
        "chainlog",
        "-",
        "document.delete",
    )
    assert (first.timestamp, first.sd, first.bom) == (events[0]["received_at"], [], True)
    # the failed log-in is a warning, and its non-ASCII text arrives intact
    assert (got[3].severity, got[3].msgid, got[3].json()["ip_city"]) == (
        4,
        "user.login_failed",
        "Köln",
    )


async def test_syslog_verifies_the_name_given_as_server_name(
    client: httpx.AsyncClient, ca: TestCA, tls_server: SyslogReceiver
) -> None:
    before = len(tls_server.messages)
    config = tls_config(tls_server.port, ca.pem, server_name="syslog.test")
    assert (await SYSLOG.send(client, config, make_events(1), batch_id="b")).outcome == "delivered"
    tls_server.wait_for(lambda: len(tls_server.messages) == before + 1)


@pytest.mark.parametrize(
    ("trust", "server_name", "reason"),
    [
        ("other-ca", None, "unable to get local issuer certificate"),
        ("ca", "siem.example.com", "Hostname mismatch"),
    ],
)
async def test_syslog_refuses_a_certificate_it_cannot_verify(
    client: httpx.AsyncClient,
    ca: TestCA,
    tls_server: SyslogReceiver,
    trust: str,
    server_name: str | None,
    reason: str,
) -> None:
    before = (len(tls_server.messages), tls_server.handshakes_failed)
    ca_pem = TestCA("Another CA").pem if trust == "other-ca" else ca.pem
    extra = {"server_name": server_name} if server_name else {}
    config = tls_config(tls_server.port, ca_pem, **extra)
    result = await SYSLOG.send(client, config, make_events(2), batch_id="b-1")
    assert (result.outcome, result.delivered) == ("failed", 0)
    assert result.error is not None
    assert result.error.startswith("tls: server certificate refused: ")
    assert reason in result.error
    tls_server.wait_for(lambda: tls_server.handshakes_failed == before[1] + 1)
    assert len(tls_server.messages) == before[0]


async def test_syslog_presents_a_client_certificate(client: httpx.AsyncClient, ca: TestCA) -> None:
    cert, key = ca.issue("127.0.0.1")
    client_cert, client_key = ca.issue("chainlog-streamer", client=True)
    server = SyslogReceiver(cert_pem=cert, key_pem=key, client_ca=ca.pem).start()
    try:
        config = tls_config(server.port, ca.pem, cert_pem=client_cert, key_pem=client_key)
        assert (await SYSLOG.send(client, config, make_events(2), batch_id="b")).outcome == (
            "delivered"
        )
        server.wait_for(lambda: len(server.messages) == 2)
        # without one, the server ends the connection: not reported delivered
        without = tls_config(server.port, ca.pem)
        result = await SYSLOG.send(client, without, make_events(2), batch_id="b")
        assert (result.outcome, result.delivered) == ("retry", 0)
        # a TLS alert or a reset, depending on when the refusal overtakes our close
        assert result.error is not None
        assert result.error.startswith(("tls:", "connection failed:"))
        server.wait_for(lambda: server.handshakes_failed == 1)
        assert len(server.messages) == 2
    finally:
        server.stop()


@pytest.mark.parametrize("body", ["cef", "leef"])
async def test_syslog_over_tcp_carries_cef_and_leef(client: httpx.AsyncClient, body: str) -> None:
    server = SyslogReceiver().start()
    try:
        config = valid(
            SYSLOG,
            {
                "host": "127.0.0.1",
                "port": server.port,
                "transport": "tcp",
                "body": body,
                "facility": "local4",
                "app_name": "audit",
                "sd_id": "chainlog@32473",
                "bom": False,
            },
        )
        events = make_events(2)
        assert (await SYSLOG.send(client, config, events, batch_id="b")).outcome == "delivered"
        server.wait_for(lambda: len(server.messages) == 2)
        line = cef.line if body == "cef" else leef.line
        assert [m.msg for m in server.messages] == [line(e) for e in events]
        message = server.messages[1]
        assert (message.facility, message.app_name, message.bom) == (20, "audit", False)
        assert message.sd == [
            (
                "chainlog@32473",
                [
                    ("id", events[1]["id"]),
                    ("workspace_id", WS),
                    ("seq", "2"),
                    ("hash", events[1]["hash"]),
                ],
            )
        ]
    finally:
        server.stop()


async def test_syslog_json_body_can_be_ocsf(client: httpx.AsyncClient) -> None:
    server = SyslogReceiver().start()
    try:
        raw = {"host": "127.0.0.1", "port": server.port, "transport": "tcp", "format": "ocsf"}
        config = valid(SYSLOG, raw)
        events = make_events(2)
        assert (await SYSLOG.send(client, config, events, batch_id="b")).outcome == "delivered"
        server.wait_for(lambda: len(server.messages) == 2)
        assert [m.json() for m in server.messages] == [ocsf.record(e) for e in events]
    finally:
        server.stop()


async def test_syslog_over_udp_sends_one_datagram_per_event(client: httpx.AsyncClient) -> None:
    server = UdpSyslogReceiver().start()
    try:
        config = valid(SYSLOG, {"host": "127.0.0.1", "port": server.port, "transport": "udp"})
        events = make_events(3)
        assert (await SYSLOG.send(client, config, events, batch_id="b")).outcome == "delivered"
        server.wait_for(lambda: len(server.messages) == 3)
        assert sorted(m.json()["seq"] for m in server.messages) == [1, 2, 3]
        too_big = make_events(1, blob="x" * 70_000)
        result = await SYSLOG.send(client, config, too_big, batch_id="b")
        assert result.outcome == "failed"
        assert result.error is not None and "UDP datagram" in result.error
    finally:
        server.stop()


async def test_syslog_obeys_the_clients_address_rule() -> None:
    server = SyslogReceiver().start()
    try:
        config = valid(SYSLOG, {"host": "127.0.0.1", "port": server.port, "transport": "tcp"})
        async with guarded_client(allow_private=False, timeout=5.0) as strict:
            assert guard_of(strict) == (False, None)
            result = await SYSLOG.send(strict, config, make_events(1), batch_id="b")
        assert (result.outcome, result.status) == ("failed", None)
        assert result.error is not None
        assert result.error.startswith("refused: endpoint: host '127.0.0.1' is a loopback address")
        assert server.connections == 0
        # a client not built on the guard gets the strict rule too
        async with httpx.AsyncClient() as plain:
            assert guard_of(plain) == (False, None)
            assert (await SYSLOG.send(plain, config, make_events(1), batch_id="b")).outcome == (
                "failed"
            )
    finally:
        server.stop()


async def test_syslog_nobody_listening_is_retried(client: httpx.AsyncClient) -> None:
    config = valid(SYSLOG, {"host": "127.0.0.1", "port": free_port(), "transport": "tcp"})
    result = await SYSLOG.send(client, config, make_events(1), batch_id="b")
    assert (result.outcome, result.delivered) == ("retry", 0)
    assert result.error is not None and result.error.startswith("connection failed")


def test_syslog_config(ca: TestCA) -> None:
    cert, key = ca.issue("client", client=True)
    config = valid(
        SYSLOG, {"host": "Siem.Example.com", "ca_pem": ca.pem, "cert_pem": cert, "key_pem": key}
    )
    assert {k: v for k, v in config.items() if not k.endswith("_pem")} == {
        "host": "siem.example.com",
        "transport": "tls",
        "port": 6514,
        "body": "json",
        "format": "chainlog",
        "app_name": "chainlog",
        "hostname": "chainlog",
        "facility": 13,
        "bom": True,
        "verify_tls": True,
    }
    assert SYSLOG.endpoint(config) == "tls://siem.example.com:6514"
    assert SYSLOG.endpoint(valid(SYSLOG, {"host": "::1", "transport": "udp"})) == "udp://[::1]:514"
    shown = SYSLOG.public(config)
    assert "key_pem" not in shown and key not in orjson.dumps(shown).decode()
    other_cert, _ = ca.issue("other", client=True)
    assert fields(SYSLOG, {"host": "h", "cert_pem": other_cert, "key_pem": key}) == {
        "config.key_pem"
    }
    assert fields(SYSLOG, {"host": "h", "cert_pem": cert}) == {"config.key_pem"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, {"config.host"}),
        ({"host": "a b"}, {"config.host"}),
        ({"host": "h", "port": 0, "transport": "sctp"}, {"config.port", "config.transport"}),
        ({"host": "h", "port": 70000}, {"config.port"}),
        ({"host": "h", "body": "xml", "facility": 24}, {"config.body", "config.facility"}),
        (
            {"host": "h", "facility": "mail2", "app_name": "a b"},
            {"config.facility", "config.app_name"},
        ),
        ({"host": "h", "sd_id": "bad id", "hostname": ""}, {"config.sd_id", "config.hostname"}),
        ({"host": "h", "transport": "udp", "ca_pem": "x"}, {"config.ca_pem"}),
        (
            {"host": "h", "ca_pem": "not pem", "server_name": "-x-"},
            {"config.ca_pem", "config.server_name"},
        ),
        (
            {"host": "h", "key_pem": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----"},
            {"config.key_pem"},
        ),
        (
            {"host": "h", "format": "ocsf", "ocsf_mappings": [{"pattern": "*"}]},
            {"config.ocsf_mappings[0].class_uid"},
        ),
    ],
)
def test_syslog_validation_names_each_bad_field(raw: dict[str, Any], expected: set[str]) -> None:
    assert fields(SYSLOG, raw) == expected


def test_a_bad_key_is_never_echoed() -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----"
    _, violations = SYSLOG.validate({"host": "h", "cert_pem": "x", "key_pem": secret})
    assert "c2VjcmV0" not in orjson.dumps(violations).decode()


async def test_check_endpoint_takes_socket_endpoints() -> None:
    assert parse_socket_endpoint("tls://[2001:db8::1]:6514") == ("tls", "2001:db8::1", 6514)
    for bad in ("tls://h", "ftp://h:1", "tcp://h:0", "tcp://a b:1", "tcp://u@h:1"):
        with pytest.raises(UnsafeDestination):
            parse_socket_endpoint(bad)
    await check_endpoint("tcp://127.0.0.1:514", allow_private=True)
    with pytest.raises(UnsafeDestination, match=r"endpoint: host '127\.0\.0\.1' is a loopback"):
        await check_endpoint("tcp://127.0.0.1:514", allow_private=False)

    async def resolver(host: str, port: int) -> list[str]:
        return {"siem.example.com": ["93.184.216.34"], "inside.example.com": ["10.0.0.7"]}[host]

    await check_endpoint("udp://siem.example.com:514", allow_private=False, resolver=resolver)
    with pytest.raises(UnsafeDestination, match=r"resolves to 10\.0\.0\.7, a private address"):
        await check_endpoint(
            "tls://inside.example.com:6514", allow_private=False, resolver=resolver
        )
    # http(s) URLs are checked as check_url does
    with pytest.raises(UnsafeDestination, match=r"^url: host '10\.0\.0\.7' is a private address"):
        await check_endpoint("https://10.0.0.7/x", allow_private=False)


# ---- Sentinel (Azure Monitor Logs Ingestion) ----------------------------------------------------


@pytest.fixture
def azure() -> Iterator[LogsIngestionReceiver]:
    server = LogsIngestionReceiver(
        tenant_id=TENANT, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, dcr=DCR, stream=STREAM
    ).start()
    yield server
    server.stop()


def sentinel_config(server: LogsIngestionReceiver, **extra: Any) -> dict[str, Any]:
    raw = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "endpoint": server.url,
        "dcr_immutable_id": DCR,
        "stream_name": STREAM,
        "authority": server.url,
        **extra,
    }
    return valid(SENTINEL, raw)


async def test_sentinel_delivers_records_with_a_cached_token(
    client: httpx.AsyncClient, azure: LogsIngestionReceiver
) -> None:
    destination = Sentinel()
    config = sentinel_config(azure)
    events = make_events(3)
    assert await destination.send(client, config, events, batch_id="b-1") == Result(
        "delivered", 204, None, 3
    )
    assert azure.records == [
        {"TimeGenerated": e["received_at"], "EventId": e["id"], **e} for e in events
    ]
    ingest = azure.requests[-1]
    assert ingest.headers["content-encoding"] == "gzip"
    assert ingest.path == f"/dataCollectionRules/{DCR}/streams/{STREAM}?api-version=2023-01-01"
    assert (await destination.send(client, config, make_events(2, 4), batch_id="b-2")).outcome == (
        "delivered"
    )
    assert len(azure.tokens_issued) == 1
    assert azure.batch_sizes == [3, 2]


async def test_sentinel_401_drops_the_token_and_retries_once(
    client: httpx.AsyncClient, azure: LogsIngestionReceiver
) -> None:
    destination = Sentinel()
    config = sentinel_config(azure)
    assert (await destination.send(client, config, make_events(1), batch_id="b")).outcome == (
        "delivered"
    )
    azure.expire_tokens()
    assert await destination.send(client, config, make_events(2, 2), batch_id="b") == Result(
        "delivered", 204, None, 2
    )
    assert len(azure.tokens_issued) == 2
    assert [r.path.split("/")[-1].split("?")[0] for r in azure.requests] == [
        "token",
        STREAM,
        STREAM,  # answered 401
        "token",
        STREAM,
    ]
    assert [e["seq"] for e in azure.records] == [1, 2, 3]


async def test_sentinel_renews_a_token_before_it_expires(
    client: httpx.AsyncClient, azure: LogsIngestionReceiver
) -> None:
    now = [1000.0]
    destination = Sentinel(TokenCache(clock=lambda: now[0]))
    config = sentinel_config(azure)
    for seq in (1, 2):
        assert (
            await destination.send(client, config, make_events(1, seq), batch_id="b")
        ).outcome == "delivered"
    assert len(azure.tokens_issued) == 1
    now[0] += azure.expires_in - 300  # five minutes before it expires
    assert (
        await destination.send(client, config, make_events(1, 3), batch_id="b")
    ).outcome == "delivered"
    assert len(azure.tokens_issued) == 2
    assert [r.headers.get("authorization") for r in azure.requests if "streams" in r.path] == [
        f"Bearer {azure.tokens_issued[0]}",
        f"Bearer {azure.tokens_issued[0]}",
        f"Bearer {azure.tokens_issued[1]}",
    ]


async def test_sentinel_wrong_secret_fails_without_showing_it(
    client: httpx.AsyncClient, azure: LogsIngestionReceiver
) -> None:
    config = sentinel_config(azure, client_secret="wrong-secret-value")
    result = await Sentinel().send(client, config, make_events(1), batch_id="b")
    assert (result.outcome, result.status, result.delivered) == ("failed", 401, 0)
    assert result.error is not None
    assert result.error.startswith("token: invalid_client: AADSTS7000215")
    assert "wrong-secret-value" not in result.error and "***" in result.error
    assert azure.records == []


async def test_sentinel_keeps_each_call_under_one_megabyte(
    client: httpx.AsyncClient, azure: LogsIngestionReceiver
) -> None:
    config = sentinel_config(azure)
    events = make_events(120, blob="x" * 20_000)  # about 2.4 MB of records
    assert await Sentinel().send(client, config, events, batch_id="b") == Result(
        "delivered", 204, None, 120
    )
    assert len(azure.batch_sizes) == 3
    assert all(len(r.decoded()) <= 1_000_000 for r in azure.requests if "streams" in r.path)
    assert [e["seq"] for e in azure.records] == list(range(1, 121))


async def test_sentinel_busy_is_retried_and_counts_calls_made(
    client: httpx.AsyncClient, azure: LogsIngestionReceiver
) -> None:
    destination = Sentinel()
    config = sentinel_config(azure)
    events = make_events(60, blob="x" * 20_000)
    azure.fail_next(1, 503, after=2)  # the token, the first call, then a 503
    first = await destination.send(client, config, events, batch_id="b")
    assert (first.outcome, first.status) == ("retry", 503)
    assert first.delivered == azure.batch_sizes[0] > 0
    assert first.error == "HTTP 503: ServiceUnavailable: Try again"
    rest = await destination.send(client, config, events[first.delivered :], batch_id="b")
    assert rest.outcome == "delivered"
    assert [e["seq"] for e in azure.records] == list(range(1, 61))


async def test_sentinel_ocsf_records(
    client: httpx.AsyncClient, azure: LogsIngestionReceiver
) -> None:
    config = sentinel_config(azure, format="ocsf")
    events = make_events(2)
    assert (await Sentinel().send(client, config, events, batch_id="b")).outcome == "delivered"
    assert azure.records == [
        {"TimeGenerated": e["received_at"], "EventId": e["id"], **ocsf.record(e)} for e in events
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {},
            {
                "config.tenant_id",
                "config.client_id",
                "config.client_secret",
                "config.endpoint",
                "config.dcr_immutable_id",
                "config.stream_name",
            },
        ),
        (
            {
                "tenant_id": "not a tenant",
                "client_id": "x",
                "client_secret": "s",
                "endpoint": "ftp://dce",
                "dcr_immutable_id": "dcr-1",
                "stream_name": "Chainlog_CL",
                "authority": "https://login?x=1",
            },
            {
                "config.tenant_id",
                "config.client_id",
                "config.endpoint",
                "config.dcr_immutable_id",
                "config.stream_name",
                "config.authority",
            },
        ),
    ],
)
def test_sentinel_validation(raw: dict[str, Any], expected: set[str]) -> None:
    assert fields(SENTINEL, raw) == expected


# ---- Google SecOps (Chronicle) -----------------------------------------------------------------


@pytest.fixture
def chronicle() -> Iterator[ChronicleReceiver]:
    server = ChronicleReceiver(
        project="chainlog-test", location="europe", instance=INSTANCE
    ).start()
    yield server
    server.stop()


def chronicle_config(
    server: ChronicleReceiver, account: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    raw = {
        "service_account": account,
        "location": "europe",
        "instance_id": INSTANCE,
        "endpoint_url": server.url,
        **extra,
    }
    return valid(Chronicle(), raw)


async def test_chronicle_imports_udm_events_with_a_signed_assertion(
    client: httpx.AsyncClient, chronicle: ChronicleReceiver
) -> None:
    account = service_account(chronicle.token_url)
    chronicle.trust(account)
    destination = Chronicle()
    config = chronicle_config(chronicle, account)
    assert config["project_id"] == "chainlog-test"
    events = [*make_events(3), {**LOGIN, "seq": 4, "workspace_id": WS}]
    assert await destination.send(client, config, events, batch_id="b") == Result(
        "delivered", 200, None, 4
    )
    assert chronicle.events == [udm.event(e) for e in events]
    (claims,) = chronicle.assertions
    assert (claims["iss"], claims["aud"]) == (account["client_email"], chronicle.token_url)
    assert (await destination.send(client, config, make_events(1, 5), batch_id="b")).outcome == (
        "delivered"
    )
    assert len(chronicle.tokens_issued) == 1
    chronicle.expire_tokens()
    assert (await destination.send(client, config, make_events(1, 6), batch_id="b")).outcome == (
        "delivered"
    )
    assert len(chronicle.tokens_issued) == 2
    assert [e["additional"]["seq"] for e in chronicle.events] == [1, 2, 3, 4, 5, 6]


async def test_chronicle_untrusted_key_fails(
    client: httpx.AsyncClient, chronicle: ChronicleReceiver
) -> None:
    chronicle.trust(service_account(chronicle.token_url))  # a different key
    account = service_account(chronicle.token_url)
    result = await Chronicle().send(
        client, chronicle_config(chronicle, account), make_events(1), batch_id="b"
    )
    assert result == Result("failed", 400, "token: invalid_grant: Invalid JWT.", 0)
    assert chronicle.events == []


@pytest.mark.parametrize(("status", "outcome"), [(400, "failed"), (503, "retry")])
async def test_chronicle_refusals(
    client: httpx.AsyncClient, chronicle: ChronicleReceiver, status: int, outcome: str
) -> None:
    account = service_account(chronicle.token_url)
    chronicle.trust(account)
    chronicle.fail_next(1, status, after=1)  # after the token
    result = await Chronicle().send(
        client, chronicle_config(chronicle, account), make_events(2), batch_id="b"
    )
    assert (result.outcome, result.status, result.delivered) == (outcome, status, 0)
    assert result.error == f"HTTP {status}: UNAVAILABLE: The service is currently unavailable."


async def test_chronicle_token_url_and_rules(
    client: httpx.AsyncClient, chronicle: ChronicleReceiver
) -> None:
    account = service_account("https://oauth2.googleapis.com/token")
    chronicle.trust(account)
    rules = [{"pattern": "document.*", "event_type": "STATUS_UPDATE"}]
    config = chronicle_config(chronicle, account, token_url=chronicle.token_url, udm_mappings=rules)
    assert (
        await Chronicle().send(client, config, make_events(1), batch_id="b")
    ).outcome == "delivered"
    assert chronicle.events[0]["metadata"]["event_type"] == "STATUS_UPDATE"


def test_chronicle_config() -> None:
    account = service_account("https://oauth2.googleapis.com/token")
    destination = Chronicle()
    config = valid(
        destination, {"service_account": orjson.dumps(account).decode(), "instance_id": INSTANCE}
    )
    assert destination.endpoint(config) == (
        "https://chronicle.us.rep.googleapis.com/v1/projects/chainlog-test/locations/us/"
        f"instances/{INSTANCE}/events:import"
    )
    shown = destination.public(config)
    assert "service_account" not in shown
    assert "PRIVATE KEY" not in orjson.dumps(shown).decode()
    broken = {
        **account,
        "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    }
    _, violations = destination.validate({"service_account": broken, "instance_id": "x"})
    assert {v["field"] for v in violations} == {"config.service_account", "config.instance_id"}
    assert "AAAA" not in orjson.dumps(violations).decode()
    assert fields(destination, {"service_account": "{}", "instance_id": INSTANCE}) == {
        "config.service_account"
    }
    assert fields(
        destination, {"service_account": {**account, "project_id": "X"}, "instance_id": INSTANCE}
    ) == {"config.project_id"}
    assert fields(
        destination,
        {
            "service_account": account,
            "instance_id": INSTANCE,
            "udm_mappings": [{"pattern": "*", "event_type": "NOPE"}],
        },
    ) == {"config.udm_mappings[0].event_type"}


# ---- OTLP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
async def test_otlp_delivers_log_records(client: httpx.AsyncClient, encoding: str) -> None:
    server = OtlpReceiver(api_key="otlp-key-1").start()
    try:
        config = valid(
            OTLP,
            {
                "endpoint": server.url + "/v1/logs",
                "encoding": encoding,
                "headers": {"x-api-key": "otlp-key-1"},
            },
        )
        assert config["endpoint"] == server.url
        events = make_events(3)
        assert await OTLP.send(client, config, events, batch_id="b") == Result(
            "delivered", 200, None, 3
        )
        (request,) = server.requests
        assert request.headers["content-encoding"] == "gzip"
        assert server.requests_json[0] == orjson.loads(
            OTLP.body({**config, "encoding": "json"}, events)
        )
        seqs = [
            next(a["value"]["intValue"] for a in r["attributes"] if a["key"] == "chainlog.seq")
            for r in server.records
        ]
        assert seqs == ["1", "2", "3"]
    finally:
        server.stop()


async def test_otlp_refusals_hide_the_header_secret(client: httpx.AsyncClient) -> None:
    server = OtlpReceiver(api_key="the-right-key").start()
    try:
        config = valid(
            OTLP, {"endpoint": server.url, "headers": {"x-api-key": "wrong-key-42"}, "gzip": False}
        )
        result = await OTLP.send(client, config, make_events(1), batch_id="b")
        assert result == Result("failed", 401, "HTTP 401: bad key ***", 0)
        assert "content-encoding" not in server.requests[0].headers
        server.fail_next(1, 503)
        config = valid(OTLP, {"endpoint": server.url, "headers": {"x-api-key": "the-right-key"}})
        assert (await OTLP.send(client, config, make_events(1), batch_id="b")).outcome == "retry"
    finally:
        server.stop()


def test_otlp_config() -> None:
    config = valid(
        OTLP,
        {
            "endpoint": "https://otel.example.com:4318",
            "headers": {"Authorization": "Api-Token abc"},
        },
    )
    assert OTLP.endpoint(config) == "https://otel.example.com:4318/v1/logs"
    assert OTLP.public(config) == {
        "endpoint": "https://otel.example.com:4318",
        "encoding": "json",
        "gzip": True,
        "service_name": "chainlog",
        "verify_tls": True,
    }
    assert fields(
        OTLP, {"endpoint": "https://o", "encoding": "xml", "headers": {"Content-Type": "x"}}
    ) == {
        "config.encoding",
        "config.headers.Content-Type",
    }


# ---- Amazon Security Lake ----------------------------------------------------------------------


def parquet_rows(body: bytes) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    rows = pq.read_table(io.BytesIO(body)).to_pylist()
    return [strip({**row, "unmapped": dict(row["unmapped"])}) for row in rows]


def lake_config(s3: S3Server, **extra: Any) -> dict[str, Any]:
    return valid(
        LAKE,
        {
            **{k: v for k, v in s3.config().items()},
            "source_name": "chainlog",
            "account_id": "123456789012",
            **extra,
        },
    )


async def test_security_lake_writes_one_parquet_object_per_class(
    client: httpx.AsyncClient, s3: S3Server
) -> None:
    config = lake_config(s3, source_version="2.0", class_sources={"3002": "chainlog-auth"})
    events = chained(8)
    assert await LAKE.send(client, config, events, batch_id="stream-1:1-8") == Result(
        "delivered", 200, None, 8
    )
    keys = s3.list_keys("ext/")
    assert len(keys) == 4  # Authentication, Account Change, Entity Management, API Activity
    day = "region=us-east-1/accountId=123456789012/eventDay=20261127"
    by_class = {int(k.rsplit("/", 1)[1].split("-")[0]): k for k in keys}
    assert by_class[3002].startswith(f"ext/chainlog-auth/2.0/{day}/3002-")
    assert all(by_class[c].startswith(f"ext/chainlog/2.0/{day}/{c}-") for c in (3001, 3004, 6003))
    seen = []
    for class_uid, key in by_class.items():
        stored = s3.get(key)
        assert stored.content_type == "application/vnd.apache.parquet"
        for row in parquet_rows(stored.body):
            assert row["class_uid"] == class_uid
            assert ocsf_problems(row) == []
            original = events[int(row["unmapped"]["seq"]) - 1]
            assert row["unmapped"]["hash"] == original["hash"]
            assert row["time"] == ocsf.record(original)["time"]
            seen.append(int(row["unmapped"]["seq"]))
    assert sorted(seen) == list(range(1, 9))


async def test_security_lake_retry_overwrites_its_objects(
    client: httpx.AsyncClient, s3: S3Server
) -> None:
    config = lake_config(s3, source_name="retried")
    events = chained(8)
    s3.fail_next(1, 503, after=1)  # the second object of the batch
    first = await LAKE.send(client, config, events, batch_id="stream-2:1-8")
    assert (first.outcome, first.delivered) == ("retry", 0)
    assert (await LAKE.send(client, config, events, batch_id="stream-2:1-8")).outcome == "delivered"
    keys = s3.list_keys("ext/retried/")
    assert len(keys) == 4
    assert sum(s3.puts.count(f"/{s3.bucket}/{k}") for k in keys) == 4 + 2


def test_security_lake_validation() -> None:
    assert fields(LAKE, {}) == {
        "config.bucket",
        "config.access_key_id",
        "config.secret_access_key",
        "config.source_name",
        "config.account_id",
    }
    raw = {
        "bucket": "aws-security-data-lake-eu-west-1-x",
        "access_key_id": "AKIA1",
        "secret_access_key": "s",
        "source_name": "bad name",
        "account_id": "12",
        "class_sources": {"4001": "x", "3002": "bad name"},
    }
    assert fields(LAKE, raw) == {
        "config.source_name",
        "config.account_id",
        "config.class_sources.4001",
        "config.class_sources.3002",
    }


# ---- format: ocsf on the JSON destinations -----------------------------------------------------


@pytest.mark.parametrize("kind", ["splunk_hec", "datadog", "elasticsearch", "http", "s3"])
def test_json_destinations_take_a_format(kind: str) -> None:
    destination = DESTINATIONS[kind]
    base = {
        "splunk_hec": {"url": "https://s:8088", "token": "t"},
        "datadog": {"api_key": "k"},
        "elasticsearch": {"url": "https://es"},
        "http": {"url": "https://h", "secret": new_endpoint_secret()},
        "s3": {"bucket": "b-1", "access_key_id": "AK", "secret_access_key": "s"},
    }[kind]
    rules = [{"pattern": "document.*", "class_uid": 3004, "activity_id": 4}]
    assert (
        valid(destination, {**base, "format": "ocsf", "ocsf_mappings": rules})["format"] == "ocsf"
    )
    assert fields(destination, {**base, "format": "xml"}) == {"config.format"}
    bad = {**base, "ocsf_mappings": [{"pattern": "x", "class_uid": 3004, "activity_id": 5}]}
    assert fields(destination, bad) == {"config.ocsf_mappings[0].activity_id"}


async def test_hec_sends_ocsf_records(client: httpx.AsyncClient) -> None:
    hec = HecReceiver("tok").start()
    try:
        rules = [{"pattern": "document.*", "class_uid": 3004, "activity_id": 4}]
        config = valid(
            DESTINATIONS["splunk_hec"],
            {"url": hec.url, "token": "tok", "format": "ocsf", "ocsf_mappings": rules},
        )
        events = make_events(2)
        assert (
            await DESTINATIONS["splunk_hec"].send(client, config, events, batch_id="b")
        ).outcome == "delivered"
        assert [e["event"] for e in hec.events] == [ocsf.record(e, rules) for e in events]
        assert {e["event"]["class_uid"] for e in hec.events} == {3004}
    finally:
        hec.stop()


async def test_http_batch_bigger_as_ocsf_goes_in_several_signed_requests(
    client: httpx.AsyncClient,
) -> None:
    secret = new_endpoint_secret()
    hook = WebhookBatchReceiver(secret).start()
    try:
        http = DESTINATIONS["http"]
        config = valid(http, {"url": hook.url, "secret": secret, "format": "ocsf"})
        targets = [
            {"type": "file", "id": f"f{i}", "name": "n" * 40, "metadata": {"k": "v" * 40}}
            for i in range(12)
        ]
        events = [{**e, "targets": targets} for e in make_events(300)]
        raw_size = sum(len(orjson.dumps(e)) for e in events)
        assert raw_size < 1_000_000 < sum(len(orjson.dumps(ocsf.record(e))) for e in events)
        assert len(http.split(events)) == 1  # the caller's cut, by the events' own size
        result = await http.send(client, config, events, batch_id="s:1-300")
        assert result == Result("delivered", 204, None, 300)
        assert len(hook.batches) >= 2
        assert all(len(r.body) <= 1_000_000 for r in hook.requests)
        received = [e for b in hook.batches for e in b["events"]]
        assert received == [orjson.loads(orjson.dumps(ocsf.record(e))) for e in events]
        first_part = len(hook.batches[0]["events"])
        assert hook.ids[0] == f"s:1-300/1-{first_part}"
    finally:
        hook.stop()


async def test_s3_lines_can_be_ocsf(client: httpx.AsyncClient, s3: S3Server) -> None:
    config = valid(DESTINATIONS["s3"], s3.config(prefix="ocsf-run/", format="ocsf"))
    events = make_events(2)
    assert (
        await DESTINATIONS["s3"].send(client, config, events, batch_id="b")
    ).outcome == "delivered"
    (key,) = s3.list_keys("ocsf-run/")
    lines = gzip.decompress(s3.get(key).body).decode().splitlines()
    assert [orjson.loads(line) for line in lines] == [ocsf.record(e) for e in events]
