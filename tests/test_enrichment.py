"""Geolocation end to end: stored, served, filtered, and outside the hash.

The suite's enricher reads the deterministic database of
tests/geoip_fixture.py, so every expected country and city is known.
"""

from __future__ import annotations

import asyncpg
import httpx

from tests.conftest import Workspace, stored_count
from tests.stack import wait_until

CASES = {
    "81.2.69.160": ("GB", "London"),
    "2a02:ff0:1::1": ("DE", "Berlin"),
    "89.160.20.112": ("SE", None),  # a country without a city
    "10.1.2.3": (None, None),  # private: never looked up
    "1.1.1.1": (None, None),  # public, unknown to the database
}


async def test_events_carry_country_and_city(
    api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    events = [
        {"actor_id": f"u_{i}", "action": "user.login", "ip_address": ip}
        for i, ip in enumerate(CASES)
    ]
    events.append({"actor_id": "u_none", "action": "user.login"})  # no address at all
    r = await api.post("/api/v1/events/batch", json={"events": events}, headers=workspace.headers)
    assert r.status_code == 202, r.text

    async def stored() -> bool:
        return await stored_count(admin_db, workspace.id) == len(events)

    await wait_until(stored, what="the events to be stored")
    got = (await api.get("/api/v1/events", headers=workspace.headers)).json()["data"]
    by_actor = {e["actor_id"]: (e.get("ip_address"), e["ip_country"], e["ip_city"]) for e in got}
    for i, (ip, (country, city)) in enumerate(CASES.items()):
        assert by_actor[f"u_{i}"] == (ip, country, city)
    assert by_actor["u_none"] == (None, None, None)

    r = await api.get("/api/v1/events", params={"ip_country": "de"}, headers=workspace.headers)
    assert [e["actor_id"] for e in r.json()["data"]] == ["u_1"]
    r = await api.get("/api/v1/events", params={"ip_country": "Germany"}, headers=workspace.headers)
    assert r.status_code == 422 and r.json()["violations"][0]["field"] == "ip_country"

    # Derived, so outside the hash: the chain verifies, and rewriting the
    # derived columns (as a GeoIP database update would) does not break it.
    v = (await api.get("/api/v1/verify", headers=workspace.headers)).json()
    assert v["valid"] is True and v["events_checked"] == len(events)
    async with admin_db.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_no_update_delete")
        await conn.execute(
            "UPDATE events SET ip_country = 'FR', ip_city = 'Paris' WHERE workspace_id = $1",
            workspace.id,
        )
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_no_update_delete")
    v = (await api.get("/api/v1/verify", headers=workspace.headers)).json()
    assert v["valid"] is True
