"""Server-side request forgery guard for outbound deliveries (alert webhooks, SIEM streams).

A workspace admin chooses the URL we POST to; without this guard they could
point it at our own PostgreSQL, a cloud metadata endpoint (169.254.169.254)
or anything else reachable only from inside the network.

Rules (``allow_private=False``, the default outside the local stack):

- the URL is absolute ``http`` or ``https``, has a host, has no
  ``user:password@``;
- EVERY address the host resolves to is public: an answer mixing one public
  and one private address is refused, since the connection could take either.
  Refused: loopback, private (RFC 1918, fc00::/7), link-local, unspecified,
  multicast, reserved, carrier-grade NAT (100.64.0.0/10), other
  non-global special-purpose ranges, and IPv6 forms that embed one of those
  (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``).

When the check runs, and why it holds against DNS rebinding:

1. ``check_url_syntax`` when the URL is saved (no DNS: the API answers at
   once), ``check_url`` too if the API wants the resolution checked then.
2. ``check_url`` again just before each delivery, so a URL that was fine
   when saved but now resolves inside is refused with a clear reason.
3. ``GuardedTransport`` checks at connect time: its network backend resolves
   the host itself, checks every address, and opens the TCP connection to
   a checked address. There is no second lookup between check and connect
   that an attacker's DNS server could answer differently. TLS still
   verifies the certificate against the URL's host name.

Deliveries MUST go through ``guarded_client`` (or ``GuardedTransport`` on a
client with ``trust_env=False`` and no redirects): a proxy taken from the
environment, or a followed redirect, would bypass the check.

The operator setting ``CHAINLOG_ALLOW_PRIVATE_DESTINATIONS`` turns the
address rule off (the local stack delivers to receivers on 127.0.0.1).

Destinations that are not HTTP (syslog over TCP, TLS or UDP) name their
endpoint ``tcp://host:port``, ``tls://host:port`` or ``udp://host:port``:
``check_endpoint`` takes those and http(s) URLs alike (the API checks
every stream's endpoint with it), and such a destination opens its socket
to an address from ``checked_addresses``, with the rule of the client it
was given (``guard_of``): one lookup, as in ``GuardedTransport``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: ``(host, port) -> addresses as text``; the system resolver unless a test passes its own.
Resolver = Callable[[str, int], Awaitable[list[str]]]

_POLICY = (
    "destinations on loopback, private or link-local networks are not allowed"
    " (an operator can allow them with CHAINLOG_ALLOW_PRIVATE_DESTINATIONS=1)"
)
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
# A dot between labels is mandatory, which keeps matching linear on hostile input.
_HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?\Z")
_MAX_URL = 2048

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Spelled out rather than ``is_private``, whose meaning moved between 3.11 patch releases.
_PRIVATE = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
    ipaddress.IPv6Network("fc00::/7"),
    ipaddress.IPv6Network("fec0::/10"),  # deprecated site-local, still routed inside some sites
)


class UnsafeDestination(ValueError):
    """The URL is malformed or points where we MUST NOT send: a permanent refusal."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnresolvableHost(ValueError):
    """The host has no address now: perhaps transient, so a delivery retries."""


def is_forbidden_address(ip: IPAddress | str) -> str | None:
    """The category that makes ``ip`` a forbidden destination, or None if it is public."""
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = addr.ipv4_mapped or addr.sixtofour
        if embedded is None and addr in _NAT64:
            embedded = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if embedded is not None:
            return is_forbidden_address(embedded)
    if addr.is_unspecified or addr in _THIS_NETWORK:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_multicast:
        return "multicast"
    if addr in _CGNAT:
        return "carrier-grade NAT"
    if any(addr in net for net in _PRIVATE):
        return "private"
    if addr.is_reserved:
        return "reserved"
    if not addr.is_global:
        # documentation, benchmarking and protocol ranges: nothing to deliver to
        return "non-public"
    return None


def _parse(url: str) -> httpx.URL:
    """Parsed by httpx itself, so the host we check is the host httpx connects to."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeDestination("url: must be an absolute http(s) URL")
    if len(url) > _MAX_URL:
        raise UnsafeDestination(f"url: must be at most {_MAX_URL} characters")
    try:
        parsed = httpx.URL(url.strip())
    except httpx.InvalidURL as exc:
        raise UnsafeDestination(f"url: is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise UnsafeDestination("url: must be an absolute http(s) URL")
    if parsed.userinfo:
        raise UnsafeDestination(
            "url: must not contain a user name or password; use the endpoint's secret instead"
        )
    port = parsed.port
    if port is not None and not 1 <= port <= 65535:
        raise UnsafeDestination(f"url: port {port} is out of range")
    host = _host_text(parsed)
    if _literal(host) is None and _HOSTNAME_RE.match(host) is None:
        raise UnsafeDestination(f"url: host {parsed.host!r} is not a valid host name")
    return parsed


def _host_text(url: httpx.URL) -> str:
    return url.raw_host.decode("ascii").lower()


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").replace("%25", "%"))
    except ValueError:
        return None


def check_url_syntax(url: str) -> str:
    """The URL normalised (scheme and host lower case, no fragment); no DNS lookup."""
    return str(_parse(url).copy_with(fragment=None))


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve(host: str, port: int, resolver: Resolver | None = None) -> list[IPAddress]:
    """The addresses of ``host``, in the resolver's order; an IP literal without DNS."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        answers = await (resolver or system_resolver)(host, port)
    except (OSError, UnicodeError) as exc:
        raise UnresolvableHost(f"url: host {host!r} could not be resolved ({exc})") from None
    addresses = [ipaddress.ip_address(a) for a in answers]
    if not addresses:
        raise UnresolvableHost(f"url: host {host!r} has no address")
    return addresses


