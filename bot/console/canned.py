"""Canned replies: short texts agents insert into the reply box; admins keep the list."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass

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
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def seed(self) -> bool:
        """Insert the defaults on the database's first start with an empty list."""
        return await self._store.run(_seed, write=True)

    async def all(self) -> list[CannedReply]:
        rows = await self._store.run(
            lambda db: db.execute(
                "SELECT id, title, text FROM canned_replies ORDER BY title COLLATE NOCASE, id"
            ).fetchall(),
            write=False,
        )
        return [CannedReply(*row) for row in rows]

    async def add(self, title: str, text: str) -> CannedReply:
        reply = CannedReply(uuid.uuid4().hex[:12], title, text)
        await self._store.run(
            lambda db: db.execute(
                "INSERT INTO canned_replies (id, title, text) VALUES (?, ?, ?)",
                (reply.id, reply.title, reply.text),
            ),
            write=True,
        )
        return reply

    async def delete(self, reply_id: str) -> bool:
        """False when there was no such reply."""
        deleted = await self._store.run(
            lambda db: db.execute("DELETE FROM canned_replies WHERE id = ?", (reply_id,)).rowcount,
            write=True,
        )
        return bool(deleted)


def _seed(db: sqlite3.Connection) -> bool:
    first = db.execute(
        "INSERT OR IGNORE INTO counters (name, value) VALUES (?, 1)", (_SEEDED,)
    ).rowcount
    empty = db.execute("SELECT 1 FROM canned_replies LIMIT 1").fetchone() is None
    if not (first and empty):
        return False
    db.executemany(
        "INSERT INTO canned_replies (id, title, text) VALUES (?, ?, ?)",
        [(uuid.uuid4().hex[:12], title, text) for title, text in DEFAULTS],
    )
    return True
