"""The ``chainlog`` command: bootstrap and operate a Chainlog installation."""

from __future__ import annotations

import asyncio
import json
import runpy
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import typer

from libs.common import errors, kafka, keys, proofcheck
from libs.common.db import migrate
from libs.common.logs import Logger
from libs.common.plans import effective, load_plans
from libs.common.settings import REPO_ROOT, Settings
from libs.common.topics import ensure_topics
from services.ingest import manage
from services.ingest.accept import Acceptor
from services.ingest.adminlog import Actor, AdminLog
from services.ingest.manage import Change

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
workspace = typer.Typer(no_args_is_help=True, help="Workspaces.")
app.add_typer(workspace, name="workspace")


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply pending database migrations (as the database superuser)."""
    applied = asyncio.run(migrate(Settings.from_env().database_admin_url))
    typer.echo(json.dumps({"applied": applied}))


@app.command("topics")
def topics_cmd() -> None:
    """Create the Kafka topics that are missing."""
    settings = Settings.from_env()
    created = asyncio.run(
        ensure_topics(settings.kafka_bootstrap, settings.partitions, settings.topics)
    )
    typer.echo(json.dumps({"created": created, "partitions": settings.partitions}))


async def _as_operator(
    workspace_id: str | None,
    action: str,
    op: Callable[[asyncpg.Connection], Awaitable[tuple[str, Change]]],
) -> Change:
    """Run ``op`` on the database as the operator, with its admin event.

    The event goes through Kafka into the workspace's own chain, before the
    database transaction commits (see services/ingest/adminlog.py).
    """
    settings = Settings.from_env()
    pool = await asyncpg.create_pool(settings.database_admin_url, min_size=1, max_size=2)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        log = AdminLog(Acceptor(producer, pool, settings.topics.raw))
        async with pool.acquire() as conn, conn.transaction():
            target, done = await op(conn)
            await log.record(
                target,
                Actor(id="operator:cli", type="operator"),
                action,
                "workspace",
                done.resource_id,
                before=done.before,
                after=done.after,
            )
        return done
    finally:
        await producer.stop()
        await pool.close()


@workspace.command("create")
def workspace_create(
    name: str,
    owner_email: str = typer.Option(
        "", help="The owner's address: alert email goes to owners and admins."
    ),
    plan: str = typer.Option(
        "free", help="free, starter, pro or enterprise (libs/common/plans.toml)."
    ),
) -> None:
    """Create a workspace; prints its id and an API key with every scope (shown once).

    The workspace's chain starts with the admin event of its creation.
    """
    plans = load_plans(Settings.from_env().plans_file)
    if plan not in plans:
        raise typer.BadParameter(f"plan must be one of: {', '.join(plans)}", param_hint="--plan")
    created: dict[str, str] = {}

    async def op(conn: asyncpg.Connection) -> tuple[str, Change]:
        workspace_id, key = await keys.create_workspace(conn, name, plan)
        if owner_email:
            await conn.execute(
                "INSERT INTO workspace_members (workspace_id, email, role)"
                " VALUES ($1, $2, 'owner')",
                workspace_id,
                owner_email.lower(),
            )
        created.update(workspace_id=workspace_id, api_key=key.key)
        after = {
            "name": name,
            "plan": plan,
            "owner": owner_email or None,
            "api_key_prefix": key.prefix,
        }
        return workspace_id, Change(None, workspace_id, after=after)

    asyncio.run(_as_operator(None, "workspace.created", op))
    typer.echo(json.dumps(created))


@workspace.command("show")
def workspace_show(workspace_id: str) -> None:
    """A workspace: name, plan and its limits, schema mode, members, keys (prefixes only)."""

    async def run() -> dict[str, object]:
        settings = Settings.from_env()
        plans = load_plans(settings.plans_file)
        conn = await asyncpg.connect(settings.database_admin_url)
        try:
            row = await conn.fetchrow(
                "SELECT plan, limits_override FROM workspaces WHERE id = $1", workspace_id
            )
            if row is None:
                raise typer.BadParameter(f"no workspace {workspace_id}")
            plan = plans.get(row["plan"]) or plans["free"]
            if row["limits_override"]:
                plan = effective(plan, json.loads(row["limits_override"]))
            doc = await manage.workspace_document(conn, workspace_id, plan)
            members = await conn.fetch(
                "SELECT email, role, created_at FROM workspace_members WHERE workspace_id = $1"
                " ORDER BY created_at",
                workspace_id,
            )
            api_keys = await conn.fetch(
                f"SELECT {manage.KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1"
                " ORDER BY created_at",
                workspace_id,
            )
            doc["members"] = [manage.render_member(m) for m in members]
            doc["api_keys"] = [manage.render_key(k) for k in api_keys]
            return doc
        finally:
            await conn.close()

    typer.echo(json.dumps(asyncio.run(run()), indent=2))


@workspace.command("set-plan")
def workspace_set_plan(workspace_id: str, plan: str) -> None:
    """Move a workspace to another plan (an admin event in its chain)."""
    plans = load_plans(Settings.from_env().plans_file)

    async def op(conn: asyncpg.Connection) -> tuple[str, Change]:
        return workspace_id, await manage.set_plan(conn, workspace_id, plan, plans)

    try:
        done = asyncio.run(_as_operator(workspace_id, "workspace.plan_changed", op))
    except errors.ApiError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(done.result))


# -- through the API: keys and members ------------------------------------------

keys_cli = typer.Typer(no_args_is_help=True, help="API keys (through the API, admin key).")
members_cli = typer.Typer(no_args_is_help=True, help="Team members (through the API, admin key).")
app.add_typer(keys_cli, name="keys")
app.add_typer(members_cli, name="members")

API_URL = typer.Option(
    "http://127.0.0.1:8080", envvar="CHAINLOG_API_URL", help="The gateway (CHAINLOG_API_URL)."
)
API_KEY = typer.Option(
    ...,
    envvar="CHAINLOG_API_KEY",
    help="An admin-scoped key (CHAINLOG_API_KEY).",
    show_default=False,
)


def _api(method: str, url: str, key: str, path: str, body: object = None) -> object:
    """One API call; prints the error and exits 1 when it is refused."""
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})
    if r.status_code >= 400:
        typer.echo(f"{r.status_code}: {r.text}", err=True)
        raise typer.Exit(1)
    return None if r.status_code == 204 else r.json()


def _show(doc: object) -> None:
    if doc is not None:
        typer.echo(json.dumps(doc, indent=2))


@keys_cli.command("create")
def keys_create(
    name: str,
    scopes: str = typer.Option(
        "ingest", help="Comma-separated: ingest, read, admin; or auditor alone."
    ),
    api_url: str = API_URL,
    api_key: str = API_KEY,
) -> None:
    """Create a key; prints it once (it is stored only as a hash)."""
    body = {"name": name, "scopes": [s.strip() for s in scopes.split(",") if s.strip()]}
    _show(_api("POST", api_url, api_key, "/api/v1/api-keys", body))


@keys_cli.command("list")
def keys_list(api_url: str = API_URL, api_key: str = API_KEY) -> None:
    """Keys with prefix, scopes, created, last used and revoked times."""
    _show(_api("GET", api_url, api_key, "/api/v1/api-keys"))


@keys_cli.command("revoke")
def keys_revoke(key_id: str, api_url: str = API_URL, api_key: str = API_KEY) -> None:
    """Revoke a key: refused everywhere within CHAINLOG_KEY_CACHE_SECONDS."""
    _api("DELETE", api_url, api_key, f"/api/v1/api-keys/{key_id}")


@members_cli.command("list")
def members_list(api_url: str = API_URL, api_key: str = API_KEY) -> None:
    """Members and their roles."""
    _show(_api("GET", api_url, api_key, "/api/v1/members"))


@members_cli.command("add")
def members_add(
    email: str,
    role: str = typer.Option("viewer", help="owner, admin or viewer."),
    api_url: str = API_URL,
    api_key: str = API_KEY,
) -> None:
    """Add a member."""
    _show(_api("POST", api_url, api_key, "/api/v1/members", {"email": email, "role": role}))


@members_cli.command("set-role")
def members_set_role(email: str, role: str, api_url: str = API_URL, api_key: str = API_KEY) -> None:
    """Change a member's role (a workspace always keeps one owner)."""
    _show(_api("PATCH", api_url, api_key, f"/api/v1/members/{email}", {"role": role}))


