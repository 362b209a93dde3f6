"""The auditor scope: read-level routes only, never with another scope, no viewer tokens."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common import errors, keys
from services.ingest import manage
from services.ingest.auth import Principal


def principal(*scopes: str) -> Principal:
    return Principal("ws", "key", "prefix0000", frozenset(scopes))


def test_an_auditor_key_passes_read_checks_only() -> None:
    auditor = principal("auditor")
    auditor.require("read")
    auditor.require("auditor")
    for scope in ("ingest", "admin"):
        with pytest.raises(errors.ApiError) as caught:
            auditor.require(scope)
        assert caught.value.status == 403


def test_read_does_not_imply_auditor_or_more() -> None:
    reader = principal("read")
    reader.require("read")
    for scope in ("ingest", "admin", "auditor"):
        assert not keys.grants(reader.scopes, scope)


def test_an_auditor_key_cannot_hand_out_access() -> None:
    with pytest.raises(errors.ApiError) as caught:
        principal("auditor").refuse_auditor("mint viewer tokens")
    assert caught.value.status == 403
    assert "auditor" in caught.value.message
    principal("read").refuse_auditor("mint viewer tokens")


@pytest.mark.parametrize(
    "scopes", [["auditor", "ingest"], ["auditor", "admin"], ["read", "auditor"]]
)
async def test_auditor_is_a_scope_on_its_own(scopes: list[str]) -> None:
    assert keys.scope_conflict(scopes) is not None
    # refused before the database is touched
    with pytest.raises(errors.ApiError) as caught:
        await manage.create_key(None, "ws", {"name": "x", "scopes": scopes}, {})
    assert caught.value.status == 422
    assert [v["field"] for v in caught.value.body()["violations"]] == ["scopes"]
    with pytest.raises(ValueError, match="auditor"):
        await keys.create_key(None, "ws", "x", scopes)


@pytest.mark.parametrize("scopes", [["auditor"], ["ingest", "read", "admin"], ["read"]])
def test_other_combinations_are_fine(scopes: list[str]) -> None:
    assert keys.scope_conflict(scopes) is None


@pytest.mark.parametrize("value", [None, "yes", 1, [], {}])
async def test_audit_reads_must_be_a_boolean(value: Any) -> None:
    with pytest.raises(errors.ApiError) as caught:
        await manage.update_workspace(None, "ws", {"audit_reads": value}, None)  # type: ignore[arg-type]
    assert caught.value.status == 422
    assert [v["field"] for v in caught.value.body()["violations"]] == ["audit_reads"]
