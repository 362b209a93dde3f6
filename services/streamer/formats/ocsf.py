"""OCSF 1.1.0 records: Authentication, Account Change, Entity Management, API Activity.

``record(event, rules)`` maps one served event to one OCSF record. The
class comes from the stream's rules (``[{"pattern", "class_uid",
"activity_id"}]``, first match wins, patterns as in alert rules) and
otherwise from ``common.classify``:

========================  =====  =============================================
log on / log off          3002   Authentication: 1 Logon, 2 Logoff
account (user, password,  3001   Account Change: 1 Create, 2 Enable, 3 Password
mfa, credential)                 Change, 4 Password Reset, 5 Disable, 6 Delete,
                                 7 Attach Policy, 8 Detach Policy, 9 Lock,
                                 10/11 MFA Factor Enable/Disable, 99 Other
``admin.*``, settings     3004   Entity Management: 1 Create .. 4 Delete, 99
everything else           6003   API Activity: 1 Create, 2 Read, 3 Update,
                                 4 Delete, 99 Other
========================  =====  =============================================

Every record has ``metadata`` (``version`` 1.1.0, ``product`` Chainlog,
``uid`` = event id), ``time`` (epoch ms of ``occurred_at``, else of
``received_at``), ``severity_id`` 1 Informational (2 Low when the action
says it failed), ``status_id`` where the action says it (``..._failed`` ->
2 Failure), ``actor.user`` and the class's required attributes.

Nothing is lost: the event's fields are either copied verbatim to the one
OCSF attribute named in ``PLACES`` (``actor_id`` -> ``actor.user.uid``,
``ip_address`` -> ``src_endpoint.ip``...) or kept verbatim under
``unmapped``, which always holds ``id``, ``workspace_id``, ``seq``,
``hash`` and ``prev_hash``. ``served_event(record)`` gives the served
event back, so a chain can be verified from OCSF records alone.
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
    epoch_ms,
    event_time,
    first_rule,
    get,
    kind,
    nouns,
    put,
)

VERSION = "1.1.0"

#: ``class_uid -> (class_name, category_uid, {activity_id: activity_name})`` of OCSF 1.1.0.
CLASSES: dict[int, tuple[str, int, dict[int, str]]] = {
    3001: (
        "Account Change",
        3,
        {
            0: "Unknown",
            1: "Create",
            2: "Enable",
            3: "Password Change",
            4: "Password Reset",
            5: "Disable",
            6: "Delete",
            7: "Attach Policy",
            8: "Detach Policy",
            9: "Lock",
            10: "MFA Factor Enable",
            11: "MFA Factor Disable",
            99: "Other",
        },
    ),
    3002: (
        "Authentication",
        3,
        {
            0: "Unknown",
            1: "Logon",
            2: "Logoff",
            3: "Authentication Ticket",
            4: "Service Ticket Request",
            5: "Service Ticket Renew",
            99: "Other",
        },
    ),
    3004: (
        "Entity Management",
        3,
        {0: "Unknown", 1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
    ),
    6003: (
        "API Activity",
        6,
        {0: "Unknown", 1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
    ),
}
CATEGORIES = {3: "Identity & Access Management", 6: "Application Activity"}
#: Classes with ``src_endpoint`` and ``http_request`` (Entity Management has neither).
_NETWORK_CLASSES = frozenset({3001, 3002, 6003})

#: Event fields copied verbatim to one OCSF attribute; the rest go to ``unmapped``.
PLACES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("actor_id", ("actor", "user", "uid")),
    ("actor_name", ("actor", "user", "name")),
    ("actor_type", ("actor", "user", "type")),
    ("session_id", ("actor", "session", "uid")),
    ("tenant_id", ("metadata", "tenant_uid")),
    ("ip_address", ("src_endpoint", "ip")),
    ("ip_country", ("src_endpoint", "location", "country")),
    ("ip_city", ("src_endpoint", "location", "city")),
    ("user_agent", ("http_request", "user_agent")),
)
_PLACE = dict(PLACES)
_NETWORK_OBJECTS = ("src_endpoint", "http_request")
_NOUN_KEYS = {"id": "uid", "name": "name", "type": "type", "metadata": "data"}

_USER_TYPES = {"user": 1, "admin": 2, "system": 3, "service": 3}
_ENTITY_ACTIVITY = {"create": 1, "read": 2, "update": 3, "delete": 4}
_ENTITY_ACTIVITY |= dict.fromkeys(("enable", "disable", "grant", "revoke", "lock", "unlock"), 3)
_USER_ACTIVITY = {"create": 1, "enable": 2, "disable": 5, "delete": 6, "grant": 7, "revoke": 8}
_USER_ACTIVITY["lock"] = 9


def default_class(k: Kind) -> tuple[int, int]:
    """``(class_uid, activity_id)`` for an action of kind ``k``."""
    if k.family == "logon":
        return 3002, 1
    if k.family == "logoff":
        return 3002, 2
    if k.family == "account":
        if k.subject == "password":
            return 3001, 4 if k.verb == "reset" else 3
        if k.subject == "mfa":
            if k.verb in ("enable", "create", "grant"):
                return 3001, 10
            return 3001, 11 if k.verb in ("disable", "delete", "revoke") else 99
        if k.subject == "user":
            return 3001, _USER_ACTIVITY.get(k.verb or "", 99)
        return 3001, 99
    class_uid = 3004 if k.family == "entity" else 6003
    return class_uid, _ENTITY_ACTIVITY.get(k.verb or "", 99)


def check_mappings(value: object) -> tuple[list[dict[str, Any]], Problems]:
    """``ocsf_mappings``: rules ``{"pattern", "class_uid", "activity_id"}``, each problem by path."""

    def check(item: Mapping[str, Any]) -> Problems:
        class_uid = item.get("class_uid")
        if type(class_uid) is not int or class_uid not in CLASSES:
            classes = ", ".join(str(c) for c in CLASSES)
            return [(".class_uid", f"class_uid must be one of {classes}")]
        activities = CLASSES[class_uid][2]
        if type(item.get("activity_id")) is not int or item["activity_id"] not in activities:
            ids = ", ".join(str(a) for a in activities)
            return [(".activity_id", f"activity_id must be one of {ids} for class {class_uid}")]
        return []

    return check_rules(value, check, ("pattern", "class_uid", "activity_id"))


def record(event: Event, rules: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The OCSF record of ``event``; ``rules`` are checked ``ocsf_mappings``."""
    k = kind(event)
    action = str(event["action"])
    rule = first_rule(rules, action) if rules else None
    class_uid, activity_id = (
        (int(rule["class_uid"]), int(rule["activity_id"])) if rule else default_class(k)
    )
    class_name, category_uid, activities = CLASSES[class_uid]
    # "Other" carries the source's own word for the activity
    activity_name = action if activity_id == 99 else activities[activity_id]
    failed = k.outcome == "failure"
    out: dict[str, Any] = {
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": category_uid,
        "category_name": CATEGORIES[category_uid],
        "class_uid": class_uid,
        "class_name": class_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
        "severity_id": 2 if failed else 1,
        "severity": "Low" if failed else "Informational",
        "time": epoch_ms(event_time(event)),
        "message": action,
        "metadata": {
            "version": VERSION,
            "product": {"name": PRODUCT, "vendor_name": VENDOR},
            "uid": str(event["id"]),
            "logged_time": epoch_ms(str(event["received_at"])),
        },
    }
    if k.outcome is not None:
        out["status_id"], out["status"] = (2, "Failure") if failed else (1, "Success")
    unmapped: dict[str, Any] = {}
    for name, value in event.items():
        path = _PLACE.get(name)
        if value is None and name in ("ip_country", "ip_city"):
            continue  # served as null when unknown: nothing to say
        if path is None or (path[0] in _NETWORK_OBJECTS and class_uid not in _NETWORK_CLASSES):
            unmapped[name] = value
        else:
            put(out, path, value)
    _class_attributes(out, class_uid, event)
    out["unmapped"] = unmapped
    return out


