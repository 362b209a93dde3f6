"""``POST /api/v1/legal-holds`` and its release: every bad field is named in one 422."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common import errors
from services.ingest.holds_api import parse_release, parse_request

HOLD = {"name": "Smith v. Acme", "reason": "litigation", "filter": {"actor_id": "user_1"}}


def _fields(call: Any, body: Any) -> list[str]:
    with pytest.raises(errors.ApiError) as caught:
        call(body)
    assert caught.value.status == 422
    return [v["field"] for v in caught.value.body()["violations"]]


def test_a_good_hold() -> None:
    assert parse_request(HOLD) == ("Smith v. Acme", {"actor_id": "user_1"}, "litigation")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ([], ["body"]),
        ({}, ["name", "reason", "filter"]),
        ({**HOLD, "name": " "}, ["name"]),
        ({**HOLD, "name": "n" * 201}, ["name"]),
        ({**HOLD, "reason": None}, ["reason"]),
        ({**HOLD, "filter": {}}, ["filter"]),
        ({**HOLD, "filter": {"actor_id": "u", "action": "a b"}}, ["filter.action"]),
        ({**HOLD, "id": "x", "filter": {"where": "1=1"}}, ["id", "filter.where"]),
    ],
)
def test_each_bad_field_is_named(body: Any, fields: list[str]) -> None:
    assert _fields(parse_request, body) == fields


def test_release_needs_a_reason() -> None:
    assert parse_release({"reason": "settled"}) == "settled"
    assert _fields(parse_release, {}) == ["reason"]
    assert _fields(parse_release, {"reason": "x", "by": "me"}) == ["by"]
    assert _fields(parse_release, "settled") == ["body"]
