"""SQLite backend (WAL): one connection, one transaction at a time, off the event loop."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from bot.channels.base import InboundMessage, OutboundMessage
from bot.errors import Forbidden, NotFound
from bot.store.base import (
    AgentRecord,
    Conversation,
    ConversationState,
    CustomerRecord,
    Event,
    MessageStatus,
    NewTicket,
    Received,
    StoredMessage,
    Ticket,
    TicketSLA,
    TicketStatus,
)

logger = logging.getLogger(__name__)
SCHEMA_VERSION = 2
_MESSAGE_COLUMNS = (
    "seq, id, conversation_id, direction, type, kind, text, payload, in_reply_to, "
    "client_message_id, status, created_at, acked_at"
)
_TICKET_COLUMNS = (
    "id, reference, conversation_id, customer_id, queue, priority, tier, status, reason, "
    "created_at, first_response_due, first_responded_at, next_response_due, resolved_at, "
    "assignee, resolution_due, assigned_at, sla"
)
# What a ticket update may change: everything but its identity and creation.
_TICKET_MUTABLE = (
    "queue, priority, tier, status, first_response_due, first_responded_at, next_response_due, "
    "resolved_at, assignee, resolution_due, assigned_at, sla"
)
_AGENT_COLUMNS = "id, name, presence, capacity, skills, queues, last_assigned"
# Crockford-style alphabet without look-alikes, for references customers read out loud.
_REF_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ts(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("timestamps must be time-zone aware")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _opt_ts(value: datetime | None) -> str | None:
    return None if value is None else _ts(value)


def _now() -> datetime:
    return datetime.now(UTC)


def new_reference() -> str:
    return "PR-" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(5))


def _message(row: aiosqlite.Row) -> StoredMessage:
    return StoredMessage(
        seq=row[0],
        id=row[1],
        conversation_id=row[2],
        direction=row[3],
        type=row[4],
        kind=row[5],
        text=row[6],
        payload=json.loads(row[7]),
        in_reply_to=row[8],
        client_message_id=row[9],
        status=row[10],
        created_at=datetime.fromisoformat(row[11]),
        acked_at=_dt(row[12]),
    )


def _ticket(row: aiosqlite.Row) -> Ticket:
    return Ticket(
        id=row[0],
        reference=row[1],
        conversation_id=row[2],
        customer_id=row[3],
        queue=row[4],
        priority=row[5],
        tier=row[6],
        status=TicketStatus(row[7]),
        reason=row[8],
        created_at=datetime.fromisoformat(row[9]),
        first_response_due=datetime.fromisoformat(row[10]),
        first_responded_at=_dt(row[11]),
        next_response_due=_dt(row[12]),
        resolved_at=_dt(row[13]),
        assignee=row[14],
        resolution_due=_dt(row[15]),
        assigned_at=_dt(row[16]),
        sla=_sla_from_json(row[17]),
    )


def _sla_to_json(sla: TicketSLA) -> str:
    return json.dumps(
        {
            "policy": sla.policy,
            "calendar": sla.calendar,
            "pauses": [[_ts(a), None if b is None else _ts(b)] for a, b in sla.pauses],
            "next_response_from": _opt_ts(sla.next_response_from),
            "last_agent_reply_at": _opt_ts(sla.last_agent_reply_at),
        }
    )


def _sla_from_json(text: str) -> TicketSLA:
    data = json.loads(text)
    return TicketSLA(
        policy=data.get("policy", {}),
        calendar=data.get("calendar", "default"),
        pauses=tuple((datetime.fromisoformat(a), _dt(b)) for a, b in data.get("pauses", [])),
        next_response_from=_dt(data.get("next_response_from")),
        last_agent_reply_at=_dt(data.get("last_agent_reply_at")),
    )


def _ticket_values(ticket: Ticket) -> tuple[Any, ...]:
    """The ``_TICKET_MUTABLE`` columns of a ticket, in that order."""
    return (
        ticket.queue,
        ticket.priority,
        ticket.tier,
        ticket.status,
        _ts(ticket.first_response_due),
        _opt_ts(ticket.first_responded_at),
        _opt_ts(ticket.next_response_due),
        _opt_ts(ticket.resolved_at),
        ticket.assignee,
        _opt_ts(ticket.resolution_due),
        _opt_ts(ticket.assigned_at),
        _sla_to_json(ticket.sla),
    )


def _agent(row: aiosqlite.Row) -> AgentRecord:
    return AgentRecord(
        id=row[0],
        name=row[1],
        presence=row[2],
        capacity=row[3],
        skills=tuple(json.loads(row[4])),
        queues=tuple(json.loads(row[5])),
        last_assigned=row[6],
    )


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("bot.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def _strip_comments(script: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in script.splitlines())


def _conversation(row: aiosqlite.Row) -> Conversation:
    return Conversation(
        id=row[0],
        customer_id=row[1],
        channel=row[2],
        state=ConversationState(row[3]),
        created_at=datetime.fromisoformat(row[4]),
    )


class SQLiteStore:
    """``Store`` on a SQLite file in WAL mode.

    aiosqlite runs each statement on its own thread, so the loop never blocks on disk; the
    lock makes each multi-statement operation one transaction that nothing interleaves with.
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SQLiteStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",  # durable across process crashes; WAL keeps it consistent
            "foreign_keys=ON",
            "busy_timeout=5000",
        ):
            await db.execute(f"PRAGMA {pragma}")
        store = cls(db)
        try:
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        """Version 1 is the base schema; each ``migrations/NNN_*.sql`` raises it by one."""
        schema = resources.files("bot.store").joinpath("schema_sqlite.sql").read_text()
        await self._db.executescript(schema)
        async with self._tx() as db:
            row = await (await db.execute("SELECT max(version) FROM schema_version")).fetchone()
            current = row[0] if row and row[0] is not None else None
            if current is None:
                current = 1
                await db.execute("INSERT INTO schema_version VALUES (1)")
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"database schema version {current} is newer than this code ({SCHEMA_VERSION})"
                )
            for version, script in _migrations():
                if version > current:
                    logger.info("migrating the database to schema version %d", version)
                    for statement in filter(str.strip, _strip_comments(script).split(";")):
                        await db.execute(statement)
                    await db.execute("UPDATE schema_version SET version = ?", (version,))

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield self._db

    async def ping(self) -> None:
        async with self._read() as db:
            await db.execute("SELECT 1")

    # -- inbox ---------------------------------------------------------------------------

    async def receive(self, msg: InboundMessage) -> Received:
        async with self._tx() as db:
            customer = await self._customer_for(db, msg)
            existing = await (
                await db.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE direction = 'in' "
                    "AND channel = ? AND sender = ? AND client_message_id = ?",
                    (msg.channel, msg.customer.external_id, msg.platform_message_id),
                )
            ).fetchone()
            if existing is not None:
                stored = _message(existing)
                conversation = await self._get_conversation(db, stored.conversation_id)
                assert conversation is not None
                return Received(stored, conversation, customer, duplicate=True)
            conversation = await self._conversation_for(db, msg, customer.id)
            stored = await self._insert_message(
                db,
                conversation.id,
                direction="in",
                channel=msg.channel,
                sender=msg.customer.external_id,
                client_message_id=msg.platform_message_id,
                type="customer",
                kind=None,
                text=msg.text,
                payload={"attachments": list(msg.attachments)} if msg.attachments else {},
                in_reply_to=None,
                status=MessageStatus.RECEIVED,
                at=msg.received_at,
            )
            await self._event(
                db,
                "received",
                msg.received_at,
                conversation.id,
                stored.id,
                None,
                {"channel": msg.channel, "chars": len(msg.text)},
            )
            return Received(stored, conversation, customer, duplicate=False)

    async def _customer_for(self, db: aiosqlite.Connection, msg: InboundMessage) -> CustomerRecord:
        row = await (
            await db.execute(
                "SELECT c.id, c.name, c.email, c.tier FROM channel_accounts a "
                "JOIN customers c ON c.id = a.customer_id "
                "WHERE a.channel = ? AND a.external_id = ?",
                (msg.channel, msg.customer.external_id),
            )
        ).fetchone()
        name, email = msg.customer.name, msg.customer.email
        if row is None:
            customer_id = uuid.uuid4().hex
            await db.execute(
                "INSERT INTO customers (id, name, email, tier, created_at) VALUES (?, ?, ?, ?, ?)",
                (customer_id, name, email, "consumer", _ts(msg.received_at)),
            )
            await db.execute(
                "INSERT INTO channel_accounts (channel, external_id, customer_id) VALUES (?, ?, ?)",
                (msg.channel, msg.customer.external_id, customer_id),
            )
            return CustomerRecord(customer_id, name, email, "consumer")
        record = CustomerRecord(row[0], row[1], row[2], row[3])
        if (name and name != record.name) or (email and email != record.email):
            await db.execute(
                "UPDATE customers SET name = coalesce(?, name), email = coalesce(?, email) "
                "WHERE id = ?",
                (name, email, record.id),
            )
            record = CustomerRecord(
                record.id, name or record.name, email or record.email, record.tier
            )
        return record

    async def _conversation_for(
        self, db: aiosqlite.Connection, msg: InboundMessage, customer_id: str
    ) -> Conversation:
        if msg.conversation_id is not None:
            conversation = await self._get_conversation(db, msg.conversation_id)
            if conversation is None:
                raise NotFound(
                    "unknown_conversation", "no conversation with that id", field="conversation_id"
                )
            if conversation.customer_id != customer_id:
                raise Forbidden(
                    "conversation_mismatch",
                    "that conversation belongs to another customer",
                    field="conversation_id",
                )
            return conversation
        row = await (
            await db.execute(
                "SELECT id, customer_id, channel, state, created_at FROM conversations "
                "WHERE customer_id = ? AND channel = ? ORDER BY created_at DESC LIMIT 1",
                (customer_id, msg.channel),
            )
        ).fetchone()
        if row is not None:
            return _conversation(row)
        conversation = Conversation(
            uuid.uuid4().hex, customer_id, msg.channel, ConversationState.BOT, msg.received_at
        )
        await db.execute(
            "INSERT INTO conversations (id, customer_id, channel, state, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (conversation.id, customer_id, msg.channel, conversation.state, _ts(msg.received_at)),
        )
        await self._event(
            db,
            "conversation_started",
            msg.received_at,
            conversation.id,
            None,
            None,
            {"channel": msg.channel},
        )
        return conversation

    async def _get_conversation(
        self, db: aiosqlite.Connection, conversation_id: str
    ) -> Conversation | None:
        row = await (
            await db.execute(
                "SELECT id, customer_id, channel, state, created_at FROM conversations "
                "WHERE id = ?",
                (conversation_id,),
            )
        ).fetchone()
        return None if row is None else _conversation(row)

    async def _insert_message(
        self,
        db: aiosqlite.Connection,
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
        cursor = await db.execute(
            "INSERT INTO messages (id, conversation_id, direction, channel, sender, "
            "client_message_id, type, kind, text, payload, in_reply_to, status, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        )

    async def _event(
        self,
        db: aiosqlite.Connection,
        type: str,
        at: datetime,
        conversation_id: str | None,
        message_id: str | None,
        ticket_id: str | None,
        data: dict[str, Any] | None,
    ) -> None:
        await db.execute(
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
    ) -> StoredMessage:
        at = at or _now()
        async with self._tx() as db:
            conversation = await self._get_conversation(db, conversation_id)
            if conversation is None:
                raise NotFound("unknown_conversation", "no conversation with that id")
            stored = await self._insert_message(
                db,
                conversation_id,
                direction="out",
                channel=conversation.channel,
                sender=None,
                client_message_id=None,
                type=reply.type,
                kind=reply.kind,
                text=reply.text,
                payload=_payload(reply),
                in_reply_to=reply.in_reply_to,
                status=None,
                at=at,
            )
            if acks is not None:
                await db.execute(
                    "UPDATE messages SET acked_at = ? WHERE id = ? AND acked_at IS NULL",
                    (_ts(at), acks),
                )
            await self._event(db, event, at, conversation_id, acks or stored.id, None, data)
            return stored

    async def messages(self, conversation_id: str, after: int = 0) -> list[StoredMessage]:
        async with self._read() as db:
            rows = await db.execute_fetchall(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND seq > ? "
                "ORDER BY seq",
                (conversation_id, after),
            )
        return [_message(row) for row in rows]

    async def message(self, message_id: str) -> StoredMessage | None:
        async with self._read() as db:
            row = await (
                await db.execute(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
                )
            ).fetchone()
        return None if row is None else _message(row)

    async def set_status(self, message_id: str, status: MessageStatus) -> None:
        async with self._tx() as db:
            await db.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))

    async def unanswered(self) -> list[StoredMessage]:
        async with self._read() as db:
            rows = await db.execute_fetchall(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE direction = 'in' "
                "AND status IN ('received', 'pending') ORDER BY seq"
            )
        return [_message(row) for row in rows]

    async def conversation(self, conversation_id: str) -> Conversation | None:
        async with self._read() as db:
            return await self._get_conversation(db, conversation_id)

    async def customer(self, customer_id: str) -> CustomerRecord | None:
        async with self._read() as db:
            row = await (
                await db.execute(
                    "SELECT id, name, email, tier, language FROM customers WHERE id = ?",
                    (customer_id,),
                )
            ).fetchone()
        return None if row is None else CustomerRecord(*row)

    async def customer_id_for(self, channel: str, external_id: str) -> str | None:
        async with self._read() as db:
            row = await (
                await db.execute(
                    "SELECT customer_id FROM channel_accounts "
                    "WHERE channel = ? AND external_id = ?",
                    (channel, external_id),
                )
            ).fetchone()
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
        async with self._tx() as db:
            row = await (
                await db.execute(
                    "SELECT customer_id FROM channel_accounts "
                    "WHERE channel = ? AND external_id = ?",
                    (channel, external_id),
                )
            ).fetchone()
            if row is not None:
                await db.execute(
                    "UPDATE customers SET tier = ?, name = coalesce(?, name), "
                    "email = coalesce(?, email), language = coalesce(?, language) WHERE id = ?",
                    (tier, name, email, language, row[0]),
                )
                return str(row[0]), False
            customer_id = uuid.uuid4().hex
            await db.execute(
                "INSERT INTO customers (id, name, email, tier, language, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (customer_id, name, email, tier, language, _ts(_now())),
            )
            await db.execute(
                "INSERT INTO channel_accounts (channel, external_id, customer_id) VALUES (?, ?, ?)",
                (channel, external_id, customer_id),
            )
            return customer_id, True

    # -- tickets -------------------------------------------------------------------------

    async def create_ticket(self, ticket: NewTicket) -> Ticket:
        async with self._tx() as db:
            open_row = await (
                await db.execute(
                    f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE conversation_id = ? "
                    "AND status != 'resolved'",
                    (ticket.conversation_id,),
                )
            ).fetchone()
            if open_row is not None:
                return _ticket(open_row)
            conversation = await self._get_conversation(db, ticket.conversation_id)
            if conversation is None:
                raise NotFound("unknown_conversation", "no conversation with that id")
            for _ in range(10):
                reference = new_reference()
                taken = await (
                    await db.execute("SELECT 1 FROM tickets WHERE reference = ?", (reference,))
                ).fetchone()
                if taken is None:
                    break
            created = Ticket(
                id=uuid.uuid4().hex,
                reference=reference,
                conversation_id=ticket.conversation_id,
                customer_id=conversation.customer_id,
                queue=ticket.queue,
                priority=ticket.priority,
                tier=ticket.tier,
                status=TicketStatus.NEW,
                reason=ticket.reason,
                created_at=ticket.created_at,
                first_response_due=ticket.first_response_due,
                first_responded_at=None,
                next_response_due=None,
                resolved_at=None,
                assignee=None,
                resolution_due=ticket.resolution_due,
                assigned_at=None,
                sla=ticket.sla,
            )
            await db.execute(
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
            await db.execute(
                "UPDATE conversations SET state = ? WHERE id = ?",
                (ConversationState.WAITING_AGENT, ticket.conversation_id),
            )
            await self._event(
                db,
                "handed_off",
                ticket.created_at,
                ticket.conversation_id,
                None,
                created.id,
                {
                    "queue": created.queue,
                    "priority": created.priority,
                    "tier": created.tier,
                    "reason": created.reason,
                    "policy": created.sla.policy.get("name"),
                    "first_response_due": _ts(created.first_response_due),
                    "resolution_due": _opt_ts(created.resolution_due),
                },
            )
            return created

    async def ticket(self, ticket_id: str) -> Ticket | None:
        async with self._read() as db:
            return await self._get_ticket(db, ticket_id)

    async def _get_ticket(self, db: aiosqlite.Connection, ticket_id: str) -> Ticket | None:
        row = await (
            await db.execute(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,))
        ).fetchone()
        return None if row is None else _ticket(row)

    async def open_ticket(self, conversation_id: str) -> Ticket | None:
        async with self._read() as db:
            row = await (
                await db.execute(
                    f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE conversation_id = ? "
                    "AND status != 'resolved'",
                    (conversation_id,),
                )
            ).fetchone()
        return None if row is None else _ticket(row)

    async def tickets(self, status: str | None = None) -> list[Ticket]:
        query = f"SELECT {_TICKET_COLUMNS} FROM tickets"
        args: tuple[str, ...] = ()
        if status == "open":
            query += " WHERE status != 'resolved'"
        elif status is not None:
            query += " WHERE status = ?"
            args = (status,)
        async with self._read() as db:
            rows = await db.execute_fetchall(query + " ORDER BY created_at", args)
        return [_ticket(row) for row in rows]

    async def first_responses(self, queue: str, limit: int) -> list[tuple[datetime, datetime]]:
        async with self._read() as db:
            rows = await db.execute_fetchall(
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
        async with self._tx() as db:
            await self._write_ticket(db, ticket)
            if conversation_state is not None:
                await db.execute(
                    "UPDATE conversations SET state = ? WHERE id = ?",
                    (conversation_state, ticket.conversation_id),
                )
            await self._event(db, event, at, ticket.conversation_id, None, ticket.id, data)
        return ticket

    async def _write_ticket(self, db: aiosqlite.Connection, ticket: Ticket) -> None:
        assignments = ", ".join(f"{column.strip()} = ?" for column in _TICKET_MUTABLE.split(","))
        cursor = await db.execute(
            f"UPDATE tickets SET {assignments} WHERE id = ?", (*_ticket_values(ticket), ticket.id)
        )
        if cursor.rowcount != 1:
            raise NotFound("not_found", "no ticket with that id")

    async def record_agent_reply(
        self,
        ticket: Ticket,
        reply: OutboundMessage,
        agent_id: str,
        at: datetime,
        data: dict[str, Any],
    ) -> StoredMessage:
        async with self._tx() as db:
            conversation = await self._get_conversation(db, ticket.conversation_id)
            assert conversation is not None
            stored = await self._insert_message(
                db,
                ticket.conversation_id,
                direction="out",
                channel=conversation.channel,
                sender=agent_id,
                client_message_id=None,
                type=reply.type,
                kind=None,
                text=reply.text,
                payload=_payload(reply),
                in_reply_to=None,
                status=None,
                at=at,
            )
            await self._write_ticket(db, ticket)
            await db.execute(
                "UPDATE conversations SET state = ? WHERE id = ?",
                (ConversationState.WITH_AGENT, ticket.conversation_id),
            )
            await self._event(
                db, "agent_replied", at, ticket.conversation_id, stored.id, ticket.id, data
            )
            return stored

    async def fire_timer(
        self,
        ticket_id: str,
        name: str,
        due: datetime,
        at: datetime,
        event: str,
        data: dict[str, Any],
    ) -> bool:
        async with self._tx() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO sla_fired (ticket_id, name, due, fired_at) "
                "VALUES (?, ?, ?, ?)",
                (ticket_id, name, _ts(due), _ts(at)),
            )
            if cursor.rowcount != 1:
                return False
            ticket = await self._get_ticket(db, ticket_id)
            conversation_id = ticket.conversation_id if ticket else None
            await self._event(db, event, at, conversation_id, None, ticket_id, data)
            return True

    # -- agents --------------------------------------------------------------------------

    async def save_agent(self, agent: AgentRecord, at: datetime) -> None:
        async with self._tx() as db:
            await db.execute(
                f"INSERT INTO agents ({_AGENT_COLUMNS}, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                "presence = excluded.presence, capacity = excluded.capacity, "
                "skills = excluded.skills, queues = excluded.queues, "
                "last_assigned = excluded.last_assigned, updated_at = excluded.updated_at",
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
        async with self._read() as db:
            rows = await db.execute_fetchall(f"SELECT {_AGENT_COLUMNS} FROM agents ORDER BY id")
        return [_agent(row) for row in rows]

    async def next_assignment(self) -> int:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO counters (name, value) VALUES ('assignment', 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1"
            )
            row = await (
                await db.execute("SELECT value FROM counters WHERE name = 'assignment'")
            ).fetchone()
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
        async with self._tx() as db:
            await self._event(db, type, at or _now(), conversation_id, message_id, ticket_id, data)

    async def events(self, conversation_id: str | None = None) -> list[Event]:
        query = "SELECT seq, at, type, conversation_id, message_id, ticket_id, data FROM events"
        args: Iterable[str] = ()
        if conversation_id is not None:
            query += " WHERE conversation_id = ?"
            args = (conversation_id,)
        async with self._read() as db:
            rows = await db.execute_fetchall(query + " ORDER BY seq", tuple(args))
        return [
            Event(
                row[0],
                datetime.fromisoformat(row[1]),
                row[2],
                row[3],
                row[4],
                row[5],
                json.loads(row[6]),
            )
            for row in rows
        ]


def _payload(reply: OutboundMessage) -> dict[str, Any]:
    payload: dict[str, Any] = dict(reply.extra)
    if reply.citations:
        payload["citations"] = [{"title": c.title, "url": c.url} for c in reply.citations]
    return payload