@members_cli.command("remove")
def members_remove(email: str, api_url: str = API_URL, api_key: str = API_KEY) -> None:
    """Remove a member (not the last owner)."""
    _api("DELETE", api_url, api_key, f"/api/v1/members/{email}")


# -- verification and retention (issue 6) ---------------------------------------


@app.command("verify")
def verify_cmd(
    from_seq: int = typer.Option(None, "--from-seq", help="First seq to check."),
    to_seq: int = typer.Option(None, "--to-seq", help="Last seq to check."),
    as_json: bool = typer.Option(False, "--json", help="Print the API's answer as JSON."),
    checkpoints: str = typer.Option(
        None,
        "--checkpoints",
        help="A checkpoint you kept: also check the latest extends it, and keep that one.",
    ),
    key: str = typer.Option(
        None,
        "--key",
        envvar="CHAINLOG_LOG_KEY",
        help="The log's verifier key or its file, for --checkpoints (CHAINLOG_LOG_KEY).",
    ),
    api_url: str = API_URL,
    api_key: str = typer.Option(
        ...,
        envvar="CHAINLOG_API_KEY",
        help="A read-scoped key (CHAINLOG_API_KEY).",
        show_default=False,
    ),
) -> None:
    """Verify the workspace's chain through the API: exit 0 when valid, 1 with the breaks.

    With --checkpoints FILE (and --key) the latest signed checkpoint must also
    be a consistent extension of the one in FILE, which is then replaced by it
    (verify-proof consistency --old FILE --save FILE): exit 1 if either fails.
    """
    if checkpoints is not None and key is None:
        raise _proof_usage(as_json, "missing_option", "--checkpoints needs --key")
    params: dict[str, str | int] = {
        k: v for k, v in (("from_seq", from_seq), ("to_seq", to_seq)) if v is not None
    }
    try:
        doc: dict[str, Any] = _proof_api(api_url, api_key, "/api/v1/verify", params, timeout=600)
    except ProofApiError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        state = "VALID" if doc["valid"] else "BROKEN"
        typer.echo(
            f"{state}: {doc['events_checked']} events checked,"
            f" seq {doc['first_seq']} to {doc['last_seq']}, head {doc['head_hash']}"
        )
        if doc.get("anchor"):
            a = doc["anchor"]
            typer.echo(f"starts after the retention anchor: seq {a['seq']}, hash {a['hash']}")
        for b in doc["breaks"]:
            typer.echo(
                f"  {b['type']} at seq {b['seq']} (event {b['event_id']}):"
                f" expected {b['expected_hash']}, found {b['actual_hash']}"
            )
        if doc.get("breaks_truncated"):
            typer.echo("  (more breaks not shown)")
    ok = bool(doc["valid"])
    if checkpoints is not None:
        result = _check_latest(checkpoints, key, checkpoints, None, as_json, api_url, api_key)
        typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.report())
        ok = ok and result.ok
    raise typer.Exit(0 if ok else 1)


