"""Producer event validation and normalisation."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.event import (
    FIELDS,
    MAX_DEPTH,
    MAX_METADATA_BYTES,
    MAX_METADATA_KEYS,
    MAX_SAFE_INT,
    MAX_TARGETS,
    SYSTEM_FIELDS,
    validate_event,
)
from libs.common.timeutil import format_epoch_us, format_ts, normalize_rfc3339, parse_rfc3339

BASE = {"actor_id": "user_1", "action": "user.login"}


def ok(**fields: Any) -> dict[str, Any]:
    event, violations = validate_event({**BASE, **fields})
    assert violations == [], violations
    assert event is not None
    return event


def fields_of(raw: Any, prefix: str = "") -> list[str]:
    event, violations = validate_event(raw, prefix)
    assert event is None
    return [v["field"] for v in violations]


def only_violation(raw: Any, prefix: str = "") -> dict[str, str]:
    event, violations = validate_event(raw, prefix)
    assert event is None
    assert len(violations) == 1, violations
    return violations[0]


# ---------------------------------------------------------------------------
# Required fields, unknown and system fields, null


def test_minimal_event() -> None:
    assert ok() == BASE


def test_every_field() -> None:
    raw = {
        "actor_id": "u",
        "actor_name": "n",
        "actor_type": "user",
        "action": "a.b",
        "action_category": "c",
        "resource": "r",
        "resource_id": "ri",
        "resource_name": "rn",
        "targets": [{"type": "t", "id": "i", "name": "n", "metadata": {"k": 1}}],
        "metadata": {"k": [1, 2]},
        "occurred_at": "2026-01-15T10:00:00Z",
        "session_id": "s",
        "tenant_id": "t",
        "ip_address": "10.0.0.1",
        "user_agent": "ua",
        "idempotency_key": "k",
        "version": 3,
    }
    assert set(raw) == set(FIELDS)
    event, violations = validate_event(raw)
    assert violations == []
    assert event == {**raw, "occurred_at": "2026-01-15T10:00:00.000000Z"}


@pytest.mark.parametrize("missing", ["actor_id", "action"])
def test_required(missing: str) -> None:
    raw = dict(BASE)
    del raw[missing]
    v = only_violation(raw)
    assert v == {"field": missing, "message": f"{missing} is required"}


def test_both_required_missing() -> None:
    assert fields_of({}) == ["actor_id", "action"]


@pytest.mark.parametrize("name", ["actor_id", "action"])
def test_required_null_is_missing(name: str) -> None:
    v = only_violation({**BASE, name: None})
    assert v["field"] == name and "required" in v["message"]


def test_required_with_a_type_error_is_reported_once() -> None:
    assert fields_of({"actor_id": 5, "action": "a"}) == ["actor_id"]


def test_null_means_absent() -> None:
    event = ok(actor_name=None, metadata=None, occurred_at=None, version=None, targets=None)
    assert event == BASE


def test_null_inside_metadata_is_kept() -> None:
    assert ok(metadata={"a": None, "b": [None]})["metadata"] == {"a": None, "b": [None]}


def test_null_target_field_is_absent() -> None:
    event = ok(targets=[{"type": "t", "id": None, "name": None, "metadata": None}])
    assert event["targets"] == [{"type": "t"}]


def test_unknown_field() -> None:
    v = only_violation({**BASE, "colour": "red"})
    assert v == {"field": "colour", "message": "colour is not a known event field"}


@pytest.mark.parametrize("name", sorted(SYSTEM_FIELDS))
def test_system_fields_refused(name: str) -> None:
    v = only_violation({**BASE, name: "x"})
    assert v["field"] == name
    assert "assigned by the system" in v["message"]


def test_system_field_refused_even_when_null() -> None:
    assert fields_of({**BASE, "seq": None}) == ["seq"]


@pytest.mark.parametrize("raw", [None, [], "x", 1, True])
def test_not_an_object(raw: Any) -> None:
    assert fields_of(raw) == ["body"]
    assert fields_of(raw, "events[3].") == ["events[3]"]


def test_every_violation_is_reported() -> None:
    raw = {"actor_id": 1, "action": "bad action", "version": 0, "nope": 1}
    assert sorted(fields_of(raw)) == ["action", "actor_id", "nope", "version"]


def test_input_is_not_mutated() -> None:
    raw = {**BASE, "occurred_at": "2026-01-15T10:00:00+01:00", "actor_name": None}
    before = dict(raw)
    validate_event(raw)
    assert raw == before


# ---------------------------------------------------------------------------
# Types, with field paths


STRING_FIELDS = [
    name
    for name in FIELDS
    if name not in {"targets", "metadata", "occurred_at", "ip_address", "version"}
]


@pytest.mark.parametrize("name", STRING_FIELDS)
@pytest.mark.parametrize("bad", [1, 1.5, True, [], {}])
def test_string_fields_type(name: str, bad: Any) -> None:
    v = only_violation({**BASE, name: bad})
    assert v == {"field": name, "message": f"{name} must be a string"}


@pytest.mark.parametrize("name", STRING_FIELDS)
def test_string_fields_not_empty(name: str) -> None:
    assert only_violation({**BASE, name: ""})["message"] == f"{name} must not be empty"


@pytest.mark.parametrize(
    ("name", "limit"),
    [("actor_id", 256), ("actor_type", 64), ("user_agent", 1024), ("idempotency_key", 256)],
)
def test_string_length(name: str, limit: int) -> None:
    ok(**{name: "x" * limit})
    v = only_violation({**BASE, name: "x" * (limit + 1)})
    assert v["field"] == name and str(limit) in v["message"]


def test_string_length_counts_characters() -> None:
    ok(actor_id="😀" * 256)


def test_prefix_names_the_event() -> None:
    v = only_violation({"actor_id": 5, "action": "a"}, "events[3].")
    assert v == {"field": "events[3].actor_id", "message": "actor_id must be a string"}
    assert fields_of({"action": "a"}, "events[0].") == ["events[0].actor_id"]


@pytest.mark.parametrize(
    ("targets", "field"),
    [
        ("x", "targets"),
        ({"type": "t"}, "targets"),
        ([{"type": "t"}, "x"], "targets[1]"),
        ([{"type": "t"}, {"id": "i"}], "targets[1].type"),
        ([{"type": "t"}, {"type": None}], "targets[1].type"),
        ([{"type": "t"}, {"type": 5}], "targets[1].type"),
        ([{"type": ""}], "targets[0].type"),
        ([{"type": "t", "id": 5}], "targets[0].id"),
        ([{"type": "t", "name": []}], "targets[0].name"),
        ([{"type": "t", "metadata": []}], "targets[0].metadata"),
        ([{"type": "t", "metadata": {"n": 2**53}}], "targets[0].metadata"),
        ([{"type": "t", "colour": "red"}], "targets[0].colour"),
        ([{"type": "t"}] * (MAX_TARGETS + 1), "targets"),
    ],
)
def test_target_paths(targets: Any, field: str) -> None:
    v = only_violation({**BASE, "targets": targets})
    assert v["field"] == field
    assert v["message"].startswith(field + " ")


def test_target_path_with_prefix() -> None:
    v = only_violation({**BASE, "targets": [{"type": "t"}, {"type": 1}]}, "events[3].")
    assert v == {
        "field": "events[3].targets[1].type",
        "message": "targets[1].type must be a string",
    }


def test_targets_max() -> None:
    assert len(ok(targets=[{"type": "t"}] * MAX_TARGETS)["targets"]) == MAX_TARGETS


def test_empty_targets_is_allowed() -> None:
    assert ok(targets=[])["targets"] == []


# ---------------------------------------------------------------------------
# Metadata


@pytest.mark.parametrize("bad", [[], "x", 1, True])
def test_metadata_must_be_object(bad: Any) -> None:
    v = only_violation({**BASE, "metadata": bad})
    assert v == {"field": "metadata", "message": "metadata must be an object"}


def test_metadata_keys() -> None:
    ok(metadata={f"k{i}": i for i in range(MAX_METADATA_KEYS)})
    v = only_violation({**BASE, "metadata": {f"k{i}": i for i in range(MAX_METADATA_KEYS + 1)}})
    assert v["field"] == "metadata" and str(MAX_METADATA_KEYS) in v["message"]


def test_metadata_size() -> None:
    overhead = len(b'{"k":""}')
    ok(metadata={"k": "x" * (MAX_METADATA_BYTES - overhead)})
    v = only_violation({**BASE, "metadata": {"k": "x" * (MAX_METADATA_BYTES - overhead + 1)}})
    assert v["field"] == "metadata" and "bytes" in v["message"]


def test_metadata_size_counts_utf8_bytes() -> None:
    # 3 bytes per character in UTF-8
    v = only_violation({**BASE, "metadata": {"k": "漢" * (MAX_METADATA_BYTES // 3)}})
    assert v["field"] == "metadata"


def _nest(levels: int) -> dict[str, Any]:
    """A metadata object whose deepest value sits ``levels`` levels down (metadata = 1)."""
    value: Any = 1
    for _ in range(levels - 1):
        value = {"k": value}
    assert isinstance(value, dict)
    return value


def test_metadata_depth() -> None:
    ok(metadata=_nest(MAX_DEPTH))
    v = only_violation({**BASE, "metadata": _nest(MAX_DEPTH + 1)})
    assert v["field"] == "metadata" and "deeper" in v["message"]


def test_metadata_depth_counts_arrays() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    v = only_violation({**BASE, "metadata": {"k": value}})
    assert v["field"] == "metadata"


@pytest.mark.parametrize(
    "metadata",
    [
        {"k": "a\x00b"},
        {"a\x00": 1},
        {"k": ["ok", "\x00"]},
        {"k": {"deep\x00key": 1}},
        {"k": [{"x": "\x00"}]},
    ],
)
def test_metadata_nul(metadata: dict[str, Any]) -> None:
    v = only_violation({**BASE, "metadata": metadata})
    assert v["field"] == "metadata" and "NUL" in v["message"]


@pytest.mark.parametrize("name", STRING_FIELDS)
def test_nul_in_string_fields(name: str) -> None:
    v = only_violation({**BASE, name: "a\x00b"})
    assert v["field"] == name and "NUL" in v["message"]


def test_nul_in_target() -> None:
    v = only_violation({**BASE, "targets": [{"type": "t\x00"}]})
    assert v["field"] == "targets[0].type" and "NUL" in v["message"]


def test_other_control_characters_are_kept() -> None:
    text = "\x01\x1f\x7f\n\t\u2028"
    assert ok(actor_name=text, metadata={text: text})["metadata"] == {text: text}


@pytest.mark.parametrize(
    "n",
    [MAX_SAFE_INT, -MAX_SAFE_INT, 0, float(MAX_SAFE_INT), -float(MAX_SAFE_INT), 0.1, -0.0, 1e-300],
)
def test_numbers_within_range(n: float) -> None:
    assert ok(metadata={"n": n, "a": [n], "o": {"n": n}})["metadata"]["n"] == n


@pytest.mark.parametrize(
    "n",
    [
        MAX_SAFE_INT + 1,
        -MAX_SAFE_INT - 1,
        2**64,
        -(2**63),
        float(MAX_SAFE_INT + 1),
        1e16,
        -1e300,
        float("inf"),
        float("-inf"),
        float("nan"),
    ],
)
@pytest.mark.parametrize("where", ["top", "array", "nested"])
def test_numbers_beyond_range(n: float, where: str) -> None:
    metadata = {"top": {"n": n}, "array": {"a": [1, n]}, "nested": {"o": {"p": {"n": n}}}}[where]
    v = only_violation({**BASE, "metadata": metadata})
    assert v["field"] == "metadata" and "9007199254740991" in v["message"]


def test_booleans_are_not_numbers() -> None:
    assert ok(metadata={"t": True, "f": False})["metadata"] == {"t": True, "f": False}


# ---------------------------------------------------------------------------
# occurred_at


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-15T10:00:00Z", "2026-01-15T10:00:00.000000Z"),
        ("2026-01-15T10:00:00.5Z", "2026-01-15T10:00:00.500000Z"),
        ("2026-01-15T10:00:00.123456Z", "2026-01-15T10:00:00.123456Z"),
        ("2026-01-15T10:00:00.123456789Z", "2026-01-15T10:00:00.123456Z"),
        ("2026-01-15T10:00:00.999999999Z", "2026-01-15T10:00:00.999999Z"),  # truncated
        ("2026-01-15T15:30:00.123456789+05:30", "2026-01-15T10:00:00.123456Z"),
        ("2026-01-15T04:00:00-06:00", "2026-01-15T10:00:00.000000Z"),
        ("2026-01-15T00:30:00+01:00", "2026-01-14T23:30:00.000000Z"),  # day changes
        ("2026-01-15T10:00:00-00:00", "2026-01-15T10:00:00.000000Z"),
        ("2026-01-15t10:00:00z", "2026-01-15T10:00:00.000000Z"),
        ("2026-01-15 10:00:00Z", "2026-01-15T10:00:00.000000Z"),
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999Z"),  # leap second
        ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999999Z"),
        ("2017-01-01T00:59:60+01:00", "2016-12-31T23:59:59.999999Z"),
        ("2024-02-29T12:00:00Z", "2024-02-29T12:00:00.000000Z"),
        ("0005-01-01T00:00:00Z", "0005-01-01T00:00:00.000000Z"),  # four-digit year
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_occurred_at_normalised(text: str, expected: str) -> None:
    assert ok(occurred_at=text)["occurred_at"] == expected
    assert normalize_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-01-15",
        "2026-01-15T10:00:00",  # no offset
        "2026-01-15T10:00Z",
        "2026-01-15T10:00:00.Z",
        "2026-01-15T10:00:00+0100",
        "2026-01-15T10:00:00+01",
        "2026-01-15T10:00:00+24:00",
        "2026-01-15T10:00:00+01:60",
        "2026-13-01T10:00:00Z",
        "2026-02-30T10:00:00Z",
        "2025-02-29T10:00:00Z",
        "2026-01-15T24:00:00Z",
        "2026-01-15T10:60:00Z",
        "2026-01-15T10:00:61Z",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        "26-01-15T10:00:00Z",
        " 2026-01-15T10:00:00Z",
        "2026-01-15T10:00:00Z ",
        "2026-01-15T10:00:00Z\n",
        "\u0662\u0660\u0662\u0666-01-15T10:00:00Z",  # Arabic-Indic digits
        "2026-01-15T10:00:00Z\x00",
        "yesterday",
    ],
)
def test_occurred_at_invalid(text: str) -> None:
    v = only_violation({**BASE, "occurred_at": text})
    assert v["field"] == "occurred_at"
    assert v["message"].startswith("occurred_at ")


@pytest.mark.parametrize("bad", [1768471200, 1.5, True, [], {}])
def test_occurred_at_type(bad: Any) -> None:
    v = only_violation({**BASE, "occurred_at": bad})
    assert v["field"] == "occurred_at" and "RFC 3339" in v["message"]


def test_parse_keeps_offset_and_format_converts() -> None:
    dt = parse_rfc3339("2026-01-15T15:30:00+05:30")
    assert dt.utcoffset() is not None and dt.utcoffset().total_seconds() == 5.5 * 3600  # type: ignore[union-attr]
    assert format_ts(dt) == "2026-01-15T10:00:00.000000Z"


def test_format_epoch_us() -> None:
    assert format_epoch_us(0) == "1970-01-01T00:00:00.000000Z"
    assert format_epoch_us(1_768_471_200_000_123) == "2026-01-15T10:00:00.000123Z"


# ---------------------------------------------------------------------------
# ip_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:0DB8:0000:0000:0000:FF00:0042:8329", "2001:db8::ff00:42:8329"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:0", "::"),
        ("FE80::ABCD", "fe80::abcd"),
    ],
)
def test_ip_normalised(text: str, expected: str) -> None:
    assert ok(ip_address=text)["ip_address"] == expected


@pytest.mark.parametrize(
    "bad",
    ["", "1.2.3", "1.2.3.256", "01.2.3.4", "1.2.3.4/32", "::g", "2001:db8:::1", "host", " 1.2.3.4"],
)
def test_ip_invalid(bad: str) -> None:
    v = only_violation({**BASE, "ip_address": bad})
    assert v == {"field": "ip_address", "message": "ip_address must be an IPv4 or IPv6 address"}


@pytest.mark.parametrize("bad", [16909060, True, ["1.2.3.4"]])
def test_ip_type(bad: Any) -> None:
    v = only_violation({**BASE, "ip_address": bad})
    assert v["field"] == "ip_address" and "string" in v["message"]


# ---------------------------------------------------------------------------
# action, version


@pytest.mark.parametrize(
    "action", ["login", "user.login", "document.v2.delete", "a_b-c.D9", "x" * 128]
)
def test_action_valid(action: str) -> None:
    assert ok(action=action)["action"] == action


@pytest.mark.parametrize(
    "action",
    [
        "user login",
        "user..login",
        ".login",
        "login.",
        "user/login",
        "usér.login",
        "user.login\n",
        "user:login",
        "x" * 129,
    ],
)
def test_action_invalid(action: str) -> None:
    v = only_violation({**BASE, "action": action})
    assert v["field"] == "action"
    assert v["message"].startswith("action must")


@pytest.mark.parametrize("version", [1, 2, 2**31 - 1])
def test_version_valid(version: int) -> None:
    assert ok(version=version)["version"] == version


@pytest.mark.parametrize("bad", [0, -1, 2**31, True, False, 1.0, 1.5, "1", [1]])
def test_version_invalid(bad: Any) -> None:
    v = only_violation({**BASE, "version": bad})
    assert v == {"field": "version", "message": "version must be a positive integer"}


def test_ip_with_nul_is_a_violation_not_an_error() -> None:
    event, violations = validate_event(
        {"actor_id": "a", "action": "b", "ip_address": "1.2.3.4\x00"}
    )
    assert event is None and [v["field"] for v in violations] == ["ip_address"]
