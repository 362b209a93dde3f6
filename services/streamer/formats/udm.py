"""Google SecOps (Chronicle) UDM events.

``event(served, rules)`` maps one served event to one UDM event (the JSON
form of ``google.backstory.UDM``). The event type comes from the stream's
rules (``[{"pattern", "event_type"}]``, first match wins) and otherwise
from ``common.classify``:

=============================  ===============================================
log on / log off               ``USER_LOGIN`` / ``USER_LOGOUT``
password change or reset       ``USER_CHANGE_PASSWORD``
user created / deleted         ``USER_CREATION`` / ``USER_DELETION``
user granted / revoked         ``USER_CHANGE_PERMISSIONS``
other account changes          ``USER_UNCATEGORIZED``
resource created / read /      ``USER_RESOURCE_CREATION`` / ``_ACCESS`` /
updated / deleted              ``_UPDATE_CONTENT`` / ``_DELETION``
permissions on a resource      ``USER_RESOURCE_UPDATE_PERMISSIONS``
anything else                  ``GENERIC_EVENT``
=============================  ===============================================

``principal`` is who acted (``user.userid`` = ``actor_id``, ``ip`` =
``[ip_address]``, ``location``); ``target`` is the user a log-on or
account change is about, or the resource (``resource``/``resource_id``/
``resource_name``, else the first target). ``metadata.event_timestamp``
is ``occurred_at`` (else ``received_at``), ``product_event_type`` the
action, ``product_log_id`` the event id. Every field not placed so, and always ``id``, ``workspace_id``,
``seq``, ``hash`` and ``prev_hash``, is kept verbatim under ``additional``
(a ``google.protobuf.Struct``: any JSON).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.streamer.formats.common import (
    PRODUCT,
    VENDOR,
    Event,
    Kind,
    Problems,
    action_object,
    check_rules,
    event_time,
    first_rule,
    kind,
    nouns,
    put,
)

#: The UDM event types a rule may name: those whose required nouns we can fill.
EVENT_TYPES = (
    "USER_LOGIN",
    "USER_LOGOUT",
    "USER_CREATION",
    "USER_DELETION",
    "USER_CHANGE_PASSWORD",
    "USER_CHANGE_PERMISSIONS",
    "USER_UNCATEGORIZED",
    "USER_RESOURCE_ACCESS",
    "USER_RESOURCE_CREATION",
    "USER_RESOURCE_DELETION",
    "USER_RESOURCE_UPDATE_CONTENT",
    "USER_RESOURCE_UPDATE_PERMISSIONS",
    "SETTING_CREATION",
    "SETTING_MODIFICATION",
    "SETTING_DELETION",
    "STATUS_UPDATE",
    "GENERIC_EVENT",
)
_USER_TYPES = frozenset(t for t in EVENT_TYPES if t.startswith("USER_") and "RESOURCE" not in t)

#: Event fields copied verbatim to one UDM field; the rest go to ``additional``.
PLACES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("action", ("metadata", "product_event_type")),
    ("actor_id", ("principal", "user", "userid")),
    ("actor_name", ("principal", "user", "user_display_name")),
    ("ip_country", ("principal", "location", "country_or_region")),
    ("ip_city", ("principal", "location", "city")),
    ("user_agent", ("network", "http", "user_agent")),
    ("session_id", ("network", "session_id")),
)
_PLACE = dict(PLACES)
_ALWAYS_ADDITIONAL = ("id", "workspace_id", "seq", "hash", "prev_hash")
_RESOURCE_TYPES = {
    "create": "USER_RESOURCE_CREATION",
    "read": "USER_RESOURCE_ACCESS",
    "delete": "USER_RESOURCE_DELETION",
    "grant": "USER_RESOURCE_UPDATE_PERMISSIONS",
    "revoke": "USER_RESOURCE_UPDATE_PERMISSIONS",
}
_RESOURCE_TYPES |= dict.fromkeys(
    ("update", "enable", "disable", "lock", "unlock"), "USER_RESOURCE_UPDATE_CONTENT"
)
_USER_VERBS = {
    "create": "USER_CREATION",
    "delete": "USER_DELETION",
    "grant": "USER_CHANGE_PERMISSIONS",
    "revoke": "USER_CHANGE_PERMISSIONS",
}


def default_type(k: Kind) -> str:
    if k.family == "logon":
        return "USER_LOGIN"
    if k.family == "logoff":
        return "USER_LOGOUT"
    if k.family == "account":
        if k.subject == "password":
            return "USER_CHANGE_PASSWORD"
        if k.subject == "user":
            return _USER_VERBS.get(k.verb or "", "USER_UNCATEGORIZED")
        return "USER_UNCATEGORIZED"
    return _RESOURCE_TYPES.get(k.verb or "", "GENERIC_EVENT")


def check_mappings(value: object) -> tuple[list[dict[str, Any]], Problems]:
    """``udm_mappings``: rules ``{"pattern", "event_type"}``, each problem by path."""

    def check(item: Mapping[str, Any]) -> Problems:
        if item.get("event_type") not in EVENT_TYPES:
            return [(".event_type", "event_type must be one of " + ", ".join(EVENT_TYPES))]
        return []

    return check_rules(value, check, ("pattern", "event_type"))


def event(served: Event, rules: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The UDM event of ``served``; ``rules`` are checked ``udm_mappings``."""
    k = kind(served)
    rule = first_rule(rules, str(served["action"])) if rules else None
    event_type = str(rule["event_type"]) if rule else default_type(k)
    out: dict[str, Any] = {
        "metadata": {
            "event_timestamp": event_time(served),
            "event_type": event_type,
            "vendor_name": VENDOR,
            "product_name": PRODUCT,
            "product_log_id": str(served["id"]),
        }
    }
    additional: dict[str, Any] = {}
    for name, value in served.items():
        if value is None:
            continue  # ip_country and ip_city are served as null when unknown
        path = _PLACE.get(name)
        if name == "ip_address":
            continue  # principal.ip below, a list
        if path is None or name in _ALWAYS_ADDITIONAL:
            additional[name] = value
        else:
            put(out, path, value)
    if served.get("ip_address"):
        out.setdefault("principal", {})["ip"] = [served["ip_address"]]
    principal_user = out.get("principal", {}).get("user", {})
    if event_type in _USER_TYPES:
        target = next((t for t in nouns(served) if t.get("type") == "user"), None)
        about_actor = k.family in ("logon", "logoff") or target is None
        out["target"] = {"user": dict(principal_user) if about_actor else _user(target or {})}
    elif event_type != "GENERIC_EVENT":
        acted_on = nouns(served)
        name = action_object(str(served["action"]))
        resource = _resource(acted_on[0]) if acted_on else {"name": name, "resource_subtype": name}
        out["target"] = {"resource": resource}
    if k.outcome is not None:
        failed = k.outcome == "failure"
        out["security_result"] = [
            {
                "action": ["BLOCK" if failed else "ALLOW"],
                "severity": "LOW" if failed else "INFORMATIONAL",
            }
        ]
    out["additional"] = additional
    return out


def _user(noun: Mapping[str, Any]) -> dict[str, Any]:
    user = {"userid": noun.get("id"), "user_display_name": noun.get("name")}
    return {k: v for k, v in user.items() if v is not None}


def _resource(noun: Mapping[str, Any]) -> dict[str, Any]:
    resource = {
        "name": noun.get("name") or noun.get("id") or noun.get("type"),
        "product_object_id": noun.get("id"),
        "resource_subtype": noun.get("type"),
    }
    return {k: v for k, v in resource.items() if v is not None}