retention_cli = typer.Typer(no_args_is_help=True, help="Retention and archives.")
app.add_typer(retention_cli, name="retention")


@retention_cli.command("run")
def retention_run(
    workspace_id: str = typer.Option(None, "--workspace", help="Only this workspace."),
) -> None:
    """Archive and remove what the plans no longer keep, now (the exporter does it daily)."""
    from libs.common import storage
    from libs.common.db import connect_pool
    from services.exporter.retention import Retention

    async def run() -> list[dict[str, object]]:
        settings = Settings.from_env()
        pool = await connect_pool(settings.database_url, max_size=2)
        producer = kafka.producer(settings)
        await producer.start()
        try:
            retention = Retention(
                settings,
                Logger("retention"),
                storage.from_settings(settings),
                pool,
                AdminLog(Acceptor(producer, pool, settings.topics.raw)),
                load_plans(settings.plans_file),
            )
            return await retention.run_all(only=workspace_id)
        finally:
            await producer.stop()
            await pool.close()

    typer.echo(json.dumps(asyncio.run(run()), indent=2))


SERVICES = ("ingest", "chainer", "enricher", "exporter", "alerter", "streamer")


@app.command("serve")
def serve(service: str) -> None:
    """Run one service in the foreground (what the container images do)."""
    if service not in SERVICES:
        raise typer.BadParameter(f"service must be one of: {', '.join(SERVICES)}")
    runpy.run_module(f"services.{service}", run_name="__main__", alter_sys=True)


