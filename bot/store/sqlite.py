"""SQLite backend (WAL): one connection on one dedicated thread, one hop per operation.

Each operation runs whole as a plain function on the database thread (``bot.store.worker``,
which also groups the writes queued under load into one commit). Awaiting every statement
through aiosqlite under an asyncio lock cost 5–10 thread hops per transaction, each waiting a
loop iteration under load, and serialised the gateway (ack p99 1.3 s at 200 msg/s).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from bot.channels.base import EVENT_KINDS, InboundMessage, OutboundMessage
from bot.errors import Conflict, NotFound
from bot.store.base import (
    AgentRecord,
    Conversation,
    ConversationState,
    CustomerRecord,
    DeliveryStatus,
    Event,
    EventCursor,
    MessageStatus,
    NewTicket,
    Received,
    Route,
    StoredMessage,
    Ticket,
    TicketChange,
)
from bot.store.checkpoint import Checkpointer
from bot.store.common import SCHEMA_VERSION as SCHEMA_VERSION  # re-exported (tests read it)
from bot.store.common import (
    agent_from_row,
    check_capacity,
    check_schema_version,
    conversation_from_row,
    customers_to_merge,
    delivery_status_for,
    event_from_row,
    handoff_data,
    identities,
    merged_customer,
    message_from_row,
    migration_scripts,
    moved_reply_to,
    new_conversation,
    new_reference,
    new_ticket,
    owned_conversation,
    reply_payload,
    stale_ticket,
    ticket_from_row,
    ticket_values,
    with_details,
)
from bot.store.common import iso as _ts
from bot.store.common import opt_dt as _dt
from bot.store.worker import SQLiteWorker

logger = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
Row = tuple[Any, ...]
_MESSAGE_COLUMNS = (
    "seq, id, conversation_id, direction, type, kind, text, payload, in_reply_to, "
    "client_message_id, status, created_at, acked_at, delivery_status, delivery"
)
_TICKET_COLUMNS = (
    "id, reference, conversation_id, customer_id, queue, priority, tier, status, reason, "
    "created_at, first_response_due, first_responded_at, next_response_due, resolved_at, "
    "assignee, resolution_due, assigned_at, sla, version"
)
# What a ticket update may change: everything but its identity and creation.
_TICKET_MUTABLE = (
    "queue, priority, tier, status, first_response_due, first_responded_at, next_response_due, "
    "resolved_at, assignee, resolution_due, assigned_at, sla"
)
_AGENT_COLUMNS = "id, name, presence, capacity, skills, queues, last_assigned"
_EVENT_KIND_LIST = ", ".join(f"'{kind}'" for kind in sorted(EVENT_KINDS))
_CONVERSATION_COLUMNS = "id, customer_id, channel, state, created_at, reply_to"
_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",  # durable across process crashes; WAL keeps it consistent
    "foreign_keys=ON",
    "busy_timeout=5000",
    "temp_store=MEMORY",  # each batched write's savepoint journal: memory, not a temp file
    "wal_autocheckpoint=0",  # bot/store/checkpoint.py does it, off the store's thread
)


def _now() -> datetime:
    return datetime.now(UTC)


def _decoded(row: Row, times: tuple[int, ...] = (), json_at: tuple[int, ...] = ()) -> list[Any]:
    """``row`` with its ISO-8601 text at ``times`` and JSON text at ``json_at`` decoded, as
    asyncpg decodes PostgreSQL's, for the shared ``*_from_row``."""
    values = list(row)
    for i in times:
        values[i] = _dt(values[i])
    for i in json_at:
        values[i] = json.loads(values[i])
    return values


def _message(row: Row) -> StoredMessage:
    return message_from_row(_decoded(row, times=(11, 12), json_at=(7, 14)))


def _ticket(row: Row) -> Ticket:
    return ticket_from_row(_decoded(row, times=(9, 10, 11, 12, 13, 15, 16), json_at=(17,)))


def _ticket_values(ticket: Ticket) -> tuple[Any, ...]:
    """The ``_TICKET_MUTABLE`` columns of a ticket, in that order, times and JSON as text."""
    return tuple(_param(value) for value in ticket_values(ticket))


def _param(value: Any) -> Any:
    if isinstance(value, datetime):
        return _ts(value)
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def _agent(row: Row) -> AgentRecord:
    return agent_from_row(_decoded(row, json_at=(4, 5)))


def _migrations() -> list[tuple[int, str]]:
    return migration_scripts("migrations")


def _strip_comments(script: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in script.splitlines())


def _conversation(row: Row) -> Conversation:
    return conversation_from_row(_decoded(row, times=(4,), json_at=(5,)))


def _event(row: Row) -> Event:
    return event_from_row(_decoded(row, times=(1,), json_at=(6,)))


