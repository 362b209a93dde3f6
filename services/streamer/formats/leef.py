"""IBM QRadar Log Event Extended Format, LEEF 2.0, tab-delimited.

One line per event::

    LEEF:2.0|Chainlog|Chainlog|1|document.delete|x09|devTime=...<TAB>devTimeFormat=...<TAB>...

The sixth header field declares the attribute delimiter, a tab, as
``x09``. A ``\\`` or ``|`` in a header field is escaped with a backslash
and a line break becomes a space. In attribute values ``\\``, tab, LF and
CR are written ``\\\\``, ``\\t``, ``\\n`` and ``\\r``; ``=`` needs no
escape (a parser splits each attribute at its first ``=``).

Attributes: ``devTime`` (``occurred_at``, else ``received_at``, to the
millisecond) with ``devTimeFormat`` ``yyyy-MM-dd'T'HH:mm:ss.SSSX``,
``cat`` (``action_category``), ``sev`` (3, 6 when the action says it
failed), ``src`` (``ip_address``), ``usrName`` (``actor_id``), then every
other field of the event under its own name (``seq``, ``hash``,
``prev_hash``, ``workspace_id``, ``id``...), objects and lists as compact
JSON. QRadar shows the custom ones as event properties of those names.
"""

from __future__ import annotations

from typing import Any

import orjson

from libs.common.timeutil import parse_rfc3339
from services.streamer.formats.common import PRODUCT, VENDOR, Event, event_time, kind

VERSION = "1"
DELIMITER = "\t"
DEV_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSX"
SEVERITY_INFO = 3
SEVERITY_FAILURE = 6
_HEADER = str.maketrans({"\\": "\\\\", "|": "\\|", "\r": " ", "\n": " "})
_VALUE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\r": "\\r", "\n": "\\n"})
#: Written under a LEEF predefined key (or not at all), not under their own name.
_PREDEFINED = {"action_category": "cat", "ip_address": "src", "actor_id": "usrName"}


def header_escape(text: str) -> str:
    return text.translate(_HEADER)


def value_escape(text: str) -> str:
    return text.translate(_VALUE)


def dev_time(ts: str) -> str:
    """``2026-11-27T02:12:05.114Z``: SimpleDateFormat's ``SSS`` reads exactly milliseconds."""
    dt = parse_rfc3339(ts)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def attributes(event: Event) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs, unescaped, in order."""
    failed = kind(event).outcome == "failure"
    pairs: list[tuple[str, str]] = [
        ("devTime", dev_time(event_time(event))),
        ("devTimeFormat", DEV_TIME_FORMAT),
        ("sev", str(SEVERITY_FAILURE if failed else SEVERITY_INFO)),
    ]
    for field, key in _PREDEFINED.items():
        if event.get(field) is not None:
            pairs.append((key, _text(event[field])))
    pairs += [
        (name, _text(value))
        for name, value in event.items()
        if value is not None and name not in _PREDEFINED
    ]
    return pairs


def line(event: Event) -> str:
    """The event as one LEEF 2.0 line (no trailing newline)."""
    header = ["LEEF:2.0", header_escape(VENDOR), header_escape(PRODUCT), VERSION]
    header += [header_escape(str(event["action"])), "x09"]
    body = DELIMITER.join(f"{key}={value_escape(value)}" for key, value in attributes(event))
    return "|".join(header) + "|" + body
