"""Deliveries over a socket of their own (syslog): TCP, TLS by hand, UDP.

The caller resolves and checks the addresses (``ssrf.checked_addresses``)
and passes them here: these functions connect to an address, never to a
name, so there is no second lookup for DNS rebinding to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Sequence

from libs.common.ssrf import IPAddress

#: The largest UDP payload over IPv4; a longer message cannot travel as one datagram.
MAX_DATAGRAM = 65_507
#: How long, after our end of the batch, the server has to end the connection (or refuse).
CLOSE_WAIT_S = 5.0


async def send_stream(
    addresses: Sequence[IPAddress],
    port: int,
    data: bytes,
    tls: tuple[ssl.SSLContext, str] | None,
) -> None:
    """Connect to the first address that answers, send ``data``, close, wait for the peer's close."""
    last: OSError | None = None
    for address in addresses:
        try:
            reader, writer = await asyncio.open_connection(str(address), port)
            break
        except OSError as exc:
            last = exc
    else:
        raise last or OSError("no address to connect to")
    try:
        if tls is None:
            writer.write(data)
            await writer.drain()
            writer.write_eof()

            async def ended() -> bool:
                return not await reader.read(65536)

            await _peer_close(ended)
        else:
            await _tls_session(reader, writer, tls[0], tls[1], data)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _tls_session(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    server_name: str,
    data: bytes,
) -> None:
    """TLS over the connection by hand (memory BIOs), to see how the server ends it.

    asyncio's own TLS transport takes an end of stream during its closing
    handshake as a clean close; with TLS 1.3 a server that refuses our
    client certificate says so only after our data left, so that would
    report a refused batch as delivered.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    session = context.wrap_bio(incoming, outgoing, server_hostname=server_name)

    async def flush() -> None:
        pending = outgoing.read()
        if pending:
            writer.write(pending)
            await writer.drain()

    async def receive() -> None:
        chunk = await reader.read(65536)
        if chunk:
            incoming.write(chunk)
        else:
            incoming.write_eof()

    while True:
        try:
            session.do_handshake()
            break
        except ssl.SSLWantReadError:
            await flush()
            await receive()
    session.write(data)
    try:
        session.unwrap()  # our close_notify
    except ssl.SSLWantReadError:
        pass
    await flush()

    async def ended() -> bool:
        try:
            # read, not unwrap: OpenSSL takes a fatal alert during its
            # shutdown as the end of it, a read raises it
            session.read(65536)
        except ssl.SSLWantReadError:
            await receive()
        except ssl.SSLZeroReturnError:
            return True  # the server's close_notify
        except ssl.SSLEOFError:
            return True  # closed without close_notify, after reading ours
        return False

    await _peer_close(ended)


async def _peer_close(ended: Callable[[], Awaitable[bool]]) -> None:
    """Wait (at most ``CLOSE_WAIT_S``) for the server to end the connection after our end.

    A reset, or a TLS alert, raises: the server did not take everything, and
    the caller retries. Its close_notify or its end of stream means it read
    all we sent. A server that keeps the connection open has refused
    nothing either: after ``CLOSE_WAIT_S`` the batch counts as sent.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_WAIT_S):
            while not await ended():
                pass


async def send_datagrams(address: IPAddress, port: int, messages: Sequence[bytes]) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=(str(address), port)
    )
    try:
        for message in messages:
            transport.sendto(message)
    finally:
        transport.close()


@functools.lru_cache(maxsize=64)
def tls_context(
    ca_pem: str | None,
    cert_pem: str | None,
    key_pem: str | None,
    verify: bool,
) -> ssl.SSLContext:
    """A client context: TLS 1.2+, the server verified against ``ca_pem`` (else the system's CAs).

    Kept per settings: building one (and loading a client key) costs more
    than a batch's worth of frames.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_pem and key_pem:
        # the ssl module loads a key from a file only: a private directory, removed at once
        with tempfile.TemporaryDirectory(prefix="chainlog-tls-") as folder:
            path = os.path.join(folder, "client.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(cert_pem + "\n" + key_pem)
            context.load_cert_chain(path)
    return context
