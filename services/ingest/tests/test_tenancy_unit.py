"""Who is calling: the peer, or X-Forwarded-For from a trusted proxy only."""

from __future__ import annotations

from starlette.requests import Request

from services.ingest.tenancy import client_ip, parse_networks


def request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 5555), "headers": headers})


PROXIES = parse_networks("10.0.0.0/8, 192.168.1.7")


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert client_ip(request("203.0.113.9", "198.51.100.1"), ()) == "203.0.113.9"


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    assert client_ip(request("203.0.113.9", "127.0.0.1"), PROXIES) == "203.0.113.9"


def test_behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() -> None:
    # The client forged a first hop; the proxies appended the real one.
    got = client_ip(request("10.1.2.3", "6.6.6.6, 198.51.100.1, 192.168.1.7"), PROXIES)
    assert got == "198.51.100.1"


def test_only_proxies_in_the_chain() -> None:
    assert client_ip(request("10.1.2.3", "10.9.9.9"), PROXIES) == "10.9.9.9"
    assert client_ip(request("10.1.2.3"), PROXIES) == "10.1.2.3"
