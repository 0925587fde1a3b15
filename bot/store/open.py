"""Open the store ``promptly.toml`` selects: PostgreSQL at ``storage.database_url`` when it is
set (or ``$PROMPTLY_DATABASE_URL``), else the SQLite file ``storage.database``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from bot.settings import Settings

# Either backend: modules that run their own SQL (``run``) have one query per backend.
AnyStore = SQLiteStore | PostgresStore


async def open_store(settings: Settings, owner: str | None = None) -> AnyStore:
    """The configured store, its schema created or migrated to this code's version; on
    PostgreSQL, what this gateway (``owner``) stores to finish is claimed for it, for
    ``[scale] claim_lease`` at a time."""
    url = settings.storage.database_dsn()
    if url is not None:
        return await PostgresStore.open(url, owner=owner, lease=settings.scale.claim_lease)
    return await SQLiteStore.open(settings.path(settings.storage.database))


def describe(settings: Settings) -> str:
    """Where the store is, for messages (a URL without its password)."""
    from bot.store.postgres import redacted

    url = settings.storage.database_dsn()
    return redacted(url) if url is not None else str(settings.path(settings.storage.database))
