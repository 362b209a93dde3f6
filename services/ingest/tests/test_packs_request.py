"""``POST /api/v1/evidence-packs`` bodies: every bad field is named, nothing raises but a 422."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from libs.common import errors
from services.ingest.packs_api import parse_request

GOOD = {
    "from": "2026-01-01T00:00:00Z",
    "to": "2026-04-01T02:00:00+02:00",
    "controls": ["CC8", "CC6"],
}


def _fields(body: Any) -> list[str]:
    with pytest.raises(errors.ApiError) as caught:
        parse_request(body)
    assert caught.value.status == 422
    return [v["field"] for v in caught.value.body()["violations"]]


def test_a_good_request_reads_in_utc_and_cc_order() -> None:
    start, end, controls = parse_request(GOOD)
    assert start == datetime(2026, 1, 1, tzinfo=UTC)
    assert end == datetime(2026, 4, 1, tzinfo=UTC) and end.tzinfo == UTC
    assert controls == ["CC6", "CC8"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ([], ["body"]),
        ({}, ["from", "to", "controls"]),
        ({**GOOD, "from": "yesterday"}, ["from"]),
        ({**GOOD, "to": 20260401}, ["to"]),
        ({**GOOD, "to": "2025-12-31T23:59:59Z"}, ["to"]),
        ({**GOOD, "to": GOOD["from"]}, ["to"]),
        ({**GOOD, "from": "0001-01-01T00:00:00+01:00"}, ["from"]),
        ({**GOOD, "controls": []}, ["controls"]),
        ({**GOOD, "controls": "CC6"}, ["controls"]),
        ({**GOOD, "controls": ["CC6", "CC6"]}, ["controls"]),
        ({**GOOD, "controls": ["CC10"]}, ["controls"]),
        ({**GOOD, "controls": [{"id": "CC6"}]}, ["controls"]),
        ({**GOOD, "format": "pdf"}, ["format"]),
        ({"from": 1, "controls": [None], "colour": "red"}, ["colour", "from", "to", "controls"]),
    ],
)
def test_bad_requests_name_each_field(body: Any, fields: list[str]) -> None:
    assert _fields(body) == fields
