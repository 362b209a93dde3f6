"""Event schemas: definitions, matching precedence, violations, the per-workspace cache."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from libs.common import patterns
from services.alerter.rules import base
from services.ingest.schemas import (
    MAX_EXPANDED_SCHEMAS,
    MAX_MESSAGE,
    MAX_SCHEMA_BYTES,
    SchemaSet,
    validate_schema_definition,
)

WS = "6f2b1c1e-0000-4000-8000-000000000001"
WS2 = "6f2b1c1e-0000-4000-8000-000000000002"
AMOUNT = {
    "type": "object",
    "properties": {"amount": {"type": "number", "minimum": 0}},
    "required": ["amount"],
}


def violations(body: object, *, partial: bool = False) -> dict[str, str]:
    out, found = validate_schema_definition(body, partial=partial)
    assert out == {}
    return {v["field"]: v["message"] for v in found}


# --- the shared pattern module ---------------------------------------------


def test_alerter_uses_the_shared_matcher() -> None:
    assert base.compile_pattern is patterns.compile_pattern
    assert base.matches_any is patterns.matches_any
    assert base.MAX_PATTERN_LEN == patterns.MAX_PATTERN_LEN == 200


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("document.*", None),
        ("*", None),
        ("a" * 200, None),
        ("", "must be a non-empty string of at most 200 characters"),
        ("a" * 201, "must be a non-empty string of at most 200 characters"),
        (None, "must be a non-empty string of at most 200 characters"),
        ("user login", "must be an action pattern"),
        ("user.*\n", "must be an action pattern"),
    ],
)
def test_check_pattern(pattern: object, problem: str | None) -> None:
    found = patterns.check_pattern(pattern)
    assert found == problem if problem is None else (found or "").startswith(problem)


def test_matches_any() -> None:
    assert patterns.matches_any(["user.*", "*.delete"], "document.delete")
    assert not patterns.matches_any(["user.*", "*.delete"], "document.deleted")
    assert not patterns.matches_any([], "document.delete")


# --- definitions -----------------------------------------------------------


def test_create_fills_defaults() -> None:
    out, found = validate_schema_definition({"action_pattern": "document.*"}, partial=False)
    assert found == []
    assert out == {"action_pattern": "document.*", "description": "", "metadata_schema": None}


def test_create_keeps_every_field() -> None:
    body = {"action_pattern": "billing.*", "description": "money", "metadata_schema": AMOUNT}
    assert validate_schema_definition(body, partial=False) == (body, [])


def test_patch_returns_only_what_was_sent() -> None:
    assert validate_schema_definition({"description": "x"}, partial=True) == (
        {"description": "x"},
        [],
    )
    # null removes the schema.
    assert validate_schema_definition({"metadata_schema": None}, partial=True) == (
        {"metadata_schema": None},
        [],
    )
    assert validate_schema_definition({}, partial=True) == ({}, [])


def test_body_must_be_an_object() -> None:
    assert violations([]) == {"body": "the body must be a JSON object"}


def test_every_problem_is_named_at_once() -> None:
    found = violations(
        {"action_pattern": "a b", "description": 5, "metadata_schema": [], "mode": "strict"}
    )
    assert set(found) == {"action_pattern", "description", "metadata_schema", "mode"}
    assert found["mode"] == "mode is not a field of an event schema"
    assert found["description"] == "description must be a string of at most 1000 characters"
    assert found["metadata_schema"] == "metadata_schema must be a JSON object (a JSON Schema)"
    assert found["action_pattern"].startswith("action_pattern must be an action pattern")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "action_pattern is required"),
        ({"action_pattern": None}, "action_pattern must be a non-empty string"),
        ({"action_pattern": ""}, "action_pattern must be a non-empty string"),
        ({"action_pattern": "a" * 201}, "action_pattern must be a non-empty string"),
        ({"action_pattern": "user.?"}, "action_pattern must be an action pattern"),
    ],
)
def test_bad_action_pattern(body: dict[str, Any], message: str) -> None:
    assert violations(body)["action_pattern"].startswith(message)


@pytest.mark.parametrize("description", [None, 7, "x" * 1001])
def test_bad_description(description: object) -> None:
    found = violations({"action_pattern": "a", "description": description})
    assert found == {"description": "description must be a string of at most 1000 characters"}


def test_description_at_the_limit() -> None:
    body = {"action_pattern": "a", "description": "x" * 1000}
    assert validate_schema_definition(body, partial=False)[1] == []


def schema_problem(schema: object) -> str:
    return violations({"metadata_schema": schema}, partial=True)["metadata_schema"]


@pytest.mark.parametrize("schema", [True, "{}", 3])
def test_schema_must_be_an_object(schema: object) -> None:
    assert schema_problem(schema) == "metadata_schema must be a JSON object (a JSON Schema)"


def test_schema_size_limit() -> None:
    schema: dict[str, Any] = {"allOf": [{}] * 22_000}
    assert len(orjson.dumps(schema)) > MAX_SCHEMA_BYTES
    assert schema_problem(schema) == "metadata_schema must be at most 65536 bytes as JSON"
    # Just under the limit is fine: a plain schema is never "too complex".
    schema = {"allOf": [{}] * 21_800}
    assert len(orjson.dumps(schema)) <= MAX_SCHEMA_BYTES
    assert validate_schema_definition({"metadata_schema": schema}, partial=True)[1] == []


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "nope"},
            'metadata_schema/type: "nope" is not valid under any of the schemas listed'
            " in the 'anyOf' keyword",
        ),
        (
            {"properties": {"amount": {"minimum": "0"}}},
            'metadata_schema/properties/amount/minimum: "0" is not of type "number"',
        ),
        (
            {"required": "amount"},
            'metadata_schema/required: "amount" is not of type "array"',
        ),
        # Lookaround needs a backtracking engine, which the ingest path does not use.
        ({"pattern": "^(?!x)"}, 'metadata_schema/pattern: "^(?!x)" is not a "regex"'),
    ],
)
def test_schema_must_be_a_valid_json_schema(schema: dict[str, Any], message: str) -> None:
    assert schema_problem(schema) == message


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"$ref": "http://127.0.0.1/schema.json"},
            "may use $ref only to a place inside it, such as #/$defs/name",
        ),
        ({"$ref": "other.json#/x"}, "may use $ref only to a place inside it"),
        ({"$ref": "#/$defs/missing"}, "has a $ref to a place that does not exist"),
        (
            {"$defs": {"n": {"properties": {"c": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"},
            "must not be recursive",
        ),
        ({"properties": {"self": {"$ref": "#"}}}, "must not be recursive"),
        ({"$dynamicRef": "#meta"}, "must not use $dynamicRef"),
        ({"properties": {"a": {"$id": "http://x/a"}}}, "may have $id only at its top level"),
        ({"$schema": "http://example.com/custom"}, "metadata_schema: Unknown meta-schema"),
    ],
)
def test_schema_references(schema: dict[str, Any], message: str) -> None:
    assert message in schema_problem(schema)


def doubling(levels: int) -> dict[str, Any]:
    """Each definition refers twice to the next: 2**levels paths, in a few hundred bytes."""
    defs: dict[str, Any] = {
        f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"not": {"$ref": f"#/$defs/d{i + 1}"}}]}
        for i in range(levels)
    }
    defs[f"d{levels}"] = {"type": "string"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


def test_schema_that_expands_exponentially_is_refused() -> None:
    # 10 levels: about 15,000 subschemas counted; 11: about 30,000.
    assert validate_schema_definition({"metadata_schema": doubling(10)}, partial=True)[1] == []
    assert schema_problem(doubling(11)) == (
        "metadata_schema is too complex: with every $ref expanded it has more than"
        f" {MAX_EXPANDED_SCHEMAS} subschemas"
    )
    assert len(orjson.dumps(doubling(11))) < 1000


def test_schema_nesting_limit() -> None:
    schema: dict[str, Any] = {}
    inner = schema
    for _ in range(40):
        inner["not"] = {}
        inner = inner["not"]
    assert validate_schema_definition({"metadata_schema": schema}, partial=True)[1] == []
    for _ in range(30):
        inner["not"] = {}
        inner = inner["not"]
    assert (
        schema_problem(schema)
        == "metadata_schema must not nest deeper than 64 levels (counting $ref)"
    )


def test_local_references_and_keyword_named_properties() -> None:
    schema = {
        "$defs": {"a/b~c d": {"type": "string"}},
        "properties": {
            "$ref": {"$ref": "#/$defs/a~1b~0c%20d"},  # a property named "$ref"
            "const": {"type": "integer"},  # a property named like a keyword
            "kind": {"enum": [{"$ref": "data, not a reference"}, {"$id": "data"}]},
        },
    }
    assert validate_schema_definition({"metadata_schema": schema}, partial=True)[1] == []
    schemas = SchemaSet.from_rows([("a", schema)])
    assert schemas.check("a", {"$ref": "x", "const": 1, "kind": {"$id": "data"}}) is None
    assert schemas.check("a", {"$ref": 5}) == 'metadata/$ref: 5 is not of type "string"'


# --- matching ----------------------------------------------------------------


def test_empty_set_accepts_everything() -> None:
    for schemas in (SchemaSet(), SchemaSet.from_rows([])):
        assert schemas.check("billing.refunded", None) is None
        assert schemas.check("anything", {"a": [1, {"b": None}]}) is None


def test_unmatched_action_message_is_exact() -> None:
    schemas = SchemaSet.from_rows([("document.*", None), ("user.login", None)])
    assert schemas.check("billing.refunded", {}) == (
        "Action 'billing.refunded' does not match any configured schema pattern."
    )
    assert schemas.check("document.read", {"anything": 1}) is None
    assert schemas.check("user.login", None) is None
    assert schemas.check("user.logins", None) is not None


PRECEDENCE = ["document.delete", "doc*.delete", "document.*", "*.delete", "*e*"]


def test_most_specific_pattern_wins_whatever_the_row_order() -> None:
    rows = [(p, None) for p in PRECEDENCE]
    for seed in range(5):
        random.Random(seed).shuffle(rows)
        schemas = SchemaSet.from_rows(rows)
        assert [e.action_pattern for e in schemas.entries] == PRECEDENCE
        found = schemas.schema_for("document.delete")
        assert found is not None and found.action_pattern == "document.delete"
    expected = {
        "docs.delete": "doc*.delete",  # 10 literal characters beat 9
        "document.update": "document.*",
        "user.delete": "*.delete",  # 7 literal characters, and one star beats two
        "team.rename": "*e*",
        "auth.login": None,  # no "e"
    }
    for action, pattern in expected.items():
        found = schemas.schema_for(action)
        assert (found and found.action_pattern) == pattern, action


def test_a_catch_all_outranks_every_pattern_with_two_stars() -> None:
    schemas = SchemaSet.from_rows([("*e*", {"required": ["x"]}), ("*", None)])
    found = schemas.schema_for("team.rename")
    assert found is not None and found.action_pattern == "*"
    assert schemas.check("team.rename", {}) is None


def test_ties_break_by_code_point_order() -> None:
    # One star and two literal characters each: the smaller pattern wins ("*" < "a").
    for rows in ([("*.b", None), ("a.*", None)], [("a.*", None), ("*.b", None)]):
        found = SchemaSet.from_rows(rows).schema_for("a.b")
        assert found is not None and found.action_pattern == "*.b"


def test_the_matching_schema_checks_the_metadata() -> None:
    schemas = SchemaSet.from_rows([("billing.*", AMOUNT), ("billing.note", None)])
    assert schemas.check("billing.note", {"amount": "lots"}) is None
    assert schemas.check("billing.charge", {"amount": 5}) is None
    assert schemas.check("billing.charge", {"amount": -5}) == (
        "metadata/amount: -5 is less than the minimum of 0"
    )


def test_absent_metadata_is_checked_as_empty() -> None:
    schemas = SchemaSet.from_rows([("billing.*", AMOUNT), ("user.*", {"type": "object"})])
    assert schemas.check("billing.charge", None) == 'metadata: "amount" is a required property'
    assert schemas.check("user.login", None) is None


NESTED = {
    "type": "object",
    "properties": {
        "order": {
            "type": "object",
            "properties": {
                "lines": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"sku": {"type": "string", "maxLength": 8}},
                        "required": ["sku"],
                    },
                }
            },
        },
        "a/b~c": {"type": "integer"},
    },
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"order": {"lines": [{"sku": "A1"}, {"sku": "B2"}]}}, None),
        (
            {"order": {"lines": [{"sku": "A1"}, {"sku": "much-too-long"}]}},
            'metadata/order/lines/1/sku: "much-too-long" is longer than 8 characters',
        ),
        (
            {"order": {"lines": [{}]}},
            'metadata/order/lines/0: "sku" is a required property',
        ),
        ({"a/b~c": 1.5}, 'metadata/a~1b~0c: 1.5 is not of type "integer"'),
        ({"extra": 1}, "metadata: Additional properties are not allowed ('extra' was unexpected)"),
    ],
)
def test_nested_metadata_errors_carry_a_json_pointer(
    metadata: dict[str, Any], message: str | None
) -> None:
    assert SchemaSet.from_rows([("order.*", NESTED)]).check("order.placed", metadata) == message


def test_long_messages_are_clipped() -> None:
    schemas = SchemaSet.from_rows([("a", {"properties": {"s": {"maxLength": 3}}})])
    message = schemas.check("a", {"s": "x" * 5000})
    assert message is not None and message.startswith('metadata/s: "xxx')
    assert len(message) == len("metadata/s: ") + MAX_MESSAGE and message.endswith("…")


def test_stored_text_compiles_like_the_object() -> None:
    stored = SchemaSet.from_rows([("billing.*", orjson.dumps(AMOUNT).decode())])
    assert stored.unusable == ()
    assert stored.check("billing.charge", {"amount": -1}) == (
        "metadata/amount: -1 is less than the minimum of 0"
    )


def test_a_stored_schema_that_no_longer_compiles_checks_nothing() -> None:
    schemas = SchemaSet.from_rows([("a.*", '{"type": "nope"}'), ("b.*", "not json")])
    assert schemas.unusable == ("a.*", "b.*")
    assert schemas.check("a.x", {"anything": 1}) is None
    assert schemas.check("c.x", None) is not None


def test_the_action_memo_is_bounded() -> None:
    schemas = SchemaSet.from_rows([("a.*", None)])
    for i in range(5000):
        assert schemas.check(f"b.{i}", None) is not None
        assert schemas.check(f"a.{i}", None) is None
    assert len(schemas._memo) <= 4096
