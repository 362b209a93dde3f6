"""The SSRF guard: every address category, URL syntax, and the connect-time check.

No test needs outside DNS: names resolve through a fake resolver, except
``localhost`` and a numeric host, which the system answers from /etc/hosts
and inet_aton.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from libs.common.ssrf import (
    UnresolvableHost,
    UnsafeDestination,
    check_url,
    check_url_syntax,
    guarded_client,
    is_forbidden_address,
)

FORBIDDEN = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.255", "carrier-grade NAT"),
    ("192.0.2.1", "non-public"),
    ("198.18.0.1", "non-public"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fec0::1", "private"),
    ("fe80::1", "link-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "non-public"),
    ("::7f00:1", "reserved"),  # IPv4-compatible, deprecated
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:100.64.0.1", "carrier-grade NAT"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of the metadata address
    ("2002:c0a8:101::", "private"),  # 6to4 of 192.168.1.1
]

PUBLIC = [
    "93.184.215.14",
    "1.1.1.1",
    "8.8.8.8",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "2606:4700:4700::1111",
    "::ffff:93.184.215.14",
    "64:ff9b::5db8:d70e",
]


@pytest.mark.parametrize(("ip", "category"), FORBIDDEN)
def test_forbidden_addresses_are_named(ip: str, category: str) -> None:
    assert is_forbidden_address(ip) == category


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_pass(ip: str) -> None:
    assert is_forbidden_address(ip) is None


class FakeDns:
    """Answers from a table; a name may answer differently on each lookup."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        answers = self.table.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers.pop(0) if len(answers) > 1 else answers[0]


@pytest.mark.parametrize(("ip", "category"), FORBIDDEN)
async def test_literal_urls_are_refused_without_dns(ip: str, category: str) -> None:
    dns = FakeDns({})
    host = f"[{ip}]" if ":" in ip else ip
    with pytest.raises(UnsafeDestination) as info:
        await check_url(f"https://{host}:8443/hook", allow_private=False, resolver=dns)
    assert f"host '{ip}' is " in info.value.reason
    assert f" {category} address;" in info.value.reason
    assert "not allowed" in info.value.reason
    assert isinstance(info.value, ValueError)
    await check_url(f"https://{host}:8443/hook", allow_private=True, resolver=dns)
    assert dns.asked == []


@pytest.mark.parametrize("ip", PUBLIC)
async def test_public_literal_urls_pass_without_dns(ip: str) -> None:
    dns = FakeDns({})
    host = f"[{ip}]" if ":" in ip else ip
    await check_url(f"https://{host}/hook", allow_private=False, resolver=dns)
    assert dns.asked == []


async def test_localhost_resolves_to_loopback() -> None:
    with pytest.raises(UnsafeDestination) as info:
        await check_url("http://localhost:8080/hook", allow_private=False)
    assert info.value.reason.startswith("url: host 'localhost' resolves to ")
    assert "a loopback address; destinations on loopback" in info.value.reason
    await check_url("http://localhost:8080/hook", allow_private=True)


async def test_numeric_host_forms_are_resolved_then_refused() -> None:
    with pytest.raises(UnsafeDestination, match=re.escape("resolves to 127.0.0.1, a loopback")):
        await check_url("http://2130706433/", allow_private=False)


async def test_any_private_answer_refuses_the_name() -> None:
    dns = FakeDns({"hooks.example.com": [["93.184.215.14", "10.0.0.5"]]})
    with pytest.raises(
        UnsafeDestination, match=re.escape("resolves to 10.0.0.5, a private address")
    ):
        await check_url("https://hooks.example.com/x", allow_private=False, resolver=dns)


async def test_public_name_passes() -> None:
    dns = FakeDns({"hooks.example.com": [["93.184.215.14", "2606:4700:4700::1111"]]})
    await check_url("https://Hooks.Example.com/x", allow_private=False, resolver=dns)
    assert dns.asked == ["hooks.example.com"]


