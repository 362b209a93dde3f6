"""Erasure by crypto-shredding, end to end (docs/privacy.md).

Real Kafka, PostgreSQL and every service process. A subject's personal
fields are sealed at ingest; erasing the subject destroys its key. The
chain, an export and a retention archive still verify offline, and the
subject's plaintext is found nowhere: not in any PostgreSQL table or WAL
segment, not in any Kafka topic read back, not in the export or archive
written afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.common import keys, logkey, topics
from libs.common.settings import Settings
from tests.conftest import Workspace, settle
from tests.test_exports import _cli, download, export, ingest, verify_export

GB_IP = "81.2.69.160"  # London in the suite's GeoIP database
SE_IP = "89.160.20.112"


def _events(subject: str, marker: str, n: int, ip: str) -> list[dict[str, Any]]:
    return [
        {
            "actor_id": subject,
            "actor_name": f"Name {marker}",
            "action": "document.read",
            "tenant_id": "acme",
            "ip_address": ip,
            "user_agent": f"agent/{marker}",
            "metadata": {"email": f"{marker}@example.com", "plan": "pro", "i": i},
        }
        for i in range(n)
    ]


async def _by_actor(api: httpx.AsyncClient, ws: Workspace, actor: str) -> list[dict[str, Any]]:
    r = await api.get(
        "/api/v1/events", params={"actor_id": actor, "limit": "100"}, headers=ws.headers
    )
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


async def _tables_holding(db: asyncpg.Pool, needle: str, workspace_id: str) -> list[str]:
    """Every table of the database whose data holds ``needle`` (as text or bytes).

    A table with a ``workspace_id`` column is read for this workspace only
    (the shared events table holds every other test's events too); any
    other table is read whole.
    """
    columns = await db.fetch(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
        " ORDER BY c.table_name, c.ordinal_position"
    )
    tables: dict[str, list[tuple[str, str]]] = {}
    for c in columns:
        tables.setdefault(c["table_name"], []).append((c["column_name"], c["data_type"]))
    found = []
    for table, cols in tables.items():
        conds = [
            f'position($1::bytea IN "{name}") > 0'
            if kind == "bytea"
            else f"\"{name}\"::text LIKE '%' || convert_from($1, 'UTF8') || '%'"
            for name, kind in cols
        ]
        where = "(" + " OR ".join(conds) + ")"
        args: list[Any] = [needle.encode()]
        if any(name == "workspace_id" for name, _ in cols):
            where += " AND workspace_id = $2::uuid"
            args.append(workspace_id)
        if await db.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{table}" WHERE {where})', *args):
            found.append(table)
    return found


async def _wal_holding(db: asyncpg.Pool, needle: bytes) -> list[str]:
    """The WAL segments holding ``needle``: every write PostgreSQL made lately is in them."""
    data_dir = Path(await db.fetchval("SHOW data_directory"))
    await db.execute("SELECT pg_switch_wal()")
    return [
        p.name
        for p in sorted((data_dir / "pg_wal").glob("0*"))
        if p.is_file() and needle in p.read_bytes()
    ]


async def _kafka_holding(settings: Settings, needles: list[bytes]) -> list[str]:
    """Every topic of the stack whose records (values, keys, headers) hold one of ``needles``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        isolation_level="read_uncommitted",  # aborted transactions' records too
        max_partition_fetch_bytes=topics.MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    found: set[str] = set()
    try:
        parts = []
        for spec in topics.specs(settings.topics):
            for p in consumer.partitions_for_topic(spec.name) or await _partitions(
                consumer, spec.name
            ):
                parts.append(TopicPartition(spec.name, p))
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        todo = {tp for tp in parts if ends[tp] > 0}
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for r in records:
                    blob = b"".join(
                        [r.value or b"", r.key or b"", *(v for _, v in r.headers or ())]
                    )
                    found.update(tp.topic for n in needles if n in blob)
                    if r.offset + 1 >= ends[tp]:
                        todo.discard(tp)
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    return sorted(found)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


async def test_erased_subject_verifies_and_leaves_no_plaintext(
    api: httpx.AsyncClient,
    admin_db: asyncpg.Pool,
    env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
) -> None:
    async with admin_db.acquire() as conn:
        ws_id, key = await keys.create_workspace(conn, f"erasure-{os.urandom(3).hex()}", "pro")
    ws = Workspace(ws_id, key.key)
    # Privacy on: the default fields, one metadata key, geolocation dropped on erasure.
    bad = await api.put(
        "/api/v1/privacy", json={"enabled": True, "fields": ["password"]}, headers=ws.headers
    )
    assert bad.status_code == 422 and bad.json()["violations"][0]["field"] == "fields"
    r = await api.put(
        "/api/v1/privacy",
        json={"enabled": True, "metadata_keys": ["email"], "erased_enrichment": "drop"},
        headers=ws.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["fields"] == ["actor_name", "ip_address", "user_agent"]

    gone, kept = os.urandom(6).hex(), os.urandom(6).hex()
    # The subjects' ids are not personal data (they stay in clear): no marker in them.
    subject, other = f"subject-{os.urandom(4).hex()}", f"subject-{os.urandom(4).hex()}"
    ids = await ingest(api, ws, _events(subject, gone, 6, GB_IP) + _events(other, kept, 4, SE_IP))
    await settle(admin_db, ws.id, ids)

    # Sealed in the chain, readable through the API, geolocated by the enricher.
    before = await _by_actor(api, ws, subject)
    assert len(before) == 6
    for e in before:
        assert e["actor_name"].startswith("enc:v1:") and e["ip_address"].startswith("enc:v1:")
        assert e["metadata"]["plan"] == "pro" and e["metadata"]["email"].startswith("enc:v1:")
        assert e["personal"] == {
            "actor_name": f"Name {gone}",
            "ip_address": GB_IP,
            "user_agent": f"agent/{gone}",
            "metadata.email": f"{gone}@example.com",
        }
        assert (e["ip_country"], e["ip_city"]) == ("GB", "London")
    assert await _tables_holding(admin_db, gone, ws.id) == []

    # A legal hold on the subject refuses the erasure until it is released.
    hold = await api.post(
        "/api/v1/legal-holds",
        json={"name": "litigation", "filter": {"actor_id": subject}, "reason": "case 7"},
        headers=ws.headers,
    )
    assert hold.status_code in (200, 201), hold.text
    refused = await api.post(f"/api/v1/subjects/{subject}/erase", headers=ws.headers)
    assert refused.status_code == 409 and refused.json()["error"] == "legal_hold", refused.text
    released = await api.post(
        f"/api/v1/legal-holds/{hold.json()['id']}/release",
        json={"reason": "case closed"},
        headers=ws.headers,
    )
    assert released.status_code == 200, released.text

    erased = await api.post(
        f"/api/v1/subjects/{subject}/erase", json={"reason": "GDPR art. 17"}, headers=ws.headers
    )
    assert erased.status_code == 200, erased.text
    doc = erased.json()
    assert doc["events"] == 6 and doc["enrichment"] == "dropped" and len(doc["keys"]) == 1
    # The receipt is the log's signed statement, checked with the public key alone.
    verifier = (await api.get("/api/v1/log-key", headers=ws.headers)).json()["verifier_key"]
    receipt = logkey.open_erasure_receipt(doc["receipt"], verifier)
    assert (receipt.subject, receipt.events, receipt.keys) == (subject, 6, tuple(doc["keys"]))
    assert receipt.admin_event == doc["admin_event_id"]
    again = await api.post(f"/api/v1/subjects/{subject}/erase", headers=ws.headers)
    assert again.status_code == 404

    # Nothing of the subject reads any more; the other subject is untouched.
    for e in await _by_actor(api, ws, subject):
        assert set(e["personal"].values()) == {"[erased]"}
        assert e["ip_country"] is None and e["ip_city"] is None
    for e in await _by_actor(api, ws, other):
        assert e["personal"]["actor_name"] == f"Name {kept}" and e["ip_country"] == "SE"

    # The erasure is an admin event; the chain verifies, the new event included.
    await settle(admin_db, ws.id, [doc["admin_event_id"]])
    admin = await api.get(
        "/api/v1/events", params={"action": "admin.subject.erased"}, headers=ws.headers
    )
    (event,) = admin.json()["data"]
    assert event["id"] == doc["admin_event_id"]
    assert event["metadata"]["after"]["events"] == 6 and gone not in str(event["metadata"])
    last = await admin_db.fetchval("SELECT max(seq) FROM events WHERE workspace_id = $1", ws.id)
    v = (await api.get("/api/v1/verify", headers=ws.headers)).json()
    assert v["valid"] is True and v["last_seq"] >= last, v

    # Exports written now verify offline and hold no plaintext of the erased subject.
    files = []
    for fmt in ("csv", "jsonl"):
        done = await export(api, ws, format=fmt)
        path = tmp_path / f"after.{fmt}"
        path.write_bytes(await download(api, ws, done))
        files.append(path)
        data = path.read_bytes()
        assert gone.encode() not in data and b"[erased]" in data
        assert kept.encode() in data  # the other subject reads (the personal column)
        checked = verify_export(path)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    # So does the tenant viewer's CSV (what a customer downloads from the embedded log).
    minted = await api.post(
        "/api/v1/viewer-tokens", json={"tenant_id": "acme", "ttl": 600}, headers=ws.headers
    )
    assert minted.status_code == 201, minted.text
    viewer = {"Authorization": f"Bearer {minted.json()['token']}"}
    r = await api.get("/api/v1/viewer/events.csv", headers=viewer)
    assert r.status_code == 200, r.text
    assert r.content.split(b"\r\n", 1)[0].endswith(b",personal")
    assert gone.encode() not in r.content and b"[erased]" in r.content
    assert kept.encode() in r.content
    shown = tmp_path / "viewer.csv"
    shown.write_bytes(r.content)
    checked = verify_export(shown, extra=("--filtered",))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # Retention archives everything now: the archive verifies and holds no plaintext.
    await admin_db.execute(
        "UPDATE workspaces SET limits_override = '{\"retention_days\": 0}' WHERE id = $1", ws.id
    )
    runs = _cli(env, "retention", "run", "--workspace", ws.id)
    archives = [settings.storage_dir / a["key"] for a in runs[0]["archives"]]
    assert archives and all(gone.encode() not in f.read_bytes() for f in archives)
    offline = verify_export(*archives)
    assert offline.returncode == 0, offline.stdout + offline.stderr

    # No plaintext anywhere: PostgreSQL's tables and WAL, every Kafka topic read back.
    assert await _tables_holding(admin_db, gone, ws.id) == []
    if env.get("CHAINLOG_TEST_INFRA_ACTIVE") != "docker":
        assert await _wal_holding(admin_db, gone.encode()) == []
    assert await _kafka_holding(settings, [gone.encode(), kept.encode()]) == []

    # The subject's next event gets a new key, readable until erased in turn.
    new = await ingest(api, ws, _events(subject, "later", 1, GB_IP))
    await settle(admin_db, ws.id, new)
    (latest,) = [e for e in await _by_actor(api, ws, subject) if e["id"] == new[0]]
    assert latest["personal"]["actor_name"] == "Name later"
    assert latest["actor_name"].split(":")[2] not in doc["keys"]
