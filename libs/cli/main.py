"""The ``chainlog`` command: bootstrap and operate a Chainlog installation."""

from __future__ import annotations

import asyncio
import json
import subprocess

import asyncpg
import typer

from libs.common import keys
from libs.common.db import migrate
from libs.common.settings import REPO_ROOT, Settings
from libs.common.topics import ensure_topics

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


@workspace.command("create")
def workspace_create(
    name: str,
    owner_email: str = typer.Option(
        "", help="The owner's address: alert email goes to owners and admins."
    ),
) -> None:
    """Create a workspace; prints its id and an API key with every scope (shown once)."""

    async def run() -> tuple[str, keys.NewKey]:
        conn = await asyncpg.connect(Settings.from_env().database_admin_url)
        try:
            async with conn.transaction():
                workspace_id, key = await keys.create_workspace(conn, name)
                if owner_email:
                    await conn.execute(
                        "INSERT INTO workspace_members (workspace_id, email, role)"
                        " VALUES ($1, $2, 'owner')",
                        workspace_id,
                        owner_email,
                    )
            return workspace_id, key
        finally:
            await conn.close()

    workspace_id, key = asyncio.run(run())
    typer.echo(json.dumps({"workspace_id": workspace_id, "api_key": key.key}))


@app.command("status")
def status() -> None:
    """What runs of the local stack: broker, database, services."""
    script = REPO_ROOT / "deploy" / "local" / "services.sh"
    raise typer.Exit(subprocess.call(["bash", str(script), "status"]))


if __name__ == "__main__":
    app()
