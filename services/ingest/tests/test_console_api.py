"""Viewer tokens and the CSV cells the viewer writes (no server needed)."""

from __future__ import annotations

import base64
import csv
import io
import time

import orjson
import pytest

from libs.common import errors
from libs.common.chain import Head, link
from libs.common.exportformat import CSV_COLUMNS, csv_cells, csv_decoder
from libs.common.secretbox import SecretBox
from services.ingest.console_api import ViewerScope, ViewerTokens, scoped_params

WS = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


def tokens(key: bytes = bytes(range(32)), max_ttl: int = 86_400) -> ViewerTokens:
    return ViewerTokens(SecretBox(key), max_ttl)


def test_a_token_opens_to_the_scope_it_was_minted_for() -> None:
    t = tokens()
    token, token_id, scope = t.mint(WS, "tenant_a", "user_1", 600)
    opened = t.open(f"Bearer {token}")
    assert opened == scope
    assert (opened.workspace_id, opened.tenant_id, opened.actor_id) == (WS, "tenant_a", "user_1")
    assert abs(opened.expires_at - (time.time() + 600)) < 5
    assert token_id in base64.urlsafe_b64decode(token.split(".")[1] + "==").decode()


def _reissue(token: str, **changes: object) -> str:
    """The token with its payload edited and the old MAC kept: what a forger can do."""
    prefix, payload, mac = token.split(".")
    doc = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    doc.update(changes)
    edited = base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")
    return f"{prefix}.{edited}.{mac}"


@pytest.mark.parametrize(
    "changes", [{"t": "tenant_b"}, {"a": None}, {"e": 4_102_444_800}, {"w": "other"}]
)
def test_an_edited_token_is_refused(changes: dict[str, object]) -> None:
    t = tokens()
    token, _, _ = t.mint(WS, "tenant_a", "user_1", 600)
    with pytest.raises(errors.ApiError) as exc:
        t.open(f"Bearer {_reissue(token, **changes)}")
    assert exc.value.status == 401


def test_another_master_key_refuses_it_and_expiry_ends_it() -> None:
    token, _, scope = tokens().mint(WS, "tenant_a", None, 60)
    with pytest.raises(errors.ApiError) as other:
        tokens(bytes(32)).open(f"Bearer {token}")
    assert other.value.status == 401
    with pytest.raises(errors.ApiError) as late:
        tokens().open(f"Bearer {token}", now=scope.expires_at)
    assert late.value.code == "token_expired"
    for bad in (None, "", "Bearer clk_abc", "Bearer vt1.", "Bearer vt1.!!.??"):
        with pytest.raises(errors.ApiError) as exc:
            tokens().open(bad)
        assert exc.value.status == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "tenant_id"),
        ({"tenant_id": ""}, "tenant_id"),
        ({"tenant_id": "t", "ttl": 59}, "ttl"),
        ({"tenant_id": "t", "ttl": 86_401}, "ttl"),
        ({"tenant_id": "t", "ttl": True}, "ttl"),
        ({"tenant_id": "t", "actor_id": 5}, "actor_id"),
        ({"tenant_id": "t", "scope": "all"}, "scope"),
    ],
)
def test_a_bad_request_names_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(errors.ApiError) as exc:
        tokens().parse_request(body)
    assert exc.value.status == 422
    assert field in [v["field"] for v in exc.value.body()["violations"]]


def test_the_operator_can_lower_the_longest_lifetime() -> None:
    with pytest.raises(errors.ApiError):
        tokens(max_ttl=3600).parse_request({"tenant_id": "t", "ttl": 3601})
    assert tokens(max_ttl=3600).parse_request({"tenant_id": "t", "ttl": 3600}) == ("t", None, 3600)


def test_filters_never_widen_the_scope() -> None:
    scope = ViewerScope(WS, "tenant_a", "user_1", 0)
    assert scoped_params(scope, {"action": "doc.*"}) == {
        "action": "doc.*",
        "tenant_id": "tenant_a",
        "actor_id": "user_1",
    }
    assert scoped_params(scope, {"tenant_id": "tenant_a"})["tenant_id"] == "tenant_a"
    for other in ({"tenant_id": "tenant_b"}, {"actor_id": "user_2"}):
        with pytest.raises(errors.ApiError) as exc:
            scoped_params(scope, other)
        assert exc.value.status == 403
    with pytest.raises(errors.ApiError) as unknown:
        scoped_params(scope, {"ip_country": "DE"})
    assert unknown.value.status == 422
    # without an actor in the token, any actor of the tenant may be filtered on
    open_actor = ViewerScope(WS, "tenant_a", None, 0)
    assert scoped_params(open_actor, {"actor_id": "user_2"})["actor_id"] == "user_2"


def test_csv_cells_read_back_to_the_hashed_event() -> None:
    head = Head()
    event = {
        "id": "0193a1b2-c3d4-7e5f-8a9b-000000000001",
        "received_at": "2026-11-28T05:00:00.000000Z",
        "actor_id": "=cmd|' /C calc'!A0",
        "action": "document.delete",
        "metadata": {"n": 1, "s": "-x"},
        "targets": [{"type": "doc", "id": "d1"}],
        "tenant_id": "t1",
        "version": 1,
    }
    body, digest = link(head, WS, event)
    served = {**orjson.loads(body), "hash": digest, "ip_country": None, "ip_city": None}
    out = io.StringIO()
    csv.writer(out).writerow(csv_cells(served))
    cells = next(csv.reader(io.StringIO(out.getvalue())))
    assert cells[CSV_COLUMNS.index("actor_id")].startswith("'=")  # no formula
    decoded, claimed = csv_decoder(CSV_COLUMNS)(cells)
    assert claimed == digest
    assert decoded == orjson.loads(body)
