"""The web console and the tenant viewer in a real browser (headless Chromium), end to end.

Each test signs in with a fresh workspace's key and drives the pages the way a
person would, by role and label; what the pages show is checked against the
API. With ``CHAINLOG_UPDATE_SCREENSHOTS=1`` the main pages are also written to
``docs/images/console-*.png``; otherwise nothing is written.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from tests.conftest import Workspace, settle
from tests.stack import REPO, wait_until

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = os.environ.get("CHAINLOG_UPDATE_SCREENSHOTS") == "1"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (make test installs it)"
    ),
]

# The whole stack shares two cores with the browser: be patient with the page.
expect.set_options(timeout=20_000)

EVENTS: list[dict[str, Any]] = [
    {
        "actor_id": "u_ada",
        "actor_name": "Ada",
        "action": "auth.login",
        "tenant_id": "acme",
        "session_id": "s-ada-1",
        "ip_address": "81.2.69.160",
    },
    {
        "actor_id": "u_ada",
        "actor_name": "Ada",
        "action": "document.create",
        "tenant_id": "acme",
        "session_id": "s-ada-1",
        "resource": "document",
        "resource_id": "doc_1",
        "metadata": {"title": "Q3 report"},
    },
    {
        "actor_id": "u_ada",
        "actor_name": "Ada",
        "action": "document.delete",
        "tenant_id": "acme",
        "session_id": "s-ada-1",
        "resource": "document",
        "resource_id": "doc_1",
        "targets": [{"type": "folder", "id": "f_9"}],
    },
    {
        "actor_id": "u_bob",
        "action": "auth.login",
        "tenant_id": "globex",
        "ip_address": "90.84.200.7",
    },
    {
        "actor_id": "u_bob",
        "action": "document.update",
        "tenant_id": "globex",
        "resource": "document",
        "resource_id": "doc_2",
    },
    {
        "actor_id": "u_bob",
        "action": "billing.invoice.pay",
        "tenant_id": "globex",
        "metadata": {"amount": 120},
    },
]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser, api: httpx.AsyncClient) -> AsyncIterator[Page]:
    """A fresh browser context on the test gateway; fails on script errors and CSP refusals."""
    context = await browser.new_context(
        base_url=str(api.base_url).rstrip("/"),
        viewport={"width": 1280, "height": 800},
        accept_downloads=True,
    )
    context.set_default_timeout(30_000)
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A refused request (the 422s and 403s these tests ask for) is logged
        # by the browser as a failed resource; anything else is a defect.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    context.on("console", on_console)
    context.on("weberror", lambda error: problems.append(f"uncaught: {error.error}"))
    p = await context.new_page()
    yield p
    await context.close()
    assert problems == [], problems


async def shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        # without the passing status message in the corner
        await page.evaluate("document.getElementById('status').textContent = ''")
        await page.screenshot(path=REPO / "docs" / "images" / f"console-{name}.png")


async def ingest(api: httpx.AsyncClient, admin_db: asyncpg.Pool, ws: Workspace) -> list[str]:
    r = await api.post("/api/v1/events/batch", json={"events": EVENTS}, headers=ws.headers)
    assert r.status_code == 202, r.text
    ids = [x["id"] for x in r.json()["results"]]
    await settle(admin_db, ws.id, ids)
    return ids


async def sign_in(page: Page, ws: Workspace) -> None:
    await page.goto("/console")
    await page.get_by_label("API key").fill(ws.key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Home", level=1)).to_be_visible()
    await expect(page.get_by_role("banner")).to_contain_text("Enterprise plan")


async def go(page: Page, link: str) -> None:
    nav = page.get_by_role("navigation", name="Console")
    await nav.get_by_role("link", name=link, exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(link)


async def one_event(api: httpx.AsyncClient, ws: Workspace, action: str) -> dict[str, Any]:
    r = await api.get("/api/v1/events", params={"action": action}, headers=ws.headers)
    assert r.status_code == 200, r.text
    (event,) = r.json()["data"]
    return event  # type: ignore[no-any-return]


async def test_explore_verify_and_find_a_tampered_event(
    page: Page, api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    await ingest(api, admin_db, workspace)
    await sign_in(page, workspace)
    # the key lives in this tab's sessionStorage only
    assert await page.evaluate("sessionStorage.getItem('chainlog.apiKey')") == workspace.key
    assert await page.evaluate("localStorage.length") == 0
    assert await page.context.cookies() == []
    chart = page.get_by_role("img", name=re.compile("Events per hour"))
    await expect(chart).to_be_visible()
    await shot(page, "home")

    # filter by an action wildcard: only matching rows, and the filter is in the URL
    await go(page, "Events")
    await page.get_by_label("Action", exact=True).fill("document.*")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page).to_have_url(re.compile(r"#/events\?action=document\.\*$"))
    table = page.get_by_role("table", name="Events, newest first")
    expected = ["document.update", "document.delete", "document.create"]
    await expect(table.get_by_role("link")).to_have_text(expected)
    await page.reload()  # a shared or reloaded view shows the same
    await expect(page.get_by_label("Action", exact=True)).to_have_value("document.*")
    await expect(table.get_by_role("link")).to_have_text(expected)
    await shot(page, "explorer")

    # one event: its place in the chain is shown in full
    deleted = await one_event(api, workspace, "document.delete")
    await table.get_by_role("link", name="document.delete", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Event document.delete")
    chain = page.get_by_role("region", name="Position in the hash chain")
    for value in (str(deleted["seq"]), deleted["hash"], deleted["prev_hash"]):
        await expect(chain).to_contain_text(value)
    await shot(page, "event")

    # the session, oldest first
    await page.get_by_role("link", name="Session timeline", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Session s-ada-1")
    timeline = page.get_by_role("list").filter(has=page.get_by_role("link", name="auth.login"))
    await expect(timeline.get_by_role("link")).to_have_text(
        ["auth.login", "document.create", "document.delete"]
    )

    await go(page, "Integrity")
    await page.get_by_role("button", name="Run verification").click()
    await expect(page.get_by_text(re.compile(r"^✓ Valid"))).to_be_visible()
    await shot(page, "integrity")

    # an insider rewrites one stored event; the next run names it by seq
    async with admin_db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # triggers off
        await conn.execute(
            "UPDATE events SET body = convert_to(replace(convert_from(body, 'UTF8'),"
            " 'document.delete', 'document.archive'), 'UTF8') WHERE workspace_id = $1 AND seq = $2",
            workspace.id,
            deleted["seq"],
        )
    await page.get_by_role("button", name="Run verification").click()
    await expect(page.get_by_text(re.compile(r"^✗ Not valid: 1 break"))).to_be_visible()
    breaks = page.get_by_role("table", name="Breaks in the chain")
    row = breaks.get_by_role("row").filter(has_text="hash_mismatch")
    await expect(row.get_by_role("cell").first).to_have_text(str(deleted["seq"]))
    await row.get_by_role("link", name=f"Open event {deleted['seq']}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Event document.archive")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API key")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_alert_rules_are_checked_in_the_browser_and_by_the_api(
    page: Page, api: httpx.AsyncClient, workspace: Workspace
) -> None:
    await sign_in(page, workspace)
    await go(page, "Alerts")
    name = page.get_by_label("Name", exact=True)
    threshold = page.get_by_label("Threshold")
    create = page.get_by_role("button", name="Create rule")
    await name.fill("Mass deletion")
    await create.click()  # refused in the browser: nothing is sent
    await expect(threshold).to_have_accessible_description(re.compile("Threshold is required"))
    await threshold.fill("0")
    await create.click()
    await expect(threshold).to_have_accessible_description(re.compile("between 1 and 1000000"))

    # a value only the API can judge: its 422 is shown next to the field it names
    await page.get_by_label("Rule type").select_option("off_hours")
    await page.get_by_label("Working hours start").fill("09:00")
    await page.get_by_label("Working hours end").fill("18:00")
    zone = page.get_by_label("Time zone")
    await zone.fill("Mars/Olympus_Mons")
    await create.click()
    await expect(zone).to_have_accessible_description(re.compile("IANA time zone"))
    await expect(zone).to_have_attribute("aria-invalid", "true")
    rules = (await api.get("/api/v1/alert-rules", headers=workspace.headers)).json()["data"]
    assert [r["rule_type"] for r in rules] == ["chain_integrity"]

    await page.get_by_label("Rule type").select_option("high_volume_destructive")
    await threshold.fill("20")
    await create.click()
    listed = page.get_by_role("table", name="Alert rules")
    await expect(listed.get_by_role("row", name=re.compile("^Mass deletion"))).to_contain_text(
        "threshold: 20"
    )
    await shot(page, "alerts")
    rules = (await api.get("/api/v1/alert-rules", headers=workspace.headers)).json()["data"]
    (rule,) = [r for r in rules if r["name"] == "Mass deletion"]
    assert rule["rule_type"] == "high_volume_destructive"
    assert rule["conditions"]["threshold"] == 20 and rule["enabled"] is True

    # a key without the admin scope gets a clear refusal, not a broken page
    r = await api.post(
        "/api/v1/api-keys",
        json={"name": "reader", "scopes": ["read"]},
        headers=workspace.headers,
    )
    assert r.status_code == 201, r.text
    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page, Workspace(workspace.id, r.json()["key"]))
    await page.goto("/console#/settings/keys")
    await expect(page.get_by_role("alert")).to_contain_text("lacks the 'admin' scope")


async def test_an_export_downloads_with_the_sha256_of_its_record(
    page: Page, api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    await ingest(api, admin_db, workspace)
    await sign_in(page, workspace)
    await go(page, "Exports")
    await page.get_by_label("Format").select_option("jsonl")
    await page.get_by_label("Action", exact=True).fill("document.*")
    await page.get_by_role("button", name="Request export").click()

    async def completed() -> dict[str, Any] | None:
        r = await api.get("/api/v1/exports", headers=workspace.headers)
        done = [x for x in r.json()["data"] if x["status"] == "completed"]
        return done[0] if done else None

    record = await wait_until(completed, within=120, what="the export to complete")
    assert record is not None  # (wait_until returns only a truthy value)
    assert record["format"] == "jsonl" and record["filters"] == {"action": "document.*"}
    # the page follows the export by itself until it can be downloaded
    button = page.get_by_role("button", name=f"Download export {record['id']}")
    await expect(button).to_be_visible(timeout=60_000)
    await shot(page, "exports")
    async with page.expect_download() as info:
        await button.click()
    download = await info.value
    data = await asyncio.to_thread(Path(await download.path()).read_bytes)
    assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert download.suggested_filename == f"chainlog-export-{record['id']}.jsonl"
    assert len(data.splitlines()) == record["total_rows"] == 3
    await expect(page.get_by_text("its SHA-256 matches the record")).to_be_visible()


async def test_a_viewer_link_shows_one_tenant_only(
    page: Page, api: httpx.AsyncClient, admin_db: asyncpg.Pool, workspace: Workspace
) -> None:
    await ingest(api, admin_db, workspace)
    await sign_in(page, workspace)
    await go(page, "Viewer links")
    await page.get_by_label("Tenant ID").fill("acme")
    await page.get_by_label("Valid for (seconds)").fill("600")
    await page.get_by_role("button", name="Create viewer link").click()
    panel = page.get_by_role("region", name="Viewer link for tenant acme")
    await expect(panel).to_contain_text('<iframe src="')
    url = await panel.get_by_role("link", name="Open the viewer").get_attribute("href")
    assert url is not None and urlsplit(url).path == "/viewer"
    token = parse_qs(urlsplit(url).query)["token"][0]

    viewer = await page.context.new_page()
    await viewer.goto(url)
    acme = ["document.delete", "document.create", "auth.login"]
    rows = viewer.get_by_role("table", name="Events, newest first").get_by_role("button")
    await expect(rows).to_have_text(acme)
    await expect(viewer.get_by_text("tenant acme")).to_be_visible()
    await shot(viewer, "viewer")

    await viewer.get_by_role("button", name="document.delete", exact=True).click()
    await expect(viewer.get_by_text("Previous hash")).to_be_visible()
    await viewer.get_by_role("button", name="← Back to the list").click()

    async with viewer.expect_download() as info:
        await viewer.get_by_role("button", name="Download CSV").click()
    text = await asyncio.to_thread(Path(await (await info.value).path()).read_text)
    rows_csv = list(csv.DictReader(io.StringIO(text)))
    assert [r["action"] for r in rows_csv] == acme[::-1]
    assert {r["tenant_id"] for r in rows_csv} == {"acme"}

    # no filter widens it: the API refuses another tenant, and the page ignores one in its URL
    other = await api.get(
        "/api/v1/viewer/events",
        params={"tenant_id": "globex"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert other.status_code == 403, other.text
    await viewer.goto(f"{url}&tenant_id=globex")
    await expect(rows).to_have_text(acme)

    # a token that is not one the gateway signed is a notice, not a broken page
    await viewer.goto("/viewer?token=vt1.e30.forged")
    await expect(viewer.get_by_role("alert")).to_contain_text("This link cannot be used")