#: Where each service answers /readyz by default (CHAINLOG_METRICS_PORT, API port).
READY_PORTS = {
    "chainer": 9101,
    "exporter": 9102,
    "enricher": 9103,
    "alerter": 9104,
    "streamer": 9105,
}
STREAM_LAG = """
SELECT coalesce(sum(GREATEST(0, (SELECT max(seq) FROM events e WHERE e.workspace_id = s.workspace_id)
                                - c.last_seq)), 0)
FROM log_streams s JOIN log_stream_cursors c ON c.stream_id = s.id
WHERE s.enabled AND s.deleted_at IS NULL
"""


async def _health_table(settings: Settings) -> list[tuple[str, str, str]]:
    """(service, readiness, lag) for each service, as a person reads them."""
    names = settings.topics
    inputs = {
        "chainer": names.raw,
        "enricher": names.chained,
        "exporter": names.enriched,
        "alerter": names.enriched,
    }
    ports = {**READY_PORTS, "ingest": settings.api_port}
    rows = []
    async with httpx.AsyncClient(timeout=3) as http:
        for service in SERVICES:
            try:
                r = await http.get(f"http://127.0.0.1:{ports[service]}/readyz")
                doc = r.json()
                ready = (
                    "ready"
                    if r.status_code == 200
                    else "NOT READY: "
                    + ", ".join(f"{k} {v}" for k, v in doc.items() if k != "status" and v != "up")
                )
            except (httpx.HTTPError, ValueError):
                ready = "no answer"
            lag = "-"
            if service in inputs:
                n = await kafka.group_lag(
                    settings,
                    inputs[service],
                    names.group(service),
                    transactional=inputs[service] == names.chained,
                )
                lag = "?" if n is None else f"{n} records"
            elif service == "streamer":
                try:
                    conn = await asyncpg.connect(settings.database_admin_url, timeout=3)
                    try:
                        lag = f"{await conn.fetchval(STREAM_LAG)} events"
                    finally:
                        await conn.close()
                except (OSError, asyncpg.PostgresError):
                    lag = "?"
            rows.append((service, ready, lag))
    return rows


