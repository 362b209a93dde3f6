"""SIEM formats: known answers (an event in, exact text out), escaping, and OCSF against its schema.

The OCSF schema is the published 1.1.0 one, vendored for the classes we
emit in ``tests/vectors/ocsf/ocsf-1.1.0.json`` (see ``extract.py`` there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from libs.common.chain import canonical, event_hash
from services.streamer.formats import cef, common, leef, ocsf, otlp, syslog, udm

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "tests/vectors/ocsf/ocsf-1.1.0.json").read_text()
)
WS = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
EVENT_ID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a01"
H, P = "a" * 64, "b" * 64
#: 2026-11-27T02:12:05.114Z and 02:12:04Z in epoch milliseconds.
RT_MS, START_MS = 1_795_745_525_114, 1_795_745_524_000

#: A failed log-in with every kind of awkward value a format must escape.
LOGIN: dict[str, Any] = {
    "id": EVENT_ID,
    "workspace_id": WS,
    "seq": 42,
    "prev_hash": P,
    "received_at": "2026-11-27T02:12:05.114000Z",
    "occurred_at": "2026-11-27T02:12:04.000000Z",
    "action": "user.login_failed",
    "action_category": "auth",
    "actor_id": "user_42",
    "actor_name": "Zoë | Admin=\\root",
    "actor_type": "user",
    "ip_address": "203.0.113.9",
    "user_agent": "Mozilla/5.0\t(X11)",
    "session_id": "sess_1",
    "tenant_id": "t_1",
    "metadata": {"reason": "bad\npassword", "attempt": 3},
    "hash": H,
    "ip_country": "DE",
    "ip_city": "Köln",
}
#: A plain API event with the least a served event has.
DELETE: dict[str, Any] = {
    "id": EVENT_ID,
    "workspace_id": WS,
    "seq": 7,
    "prev_hash": P,
    "received_at": "2026-11-27T02:12:05.114000Z",
    "action": "document.delete",
    "actor_id": "user_42",
    "resource": "document",
    "resource_id": "doc_9",
    "hash": H,
    "ip_country": None,
    "ip_city": None,
}


def event(**fields: Any) -> dict[str, Any]:
    return {**DELETE, **fields}


# ---- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "category", "family", "verb", "subject", "outcome"),
    [
        ("user.login", None, "logon", None, None, None),
        ("auth.sign_in", None, "logon", None, None, None),
        ("user.login_failed", None, "logon", None, None, "failure"),
        ("session.log-out", None, "logoff", None, None, None),
        ("user.created", None, "account", "create", "user", None),
        ("member.role_assigned", None, "account", "grant", "user", None),
        ("user.password_reset", None, "account", "reset", "password", None),
        ("account.mfa_disabled", None, "account", "disable", "mfa", None),
        ("api_key.revoked", None, "account", "revoke", "credential", None),
        ("admin.log_stream.created", "admin", "entity", "create", None, None),
        ("billing.plan.changed", "settings", "entity", "update", None, None),
        ("document.delete", None, "api", "delete", None, None),
        ("report.export_succeeded", None, "api", "read", None, "success"),
        ("invoice.paid", None, "api", None, None, None),
    ],
)
def test_actions_are_classified(
    action: str, category: str | None, family: str, verb: str, subject: str, outcome: str
) -> None:
    assert common.classify(action, category) == common.Kind(family, verb, subject, outcome)  # type: ignore[arg-type]


# ---- CEF ------------------------------------------------------------------------------------------


def test_cef_known_answer() -> None:
    assert cef.line(LOGIN) == (
        "CEF:0|Chainlog|Chainlog|1|user.login_failed|user.login_failed|6|"
        f"rt={RT_MS} start={START_MS} externalId={EVENT_ID} act=user.login_failed cat=auth"
        " outcome=failure suid=user_42 suser=Zoë | Admin\\=\\\\root src=203.0.113.9"
        " requestClientApplication=Mozilla/5.0\t(X11)"
        f" cn1Label=seq cn1=42 cs1Label=workspace_id cs1={WS} cs2Label=hash cs2={H}"
        f" cs3Label=prev_hash cs3={P} cs4Label=tenant_id cs4=t_1 cs5Label=session_id cs5=sess_1"
        " flexString1Label=ip_country flexString1=DE flexString2Label=ip_city flexString2=Köln"
        ' msg={"reason":"bad\\\\npassword","attempt":3}'
    )


def test_cef_minimal_event_and_ipv6() -> None:
    assert cef.line(event(ip_address="2001:db8::7")) == (
        "CEF:0|Chainlog|Chainlog|1|document.delete|document.delete|3|"
        f"rt={RT_MS} externalId={EVENT_ID} act=document.delete suid=user_42"
        " c6a2Label=Source IPv6 Address c6a2=2001:db8::7"
        f" cn1Label=seq cn1=7 cs1Label=workspace_id cs1={WS} cs2Label=hash cs2={H}"
        f" cs3Label=prev_hash cs3={P} cs6Label=resource cs6=document:doc_9"
    )


def test_cef_escaping() -> None:
    # header: backslash and pipe escaped, a line break is not allowed there
    assert cef.header_escape("a|b\\c\nd\re") == "a\\|b\\\\c d e"
    # extension values: backslash, equals sign, line breaks; a pipe stays as it is
    assert cef.value_escape("a=b\\c\nd\re|f") == "a\\=b\\\\c\\nd\\re|f"
    line = cef.line(event(actor_name="x=1\ny\\z|w"))
    assert " suser=x\\=1\\ny\\\\z|w " in line
    assert "\n" not in line and "\r" not in line


def _cef_fields(line: str) -> dict[str, str]:
    """A CEF reader: a key is the word before an unescaped ``=``, its value runs to the next key."""
    ext = line.split("|", 7)[7]
    pairs: list[tuple[str, str]] = []
    key: str | None = None
    value = ""
    i = 0
    while i < len(ext):
        if ext[i] == "\\":
            value += {"n": "\n", "r": "\r"}.get(ext[i + 1], ext[i + 1])
            i += 2
            continue
        if ext[i] == "=":
            head, _, new_key = value.rpartition(" ")
            if key is not None:
                pairs.append((key, head))
            key, value = new_key, ""
        else:
            value += ext[i]
        i += 1
    if key is not None:
        pairs.append((key, value))
    return dict(pairs)


def test_cef_round_trips_through_a_reader() -> None:
    fields = _cef_fields(cef.line(LOGIN))
    assert fields["suser"] == LOGIN["actor_name"]
    assert fields["msg"] == orjson.dumps(LOGIN["metadata"]).decode()
    assert (fields["cn1"], fields["cs2"], fields["cs3"]) == ("42", H, P)


# ---- LEEF -----------------------------------------------------------------------------------------


def test_leef_known_answer() -> None:
    attributes = [
        "devTime=2026-11-27T02:12:04.000Z",
        "devTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSX",
        "sev=6",
        "cat=auth",
        "src=203.0.113.9",
        "usrName=user_42",
        f"id={EVENT_ID}",
        f"workspace_id={WS}",
        "seq=42",
        f"prev_hash={P}",
        "received_at=2026-11-27T02:12:05.114000Z",
        "occurred_at=2026-11-27T02:12:04.000000Z",
        "action=user.login_failed",
        "actor_name=Zoë | Admin=\\\\root",
        "actor_type=user",
        "user_agent=Mozilla/5.0\\t(X11)",
        "session_id=sess_1",
        "tenant_id=t_1",
        'metadata={"reason":"bad\\\\npassword","attempt":3}',
        f"hash={H}",
        "ip_country=DE",
        "ip_city=Köln",
    ]
    expected = "LEEF:2.0|Chainlog|Chainlog|1|user.login_failed|x09|" + "\t".join(attributes)
    assert leef.line(LOGIN) == expected


def test_leef_escaping_keeps_one_attribute_per_tab() -> None:
    assert leef.value_escape("a\tb\nc\rd\\e=f") == "a\\tb\\nc\\rd\\\\e=f"
    assert leef.header_escape("a|b\\c\nd") == "a\\|b\\\\c d"
    line = leef.line(event(actor_name="tab\there\nnew line"))
    header, body = line.rsplit("|", 1)
    assert header.split("|")[5] == "x09"  # the delimiter, declared
    attributes = body.split("\t")
    assert "actor_name=tab\\there\\nnew line" in attributes
    assert all("=" in a for a in attributes)


def test_leef_dev_time_is_milliseconds_for_simple_date_format() -> None:
    # SSS reads exactly three digits: six would be read as 114000 ms
    assert leef.dev_time("2026-11-27T02:12:05.114999Z") == "2026-11-27T02:12:05.114Z"


# ---- syslog ---------------------------------------------------------------------------------------


def test_syslog_known_answer_with_structured_data_and_bom() -> None:
    msg = syslog.message(
        "héllo\nworld",
        facility=13,
        severity=6,
        timestamp="2026-11-27T02:12:05.114000Z",
        hostname="chainlog",
        app_name="chainlog",
        msgid="user.login_failed",
        sd=[("chainlog@32473", [("seq", "42"), ("note", 'a"b\\c]d')])],
    )
    assert msg == (
        b"<110>1 2026-11-27T02:12:05.114000Z chainlog chainlog - user.login_failed"
        b' [chainlog@32473 seq="42" note="a\\"b\\\\c\\]d"] \xef\xbb\xbfh\xc3\xa9llo\nworld'
    )


def test_syslog_nil_values_and_no_bom() -> None:
    msg = syslog.message(
        "plain",
        facility=4,
        severity=4,
        timestamp="2026-11-27T02:12:05.114000Z",
        hostname="",
        app_name="my app",
        msgid="x" * 40,
        bom=False,
    )
    assert msg == b"<36>1 2026-11-27T02:12:05.114000Z - my_app - " + b"x" * 32 + b" - plain"


def test_octet_counting_counts_bytes() -> None:
    assert syslog.frame(b"<14>1 - - - - - -") == b"17 <14>1 - - - - - -"
    msg = syslog.message(
        "é", facility=1, severity=6, timestamp="2026-11-27T02:12:05Z", hostname="h", app_name="a"
    )
    # "é" is two bytes, the BOM three
    assert msg.endswith(b"\xef\xbb\xbf\xc3\xa9")
    assert syslog.frame(msg) == str(len(msg)).encode() + b" " + msg
    assert len(msg) == len("<14>1 2026-11-27T02:12:05Z h a - - - ") + 5


def test_sd_names() -> None:
    assert syslog.is_sd_name("chainlog@32473")
    for bad in ("", "a b", "a=b", 'a"b', "a]b", "x" * 33, "é"):
        assert not syslog.is_sd_name(bad)


# ---- OCSF -----------------------------------------------------------------------------------------

_INTEGER = {"integer_t", "long_t", "timestamp_t", "port_t"}
_NUMBER = {"float_t"}
_BOOLEAN = {"boolean_t"}


def ocsf_problems(record: dict[str, Any]) -> list[str]:
    """What makes ``record`` invalid against the vendored OCSF 1.1.0 schema (empty if nothing)."""
    cls = SCHEMA["classes"].get(str(record.get("class_uid")))
    if cls is None:
        return [f"unknown class {record.get('class_uid')}"]
    problems = _object_problems(record, cls, "")
    activity = record.get("activity_id")
    if record.get("type_uid") != record["class_uid"] * 100 + (activity or 0):
        problems.append("type_uid is not class_uid * 100 + activity_id")
    if record.get("category_uid") != cls["category_uid"]:
        problems.append("category_uid is not the class's category")
    if record.get("class_name") != cls["caption"]:
        problems.append(f"class_name is not {cls['caption']}")
    if activity != 99 and record.get("activity_name") != cls["attributes"]["activity_id"][
        "enum"
    ].get(str(activity)):
        problems.append("activity_name is not the activity's caption")
    if record.get("metadata", {}).get("version") != SCHEMA["version"]:
        problems.append("metadata.version is not the schema's version")
    return problems


def _object_problems(value: dict[str, Any], spec: dict[str, Any], where: str) -> list[str]:
    attributes = spec["attributes"]
    problems = [f"{where}{k}: not an attribute" for k in value if k not in attributes]
    problems += [
        f"{where}{k}: required"
        for k, a in attributes.items()
        if a["requirement"] == "required" and k not in value
    ]
    one_of = spec.get("constraints", {}).get("at_least_one")
    if one_of and not any(k in value for k in one_of):
        problems.append(f"{where[:-1] or 'record'}: needs one of {one_of}")
    for key, item in value.items():
        attribute = attributes.get(key)
        if attribute is None:
            continue
        items = item if attribute.get("is_array") else [item]
        if attribute.get("is_array") and not isinstance(item, list):
            problems.append(f"{where}{key}: must be an array")
            continue
        for one in items:
            problems += _value_problems(one, attribute, f"{where}{key}")
    return problems


def _value_problems(value: Any, attribute: dict[str, Any], where: str) -> list[str]:
    kind = attribute["type"]
    if kind in SCHEMA["objects"]:
        if not isinstance(value, dict):
            return [f"{where}: must be an object"]
        return _object_problems(value, SCHEMA["objects"][kind], f"{where}.")
    if kind == "object":
        return [] if isinstance(value, dict) else [f"{where}: must be an object"]
    if kind == "json_t":
        return []
    if kind in _INTEGER or kind in _BOOLEAN or kind in _NUMBER:
        ok = (
            isinstance(value, bool)
            if kind in _BOOLEAN
            else (isinstance(value, int | float) and not isinstance(value, bool))
        )
        if kind in _INTEGER:
            ok = ok and isinstance(value, int)
        if not ok:
            return [f"{where}: must be {kind}"]
        enum = attribute.get("enum")
        if enum and str(value) not in enum:
            return [f"{where}: {value} is not in its enum"]
        return []
    if kind.endswith("_t") and kind not in SCHEMA["objects"]:
        return [] if isinstance(value, str) else [f"{where}: must be a string ({kind})"]
    return [f"{where}: type {kind} is not vendored"]


def test_the_schema_check_finds_what_is_wrong() -> None:
    good = ocsf.record(LOGIN)
    assert ocsf_problems(good) == []
    broken = {k: v for k, v in good.items() if k != "user"}
    broken["colour"] = "red"
    broken["actor"] = {"user": {"type_id": "1"}}
    broken["type_uid"] = 300299
    assert sorted(ocsf_problems(broken)) == sorted(
        [
            "colour: not an attribute",
            "user: required",
            "actor.user: needs one of ['account', 'name', 'uid']",
            "actor.user.type_id: must be integer_t",
            "type_uid is not class_uid * 100 + activity_id",
        ]
    )
    assert ocsf_problems({**good, "activity_id": 7, "type_uid": 300207}) == [
        "activity_id: 7 is not in its enum",
        "activity_name is not the activity's caption",
    ]


def test_the_vendored_classes_are_ours() -> None:
    assert SCHEMA["version"] == ocsf.VERSION
    assert set(SCHEMA["classes"]) == {str(c) for c in ocsf.CLASSES}
    for class_uid, (name, category, activities) in ocsf.CLASSES.items():
        spec = SCHEMA["classes"][str(class_uid)]
        assert (spec["caption"], spec["category_uid"]) == (name, category)
        assert spec["category_name"] == ocsf.CATEGORIES[category]
        assert spec["attributes"]["activity_id"]["enum"] == {
            str(k): v for k, v in activities.items()
        }


def test_ocsf_known_answer() -> None:
    assert ocsf.record(DELETE) == {
        "activity_id": 4,
        "activity_name": "Delete",
        "category_uid": 6,
        "category_name": "Application Activity",
        "class_uid": 6003,
        "class_name": "API Activity",
        "type_uid": 600304,
        "type_name": "API Activity: Delete",
        "severity_id": 1,
        "severity": "Informational",
        "time": RT_MS,
        "message": "document.delete",
        "metadata": {
            "version": "1.1.0",
            "product": {"name": "Chainlog", "vendor_name": "Chainlog"},
            "uid": EVENT_ID,
            "logged_time": RT_MS,
        },
        "actor": {"user": {"uid": "user_42"}},
        "api": {"operation": "document.delete"},
        "src_endpoint": {"name": "unknown"},
        "resources": [{"uid": "doc_9", "type": "document"}],
        "unmapped": {
            "id": EVENT_ID,
            "workspace_id": WS,
            "seq": 7,
            "prev_hash": P,
            "received_at": "2026-11-27T02:12:05.114000Z",
            "action": "document.delete",
            "resource": "document",
            "resource_id": "doc_9",
            "hash": H,
        },
    }


def test_ocsf_authentication_record() -> None:
    record = ocsf.record(LOGIN)
    assert ocsf_problems(record) == []
    assert (record["class_uid"], record["activity_id"], record["type_uid"]) == (3002, 1, 300201)
    assert (record["status_id"], record["status"]) == (2, "Failure")
    assert (record["severity_id"], record["time"]) == (2, START_MS)
    assert record["actor"]["user"] == {
        "uid": "user_42",
        "name": LOGIN["actor_name"],
        "type": "user",
        "type_id": 1,
    }
    assert record["user"] == record["actor"]["user"]
    assert record["src_endpoint"] == {
        "ip": "203.0.113.9",
        "location": {"country": "DE", "city": "Köln"},
    }
    assert record["http_request"] == {"user_agent": "Mozilla/5.0\t(X11)"}
    assert record["metadata"]["tenant_uid"] == "t_1"
    assert {
        k: record["unmapped"][k] for k in ("id", "workspace_id", "seq", "hash", "prev_hash")
    } == {
        "id": EVENT_ID,
        "workspace_id": WS,
        "seq": 42,
        "hash": H,
        "prev_hash": P,
    }


EXAMPLES = [
    ("user.login", 3002, 1),
    ("user.logout", 3002, 2),
    ("user.created", 3001, 1),
    ("user.enabled", 3001, 2),
    ("user.password_changed", 3001, 3),
    ("user.password_reset", 3001, 4),
    ("user.suspended", 3001, 5),
    ("user.deleted", 3001, 6),
    ("member.role_assigned", 3001, 7),
    ("member.role_revoked", 3001, 8),
    ("user.locked", 3001, 9),
    ("user.mfa_enabled", 3001, 10),
    ("user.mfa_removed", 3001, 11),
    ("api_key.created", 3001, 99),
    ("admin.log_stream.created", 3004, 1),
    ("admin.alert_rule.updated", 3004, 3),
    ("admin.webhook.deleted", 3004, 4),
    ("document.create", 6003, 1),
    ("report.viewed", 6003, 2),
    ("document.updated", 6003, 3),
    ("document.delete", 6003, 4),
    ("invoice.paid", 6003, 99),
]


@pytest.mark.parametrize(("action", "class_uid", "activity_id"), EXAMPLES)
def test_default_classes_are_valid_ocsf(action: str, class_uid: int, activity_id: int) -> None:
    category = "admin" if action.startswith("admin.") else None
    source = {**LOGIN, "action": action, "action_category": category}
    source = {k: v for k, v in source.items() if v is not None}
    shapes = [
        source,
        event(action=action),
        event(action=action, targets=[{"type": "user"}]),
        event(action=action, ip_country="FR"),  # a location without an address
    ]
    for shape in shapes:
        record = ocsf.record(shape)
        assert (record["class_uid"], record["activity_id"]) == (class_uid, activity_id)
        assert ocsf_problems(record) == []
    if activity_id == 99:
        assert ocsf.record(source)["activity_name"] == action


def test_every_mappable_class_and_activity_is_valid() -> None:
    for class_uid, (_, _, activities) in ocsf.CLASSES.items():
        for activity_id in activities:
            rules = [{"pattern": "*", "class_uid": class_uid, "activity_id": activity_id}]
            for source in (LOGIN, DELETE, event(targets=[{"type": "folder", "id": "f1"}])):
                record = ocsf.record(source, rules)
                assert (record["class_uid"], record["activity_id"]) == (class_uid, activity_id)
                assert ocsf_problems(record) == [], (class_uid, activity_id)


def test_mapping_rules_come_first_in_order() -> None:
    rules, problems = ocsf.check_mappings(
        [
            {"pattern": "sso.*", "class_uid": 3002, "activity_id": 1},
            {"pattern": "*", "class_uid": 3004, "activity_id": 3},
        ]
    )
    assert problems == []
    assert ocsf.record(event(action="sso.assertion_accepted"), rules)["class_uid"] == 3002
    assert ocsf.record(event(action="document.delete"), rules)["class_uid"] == 3004
    assert ocsf.record(event(action="document.delete"))["class_uid"] == 6003


def test_mapping_rules_are_checked_by_path() -> None:
    _, problems = ocsf.check_mappings(
        [
            {"pattern": "a b", "class_uid": 3002, "activity_id": 1},
            {"pattern": "x.*", "class_uid": 4001, "activity_id": 1},
            {"pattern": "x.*", "class_uid": 3002, "activity_id": 7},
            {"pattern": "x.*", "class_uid": 3002, "activity_id": True, "colour": 1},
            "nope",
        ]
    )
    assert [path for path, _ in problems] == [
        "[0].pattern",
        "[1].class_uid",
        "[2].activity_id",
        "[3].colour",
        "[3].activity_id",
        "[4]",
    ]
    assert ocsf.check_mappings({"pattern": "*"})[1] == [("", "must be a list of at most 100 rules")]


def chained(n: int) -> list[dict[str, Any]]:
    """Served events with real hashes (``docs/hash-chain.md``), varied enough to move fields around."""
    out = []
    prev = "0" * 64
    actions = ["user.login", "admin.log_stream.created", "document.delete", "user.created"]
    for seq in range(1, n + 1):
        hashed: dict[str, Any] = {
            "workspace_id": WS,
            "seq": seq,
            "id": f"0193a1b2-c3d4-7e5f-8a9b-{seq:012x}",
            "received_at": f"2026-11-27T02:12:{seq:02d}.000001Z",
            "prev_hash": prev,
            "action": actions[seq % 4],
            "actor_id": f"user_{seq}",
            "metadata": {"n": seq, "nested": {"ü": [1, None]}},
        }
        if seq % 2:
            hashed |= {"ip_address": "198.51.100.4", "user_agent": "cli/1", "tenant_id": "t"}
        if seq % 3 == 0:
            hashed["targets"] = [{"type": "user", "id": "u9", "metadata": {"k": "v"}}]
        if seq % 4 == 0:
            hashed["action_category"] = "admin"
        digest = event_hash(canonical(hashed))
        out.append(
            {**hashed, "hash": digest, "ip_country": "FR" if seq % 2 else None, "ip_city": None}
        )
        prev = digest
    return out


def test_a_chain_verifies_from_ocsf_records_alone() -> None:
    events = chained(12)
    records = [orjson.loads(orjson.dumps(ocsf.record(e))) for e in events]
    prev = "0" * 64
    for record, original in zip(records, events, strict=True):
        served = ocsf.served_event(record)
        assert served == original
        hashed = {k: v for k, v in served.items() if k not in ("hash", "ip_country", "ip_city")}
        assert hashed["prev_hash"] == prev
        assert event_hash(canonical(hashed)) == record["unmapped"]["hash"]
        prev = record["unmapped"]["hash"]


# ---- UDM ------------------------------------------------------------------------------------------


def test_udm_known_answer() -> None:
    assert udm.event(DELETE) == {
        "metadata": {
            "event_timestamp": "2026-11-27T02:12:05.114000Z",
            "event_type": "USER_RESOURCE_DELETION",
            "vendor_name": "Chainlog",
            "product_name": "Chainlog",
            "product_log_id": EVENT_ID,
            "product_event_type": "document.delete",
        },
        "principal": {"user": {"userid": "user_42"}},
        "target": {
            "resource": {
                "name": "doc_9",
                "product_object_id": "doc_9",
                "resource_subtype": "document",
            }
        },
        "additional": {
            "id": EVENT_ID,
            "workspace_id": WS,
            "seq": 7,
            "prev_hash": P,
            "received_at": "2026-11-27T02:12:05.114000Z",
            "resource": "document",
            "resource_id": "doc_9",
            "hash": H,
        },
    }


def test_udm_login() -> None:
    got = udm.event(LOGIN)
    assert got["metadata"]["event_type"] == "USER_LOGIN"
    assert got["metadata"]["event_timestamp"] == "2026-11-27T02:12:04.000000Z"
    assert got["principal"] == {
        "user": {"userid": "user_42", "user_display_name": LOGIN["actor_name"]},
        "ip": ["203.0.113.9"],
        "location": {"country_or_region": "DE", "city": "Köln"},
    }
    assert got["target"] == {"user": got["principal"]["user"]}
    assert got["network"] == {"http": {"user_agent": "Mozilla/5.0\t(X11)"}, "session_id": "sess_1"}
    assert got["security_result"] == [{"action": ["BLOCK"], "severity": "LOW"}]
    assert {k: got["additional"][k] for k in ("id", "seq", "hash", "prev_hash")} == {
        "id": EVENT_ID,
        "seq": 42,
        "hash": H,
        "prev_hash": P,
    }


@pytest.mark.parametrize(
    ("action", "event_type"),
    [
        ("user.logout", "USER_LOGOUT"),
        ("user.created", "USER_CREATION"),
        ("user.deleted", "USER_DELETION"),
        ("user.password_changed", "USER_CHANGE_PASSWORD"),
        ("member.role_assigned", "USER_CHANGE_PERMISSIONS"),
        ("api_key.created", "USER_UNCATEGORIZED"),
        ("report.viewed", "USER_RESOURCE_ACCESS"),
        ("admin.log_stream.created", "USER_RESOURCE_CREATION"),
        ("document.updated", "USER_RESOURCE_UPDATE_CONTENT"),
        ("folder.permission_granted", "USER_RESOURCE_UPDATE_PERMISSIONS"),
        ("invoice.paid", "GENERIC_EVENT"),
    ],
)
def test_udm_event_types(action: str, event_type: str) -> None:
    got = udm.event(event(action=action, targets=[{"type": "user", "id": "u9", "name": "Bo"}]))
    assert got["metadata"]["event_type"] == event_type
    if event_type in ("USER_CREATION", "USER_DELETION", "USER_CHANGE_PERMISSIONS"):
        assert got["target"] == {"user": {"userid": "u9", "user_display_name": "Bo"}}
    if event_type.startswith("USER_RESOURCE"):
        assert got["target"]["resource"]["name"]


def test_udm_rules() -> None:
    rules, problems = udm.check_mappings(
        [{"pattern": "*.heartbeat", "event_type": "STATUS_UPDATE"}]
    )
    assert problems == []
    assert udm.event(event(action="agent.heartbeat"), rules)["metadata"]["event_type"] == (
        "STATUS_UPDATE"
    )
    _, problems = udm.check_mappings([{"pattern": "*", "event_type": "NETWORK_DNS"}])
    assert [p for p, _ in problems] == ["[0].event_type"]


# ---- OTLP -----------------------------------------------------------------------------------------


def test_otlp_known_answer() -> None:
    def s(v: str) -> dict[str, str]:
        return {"stringValue": v}

    assert otlp.request([otlp.log_record(DELETE)], workspace_id=WS) == {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": s("chainlog")},
                        {"key": "chainlog.workspace_id", "value": s(WS)},
                    ]
                },
                "scopeLogs": [
                    {
                        "scope": {"name": "chainlog"},
                        "logRecords": [
                            {
                                "timeUnixNano": "1795745525114000000",
                                "observedTimeUnixNano": "1795745525114000000",
                                "severityNumber": 9,
                                "severityText": "INFO",
                                "eventName": "document.delete",
                                "body": s("document.delete"),
                                "attributes": [
                                    {"key": "chainlog.id", "value": s(EVENT_ID)},
                                    {"key": "chainlog.workspace_id", "value": s(WS)},
                                    {"key": "chainlog.seq", "value": {"intValue": "7"}},
                                    {"key": "chainlog.prev_hash", "value": s(P)},
                                    {
                                        "key": "chainlog.received_at",
                                        "value": s("2026-11-27T02:12:05.114000Z"),
                                    },
                                    {"key": "chainlog.action", "value": s("document.delete")},
                                    {"key": "user.id", "value": s("user_42")},
                                    {"key": "chainlog.resource", "value": s("document")},
                                    {"key": "chainlog.resource_id", "value": s("doc_9")},
                                    {"key": "chainlog.hash", "value": s(H)},
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_values_keep_their_types_and_nesting() -> None:
    record = otlp.log_record(event(metadata={"a": [1, "x", None, True, 1.5], "b.c": {}}))
    attributes = {a["key"]: a["value"] for a in record["attributes"]}
    assert attributes["chainlog.metadata"] == {
        "kvlistValue": {
            "values": [
                {
                    "key": "a",
                    "value": {
                        "arrayValue": {
                            "values": [
                                {"intValue": "1"},
                                {"stringValue": "x"},
                                {},
                                {"boolValue": True},
                                {"doubleValue": 1.5},
                            ]
                        }
                    },
                },
                {"key": "b.c", "value": {"kvlistValue": {"values": []}}},
            ]
        }
    }
    login = otlp.log_record(LOGIN)
    assert (login["severityNumber"], login["severityText"]) == (13, "WARN")
    assert login["timeUnixNano"] == "1795745524000000000"
    assert {a["key"] for a in login["attributes"]} >= {
        "user.id",
        "user.name",
        "client.address",
        "user_agent.original",
        "session.id",
        "geo.country.iso_code",
        "geo.locality.name",
    }


def test_otlp_protobuf_is_the_same_request() -> None:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

    request = otlp.request([otlp.log_record(LOGIN), otlp.log_record(DELETE)], workspace_id=WS)
    message = logs_service_pb2.ExportLogsServiceRequest()
    message.ParseFromString(otlp.protobuf(request))
    # OTLP/JSON writes enums as integers
    assert json_format.MessageToDict(message, use_integers_for_enums=True) == request
