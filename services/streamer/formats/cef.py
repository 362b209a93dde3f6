"""ArcSight Common Event Format (CEF:0), as read by ArcSight and Microsoft Sentinel.

One line per event::

    CEF:0|Chainlog|Chainlog|1|document.delete|document.delete|3|rt=1795745525114 ...

The header is ``Version|Device Vendor|Device Product|Device Version|Device
Event Class ID|Name|Severity``; both class and name are the action.
Severity is 3 (low), 6 when the action says it failed. In the header a
``\\`` and a ``|`` are escaped with a backslash and a line break becomes a
space (CEF allows line breaks only in extension values). In extension
values ``\\``, ``=`` are escaped with a backslash and line breaks are
written ``\\n`` and ``\\r``; a ``|`` needs no escape there.

Extension keys, in this order, each only when the event has the value:

=============================  ========================================
``rt``                          ``received_at``, epoch milliseconds
``start``                       ``occurred_at``, epoch milliseconds
``externalId``                  event ``id``
``act`` / ``cat``               ``action`` / ``action_category``
``outcome``                     ``success`` or ``failure``, when the action says
``suid`` / ``suser``            ``actor_id`` / ``actor_name``
``src`` (``c6a2`` for IPv6)     ``ip_address``
``requestClientApplication``    ``user_agent``
``cn1`` (label ``seq``)         ``seq``
``cs1`` .. ``cs6``              ``workspace_id``, ``hash``, ``prev_hash``,
                                ``tenant_id``, ``session_id``, resource
                                (``type:id`` of the first resource or target)
``flexString1`` / ``2``         ``ip_country`` / ``ip_city``
``msg``                         ``metadata`` as compact JSON
=============================  ========================================
"""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson

from services.streamer.formats.common import PRODUCT, VENDOR, Event, epoch_ms, kind, nouns

DEVICE_VERSION = "1"
SEVERITY_INFO = 3
SEVERITY_FAILURE = 6
_HEADER = str.maketrans({"\\": "\\\\", "|": "\\|", "\r": " ", "\n": " "})
_VALUE = str.maketrans({"\\": "\\\\", "=": "\\=", "\r": "\\r", "\n": "\\n"})
#: ``(key, label, event field)`` of the custom string and number fields.
_LABELLED = (
    ("cn1", "seq", "seq"),
    ("cs1", "workspace_id", "workspace_id"),
    ("cs2", "hash", "hash"),
    ("cs3", "prev_hash", "prev_hash"),
    ("cs4", "tenant_id", "tenant_id"),
    ("cs5", "session_id", "session_id"),
    ("cs6", "resource", None),
    ("flexString1", "ip_country", "ip_country"),
    ("flexString2", "ip_city", "ip_city"),
)


def header_escape(text: str) -> str:
    return text.translate(_HEADER)


def value_escape(text: str) -> str:
    return text.translate(_VALUE)


def extension(event: Event) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs of the extension, unescaped, in order."""
    k = kind(event)
    pairs: list[tuple[str, Any]] = [("rt", epoch_ms(str(event["received_at"])))]
    if event.get("occurred_at"):
        pairs.append(("start", epoch_ms(str(event["occurred_at"]))))
    pairs += [
        ("externalId", event.get("id")),
        ("act", event.get("action")),
        ("cat", event.get("action_category")),
        ("outcome", k.outcome),
        ("suid", event.get("actor_id")),
        ("suser", event.get("actor_name")),
    ]
    ip = event.get("ip_address")
    if ip and ipaddress.ip_address(ip).version == 6:
        # src holds IPv4 only in CEF:0; c6a2 is the source IPv6 address field
        pairs += [("c6a2Label", "Source IPv6 Address"), ("c6a2", ip)]
    elif ip:
        pairs.append(("src", ip))
    pairs.append(("requestClientApplication", event.get("user_agent")))
    acted_on = nouns(event)
    resource = None
    if acted_on:
        first = acted_on[0]
        resource = ":".join(str(first[x]) for x in ("type", "id") if x in first) or first["name"]
    for key, label, field in _LABELLED:
        value = event.get(field) if field else resource
        if value is not None:
            pairs += [(f"{key}Label", label), (key, value)]
    if event.get("metadata"):
        pairs.append(("msg", orjson.dumps(event["metadata"]).decode()))
    return [(key, str(value)) for key, value in pairs if value is not None]


def line(event: Event) -> str:
    """The event as one CEF:0 line (no trailing newline)."""
    action = header_escape(str(event["action"]))
    severity = SEVERITY_FAILURE if kind(event).outcome == "failure" else SEVERITY_INFO
    header = ["CEF:0", header_escape(VENDOR), header_escape(PRODUCT), DEVICE_VERSION]
    header += [action, action, str(severity)]
    ext = " ".join(f"{key}={value_escape(value)}" for key, value in extension(event))
    return "|".join(header) + "|" + ext