def _connect(path: Path) -> sqlite3.Connection:
    # Opened here, then used only by the store's database thread.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in _PRAGMAS:
            db.execute(f"PRAGMA {pragma}")
    except BaseException:
        db.close()
        raise
    return db


class SQLiteStore:
    """``Store`` on a SQLite file in WAL mode.

    The sync methods (``_receive`` …) run on the store's database thread, never on the loop;
    the async methods hand them over with ``_tx`` (a write, committed before it returns) or
    ``_read``. A caller cancelled after its operation started does not undo it.
    """

    def __init__(self, db: sqlite3.Connection, checkpointer: Checkpointer | None = None) -> None:
        self._db = db
        self._checkpointer = checkpointer
        self._worker = SQLiteWorker(db, when_idle=checkpointer.when_idle if checkpointer else None)

    @classmethod
    async def open(cls, path: Path) -> SQLiteStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await asyncio.to_thread(_connect, path)
        try:
            checkpointer = await asyncio.to_thread(Checkpointer, path)
        except BaseException:
            db.close()
            raise
        store = cls(db, checkpointer)
        try:
            await store._read(store._create_schema)
            await store._tx(store._check_version)
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.close)
        await self._worker.close()  # the last connection's close checkpoints the rest

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Run ``fn(connection)`` on the database thread, as one atomic write when ``write``.

        For repositories that live in their own modules (accounts, articles) but share this
        database, its thread and its write batching.
        """
        return await self._worker.run(functools.partial(fn, self._db), write=write)

    async def _read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the database thread (reads)."""
        return await self._worker.run(functools.partial(fn, *args, **kwargs), write=False)

    async def _tx(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the database thread as one atomic write."""
        return await self._worker.run(functools.partial(fn, *args, **kwargs), write=True)

    def _create_schema(self) -> None:
        schema = resources.files("bot.store").joinpath("schema_sqlite.sql").read_text()
        self._db.executescript(schema)

    def _check_version(self) -> None:
        """Version 1 is the base schema; each ``migrations/NNN_*.sql`` raises it by one."""
        row = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
        current = row[0] if row and row[0] is not None else None
        if current is None:
            current = 1
            self._db.execute("INSERT INTO schema_version VALUES (1)")
        check_schema_version(current)
        for version, script in _migrations():
            if version > current:
                logger.info("migrating the database to schema version %d", version)
                for statement in filter(str.strip, _strip_comments(script).split(";")):
                    self._db.execute(statement)
                self._db.execute("UPDATE schema_version SET version = ?", (version,))

    def _one(self, query: str, args: tuple[Any, ...] = ()) -> Row | None:
        row: Row | None = self._db.execute(query, args).fetchone()
        return row

    def _all(self, query: str, args: tuple[Any, ...] = ()) -> list[Row]:
        rows: list[Row] = self._db.execute(query, args).fetchall()
        return rows

    async def ping(self) -> None:
        await self._read(self._one, "SELECT 1")

    # -- inbox ---------------------------------------------------------------------------

    async def receive(self, msg: InboundMessage) -> Received:
        return await self._tx(self._receive, msg)

    def _receive(self, msg: InboundMessage) -> Received:
        customer = self._customer_for(msg)
        existing = self._one(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE direction = 'in' "
            "AND channel = ? AND sender = ? AND client_message_id = ?",
            (msg.channel, msg.customer.external_id, msg.platform_message_id),
        )
        if existing is not None:
            stored = _message(existing)
            conversation = self._get_conversation(stored.conversation_id)
            assert conversation is not None
            return Received(stored, conversation, customer, duplicate=True)
        conversation = self._conversation_for(msg, customer.id)
        reply_to = moved_reply_to(msg, conversation)
        if reply_to is not None:
            self._db.execute(
                "UPDATE conversations SET reply_to = ? WHERE id = ?",
                (json.dumps(reply_to), conversation.id),
            )
            conversation = replace(conversation, reply_to=reply_to)
        if msg.kind not in EVENT_KINDS:  # a reaction or a join is not the customer writing
            conversation = self._follow_open_ticket(conversation, msg.received_at)
        stored = self._insert_message(
            conversation.id,
            direction="in",
            channel=msg.channel,
            sender=msg.customer.external_id,
            client_message_id=msg.platform_message_id,
            type="customer",
            kind=None if msg.kind == "text" else msg.kind,
            text=msg.text,
            payload={"attachments": list(msg.attachments)} if msg.attachments else {},
            in_reply_to=None,
            status=MessageStatus.RECEIVED,
            at=msg.received_at,
        )
        self._event(
            "received",
            msg.received_at,
            conversation.id,
            stored.id,
            None,
            {"channel": msg.channel, "chars": len(msg.text)},
        )
        return Received(stored, conversation, customer, duplicate=False)

    def _follow_open_ticket(self, conversation: Conversation, at: datetime) -> Conversation:
        """The customer's open ticket moves to the conversation they wrote in last, so one
        customer has one open ticket and agents answer where the customer is."""
        if conversation.state is not ConversationState.BOT:
            return conversation
        row = self._one(
            "SELECT t.id, t.conversation_id, c.state FROM tickets t "
            "JOIN conversations c ON c.id = t.conversation_id "
            "WHERE t.customer_id = ? AND t.status != 'resolved' AND t.conversation_id != ? "
            "ORDER BY t.created_at DESC LIMIT 1",
            (conversation.customer_id, conversation.id),
        )
        if row is None:
            return conversation
        ticket_id, previous, state = row
        self._move_ticket(ticket_id, previous, conversation, ConversationState(state), at)
        return replace(conversation, state=ConversationState(state))

    def _move_ticket(
        self,
        ticket_id: str,
        previous: str,
        conversation: Conversation,
        state: ConversationState,
        at: datetime,
    ) -> None:
        self._db.execute(
            "UPDATE tickets SET conversation_id = ?, version = version + 1 WHERE id = ?",
            (conversation.id, ticket_id),
        )
        self._db.execute(
            "UPDATE conversations SET state = ? WHERE id = ?", (state, conversation.id)
        )
        self._db.execute(
            "UPDATE conversations SET state = ? WHERE id = ?", (ConversationState.BOT, previous)
        )
        self._event(
            "ticket_followed",
            at,
            conversation.id,
            None,
            ticket_id,
            {"from_conversation": previous, "channel": conversation.channel},
        )

    async def move_ticket(self, ticket_id: str, conversation_id: str, at: datetime) -> Ticket:
        return await self._tx(self._move_ticket_to, ticket_id, conversation_id, at)

    def _move_ticket_to(self, ticket_id: str, conversation_id: str, at: datetime) -> Ticket:
        ticket = self._get_ticket(ticket_id)
        conversation = self._get_conversation(conversation_id)
        if ticket is None or not ticket.is_open:
            raise NotFound("not_found", "no open ticket with that id")
        if conversation is None or conversation.customer_id != ticket.customer_id:
            raise NotFound("unknown_conversation", "the customer has no such conversation")
        if conversation.id != ticket.conversation_id:
            previous = self._get_conversation(ticket.conversation_id)
            assert previous is not None
            self._move_ticket(ticket.id, previous.id, conversation, previous.state, at)
        moved = self._get_ticket(ticket_id)
        assert moved is not None
        return moved

    def _customer_for(self, msg: InboundMessage) -> CustomerRecord:
        row = self._one(
            "SELECT c.id, c.name, c.email, c.tier FROM channel_accounts a "
            "JOIN customers c ON c.id = a.customer_id "
            "WHERE a.channel = ? AND a.external_id = ?",
            (msg.channel, msg.customer.external_id),
        )
        name, email = msg.customer.name, msg.customer.email
        claimed = identities(msg)
        if row is None:
            known = self._customer_by_identity(claimed)
            if known is None:
                customer_id = uuid.uuid4().hex
                self._db.execute(
                    "INSERT INTO customers (id, name, email, tier, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (customer_id, name, email, "consumer", _ts(msg.received_at)),
                )
            else:
                customer_id = known
            self._db.execute(
                "INSERT INTO channel_accounts (channel, external_id, customer_id) VALUES (?, ?, ?)",
                (msg.channel, msg.customer.external_id, customer_id),
            )
            self._claim_identities(customer_id, claimed, msg.received_at)
            if known is None:
                return CustomerRecord(customer_id, name, email, "consumer")
            row = self._one(
                "SELECT id, name, email, tier FROM customers WHERE id = ?", (customer_id,)
            )
            assert row is not None
        else:
            self._claim_identities(row[0], claimed, msg.received_at)
        record = CustomerRecord(row[0], row[1], row[2], row[3])
        updated = with_details(record, name, email)
        if updated is not None:
            self._db.execute(
                "UPDATE customers SET name = coalesce(?, name), email = coalesce(?, email) "
                "WHERE id = ?",
                (name, email, record.id),
            )
            record = updated
        return record

    def _customer_by_identity(self, identities: list[tuple[str, str]]) -> str | None:
        for kind, value in identities:
            row = self._one(
                "SELECT customer_id FROM identities WHERE kind = ? AND value = ?", (kind, value)
            )
            if row is not None:
                return str(row[0])
        return None

    def _claim_identities(
        self, customer_id: str, identities: list[tuple[str, str]], at: datetime
    ) -> None:
        # First come, first served: an identity already linked elsewhere is left to an agent
        # to merge, never moved silently.
        for kind, value in identities:
            self._db.execute(
                "INSERT OR IGNORE INTO identities (kind, value, customer_id, created_at) "
                "VALUES (?, ?, ?, ?)",
                (kind, value, customer_id, _ts(at)),
            )

    def _conversation_for(self, msg: InboundMessage, customer_id: str) -> Conversation:
        if msg.conversation_id is not None:
            return owned_conversation(self._get_conversation(msg.conversation_id), customer_id)
        row = self._one(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations "
            "WHERE customer_id = ? AND channel = ? ORDER BY created_at DESC LIMIT 1",
            (customer_id, msg.channel),
        )
        if row is not None:
            return _conversation(row)
        conversation = new_conversation(msg, customer_id)
        self._db.execute(
            "INSERT INTO conversations (id, customer_id, channel, state, created_at, reply_to) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                conversation.id,
                customer_id,
                msg.channel,
                conversation.state,
                _ts(msg.received_at),
                json.dumps(conversation.reply_to),
            ),
        )
        self._event(
            "conversation_started",
            msg.received_at,
            conversation.id,
            None,
            None,
            {"channel": msg.channel},
        )
        return conversation

    def _get_conversation(self, conversation_id: str) -> Conversation | None:
        row = self._one(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        )
        return None if row is None else _conversation(row)

    def _insert_message(
        self,
        conversation_id: str,
        *,
        direction: str,
        channel: str,
        sender: str | None,
        client_message_id: str | None,
        type: str,
        kind: str | None,
        text: str,
        payload: dict[str, Any],
        in_reply_to: str | None,
        status: str | None,
        at: datetime,
    ) -> StoredMessage:
        message_id = uuid.uuid4().hex
        delivery_status = delivery_status_for(direction, channel)
        cursor = self._db.execute(
            "INSERT INTO messages (id, conversation_id, direction, channel, sender, "
            "client_message_id, type, kind, text, payload, in_reply_to, status, created_at, "
            "delivery_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                conversation_id,
                direction,
                channel,
                sender,
                client_message_id,
                type,
                kind,
                text,
                json.dumps(payload),
                in_reply_to,
                status,
                _ts(at),
                delivery_status,
            ),
        )
        assert cursor.lastrowid is not None
        return StoredMessage(
            seq=cursor.lastrowid,
            id=message_id,
            conversation_id=conversation_id,
            direction=direction,
            type=type,
            kind=kind,
            text=text,
            payload=payload,
            in_reply_to=in_reply_to,
            client_message_id=client_message_id,
            status=status,
            created_at=at,
            acked_at=None,
            delivery_status=delivery_status,
            route=None if delivery_status is None else self._route(conversation_id),
        )

    def _event(
        self,
        type: str,
        at: datetime,
        conversation_id: str | None,
        message_id: str | None,
        ticket_id: str | None,
        data: dict[str, Any] | None,
    ) -> None:
        self._db.execute(
            "INSERT INTO events (at, type, conversation_id, message_id, ticket_id, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (_ts(at), type, conversation_id, message_id, ticket_id, json.dumps(data or {})),
        )

    async def add_reply(
        self,
        conversation_id: str,
        reply: OutboundMessage,
        *,
        event: str,
        data: dict[str, Any] | None = None,
        acks: str | None = None,
        at: datetime | None = None,
        pending: str | None = None,
        finishes: str | None = None,
    ) -> StoredMessage:
        return await self._tx(
            self._add_reply, conversation_id, reply, event, data, acks, at, pending, finishes
        )

    def _add_reply(
        self,
        conversation_id: str,
        reply: OutboundMessage,
        event: str,
        data: dict[str, Any] | None,
        acks: str | None,
        at: datetime | None,
        pending: str | None,
        finishes: str | None,
    ) -> StoredMessage:
        at = at or _now()
        conversation = self._get_conversation(conversation_id)
        if conversation is None:
            raise NotFound("unknown_conversation", "no conversation with that id")
        stored = self._insert_message(
            conversation_id,
            direction="out",
            channel=conversation.channel,
            sender=None,
            client_message_id=None,
            type=reply.type,
            kind=reply.kind,
            text=reply.text,
            payload=reply_payload(reply),
            in_reply_to=reply.in_reply_to,
            status=None,
            at=at,
        )
        if acks is not None:
            self._db.execute(
                "UPDATE messages SET acked_at = ? WHERE id = ? AND acked_at IS NULL",
                (_ts(at), acks),
            )
        self._event(event, at, conversation_id, acks or stored.id, None, data)
        if acks is not None and pending is not None:
            self._db.execute(
                "UPDATE messages SET status = ? WHERE id = ?", (MessageStatus.PENDING, acks)
            )
            self._event("pending", at, conversation_id, acks, None, {"reason": pending})
        if finishes is not None:
            self._db.execute(
                "UPDATE messages SET status = ? WHERE id = ?", (MessageStatus.DONE, finishes)
            )
        return stored

    async def messages(self, conversation_id: str, after: int = 0) -> list[StoredMessage]:
        rows = await self._read(
            self._all,
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq > ? "
            "ORDER BY seq",
            (conversation_id, after),
        )
        return [_message(row) for row in rows]

    async def message(self, message_id: str) -> StoredMessage | None:
        row = await self._read(
            self._one, f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
        )
        return None if row is None else _message(row)

    async def set_status(
        self,
        message_id: str,
        status: MessageStatus,
        *,
        event: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        await self._tx(self._set_status, message_id, status, event, data)

    def _set_status(
        self,
        message_id: str,
        status: MessageStatus,
        event: str | None,
        data: dict[str, Any] | None,
    ) -> None:
        self._db.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))
        if event is not None:
            row = self._one("SELECT conversation_id FROM messages WHERE id = ?", (message_id,))
            conversation_id = None if row is None else row[0]
            self._event(event, _now(), conversation_id, message_id, None, data)

    def _execute(self, query: str, args: tuple[Any, ...]) -> None:
        self._db.execute(query, args)

    async def unanswered(self) -> list[StoredMessage]:
        rows = await self._read(
            self._all,
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE direction = 'in' "
            "AND status IN ('received', 'pending') ORDER BY seq",
        )
        return [_message(row) for row in rows]

    async def conversation(self, conversation_id: str) -> Conversation | None:
        return await self._read(self._get_conversation, conversation_id)

    async def conversations_of(self, customer_id: str) -> list[Conversation]:
        rows = await self._read(
            self._all,
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c WHERE customer_id = ? "
            "ORDER BY (SELECT max(seq) FROM messages m WHERE m.conversation_id = c.id) DESC",
            (customer_id,),
        )
        return [_conversation(row) for row in rows]

    async def set_delivery(
        self, message_id: str, status: DeliveryStatus, info: dict[str, Any]
    ) -> StoredMessage | None:
        return await self._tx(self._set_delivery, message_id, status, info)

    def _set_delivery(
        self, message_id: str, status: DeliveryStatus, info: dict[str, Any]
    ) -> StoredMessage | None:
        self._db.execute(
            "UPDATE messages SET delivery_status = ?, delivery = ? WHERE id = ?",
            (status, json.dumps(info), message_id),
        )
        row = self._one(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,))
        return None if row is None else _message(row)

    async def claim_unanswered(self) -> list[StoredMessage]:
        return await self.unanswered()  # one gateway per SQLite file: all of it is its own

    async def claim_deliveries(self) -> list[StoredMessage]:
        return await self.pending_deliveries()

    async def renew_claims(self) -> int:
        return 0

    async def take_over(self, limit: int = 100) -> tuple[list[StoredMessage], list[StoredMessage]]:
        return [], []

    async def pending_deliveries(self) -> list[StoredMessage]:
        rows = await self._read(
            self._all,
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE delivery_status = 'pending' "
            "ORDER BY seq",
        )
        return [_message(row) for row in rows]

    def _last_inbound_at(self, conversation_id: str) -> datetime | None:
        row = self._one(
            "SELECT created_at FROM messages WHERE conversation_id = ? AND direction = 'in' "
            f"AND (kind IS NULL OR kind NOT IN ({_EVENT_KIND_LIST})) ORDER BY seq DESC LIMIT 1",
            (conversation_id,),
        )
        return None if row is None else datetime.fromisoformat(row[0])

    async def route(self, conversation_id: str) -> Route | None:
        return await self._read(self._route, conversation_id)

    def _route(self, conversation_id: str) -> Route | None:
        conversation = self._get_conversation(conversation_id)
        if conversation is None:
            return None
        last = self._last_inbound_at(conversation_id)
        return Route(conversation.channel, conversation.reply_to, last)

    async def merge_customers(
        self, into: str, other: str, at: datetime, *, by: str | None = None
    ) -> CustomerRecord:
        return await self._tx(self._merge_customers, into, other, at, by)

    def _merge_customers(
        self, into: str, other: str, at: datetime, by: str | None
    ) -> CustomerRecord:
        if into == other:
            raise Conflict("same_customer", "a customer cannot be merged into itself")
        kept, gone = customers_to_merge(
            self._all(
                "SELECT id, name, email, tier, language FROM customers WHERE id IN (?, ?)",
                (into, other),
            ),
            into,
            other,
        )
        for table in ("channel_accounts", "conversations"):
            self._db.execute(
                f"UPDATE {table} SET customer_id = ? WHERE customer_id = ?", (into, other)
            )
        self._db.execute(
            "UPDATE tickets SET customer_id = ?, version = version + 1 WHERE customer_id = ?",
            (into, other),
        )
        # An identity both customers claimed stays with ``into``.
        self._db.execute(
            "UPDATE OR IGNORE identities SET customer_id = ? WHERE customer_id = ?", (into, other)
        )
        self._db.execute("DELETE FROM identities WHERE customer_id = ?", (other,))
        # The customer keeps the better of the two tiers: a merge never demotes anyone.
        merged = merged_customer(kept, gone)
        self._db.execute(
            "UPDATE customers SET name = coalesce(name, ?), email = coalesce(email, ?), "
            "language = coalesce(language, ?), tier = ? WHERE id = ?",
            (gone.name, gone.email, gone.language, merged.tier, into),
        )
        self._db.execute("DELETE FROM customers WHERE id = ?", (other,))
        data = {"into": into, "from": other, "by": by}
        self._event("customers_merged", at, None, None, None, data)
        return merged

    async def customer(self, customer_id: str) -> CustomerRecord | None:
        row = await self._read(
            self._one,
            "SELECT id, name, email, tier, language FROM customers WHERE id = ?",
            (customer_id,),
        )
        return None if row is None else CustomerRecord(*row)

    async def customer_id_for(self, channel: str, external_id: str) -> str | None:
        row = await self._read(
            self._one,
            "SELECT customer_id FROM channel_accounts WHERE channel = ? AND external_id = ?",
            (channel, external_id),
        )
        return None if row is None else str(row[0])

    async def link_customer(
        self,
        channel: str,
        external_id: str,
        *,
        tier: str,
        name: str | None = None,
        email: str | None = None,
        language: str | None = None,
    ) -> tuple[str, bool]:
        return await self._tx(
            self._link_customer, channel, external_id, tier, name, email, language
        )

    def _link_customer(
        self,
        channel: str,
        external_id: str,
        tier: str,
        name: str | None,
        email: str | None,
        language: str | None,
    ) -> tuple[str, bool]:
        row = self._one(
            "SELECT customer_id FROM channel_accounts WHERE channel = ? AND external_id = ?",
            (channel, external_id),
        )
        if row is not None:
            self._db.execute(
                "UPDATE customers SET tier = ?, name = coalesce(?, name), "
                "email = coalesce(?, email), language = coalesce(?, language) WHERE id = ?",
                (tier, name, email, language, row[0]),
            )
            return str(row[0]), False
        customer_id = uuid.uuid4().hex
        self._db.execute(
            "INSERT INTO customers (id, name, email, tier, language, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (customer_id, name, email, tier, language, _ts(_now())),
        )
        self._db.execute(
            "INSERT INTO channel_accounts (channel, external_id, customer_id) VALUES (?, ?, ?)",
            (channel, external_id, customer_id),
        )
        return customer_id, True

    # -- tickets -------------------------------------------------------------------------

    async def create_ticket(self, ticket: NewTicket) -> Ticket:
        return await self._tx(self._create_ticket, ticket)

    def _create_ticket(self, ticket: NewTicket) -> Ticket:
        open_row = self._one(
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE conversation_id = ? "
            "AND status != 'resolved'",
            (ticket.conversation_id,),
        )
        if open_row is not None:
            return _ticket(open_row)
        conversation = self._get_conversation(ticket.conversation_id)
        if conversation is None:
            raise NotFound("unknown_conversation", "no conversation with that id")
        for _ in range(10):
            reference = new_reference()
            if self._one("SELECT 1 FROM tickets WHERE reference = ?", (reference,)) is None:
                break
        created = new_ticket(ticket, conversation.customer_id, reference)
        self._db.execute(
            f"INSERT INTO tickets (id, reference, conversation_id, customer_id, reason, "
            f"created_at, {_TICKET_MUTABLE}) VALUES ({', '.join('?' * 18)})",
            (
                created.id,
                created.reference,
                created.conversation_id,
                created.customer_id,
                created.reason,
                _ts(created.created_at),
                *_ticket_values(created),
            ),
        )
        self._db.execute(
            "UPDATE conversations SET state = ? WHERE id = ?",
            (ConversationState.WAITING_AGENT, ticket.conversation_id),
        )
        self._event(
            "handed_off",
            ticket.created_at,
            ticket.conversation_id,
            None,
            created.id,
            handoff_data(created),
        )
        return created

    def _get_ticket(self, ticket_id: str) -> Ticket | None:
        row = self._one(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,))
        return None if row is None else _ticket(row)

    async def ticket(self, ticket_id: str) -> Ticket | None:
        return await self._read(self._get_ticket, ticket_id)

    async def open_ticket(self, conversation_id: str) -> Ticket | None:
        row = await self._read(
            self._one,
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE conversation_id = ? "
            "AND status != 'resolved'",
            (conversation_id,),
        )
        return None if row is None else _ticket(row)

    async def tickets(self, status: str | None = None) -> list[Ticket]:
        query = f"SELECT {_TICKET_COLUMNS} FROM tickets"
        args: tuple[str, ...] = ()
        if status == "open":
            query += " WHERE status != 'resolved'"
        elif status is not None:
            query += " WHERE status = ?"
            args = (status,)
        rows = await self._read(self._all, query + " ORDER BY created_at", args)
        return [_ticket(row) for row in rows]

    async def assigned_load(self) -> dict[str, int]:
        rows = await self._read(
            self._all,
            "SELECT assignee, count(*) FROM tickets WHERE status != 'resolved' "
            "AND assignee IS NOT NULL GROUP BY assignee",
        )
        return {str(assignee): int(count) for assignee, count in rows}

    async def queue_position(self, queue: str, created_before: datetime) -> int:
        row = await self._read(
            self._one,
            "SELECT count(*) FROM tickets WHERE queue = ? AND status != 'resolved' "
            "AND assignee IS NULL AND created_at < ?",
            (queue, _ts(created_before)),
        )
        return int(row[0]) if row else 0

    async def first_responses(self, queue: str, limit: int) -> list[tuple[datetime, datetime]]:
        rows = await self._read(
            self._all,
            "SELECT created_at, first_responded_at FROM tickets WHERE queue = ? "
            "AND first_responded_at IS NOT NULL ORDER BY first_responded_at DESC LIMIT ?",
            (queue, limit),
        )
        return [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in rows]

    async def save_ticket(
        self,
        ticket: Ticket,
        *,
        event: str,
        at: datetime,
        data: dict[str, Any] | None = None,
        conversation_state: ConversationState | None = None,
    ) -> Ticket:
        await self._tx(self._save_ticket, ticket, event, at, data, conversation_state)
        return replace(ticket, version=ticket.version + 1)

    def _save_ticket(
        self,
        ticket: Ticket,
        event: str,
        at: datetime,
        data: dict[str, Any] | None,
        conversation_state: ConversationState | None,
    ) -> None:
        self._write_ticket(ticket)
        if conversation_state is not None:
            self._db.execute(
                "UPDATE conversations SET state = ? WHERE id = ?",
                (conversation_state, ticket.conversation_id),
            )
        self._event(event, at, ticket.conversation_id, None, ticket.id, data)

    def _write_ticket(self, ticket: Ticket) -> None:
        """The whole row, only over the version it was read at (see ``Ticket.version``)."""
        assignments = ", ".join(f"{column.strip()} = ?" for column in _TICKET_MUTABLE.split(","))
        cursor = self._db.execute(
            f"UPDATE tickets SET {assignments}, version = version + 1 WHERE id = ? AND version = ?",
            (*_ticket_values(ticket), ticket.id, ticket.version),
        )
        if cursor.rowcount != 1:
            raise stale_ticket(
                self._one("SELECT 1 FROM tickets WHERE id = ?", (ticket.id,)) is not None
            )

    async def assign_ticket(
        self,
        ticket: Ticket,
        *,
        event: str,
        at: datetime,
        data: dict[str, Any] | None = None,
        within_capacity: bool = True,
    ) -> Ticket:
        await self._tx(self._assign_ticket, ticket, event, at, data, within_capacity)
        return replace(ticket, version=ticket.version + 1)

    def _assign_ticket(
        self,
        ticket: Ticket,
        event: str,
        at: datetime,
        data: dict[str, Any] | None,
        within_capacity: bool,
    ) -> None:
        # One writer: nothing else runs between the check and the write.
        agent_id = ticket.assignee
        if agent_id is None:
            raise ValueError("assign_ticket needs a ticket with an assignee")
        agent = self._one("SELECT presence, capacity FROM agents WHERE id = ?", (agent_id,))
        if agent is None:
            raise NotFound("unknown_agent", f"no agent {agent_id!r}", field="agent")
        if within_capacity:
            load = self._one(
                "SELECT count(*) FROM tickets WHERE assignee = ? AND status != 'resolved' "
                "AND id != ?",
                (agent_id, ticket.id),
            )
            check_capacity(agent_id, agent[0], agent[1], int(load[0]) if load else 0)
        self._db.execute(
            "UPDATE agents SET last_assigned = ?, updated_at = ? WHERE id = ?",
            (self._next_assignment(), _ts(at), agent_id),
        )
        self._save_ticket(ticket, event, at, data, None)

    async def record_agent_reply(
        self,
        ticket: Ticket,
        reply: OutboundMessage,
        agent_id: str,
        at: datetime,
        data: dict[str, Any],
    ) -> StoredMessage:
        return await self._tx(self._record_agent_reply, ticket, reply, agent_id, at, data)

    def _record_agent_reply(
        self,
        ticket: Ticket,
        reply: OutboundMessage,
        agent_id: str,
        at: datetime,
        data: dict[str, Any],
    ) -> StoredMessage:
        self._write_ticket(ticket)  # first: a stale ticket stores nothing
        conversation = self._get_conversation(ticket.conversation_id)
        assert conversation is not None
        stored = self._insert_message(
            ticket.conversation_id,
            direction="out",
            channel=conversation.channel,
            sender=agent_id,
            client_message_id=None,
            type=reply.type,
            kind=None,
            text=reply.text,
            payload=reply_payload(reply),
            in_reply_to=None,
            status=None,
            at=at,
        )
        self._db.execute(
            "UPDATE conversations SET state = ? WHERE id = ?",
            (ConversationState.WITH_AGENT, ticket.conversation_id),
        )
        self._event("agent_replied", at, ticket.conversation_id, stored.id, ticket.id, data)
        return stored

    async def fire_timer(
        self,
        ticket_id: str,
        name: str,
        due: datetime,
        at: datetime,
        event: str,
        data: dict[str, Any],
        then: TicketChange | None = None,
    ) -> bool:
        return await self._tx(self._fire_timer, ticket_id, name, due, at, event, data, then)

    def _fire_timer(
        self,
        ticket_id: str,
        name: str,
        due: datetime,
        at: datetime,
        event: str,
        data: dict[str, Any],
        then: TicketChange | None,
    ) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO sla_fired (ticket_id, name, due, fired_at) VALUES (?, ?, ?, ?)",
            (ticket_id, name, _ts(due), _ts(at)),
        )
        if cursor.rowcount != 1:
            return False
        ticket = self._get_ticket(ticket_id)
        conversation_id = ticket.conversation_id if ticket else None
        self._event(event, at, conversation_id, None, ticket_id, data)
        if then is not None:
            self._write_ticket(then.ticket)
            for name_, data_ in then.events:
                self._event(name_, at, conversation_id, None, ticket_id, data_)
        return True

    # -- agents --------------------------------------------------------------------------

    async def save_agent(self, agent: AgentRecord, at: datetime) -> None:
        await self._tx(
            self._execute,
            f"INSERT INTO agents ({_AGENT_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
            "presence = excluded.presence, capacity = excluded.capacity, "
            "skills = excluded.skills, queues = excluded.queues, "
            "updated_at = excluded.updated_at",
            (
                agent.id,
                agent.name,
                agent.presence,
                agent.capacity,
                json.dumps(list(agent.skills)),
                json.dumps(list(agent.queues)),
                agent.last_assigned,
                _ts(at),
            ),
        )

    async def agents(self) -> list[AgentRecord]:
        rows = await self._read(self._all, f"SELECT {_AGENT_COLUMNS} FROM agents ORDER BY id")
        return [_agent(row) for row in rows]

    async def next_assignment(self) -> int:
        return await self._tx(self._next_assignment)

    def _next_assignment(self) -> int:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES ('assignment', 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1"
        )
        row = self._one("SELECT value FROM counters WHERE name = 'assignment'")
        assert row is not None
        return int(row[0])

    # -- event log -----------------------------------------------------------------------

    async def log_event(
        self,
        type: str,
        *,
        conversation_id: str | None = None,
        message_id: str | None = None,
        ticket_id: str | None = None,
        data: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None:
        await self._tx(
            self._event, type, at or _now(), conversation_id, message_id, ticket_id, data
        )

    async def event_cursor(self) -> EventCursor:
        """Where ``events_after`` starts to read only what is logged from now on."""
        row = await self._read(self._one, "SELECT coalesce(max(seq), 0) FROM events")
        return EventCursor(0, int(row[0]) if row else 0)

    async def events_after(
        self, cursor: EventCursor, limit: int = 200
    ) -> tuple[list[Event], EventCursor]:
        """Events logged after ``cursor``, at most ``limit``, and the cursor after them (one
        writer commits in seq order: a range of seq never misses one)."""
        rows = await self._read(
            self._all,
            "SELECT seq, at, type, conversation_id, message_id, ticket_id, data FROM events "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (cursor.seq, limit),
        )
        events = [_event(row) for row in rows]
        return events, (EventCursor(0, events[-1].seq) if events else cursor)

    async def events(self, conversation_id: str | None = None) -> list[Event]:
        query = "SELECT seq, at, type, conversation_id, message_id, ticket_id, data FROM events"
        args: tuple[str, ...] = ()
        if conversation_id is not None:
            query += " WHERE conversation_id = ?"
            args = (conversation_id,)
        rows = await self._read(self._all, query + " ORDER BY seq", args)
        return [_event(row) for row in rows]