async def test_unresolvable_name_is_its_own_error() -> None:
    dns = FakeDns({"empty.example.com": [[]]})
    with pytest.raises(
        UnresolvableHost, match=re.escape("'nowhere.example.com' could not be resolved")
    ):
        await check_url("https://nowhere.example.com/", allow_private=False, resolver=dns)
    with pytest.raises(UnresolvableHost, match="no address"):
        await check_url("https://empty.example.com/", allow_private=False, resolver=dns)
    assert not issubclass(UnresolvableHost, UnsafeDestination)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "must be an absolute http(s) URL"),
        ("example.com/hook", "must be an absolute http(s) URL"),
        ("ftp://example.com/", "must be an absolute http(s) URL"),
        ("javascript:alert(1)", "must be an absolute http(s) URL"),
        ("file:///etc/passwd", "must be an absolute http(s) URL"),
        ("http:///path", "must be an absolute http(s) URL"),
        ("http://user:pw@example.com/", "must not contain a user name or password"),
        ("http://user@example.com/", "must not contain a user name or password"),
        ("http://exa mple.com/", "is not a valid host name"),
        ("http://-bad.example.com/", "is not a valid host name"),
        ("http://a..b/", "is not a valid host name"),
        ("http://example.com:99999/", "port 99999 is out of range"),
        ("http://exa\r\nmple.com/", "is not a valid URL"),
        ("https://example.com/" + "a" * 2100, "at most 2048 characters"),
    ],
)
async def test_bad_syntax(url: str, message: str) -> None:
    with pytest.raises(UnsafeDestination) as info:
        check_url_syntax(url)
    assert info.value.reason.startswith("url: ")
    assert message in info.value.reason
    with pytest.raises(UnsafeDestination):
        await check_url(url, allow_private=True)


def test_syntax_normalises() -> None:
    assert check_url_syntax(" HTTPS://Hooks.Example.COM:443/In?a=1#frag ") == (
        "https://hooks.example.com/In?a=1"
    )
    assert check_url_syntax("http://[::1]:8080/x") == "http://[::1]:8080/x"
    assert check_url_syntax("https://bücher.example/") == "https://xn--bcher-kva.example/"
    # syntax alone: private addresses are the resolver's business
    assert check_url_syntax("http://127.0.0.1/") == "http://127.0.0.1/"


# --- the transport: checked at connect time, connecting to the checked address


@dataclass
class Server:
    port: int
    requests: list[bytes] = field(default_factory=list)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = srv.sockets[0].getsockname()[1]
    async with srv:
        yield state


async def test_transport_refuses_private_address_before_connecting(server: Server) -> None:
    async with guarded_client(allow_private=False, timeout=5) as client:
        with pytest.raises(UnsafeDestination, match="loopback"):
            await client.get(f"http://127.0.0.1:{server.port}/")
    assert server.requests == []


async def test_transport_allows_private_when_told(server: Server) -> None:
    async with guarded_client(allow_private=True, timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{server.port}/")
    assert response.status_code == 200 and response.text == "ok"


async def test_rebinding_after_the_check_is_refused_at_connect(server: Server) -> None:
    # The first answer passes check_url; the attacker's DNS then answers loopback.
    dns = FakeDns({"rebind.example.com": [["93.184.215.14"], ["127.0.0.1"]]})
    url = f"http://rebind.example.com:{server.port}/"
    await check_url(url, allow_private=False, resolver=dns)
    async with guarded_client(allow_private=False, timeout=5, resolver=dns) as client:
        with pytest.raises(UnsafeDestination, match=re.escape("resolves to 127.0.0.1, a loopback")):
            await client.get(url)
    assert dns.asked == ["rebind.example.com", "rebind.example.com"]
    assert server.requests == []


async def test_transport_connects_to_the_address_it_resolved(server: Server) -> None:
    # The name exists only in the fake resolver, so reaching the server proves
    # the connection used the address the transport checked, with the Host kept.
    dns = FakeDns({"hooks.internal.test": [["127.0.0.1"]]})
    async with guarded_client(allow_private=True, timeout=5, resolver=dns) as client:
        response = await client.get(f"http://hooks.internal.test:{server.port}/in")
    assert response.status_code == 200
    assert f"host: hooks.internal.test:{server.port}".encode() in server.requests[0].lower()


async def test_transport_unresolvable_is_a_connect_error() -> None:
    async with guarded_client(allow_private=False, timeout=5, resolver=FakeDns({})) as client:
        with pytest.raises(httpx.ConnectError, match="could not be resolved"):
            await client.get("https://nowhere.example.com/")