def _refusal(
    host: str, addresses: Iterable[IPAddress], what: str = "url"
) -> UnsafeDestination | None:
    for addr in addresses:
        category = is_forbidden_address(addr)
        if category is None:
            continue
        article = "an" if category[0] in "aeiou" else "a"
        if _literal(host) is not None:
            where = f"host {host!r} is {article} {category} address"
        else:
            where = f"host {host!r} resolves to {addr}, {article} {category} address"
        return UnsafeDestination(f"{what}: {where}; {_POLICY}")
    return None


async def check_url(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> None:
    """Raise ``UnsafeDestination`` unless ``url`` is well formed and every address is public.

    Raises ``UnresolvableHost`` when the name does not resolve now.
    """
    parsed = _parse(url)
    if allow_private:
        return
    host = _host_text(parsed)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    refusal = _refusal(host, await resolve(host, port, resolver))
    if refusal is not None:
        raise refusal


_SOCKET_ENDPOINT_RE = re.compile(r"^(tcp|tls|udp)://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]@]+):(\d{1,5})\Z")


def check_host_syntax(host: object, what: str = "host") -> str:
    """A host name or IP literal (no brackets), lower-cased; no DNS lookup."""
    if not isinstance(host, str) or not host or len(host) > 253:
        raise UnsafeDestination(f"{what}: must be a host name or an IP address")
    text = host.lower()
    if _literal(text) is None and _HOSTNAME_RE.match(text) is None:
        raise UnsafeDestination(f"{what}: {host!r} is not a valid host name or IP address")
    return text


def parse_socket_endpoint(endpoint: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``tcp://host:port`` (``tls``, ``udp``; IPv6 in brackets)."""
    match = _SOCKET_ENDPOINT_RE.match(endpoint) if isinstance(endpoint, str) else None
    if match is None:
        raise UnsafeDestination("endpoint: must be tcp://, tls:// or udp:// host:port")
    scheme, host, port = match.group(1), match.group(2).strip("[]"), int(match.group(3))
    if not 1 <= port <= 65535:
        raise UnsafeDestination(f"endpoint: port {port} is out of range")
    return scheme, check_host_syntax(host, "endpoint"), port


async def checked_addresses(
    host: str,
    port: int,
    *,
    allow_private: bool,
    resolver: Resolver | None = None,
    what: str = "endpoint",
) -> list[IPAddress]:
    """The addresses to connect to for ``host``: resolved once, every one checked.

    Raises ``UnsafeDestination`` (permanent) if any is forbidden and
    ``UnresolvableHost`` (transient) if there is none. Connect to these
    addresses, never to the name again: that would be a second lookup.
    """
    addresses = await resolve(host, port, resolver)
    if not allow_private:
        refusal = _refusal(host, addresses, what)
        if refusal is not None:
            raise refusal
    return addresses


async def check_endpoint(
    endpoint: str, *, allow_private: bool, resolver: Resolver | None = None
) -> None:
    """``check_url`` for an http(s) URL; the same rule for ``tcp://``, ``tls://``, ``udp://``.

    What the API MUST call with every stream's ``endpoint(config)``.
    """
    if isinstance(endpoint, str) and endpoint.lower().startswith(("http://", "https://")):
        await check_url(endpoint, allow_private=allow_private, resolver=resolver)
        return
    _, host, port = parse_socket_endpoint(endpoint)
    if not allow_private:
        await checked_addresses(host, port, allow_private=False, resolver=resolver)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks, then connects to the checked address: one lookup, no rebinding window."""

    def __init__(self, allow_private: bool, resolver: Resolver | None) -> None:
        self._allow_private = allow_private
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await checked_addresses(
                    host,
                    port,
                    allow_private=self._allow_private,
                    resolver=self._resolver,
                    what="url",
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from None
        except UnresolvableHost as exc:
            raise httpcore.ConnectError(str(exc)) from None
        last: Exception | None = None
        for addr in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(addr),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address to connect to for {host!r}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not a delivery destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every new connection passes the address rule.

    A refused address raises ``UnsafeDestination`` out of ``client.send``;
    an unresolvable host raises ``httpx.ConnectError`` like any other
    connection failure.
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(verify=verify, limits=limits, trust_env=False)
        #: The rule, for destinations that open their own sockets (``guard_of``).
        self.allow_private = allow_private
        self.resolver = resolver
        # httpx 0.28 takes no network backend, so the pool it built is replaced
        # by the same pool with ours (tests/test_ssrf.py proves it is used).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(allow_private, resolver),
        )


def guarded_client(
    *, allow_private: bool, timeout: float, resolver: Resolver | None = None
) -> httpx.AsyncClient:
    """A client for deliveries: guarded connections, no environment proxies, no redirects."""
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_private=allow_private, resolver=resolver),
        trust_env=False,
        follow_redirects=False,
        timeout=timeout,
    )


def guard_of(client: httpx.AsyncClient) -> tuple[bool, Resolver | None]:
    """``(allow_private, resolver)`` of the client's ``GuardedTransport``.

    For a destination that is given a client but opens its own socket: it
    MUST connect under the same rule. A client built on anything else gets
    the strict rule (private addresses refused).
    """
    # httpx has no public accessor for a client's transport
    transport = getattr(client, "_transport", None)
    if isinstance(transport, GuardedTransport):
        return transport.allow_private, transport.resolver
    return False, None
