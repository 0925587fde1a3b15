"""Canned replies: short texts agents insert into the reply box; admins keep the list."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore

# What a new install starts with; admins edit the list from there.
DEFAULTS: tuple[tuple[str, str], ...] = (
    ("Greeting", "Hi, thanks for getting in touch! I'm looking into this for you now."),
    (
        "Order number",
        "Could you send me your order number? It's in your confirmation email and starts with a #.",
    ),
    (
        "Refund issued",
        "I've issued your refund. It usually shows on your statement within 5–10 business days.",
    ),
    ("Still looking", "Thanks for your patience, I'm still on this and will update you shortly."),
    (
        "Closing",
        "Glad I could help! I'll mark this as resolved; just reply here if anything else comes up.",
    ),
)
# Seeding happens once per database: an admin who deletes every default keeps an empty list.
_SEEDED = "canned_replies_seeded"


@dataclass(frozen=True)
class CannedReply:
    id: str
    title: str
    text: str


class CannedReplies:
    def __init__(self, store: SQLiteStore | PostgresStore) -> None:
        self._queries: _Queries = (
            _PostgresQueries(store) if isinstance(store, PostgresStore) else _SQLiteQueries(store)
        )

    async def seed(self) -> bool:
        """Insert the defaults on the database's first start with an empty list."""
        return await self._queries.seed(
            [(uuid.uuid4().hex[:12], title, text) for title, text in DEFAULTS]
        )

    async def all(self) -> list[CannedReply]:
        """By title, ignoring (ASCII) letter case."""
        return await self._queries.replies()

    async def add(self, title: str, text: str) -> CannedReply:
        reply = CannedReply(uuid.uuid4().hex[:12], title, text)
        await self._queries.add(reply)
        return reply

    async def delete(self, reply_id: str) -> bool:
        """False when there was no such reply."""
        return await self._queries.delete(reply_id)


# -- queries, one object per backend ---------------------------------------------------------


class _Queries(Protocol):
    async def seed(self, replies: list[tuple[str, str, str]]) -> bool:
        """Insert ``replies`` (id, title, text) when the database was never seeded and the
        list is empty; True when it did."""

    async def replies(self) -> list[CannedReply]: ...

    async def add(self, reply: CannedReply) -> None: ...

    async def delete(self, reply_id: str) -> bool: ...


class _SQLiteQueries:
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def seed(self, replies: list[tuple[str, str, str]]) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            first = db.execute(
                "INSERT OR IGNORE INTO counters (name, value) VALUES (?, 1)", (_SEEDED,)
            ).rowcount
            empty = db.execute("SELECT 1 FROM canned_replies LIMIT 1").fetchone() is None
            if not (first and empty):
                return False
            db.executemany("INSERT INTO canned_replies (id, title, text) VALUES (?, ?, ?)", replies)
            return True

        return await self._store.run(write, write=True)

    async def replies(self) -> list[CannedReply]:
        rows = await self._store.run(
            lambda db: db.execute(
                "SELECT id, title, text FROM canned_replies ORDER BY title COLLATE NOCASE, id"
            ).fetchall(),
            write=False,
        )
        return [CannedReply(*row) for row in rows]

    async def add(self, reply: CannedReply) -> None:
        await self._store.run(
            lambda db: db.execute(
                "INSERT INTO canned_replies (id, title, text) VALUES (?, ?, ?)",
                (reply.id, reply.title, reply.text),
            ),
            write=True,
        )

    async def delete(self, reply_id: str) -> bool:
        deleted = await self._store.run(
            lambda db: db.execute("DELETE FROM canned_replies WHERE id = ?", (reply_id,)).rowcount,
            write=True,
        )
        return bool(deleted)


class _PostgresQueries:
    """Ordered as SQLite's ``NOCASE`` orders: ASCII letters folded (``lower`` under the "C"
    collation folds only those), then byte order."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def seed(self, replies: list[tuple[str, str, str]]) -> bool:
        async def write(db: Any) -> bool:
            first = await db.fetchval(
                "INSERT INTO counters (name, value) VALUES ($1, 1) "
                "ON CONFLICT (name) DO NOTHING RETURNING 1",
                _SEEDED,
            )
            empty = await db.fetchval("SELECT 1 FROM canned_replies LIMIT 1") is None
            if not (first and empty):
                return False
            await db.executemany(
                "INSERT INTO canned_replies (id, title, text) VALUES ($1, $2, $3)", replies
            )
            return True

        return await self._store.run(write, write=True)

    async def replies(self) -> list[CannedReply]:
        async def read(db: Any) -> Any:
            return await db.fetch(
                'SELECT id, title, text FROM canned_replies ORDER BY lower(title COLLATE "C"), '
                'id COLLATE "C"'
            )

        return [CannedReply(*row) for row in await self._store.run(read, write=False)]

    async def add(self, reply: CannedReply) -> None:
        async def write(db: Any) -> None:
            await db.execute(
                "INSERT INTO canned_replies (id, title, text) VALUES ($1, $2, $3)",
                reply.id,
                reply.title,
                reply.text,
            )

        await self._store.run(write, write=True)

    async def delete(self, reply_id: str) -> bool:
        async def write(db: Any) -> bool:
            deleted = await db.fetchval(
                "DELETE FROM canned_replies WHERE id = $1 RETURNING 1", reply_id
            )
            return deleted is not None

        return await self._store.run(write, write=True)
