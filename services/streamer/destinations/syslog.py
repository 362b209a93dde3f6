"""Syslog (RFC 5424) over TLS (RFC 5425), TCP (RFC 6587) or UDP (RFC 5426).

One message per event (``formats.syslog``): ``<PRI>1 received_at
hostname app_name - action SD MSG`` where MSG is the event as JSON
(``body: json``, the default; ``format: ocsf`` makes it the OCSF record),
a CEF:0 line (``body: cef``, for ArcSight and Sentinel's CEF connector) or
a LEEF 2.0 line (``body: leef``, for QRadar). PRI is ``facility`` (13,
*log audit*, by default) and severity 6 (informational), 4 (warning) when
the action says it failed. ``sd_id`` (e.g. ``chainlog@32473``, with your
private enterprise number) adds ``[sd_id id=.. workspace_id=.. seq=.. hash=..]``.

Transports:

* ``tls`` (the default, port 6514): octet-counted frames over TLS 1.2+.
  The server's certificate is verified, always unless ``verify_tls:
  false``: against ``ca_pem`` (a PEM bundle; only those CAs are trusted)
  or else the system's CAs, and its name against ``server_name`` (or
  ``host``). ``cert_pem`` and ``key_pem`` (secret) present a client
  certificate to servers that ask for one.
* ``tcp`` (port 514): the same frames in clear text.
* ``udp`` (port 514): one message per datagram, unframed; for labs.

Delivery: syslog has no acknowledgement. One connection per batch: every
frame is written, then we end our side (TLS close_notify, or a TCP
half-close) and wait up to ``sockets.CLOSE_WAIT_S`` for the server to end
its side. Its close (close_notify or end of stream), or silence, and the
batch is delivered; a reset or a TLS alert (e.g. our client certificate
refused, which TLS 1.3 reports only after the data left) and it is
retried whole. So delivery is at least once *up to the TCP send*: a
receiver that crashes with data in its buffers loses it, and a retried
batch may arrive twice (receivers de-duplicate by the event id in the
message). Over UDP, delivered means sent.

The connection is not an httpx one, but obeys the same SSRF rule: the host
is resolved once, every address checked (``ssrf.checked_addresses``,
with the rule of the client the caller passes, ``ssrf.guard_of``), and the
socket opened to a checked address. ``endpoint()`` is
``tls://host:port`` (``tcp``, ``udp``) for ``ssrf.check_endpoint``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from libs.common.ssrf import (
    UnresolvableHost,
    UnsafeDestination,
    check_host_syntax,
    checked_addresses,
    guard_of,
)
from services.streamer.destinations import sockets
from services.streamer.destinations.base import (
    ATTEMPT_TIMEOUT_S,
    Event,
    Result,
    shaper,
    shorten,
    split_by,
    without_secrets,
)
from services.streamer.destinations.checks import FORMAT_KEYS, Checker, Violations
from services.streamer.formats import cef, leef, syslog
from services.streamer.formats.common import kind

TRANSPORTS = ("tls", "tcp", "udp")
BODIES = ("json", "cef", "leef")
DEFAULT_PORTS = {"tls": 6514, "tcp": 514, "udp": 514}
DEFAULT_FACILITY = syslog.FACILITIES["audit"]
_TLS_ONLY = ("ca_pem", "cert_pem", "key_pem", "server_name")


class Syslog:
    type = "syslog"
    SECRET_FIELDS = ("key_pem",)
    MAX_BATCH = 500
    MAX_BYTES: int | None = None

    def validate(self, config: object) -> tuple[dict[str, Any], Violations]:
        keys = ("host", "port", "transport", "body", "app_name", "hostname", "facility")
        c = Checker(config, (*keys, *_TLS_ONLY, "verify_tls", "sd_id", "bom", *FORMAT_KEYS))
        try:
            c.out["host"] = check_host_syntax(c.raw.get("host"))
        except UnsafeDestination as exc:
            c.fail("host", exc.reason)
        transport = c.choice("transport", TRANSPORTS, default="tls")
        c.integer("port", default=DEFAULT_PORTS[transport], low=1, high=65535)
        c.choice("body", BODIES, default="json")
        c.record_format()
        _header_field(c, "app_name", syslog.MAX_APP_NAME, "chainlog")
        _header_field(c, "hostname", syslog.MAX_HOSTNAME, "chainlog")
        facility = c.raw.get("facility", DEFAULT_FACILITY)
        facility = (
            syslog.FACILITIES.get(facility, facility) if isinstance(facility, str) else facility
        )
        if type(facility) is not int or not 0 <= facility <= 23:
            c.fail("facility", "facility must be 0 to 23 or a name such as audit, authpriv, local0")
        else:
            c.out["facility"] = facility
        sd_id = c.string("sd_id", max_len=syslog.MAX_SD_NAME)
        if sd_id is not None and not syslog.is_sd_name(sd_id):
            c.out.pop("sd_id")
            c.fail("sd_id", 'sd_id must be an SD-ID such as name@32473: no space, =, ] or "')
        c.boolean("bom", default=True)
        c.boolean("verify_tls", default=True)
        if transport != "tls":
            for key in _TLS_ONLY:
                if key in c.raw:
                    c.fail(key, f"{key} is a setting of the tls transport")
        else:
            _tls_settings(c)
        return c.out, c.violations

    def public(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return without_secrets(config, self.SECRET_FIELDS)

    def endpoint(self, config: Mapping[str, Any]) -> str:
        host = str(config["host"])
        host = f"[{host}]" if ":" in host else host
        transport = config.get("transport", "tls")
        return f"{transport}://{host}:{config.get('port', DEFAULT_PORTS[transport])}"

    def split(self, events: Sequence[Event]) -> list[list[Event]]:
        return split_by(events, max_events=self.MAX_BATCH, max_bytes=None, size=len)

    def message(self, config: Mapping[str, Any], event: Event) -> bytes:
        """One RFC 5424 message (unframed)."""
        body = config.get("body", "json")
        if body == "cef":
            text = cef.line(event)
        elif body == "leef":
            text = leef.line(event)
        else:
            text = orjson.dumps(shaper(config)(event)).decode()
        sd: list[syslog.SdElement] = []
        if config.get("sd_id"):
            params = [(k, str(event[k])) for k in ("id", "workspace_id", "seq", "hash")]
            sd.append((str(config["sd_id"]), params))
        failed = kind(event).outcome == "failure"
        return syslog.message(
            text,
            facility=int(config.get("facility", DEFAULT_FACILITY)),
            severity=syslog.SEVERITY_WARNING if failed else syslog.SEVERITY_INFO,
            timestamp=str(event["received_at"]),
            hostname=str(config.get("hostname", "chainlog")),
            app_name=str(config.get("app_name", "chainlog")),
            msgid=str(event["action"]),
            sd=sd,
            bom=bool(config.get("bom", True)),
        )

    async def send(
        self,
        client: httpx.AsyncClient,
        config: Mapping[str, Any],
        events: Sequence[Event],
        *,
        batch_id: str,
        timeout: float = ATTEMPT_TIMEOUT_S,  # noqa: ASYNC109
    ) -> Result:
        if not events:
            return Result("delivered", None, None, 0)
        transport = str(config.get("transport", "tls"))
        port = int(config.get("port", DEFAULT_PORTS[transport]))
        messages = [self.message(config, e) for e in events]
        if transport == "udp":
            longest = max(len(m) for m in messages)
            if longest > sockets.MAX_DATAGRAM:
                error = f"a message of {longest} bytes does not fit a UDP datagram; use tcp or tls"
                return Result("failed", None, error, 0)
        allow_private, resolver = guard_of(client)
        try:
            async with asyncio.timeout(timeout):
                addresses = await checked_addresses(
                    str(config["host"]), port, allow_private=allow_private, resolver=resolver
                )
                if transport == "udp":
                    await sockets.send_datagrams(addresses[0], port, messages)
                else:
                    frames = b"".join(syslog.frame(m) for m in messages)
                    await sockets.send_stream(addresses, port, frames, _tls(config))
        except UnsafeDestination as exc:
            return Result("failed", None, shorten(f"refused: {exc.reason}"), 0)
        except UnresolvableHost as exc:
            return Result("retry", None, shorten(f"connection failed: {exc}"), 0)
        except ssl.SSLCertVerificationError as exc:
            # the wrong CA or the wrong name: sending again cannot help
            reason = exc.verify_message or exc.reason or "certificate verify failed"
            return Result("failed", None, shorten(f"tls: server certificate refused: {reason}"), 0)
        except ssl.SSLError as exc:
            return Result("retry", None, shorten(f"tls: {exc.reason or exc}"), 0)
        except TimeoutError:
            return Result("retry", None, f"timeout: not sent within {timeout:g} s", 0)
        except OSError as exc:
            return Result("retry", None, shorten(f"connection failed: {exc.strerror or exc}"), 0)
        return Result("delivered", None, None, len(events))


# ---- TLS --------------------------------------------------------------------------------------


def _tls(config: Mapping[str, Any]) -> tuple[ssl.SSLContext, str] | None:
    """The context and the name the server's certificate must hold."""
    if config.get("transport", "tls") != "tls":
        return None
    context = sockets.tls_context(
        config.get("ca_pem"),
        config.get("cert_pem"),
        config.get("key_pem"),
        bool(config.get("verify_tls", True)),
    )
    return context, str(config.get("server_name") or config["host"])


