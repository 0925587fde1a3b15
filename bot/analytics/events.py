"""Read what the statistics need from the store: the event log and a few labels. I/O only.

Everything measured comes from events. The store adds only labels the events do not carry:
each conversation's channel and its customer's tier, each ticket's SLA calendar (which
business time counts on), and which inbound messages are reactions, edits or joins rather
than the customer writing. A tier is the customer's tier now, not at the time of the event.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from bot.analytics.model import Log
from bot.channels.base import EVENT_KINDS
from bot.store.base import Event
from bot.store.open import AnyStore
from bot.store.postgres import Conn, PostgresStore


async def load(store: AnyStore, until: datetime) -> Log:
    """The log up to ``until`` (exclusive). Earlier events are read too: a ticket handed off
    in the period may have been rated, or a rating replaced, only later."""
    if isinstance(store, PostgresStore):
        return await store.run(lambda conn: _pg_load(conn, until), write=False)
    return await store.run(lambda db: _load(db, until), write=False)


def _load(db: sqlite3.Connection, until: datetime) -> Log:
    rows = db.execute(
        "SELECT seq, at, type, conversation_id, message_id, ticket_id, data FROM events "
        "WHERE at < ? ORDER BY seq",
        (until.astimezone(UTC).isoformat(timespec="microseconds"),),
    ).fetchall()
    events = tuple(
        Event(seq, datetime.fromisoformat(at), kind, conv, msg, ticket, json.loads(data))
        for seq, at, kind, conv, msg, ticket, data in rows
    )
    labels = db.execute(
        "SELECT c.id, c.channel, cu.tier FROM conversations c "
        "LEFT JOIN customers cu ON cu.id = c.customer_id"
    ).fetchall()
    calendars = db.execute("SELECT id, sla FROM tickets").fetchall()
    marks = ", ".join("?" * len(EVENT_KINDS))
    not_messages = db.execute(
        f"SELECT id FROM messages WHERE direction = 'in' AND kind IN ({marks})",
        tuple(sorted(EVENT_KINDS)),
    ).fetchall()
    return Log(
        events=events,
        channels={cid: channel for cid, channel, _ in labels},
        tiers={cid: tier or "consumer" for cid, _, tier in labels},
        calendars={tid: str(json.loads(sla).get("calendar") or "") for tid, sla in calendars},
        not_messages=frozenset(mid for (mid,) in not_messages),
    )


async def _pg_load(conn: Conn, until: datetime) -> Log:
    """``_load`` on PostgreSQL: the same queries, in one snapshot (REPEATABLE READ), as
    SQLite's read is."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            "SELECT seq, at, type, conversation_id, message_id, ticket_id, data FROM events "
            "WHERE at < $1 ORDER BY seq",
            until,
        )
        labels = await conn.fetch(
            "SELECT c.id, c.channel, cu.tier FROM conversations c "
            "LEFT JOIN customers cu ON cu.id = c.customer_id"
        )
        calendars = await conn.fetch("SELECT id, sla FROM tickets")
        not_messages = await conn.fetch(
            "SELECT id FROM messages WHERE direction = 'in' AND kind = ANY($1::text[])",
            sorted(EVENT_KINDS),
        )
    return Log(
        events=tuple(Event(*row) for row in rows),
        channels={cid: channel for cid, channel, _ in labels},
        tiers={cid: tier or "consumer" for cid, _, tier in labels},
        calendars={tid: str(sla.get("calendar") or "") for tid, sla in calendars},
        not_messages=frozenset(mid for (mid,) in not_messages),
    )
