"""RFC 5424 syslog messages, and the octet-counting frame of RFC 5425 / RFC 6587.

A message is::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [BOM]MSG

``PRI`` is ``facility * 8 + severity``. Header fields are printable
US-ASCII without spaces, cut to their RFC lengths (hostname 255, app-name
48, procid 128, msgid 32); an empty one is the nil value ``-``.
Structured data is ``-`` or ``[SD-ID name="value" ...]`` with ``"``,
``\\`` and ``]`` escaped by a backslash in values. A MSG encoded in UTF-8
starts with the byte order mark ``EF BB BF`` (RFC 5424 section 6.4): that
is how a receiver knows it is UTF-8 and not some other charset; ``bom``
is off only for receivers that show it as garbage.

Over TCP and TLS each message travels as ``MSG-LEN SP SYSLOG-MSG``
(octet counting: the length in bytes, in decimal), so a message may hold
line breaks; over UDP a datagram is one message, unframed (RFC 5426).
"""

from __future__ import annotations

from collections.abc import Sequence

FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "audit": 13,
    "alert": 14,
    "clock": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}
SEVERITY_WARNING = 4
SEVERITY_INFO = 6
BOM = b"\xef\xbb\xbf"
NIL = "-"
#: RFC 5424 section 6: the lengths of the header fields.
MAX_HOSTNAME, MAX_APP_NAME, MAX_PROCID, MAX_MSGID = 255, 48, 128, 32
MAX_SD_NAME = 32
_SD_VALUE = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})

SdElement = tuple[str, Sequence[tuple[str, str]]]


def header_field(value: str | None, max_len: int) -> str:
    """Printable US-ASCII (33..126) cut to ``max_len``; anything else becomes ``_``, nothing ``-``."""
    if not value:
        return NIL
    return "".join(c if 33 <= ord(c) <= 126 else "_" for c in value[:max_len])


def is_sd_name(name: str) -> bool:
    """An SD-ID or PARAM-NAME: 1 to 32 printable US-ASCII but ``=``, space, ``]`` and ``"``."""
    return 0 < len(name) <= MAX_SD_NAME and all(
        33 <= ord(c) <= 126 and c not in '=]"' for c in name
    )


def structured_data(elements: Sequence[SdElement]) -> str:
    if not elements:
        return NIL
    return "".join(
        "[" + " ".join([sd_id, *(f'{k}="{v.translate(_SD_VALUE)}"' for k, v in params)]) + "]"
        for sd_id, params in elements
    )


def message(
    body: str,
    *,
    facility: int,
    severity: int,
    timestamp: str,
    hostname: str,
    app_name: str,
    msgid: str | None = None,
    procid: str | None = None,
    sd: Sequence[SdElement] = (),
    bom: bool = True,
) -> bytes:
    """One RFC 5424 message; ``timestamp`` is RFC 3339 with at most 6 fraction digits."""
    header = " ".join(
        [
            f"<{facility * 8 + severity}>1",
            timestamp,
            header_field(hostname, MAX_HOSTNAME),
            header_field(app_name, MAX_APP_NAME),
            header_field(procid, MAX_PROCID),
            header_field(msgid, MAX_MSGID),
            structured_data(sd),
        ]
    )
    return header.encode("ascii") + b" " + (BOM if bom else b"") + body.encode("utf-8")


def frame(msg: bytes) -> bytes:
    """Octet counting (RFC 5425 section 4.3, RFC 6587 section 3.4.1): ``MSG-LEN SP MSG``."""
    return b"%d " % len(msg) + msg