def _header_field(c: Checker, key: str, max_len: int, default: str) -> None:
    value = c.raw.get(key, default)
    if not isinstance(value, str) or syslog.header_field(value, max_len) != value:
        c.fail(key, f"{key} must be 1 to {max_len} printable ASCII characters without spaces")
        return
    c.out[key] = value


def _tls_settings(c: Checker) -> None:
    """``ca_pem``, ``cert_pem`` + ``key_pem`` (a pair that matches), ``server_name``."""
    ca = c.pem("ca_pem", kinds=("CERTIFICATE",))
    if ca is not None:
        try:
            x509.load_pem_x509_certificates(ca.encode())
        except ValueError:
            c.out.pop("ca_pem", None)
            c.fail("ca_pem", "ca_pem holds a certificate that cannot be read")
    cert = c.pem("cert_pem", kinds=("CERTIFICATE",))
    key = c.pem("key_pem", kinds=("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"))
    if (cert is None) != (key is None):
        missing = "key_pem" if key is None else "cert_pem"
        if missing not in c.raw:
            c.fail(missing, "cert_pem and key_pem go together (a client certificate and its key)")
    elif cert is not None and key is not None:
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        try:
            public = x509.load_pem_x509_certificates(cert.encode())[0].public_key()
            private = serialization.load_pem_private_key(key.encode(), password=None)
            matches = public.public_bytes(*spki) == private.public_key().public_bytes(*spki)
        except (ValueError, TypeError):
            matches = False
        if not matches:
            c.out.pop("cert_pem", None)
            c.out.pop("key_pem", None)
            c.fail("key_pem", "key_pem must be the unencrypted private key of cert_pem")
    server_name = c.raw.get("server_name")
    if server_name is not None:
        try:
            c.out["server_name"] = check_host_syntax(server_name, "server_name")
        except UnsafeDestination as exc:
            c.fail("server_name", exc.reason)
