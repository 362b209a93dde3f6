"""``POST /api/v1/schedules`` bodies: every bad field is named, nothing raises but a 422,
and the checks are those of exports, evidence packs and S3 log streams."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common import errors
from services.ingest.schedules_api import endpoint, parse_request

WS = "0190a1b2-0000-7000-8000-000000000001"
BUCKET = {
    "bucket": "audit-evidence",
    "region": "eu-west-1",
    "access_key_id": "AKIAEXAMPLE",
    "secret_access_key": "s3cret/value",
}
EXPORT = {
    "kind": "export",
    "cadence": "daily",
    "params": {"format": "jsonl", "action": "user.*"},
    "destination": BUCKET,
}
PACK = {
    "kind": "evidence_pack",
    "cadence": "monthly",
    "params": {"controls": ["CC8", "CC6"]},
    "destination": {**BUCKET, "endpoint_url": "https://minio.example.com/", "prefix": "soc2/"},
}


def _fields(body: Any) -> list[str]:
    with pytest.raises(errors.ApiError) as caught:
        parse_request(WS, body)
    assert caught.value.status == 422
    body_doc = caught.value.body()
    assert "s3cret" not in str(body_doc)
    return [v["field"] for v in body_doc["violations"]]


def test_a_good_export_schedule() -> None:
    values = parse_request(WS, EXPORT)
    assert values["params"] == {"format": "jsonl", "filters": {"action": "user.*"}}
    assert values["destination"] == {**BUCKET, "prefix": "chainlog/"}
    assert endpoint(values["destination"]) == "https://s3.eu-west-1.amazonaws.com"


def test_a_good_pack_schedule() -> None:
    values = parse_request(WS, PACK)
    assert values["params"] == {"controls": ["CC6", "CC8"]}
    assert values["destination"]["prefix"] == "soc2/"
    assert endpoint(values["destination"]) == "https://minio.example.com"


def test_an_export_schedule_defaults_to_csv_of_everything() -> None:
    values = parse_request(WS, {**EXPORT, "params": {}})
    assert values["params"] == {"format": "csv", "filters": {}}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ([], ["body"]),
        ({}, ["kind", "cadence", "destination"]),
        ({**EXPORT, "kind": "archive"}, ["kind"]),
        ({**EXPORT, "cadence": "hourly"}, ["cadence"]),
        ({**EXPORT, "colour": "red"}, ["colour"]),
        ({**EXPORT, "params": []}, ["params"]),
        ({**EXPORT, "params": {"format": "pdf"}}, ["params.format"]),
        ({**EXPORT, "params": {"from": "2026-01-01T00:00:00Z"}}, ["params.from"]),
        ({**EXPORT, "params": {"to": "x", "nonsense": "1"}}, ["params.to", "params.nonsense"]),
        ({**EXPORT, "params": {"actor_id": 7}}, ["params.actor_id"]),
        ({**PACK, "params": {}}, ["params.controls"]),
        ({**PACK, "params": {"controls": ["CC10"]}}, ["params.controls"]),
        ({**PACK, "params": {"controls": ["CC6"], "from": "x"}}, ["params.from"]),
        ({**EXPORT, "destination": "s3://bucket"}, ["destination"]),
        ({**EXPORT, "destination": {**BUCKET, "bucket": "No_Such"}}, ["destination.bucket"]),
        (
            {**EXPORT, "destination": {**BUCKET, "secret_access_key": ""}},
            ["destination.secret_access_key"],
        ),
        (
            {**EXPORT, "destination": {k: v for k, v in BUCKET.items() if k != "access_key_id"}},
            ["destination.access_key_id"],
        ),
        ({**EXPORT, "destination": {**BUCKET, "prefix": "../up"}}, ["destination.prefix"]),
        (
            {**EXPORT, "destination": {**BUCKET, "endpoint_url": "ftp://x"}},
            ["destination.endpoint_url"],
        ),
        ({**EXPORT, "destination": {**BUCKET, "format": "ocsf"}}, ["destination.format"]),
    ],
)
def test_bad_requests_name_each_field(body: Any, fields: list[str]) -> None:
    assert _fields(body) == fields
