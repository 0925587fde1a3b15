"""Operator tasks on a PostgreSQL database: status and upgrade (what ``promptly db`` does for
a SQLite file, ``bot.store.maintenance``).

Backups are PostgreSQL's own tools: ``pg_dump --format=custom`` takes one consistent snapshot
while gateways keep writing; ``pg_restore --clean --single-transaction`` with Promptly stopped
puts it back, and ``upgrade`` then brings it to this code's schema.
"""

from __future__ import annotations

import asyncpg

from bot.errors import StorageError
from bot.store.common import SCHEMA_VERSION
from bot.store.maintenance import COUNTED, Status
from bot.store.postgres import PostgresStore, connect_error, redacted


async def status(url: str) -> Status:
    """What the database holds; ``StorageError`` when it is not a Promptly database."""
    try:
        conn = await asyncpg.connect(url)
    except (OSError, TimeoutError, asyncpg.PostgresError) as e:
        raise connect_error(url, e) from e
    try:
        if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
            raise StorageError(f"{redacted(url)}: not a Promptly database (no schema_version)")
        version = await conn.fetchval("SELECT coalesce(max(version), 1) FROM schema_version")
        tables = {
            row[0]
            for row in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        }
        rows = {
            table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
            for table in COUNTED
            if table in tables
        }
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    return Status(redacted(url), int(version), SCHEMA_VERSION, int(size), rows)


async def upgrade(url: str) -> tuple[int | None, Status]:
    """Create or migrate the schema; returns the version it had (None: there was none)."""
    try:
        before: int | None = (await status(url)).schema_version
    except StorageError as e:
        if "not a Promptly database" not in str(e):
            raise
        before = None
    await (await PostgresStore.open(url)).close()
    return before, await status(url)
