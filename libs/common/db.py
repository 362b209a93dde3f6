"""PostgreSQL: connection pools and the migration runner.

Migrations run as the database superuser (``CHAINLOG_DATABASE_ADMIN_URL``);
services connect as ``chainlog_app``, which may insert and read events but
holds no UPDATE, DELETE or TRUNCATE privilege on them.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

#: Errors that mean "the database is not reachable right now": retry or
#: answer 503, never a 500 and never a crash.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    # asyncpg raises this when it resets a pooled connection that broke in
    # the middle of a query (seen when PostgreSQL restarts under load).
    asyncpg.InternalClientError,
)

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x636861696E6C6F67  # "chainlog": one migrator at a time


async def connect_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, command_timeout=60)


async def migrate(admin_url: str) -> list[str]:
    """Apply pending migrations in order; returns those applied."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        applied = []
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
            applied.append(path.name)
        return applied
    finally:
        await conn.close()