@app.command("status")
def status() -> None:
    """What runs of the local stack, and each service's readiness and backlog."""
    script = REPO_ROOT / "deploy" / "local" / "services.sh"
    code = subprocess.call(["bash", str(script), "status"])
    rows = asyncio.run(_health_table(Settings.from_env()))
    widths = [
        max(len(r[i]) for r in [("service", "readiness", "backlog"), *rows]) for i in range(3)
    ]
    typer.echo("")
    for row in [("service", "readiness", "backlog"), *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    raise typer.Exit(code)


# -- offline verification of export and archive files (issue 6) -----------------


EXPORT_FILES = typer.Argument(
    ...,
    metavar="FILE...",
    help="CSV or JSON Lines files, plain or .gz, in seq order: archives, then exports.",
)


@app.command("verify-export")
def verify_export_cmd(
    files: list[str] = EXPORT_FILES,
    filtered: bool = typer.Option(
        False, "--filtered", help="A filtered export: seq jumps are expected gaps, not breaks."
    ),
    anchor: str = typer.Option(
        None,
        "--anchor",
        help="SEQ:HASH of the event just before the first file's first row, or the retention"
        " anchor: rows at or below it are held islands (docs/legal-holds.md).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    max_breaks: int = typer.Option(100, "--max-breaks", min=1, help="Breaks listed at most."),
) -> None:
    """Verify export and archive files offline, as one chain: exit 0 valid, 1 breaks, 2 usage."""
    from pathlib import Path

    from libs.common import exportverify

    def usage(code: str, message: str) -> typer.Exit:
        typer.echo(
            json.dumps({"error": code, "message": message}) if as_json else message, err=True
        )
        return typer.Exit(2)

    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise usage("file_not_found", f"no such file: {', '.join(missing)}")
    try:
        start = exportverify.Anchor.parse(anchor) if anchor is not None else None
    except ValueError as exc:
        raise usage("invalid_anchor", str(exc)) from None
    try:
        result = exportverify.verify_export(
            files, complete=not filtered, anchor=start, max_breaks=max_breaks
        )
    except exportverify.NotAnExport as exc:
        raise usage("unknown_format", str(exc)) from None
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.report())
    raise typer.Exit(0 if result.valid else 1)


# -- proofs (issue 7) -----------------------------------------------------------
# Checks of the log's signed checkpoints and Merkle proofs (docs/proofs.md):
# the API serves notes and proofs, libs/common/proofcheck.py decides, with the
# key the user pinned. Only _proof_api touches the network.

proofs_cli = typer.Typer(
    no_args_is_help=True,
    help="Check the log's signed checkpoints and Merkle proofs against a pinned key.",
)
app.add_typer(proofs_cli, name="verify-proof")

READ_KEY = typer.Option(
    ...,
    envvar="CHAINLOG_API_KEY",
    help="A read-scoped key (CHAINLOG_API_KEY).",
    show_default=False,
)
LOG_KEY = typer.Option(
    ...,
    "--key",
    envvar="CHAINLOG_LOG_KEY",
    help="The log's verifier key, or a file holding it (CHAINLOG_LOG_KEY); see log-key.",
    show_default=False,
)
ORIGIN = typer.Option(
    None, "--origin", help="The log's origin to require, e.g. chainlog.local/<workspace_id>."
)
AS_JSON = typer.Option(False, "--json", help="Print the result as JSON.")


class ProofApiError(Exception):
    """The API could not be reached, refused, or answered something unreadable."""


def _proof_api(
    api_url: str,
    api_key: str,
    path: str,
    params: dict[str, str | int] | None = None,
    *,
    timeout: float = 60,
) -> dict[str, Any]:
    """GET one JSON object from the API; raises ProofApiError. Tests replace it."""
    try:
        with httpx.Client(base_url=api_url, timeout=timeout) as http:
            r = http.get(path, params=params, headers={"Authorization": f"Bearer {api_key}"})
    except httpx.HTTPError as exc:
        raise ProofApiError(f"GET {path}: {exc}") from None
    if r.status_code >= 400:
        raise ProofApiError(f"GET {path}: {r.status_code}: {r.text}")
    try:
        doc = r.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ProofApiError(f"GET {path}: not a JSON object")
    return doc


def _proof_usage(as_json: bool, code: str, message: str) -> typer.Exit:
    typer.echo(json.dumps({"error": code, "message": message}) if as_json else message, err=True)
    return typer.Exit(2)


def _fetch(
    as_json: bool, api_url: str, api_key: str, path: str, **params: str | int
) -> dict[str, object]:
    try:
        return _proof_api(api_url, api_key, path, params or None)
    except ProofApiError as exc:
        raise _proof_usage(as_json, "api_error", str(exc)) from None


def _log_key(value: str, as_json: bool) -> str:
    """The verifier key given, or read from the file it names; exits 2 if malformed."""
    from pathlib import Path

    from libs.common.checkpoint import NoteError, parse_verifier_key

    try:
        if Path(value).is_file():
            value = Path(value).read_text(encoding="utf-8").strip()
    except OSError:  # a key string too long to be a file name
        pass
    try:
        parse_verifier_key(value)
    except NoteError as exc:
        raise _proof_usage(as_json, "invalid_key", f"--key: {exc}") from None
    return value


def _kept_checkpoint(path: str, option: str, key: str, origin: str | None, as_json: bool) -> str:
    """A checkpoint the user kept: one that does not open with the key is a usage error."""
    from pathlib import Path

    try:
        note = Path(path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _proof_usage(as_json, "invalid_checkpoint", f"{option}: {exc}") from None
    kept = proofcheck.check_signed(note, key, origin=origin)
    if not kept.ok:
        raise _proof_usage(as_json, "invalid_checkpoint", f"{option} {path}: {kept.reason}")
    return note


def _save_note(path: str, note: str) -> None:
    """Replace the file in one step: a witness's record is never half written."""
    import os
    from pathlib import Path

    tmp = Path(f"{path}.tmp")
    tmp.write_bytes(note.encode("utf-8"))
    os.replace(tmp, path)


@proofs_cli.command("consistency")
def verify_proof_consistency(
    old: str = typer.Option(None, "--old", help="The checkpoint you kept (a signed note file)."),
    key: str = LOG_KEY,
    save: str = typer.Option(
        None, "--save", help="Write the new checkpoint here once checked (may be --old's file)."
    ),
    origin: str = ORIGIN,
    as_json: bool = AS_JSON,
    api_url: str = API_URL,
    api_key: str = READ_KEY,
) -> None:
    """Check that the API's latest checkpoint extends the one you kept.

    Exit 0 consistent, 1 not (with the reason), 2 usage or API error. Without
    --old, the latest checkpoint's signature is checked and it is written to
    --save: the first entry of a witness's record (trust on first use).
    """
    if old is None and save is None:
        raise _proof_usage(as_json, "missing_option", "give --old, --save or both")
    result = _check_latest(old, key, save, origin, as_json, api_url, api_key)
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.report())
    raise typer.Exit(0 if result.ok else 1)


def _check_latest(
    old: str | None,
    key: str,
    save: str | None,
    origin: str | None,
    as_json: bool,
    api_url: str,
    api_key: str,
) -> proofcheck.Result:
    """The latest checkpoint checked against the kept one (or alone), saved when it holds."""
    vkey = _log_key(key, as_json)
    old_note = _kept_checkpoint(old, "--old", vkey, origin, as_json) if old else None
    new_note = _fetch(as_json, api_url, api_key, "/api/v1/checkpoints/latest").get("checkpoint")
    if not isinstance(new_note, str):
        raise _proof_usage(as_json, "api_error", "the latest checkpoint has no note")
    if old_note is None:
        result = proofcheck.check_signed(new_note, vkey, origin=origin)
    else:
        old_size = proofcheck.check_checkpoint(old_note, vkey).size
        new = proofcheck.check_signed(new_note, vkey).checkpoint
        proof: object = []
        # From the empty tree, to a smaller or an equal size, no proof is needed;
        # a bad note is check_consistency's to report.
        if new is not None and 0 < old_size < new.size:
            path = "/api/v1/proofs/consistency"
            doc = _fetch(as_json, api_url, api_key, path, first=old_size, second=new.size)
            proof = doc.get("proof")
        result = proofcheck.check_consistency(
            old_note,
            new_note,
            proof,  # type: ignore[arg-type]  # as served: decode_proof checks it
            vkey,
            origin=origin,
        )
    if result.ok and save is not None:
        try:
            _save_note(save, new_note)
        except OSError as exc:
            raise _proof_usage(as_json, "save_failed", f"--save: {exc}") from None
    return result


@proofs_cli.command("inclusion")
def verify_proof_inclusion(
    event: str = typer.Option(
        ...,
        "--event",
        help="A file holding the event as the API serves it (JSON), or an event id to fetch.",
    ),
    checkpoint: str = typer.Option(
        ..., "--checkpoint", help="A checkpoint you kept (a signed note file)."
    ),
    key: str = LOG_KEY,
    origin: str = ORIGIN,
    as_json: bool = AS_JSON,
    api_url: str = API_URL,
    api_key: str = READ_KEY,
) -> None:
    """Check that an event, with its body as hashed, is in the tree a kept checkpoint signs.

    Exit 0 included, 1 not (with the reason), 2 usage or API error, or an
    event newer than the checkpoint.
    """
    from pathlib import Path
    from urllib.parse import quote

    vkey = _log_key(key, as_json)
    note = _kept_checkpoint(checkpoint, "--checkpoint", vkey, origin, as_json)
    size = proofcheck.check_checkpoint(note, vkey).size
    doc: object
    if Path(event).is_file():
        try:
            doc = json.loads(Path(event).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _proof_usage(as_json, "invalid_event", f"--event {event}: {exc}") from None
    else:
        doc = _fetch(as_json, api_url, api_key, f"/api/v1/events/{quote(event, safe='')}")
    event_id = doc.get("id") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(event_id, str):
        raise _proof_usage(as_json, "invalid_event", "--event: not an event (no id)")
    seq = doc.get("seq")
    if type(seq) is int and seq > size:
        raise _proof_usage(
            as_json,
            "not_covered",
            f"event seq {seq} is newer than the checkpoint (size {size}):"
            " check a newer one first (verify-proof consistency --save)",
        )
    path = "/api/v1/proofs/inclusion"
    proof = _fetch(as_json, api_url, api_key, path, event_id=event_id, tree_size=size)
    proof_seq = proof.get("seq")
    result = proofcheck.check_inclusion(
        doc,
        proof_seq if type(proof_seq) is int else None,
        proof.get("audit_path"),  # type: ignore[arg-type]  # as served: decode_proof checks it
        note,
        vkey,
        origin=origin,
    )
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.report())
    raise typer.Exit(0 if result.ok else 1)


@app.command("log-key")
def log_key_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the API's whole answer."),
    api_url: str = API_URL,
    api_key: str = READ_KEY,
) -> None:
    """Print the log's verifier key to pin; compare it with one got another way."""
    import base64

    from libs.common.checkpoint import NoteError, parse_verifier_key

    doc = _fetch(as_json, api_url, api_key, "/api/v1/log-key")
    vkey = doc.get("verifier_key")
    try:
        parsed = parse_verifier_key(vkey if isinstance(vkey, str) else "")
    except NoteError as exc:
        raise _proof_usage(as_json, "api_error", f"the API's verifier key: {exc}") from None
    public = doc.get("public_key")
    if public is not None and public != base64.b64encode(parsed.public_key).decode():
        raise _proof_usage(as_json, "api_error", "the API's public_key is not its verifier key's")
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        typer.echo(vkey)
        typer.echo(f"origin: {doc.get('origin')}", err=True)


# -- evidence packs (issue 10) -----------------------------------------------------


@app.command("verify-pack")
def verify_pack_cmd(
    file: str = typer.Argument(..., metavar="FILE.zip", help="An evidence pack, as downloaded."),
    key: str = LOG_KEY,
    as_json: bool = AS_JSON,
) -> None:
    """Verify an evidence pack offline: exit 0 valid, 1 a problem (named), 2 usage.

    The manifest's signature by the log's key, every file's size and SHA-256,
    no file missing or extra, the events' hashes and links, the checkpoints.
    """
    from pathlib import Path

    from libs.common import packverify

    vkey = _log_key(key, as_json)
    if not Path(file).is_file():
        raise _proof_usage(as_json, "file_not_found", f"no such file: {file}")
    result = packverify.verify_pack(file, vkey)
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.report())
    raise typer.Exit(0 if result.valid else 1)


if __name__ == "__main__":
    app()