def _class_attributes(out: dict[str, Any], class_uid: int, event: Event) -> None:
    """What the class requires beyond the common attributes, derived from the event."""
    actor_user: dict[str, Any] = out.setdefault("actor", {}).setdefault("user", {})
    endpoint = out.get("src_endpoint")
    if endpoint is None and class_uid == 6003:
        # required by API Activity; the event did not say where it came from
        out["src_endpoint"] = {"name": "unknown"}
    elif endpoint is not None and "ip" not in endpoint:
        endpoint["name"] = "unknown"  # an endpoint needs an ip, a name or a uid
    if isinstance(event.get("actor_type"), str):
        actor_user["type_id"] = _USER_TYPES.get(event["actor_type"].lower(), 99)
    if class_uid == 3002:
        out["user"] = _user(actor_user)
        # the service logged on to is the workspace's application
        out["service"] = {"uid": str(event["workspace_id"])}
    elif class_uid == 3001:
        target = next((t for t in _targets(event) if t.get("type") == "user"), None)
        out["user"] = _user(target) if target else _user(actor_user)
    elif class_uid == 3004:
        name = action_object(str(event["action"]))
        out["entity"] = next(iter(_targets(event)), None) or {"name": name, "type": name}
    else:
        out["api"] = {"operation": str(event["action"])}
        resources = _targets(event)
        if resources:
            out["resources"] = resources


def _user(source: Mapping[str, Any]) -> dict[str, Any]:
    return {k: source[k] for k in ("uid", "name", "type", "type_id") if k in source}


def _targets(event: Event) -> list[dict[str, Any]]:
    """The event's resource and targets as OCSF ``{uid, name, type, data}`` objects."""
    out = []
    for noun in nouns(event):
        item = {_NOUN_KEYS[k]: v for k, v in noun.items()}
        # OCSF asks for a name or a uid; a target with only a type is named by it
        if "uid" not in item and "name" not in item:
            item["name"] = item.get("type", "unknown")
        out.append(item)
    return out


def served_event(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The served event a record was made from (the inverse of ``record``)."""
    out = dict(rec.get("unmapped") or {})
    for name, path in PLACES:
        value = get(rec, path)
        if value is not None and name not in out:
            out[name] = value
    out.setdefault("ip_country", None)
    out.setdefault("ip_city", None)
    return out
