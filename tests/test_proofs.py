"""Signed checkpoints and Merkle proofs against the real stack, checked as a client would:
with nothing but the log's public key and what the API serves.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import asyncpg
import httpx
import pytest

from libs.common.checkpoint import Checkpoint, NoteError, open_checkpoint
from libs.common.logkey import open_receipt
from libs.common.merkle import (
    CompactRange,
    event_leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from libs.common.timeutil import parse_rfc3339
from services.alerter.webhook import verify as verify_signature
from tests.conftest import Workspace, settle
from tests.receivers import Received, WebhookReceiver
from tests.siem_receivers import WebhookBatchReceiver
from tests.stack import Service, wait_until


def b64(text: str) -> bytes:
    return base64.b64decode(text)


async def ingest(api: httpx.AsyncClient, ws: Workspace, n: int, tag: str) -> list[str]:
    r = await api.post(
        "/api/v1/events/batch",
        json={"events": [{"actor_id": f"u{i}", "action": f"proof.{tag}"} for i in range(n)]},
        headers=ws.headers,
    )
    assert r.status_code == 202, r.text
    return [x["id"] for x in r.json()["results"]]


async def checkpoint_at_least(
    api: httpx.AsyncClient, ws: Workspace, size: int, key: str
) -> tuple[Checkpoint, dict[str, Any]]:
    async def signed() -> dict[str, Any] | None:
        r = await api.get("/api/v1/checkpoints/latest", headers=ws.headers)
        return r.json() if r.status_code == 200 and r.json()["size"] >= size else None

    doc = await wait_until(signed, within=60, what=f"a checkpoint of size {size}")
    return open_checkpoint(doc["checkpoint"], key), doc


async def test_checkpoints_prove_inclusion_and_consistency(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    ids = await ingest(api, workspace, 30, "first")
    last = await settle(admin_db, workspace.id, ids)

    async def have_key() -> dict[str, Any] | None:
        r = await api.get("/api/v1/log-key", headers=workspace.headers)
        return r.json() if r.status_code == 200 else None

    key = (await wait_until(have_key, what="the log key"))["verifier_key"]
    old, _ = await checkpoint_at_least(api, workspace, last, key)
    assert old.origin.endswith(workspace.id)
    # Inclusion: an event's hash, its audit path, the signed root.
    event = (await api.get(f"/api/v1/events/{ids[7]}", headers=workspace.headers)).json()
    r = await api.get(
        "/api/v1/proofs/inclusion",
        params={"event_id": ids[7], "tree_size": str(old.size)},
        headers=workspace.headers,
    )
    assert r.status_code == 200, r.text
    proof = r.json()
    assert proof["event_hash"] == event["hash"]
    assert verify_inclusion(
        event_leaf_hash(event["hash"]),
        event["seq"] - 1,
        old.size,
        [b64(h) for h in proof["audit_path"]],
        old.root,
    )
    # More events: the new checkpoint is a consistent extension of the old one.
    more = await ingest(api, workspace, 25, "second")
    top = await settle(admin_db, workspace.id, more)
    new, _ = await checkpoint_at_least(api, workspace, top, key)
    r = await api.get(
        "/api/v1/proofs/consistency",
        params={"first": str(old.size), "second": str(new.size)},
        headers=workspace.headers,
    )
    assert r.status_code == 200, r.text
    assert verify_consistency(
        old.size, new.size, old.root, new.root, [b64(h) for h in r.json()["proof"]]
    )
    bad = await api.get(
        "/api/v1/proofs/consistency",
        params={"first": "9", "second": "x"},
        headers=workspace.headers,
    )
    assert bad.status_code == 422 and bad.json()["violations"][0]["field"] == "second"


async def test_an_idle_log_heartbeats_and_a_restart_does_not_fork(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    workspace: Workspace,
    services: dict[str, Service],
) -> None:
    ids = await ingest(api, workspace, 10, "idle")
    last = await settle(admin_db, workspace.id, ids)
    key = (await api.get("/api/v1/log-key", headers=workspace.headers)).json()["verifier_key"]
    first, doc = await checkpoint_at_least(api, workspace, last, key)

    async def later_than(created: str) -> dict[str, Any] | None:
        r = (await api.get("/api/v1/checkpoints/latest", headers=workspace.headers)).json()
        return r if r["created_at"] > created else None

    beat = await wait_until(lambda: later_than(doc["created_at"]), within=60, what="a heartbeat")
    again = open_checkpoint(beat["checkpoint"], key)
    assert (again.size, again.root) == (first.size, first.root)
    services["exporter"].kill()
    services["exporter"].start()
    after = await wait_until(
        lambda: later_than(beat["created_at"]), within=90, what="a checkpoint after a restart"
    )
    restarted = open_checkpoint(after["checkpoint"], key)
    assert (restarted.size, restarted.root) == (first.size, first.root)


async def test_deleting_the_newest_events_or_rewriting_history_is_detected(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    ids = await ingest(api, workspace, 40, "held")
    last = await settle(admin_db, workspace.id, ids)
    key = (await api.get("/api/v1/log-key", headers=workspace.headers)).json()["verifier_key"]
    held, _ = await checkpoint_at_least(api, workspace, last, key)  # a client keeps this

    # The insider deletes the newest ten events and cuts the tree back to hide it.
    keep = held.size - 10
    async with admin_db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "DELETE FROM events WHERE workspace_id = $1 AND seq > $2", workspace.id, keep
        )
        await _rebuild_tree(conn, workspace.id)
        await conn.execute("DELETE FROM checkpoints WHERE workspace_id = $1", workspace.id)

    async def newest() -> dict[str, Any] | None:
        """The newest checkpoint once the rebuilt tree has every stored event again."""
        r = await api.get("/api/v1/checkpoints/latest", headers=workspace.headers)
        return r.json() if r.status_code == 200 and r.json()["size"] == keep else None

    served = open_checkpoint((await wait_until(newest, what="a new checkpoint"))["checkpoint"], key)
    # The client's signed size is larger than what is served now: events were removed.
    assert served.size == keep < held.size
    r = await api.get(
        "/api/v1/proofs/consistency",
        params={"first": str(held.size), "second": str(served.size)},
        headers=workspace.headers,
    )
    assert r.status_code == 422  # no proof can take a log back to a smaller size

    # Rewriting history instead: same size, another root: a fork the old checkpoint exposes.
    async with admin_db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE events SET hash = sha256(hash) WHERE workspace_id = $1 AND seq = 3",
            workspace.id,
        )
        await _rebuild_tree(conn, workspace.id)
        await conn.execute("DELETE FROM checkpoints WHERE workspace_id = $1", workspace.id)
    forked = open_checkpoint(
        (await wait_until(newest, what="a rebuilt checkpoint"))["checkpoint"], key
    )
    assert forked.size == served.size and forked.root != served.root
    # Two roots signed for one size: the client's saved checkpoint exposes the fork.
    assert not verify_consistency(served.size, forked.size, served.root, forked.root, [])


async def _rebuild_tree(conn: asyncpg.Connection, workspace_id: str) -> None:
    """What an insider hiding a change would do: drop the tree, let it be built again."""
    await conn.execute("DELETE FROM merkle_nodes WHERE workspace_id = $1", workspace_id)
    await conn.execute(
        "UPDATE merkle_state SET size = 0, frontier = $2 WHERE workspace_id = $1",
        workspace_id,
        CompactRange().to_bytes(),
    )


async def test_an_export_carries_the_checkpoint_that_covers_it(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    ids = await ingest(api, workspace, 15, "exported")
    last = await settle(admin_db, workspace.id, ids)
    key = (await api.get("/api/v1/log-key", headers=workspace.headers)).json()["verifier_key"]
    r = await api.post("/api/v1/exports", json={"format": "jsonl"}, headers=workspace.headers)
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]

    async def covered() -> dict[str, Any] | None:
        doc = (await api.get(f"/api/v1/exports/{export_id}", headers=workspace.headers)).json()
        return doc if doc["status"] == "completed" and doc["checkpoint"] else None

    doc = await wait_until(covered, within=90, what="a completed export with its checkpoint")
    cp = open_checkpoint(doc["checkpoint"], key)
    assert cp.size >= doc["last_seq"] >= last
    # Every exported row is in the signed tree: check one.
    body = await api.get(f"/api/v1/exports/{export_id}/download", headers=workspace.headers)
    row = [line for line in body.text.splitlines() if ids[4] in line]
    event = json.loads(row[0])
    r = await api.get(
        "/api/v1/proofs/inclusion",
        params={"event_id": ids[4], "tree_size": str(cp.size)},
        headers=workspace.headers,
    )
    path = [b64(h) for h in r.json()["audit_path"]]
    assert verify_inclusion(
        event_leaf_hash(event["hash"]), event["seq"] - 1, cp.size, path, cp.root
    )


async def test_a_receipt_promises_inclusion_and_the_log_keeps_it(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    r = await api.post(
        "/api/v1/events",
        params={"receipt": "true"},
        json={"actor_id": "u1", "action": "proof.receipt"},
        headers=workspace.headers,
    )
    assert r.status_code == 202, r.text
    event_id = r.json()["id"]
    key = (await api.get("/api/v1/log-key", headers=workspace.headers)).json()["verifier_key"]
    receipt = open_receipt(r.json()["receipt"], key)
    assert receipt.event_ids == (event_id,) and receipt.origin.endswith(workspace.id)
    assert receipt.include_by > receipt.received_at
    # Tampered, the receipt no longer opens.
    with pytest.raises(NoteError):
        open_receipt(r.json()["receipt"].replace(event_id, "0" * 8 + event_id[8:]), key)
    seq = await settle(admin_db, workspace.id, [event_id])
    cp, _ = await checkpoint_at_least(api, workspace, seq, key)
    stamp = next(e.split(" ", 1)[1] for e in cp.extensions if e.startswith("timestamp "))
    # kept: a checkpoint signed before the promised time includes the event
    assert int(stamp) <= parse_rfc3339(receipt.include_by).timestamp()
    proof = (
        await api.get(
            "/api/v1/proofs/inclusion",
            params={"event_id": event_id, "tree_size": str(cp.size)},
            headers=workspace.headers,
        )
    ).json()
    assert verify_inclusion(
        event_leaf_hash(proof["event_hash"]),
        seq - 1,
        cp.size,
        [b64(h) for h in proof["audit_path"]],
        cp.root,
    )


async def test_witnesses_receive_every_new_checkpoint(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    """A webhook endpoint and a log stream that ask for checkpoints each get them,
    signed, outside the database: a witness that can later expose a fork."""
    hook = WebhookReceiver().start()
    secret = "whsec_" + base64.b64encode(b"checkpoint-witness-secret-32byte").decode()
    batches = WebhookBatchReceiver(secret).start()
    try:
        r = await api.post(
            "/api/v1/webhook-endpoints",
            json={"url": hook.url, "checkpoints": True},
            headers=workspace.headers,
        )
        assert r.status_code == 201 and r.json()["checkpoints"] is True, r.text
        endpoint = r.json()
        bad = await api.post(
            "/api/v1/webhook-endpoints",
            json={"url": hook.url, "checkpoints": "yes"},
            headers=workspace.headers,
        )
        assert bad.status_code == 422 and bad.json()["violations"][0]["field"] == "checkpoints"
        r = await api.post(
            "/api/v1/log-streams",
            json={
                "name": "witness",
                "type": "http",
                "config": {"url": batches.url, "secret": secret},
                "filter": {"actions": ["nothing.*"], "checkpoints": True},
            },
            headers=workspace.headers,
        )
        assert r.status_code == 201, r.text
        ids = await ingest(api, workspace, 12, "witnessed")
        last = await settle(admin_db, workspace.id, ids)
        key = (await api.get("/api/v1/log-key", headers=workspace.headers)).json()["verifier_key"]

        def hooked() -> list[Checkpoint]:
            out = []
            for received in hook.snapshot():
                check_signature(endpoint["secret"], received)
                body = json.loads(received.body)
                assert body["type"] == "checkpoint.signed"
                assert body["workspace_id"] == workspace.id
                out.append(open_checkpoint(body["checkpoint"]["checkpoint"], key))
            return out

        def streamed() -> list[Checkpoint]:
            records = [e for b in batches.batches for e in b["events"]]
            assert all(e["action"] == "chainlog.checkpoint" for e in records)
            return [open_checkpoint(e["metadata"]["checkpoint"], key) for e in records]

        async def both_at(size: int) -> bool:
            return any(c.size >= size for c in hooked()) and any(c.size >= size for c in streamed())

        await wait_until(lambda: both_at(last), within=60, what="witnesses to get the checkpoint")
        more = await ingest(api, workspace, 5, "witnessed-again")
        top = await settle(admin_db, workspace.id, more)
        await wait_until(lambda: both_at(top), within=60, what="witnesses to get the next one")
        # Each witness saw one history: sizes never go back, one root per size.
        for seen in (hooked(), streamed()):
            sizes = [c.size for c in seen]
            assert sizes == sorted(sizes)
            roots: dict[int, bytes] = {}
            for c in seen:
                assert roots.setdefault(c.size, c.root) == c.root
        served = (await api.get("/api/v1/checkpoints/latest", headers=workspace.headers)).json()
        assert served["size"] >= top
    finally:
        hook.stop()
        batches.stop()


def check_signature(secret: str, received: Received) -> None:
    verify_signature(secret, received.headers, received.body)
