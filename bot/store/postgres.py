"""PostgreSQL backend (asyncpg): the ``Store`` several gateway processes share.

Every operation is one transaction on a pooled connection. What SQLite gets from having one
writer, this backend gets from locks taken in one order, so concurrent transactions wait
for each other instead of deadlocking:

1. per-sender advisory locks (channel account, verified email/phone): one sender's messages
   are received one at a time, so a new customer or conversation is created once;
2. the customer row (``receive``, ``move_ticket``, ``merge_customers``);
3. conversation rows: every transaction that adds a message to a conversation locks its
   row first, so within a conversation ``seq`` order is commit order and a client reading
   ``messages(after=seq)`` never skips a message that commits late;
4. agent rows (``assign_ticket`` checks capacity with the agent's row locked), then the
   assignment counter;
5. ticket rows.

A ticket row is written whole only over the version it was read at (``Ticket.version``,
bumped by every write of the row): a gateway's change computed from a ticket another
gateway has changed since is ``Conflict("ticket_changed")`` and rolls back, and the ticket
service re-reads and re-applies it, so concurrent changes compose instead of overwriting.

Work that one gateway of several must take (unanswered messages, replies to deliver) is
claimed with ``FOR UPDATE SKIP LOCKED`` and a lease (``claim_unanswered``,
``claim_deliveries``); an SLA timer fires once because ``sla_fired``'s key decides. A reader
tailing the whole event log uses ``events_after``, not ``seq``, which is not commit order
across conversations.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bot.channels.base import EVENT_KINDS, InboundMessage, OutboundMessage
from bot.errors import Conflict, NotFound, StorageError, StorageUnavailable
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
from bot.store.common import (
    agent_from_row,
    aware,
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

logger = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
Conn = Any  # asyncpg.Connection (asyncpg ships no type information)
Record = Any  # asyncpg.Record

_MESSAGE_COLUMNS = (
    "seq, id, conversation_id, direction, type, kind, text, payload, in_reply_to, "
    "client_message_id, status, created_at, acked_at, delivery_status, delivery"
)
_TICKET_COLUMNS = (
    "id, reference, conversation_id, customer_id, queue, priority, tier, status, reason, "
    "created_at, first_response_due, first_responded_at, next_response_due, resolved_at, "
    "assignee, resolution_due, assigned_at, sla, version"
)
# What a ticket update may change ($1..$12): everything but its identity and creation.
_TICKET_MUTABLE = (
    "queue, priority, tier, status, first_response_due, first_responded_at, next_response_due, "
    "resolved_at, assignee, resolution_due, assigned_at, sla"
)
_AGENT_COLUMNS = "id, name, presence, capacity, skills, queues, last_assigned"
_CONVERSATION_COLUMNS = "id, customer_id, channel, state, created_at, reply_to"
_EVENT_KINDS = sorted(EVENT_KINDS)
# pg_advisory_xact_lock key held while a process creates or migrates the schema ("PROMPTLY").
_MIGRATION_LOCK = 0x50524F4D50544C59
_ATTEMPTS = 3  # of a transaction that a concurrent one got in the way of
_ACQUIRE_TIMEOUT = 10.0  # seconds to wait for a free pooled connection
_COMMAND_TIMEOUT = 30.0
# How long a gateway's claim on a message (to answer or to deliver) holds without renewal:
# past it, another gateway takes the work over (the first one died or lost the database).
DEFAULT_LEASE = timedelta(seconds=30)

# A server that cannot take the work now (as opposed to a bug in a statement): unreachable,
# connection lost, shutting down or starting, out of connections, disk or memory, read-only
# (a standby), a statement cancelled by its timeout, a deadlock or serialisation failure.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.TransactionRollbackError,
    asyncpg.LockNotAvailableError,
)


class _Retry(Exception):
    """A concurrent transaction changed what this one read: run it again from the start."""


# asyncpg decodes timestamps, and JSON with the codec ``_init_connection`` sets: its rows go
# to the shared constructors as they are.
_message = message_from_row
_ticket = ticket_from_row
_agent = agent_from_row
_conversation = conversation_from_row
_event = event_from_row


def _ticket_values(ticket: Ticket) -> tuple[Any, ...]:
    """The ``_TICKET_MUTABLE`` columns of a ticket, in that order, its times checked aware."""
    return tuple(aware(v) if isinstance(v, datetime) else v for v in ticket_values(ticket))


def _now() -> datetime:
    return datetime.now(UTC)


def connect_error(url: str, error: BaseException) -> StorageError | StorageUnavailable:
    """What a failed connection to ``url`` means: the server cannot be reached (or not now),
    or the database cannot be used as configured (no such database, authentication)."""
    if isinstance(error, _UNAVAILABLE):
        return _unavailable(error)
    return StorageError(f"cannot use the database at {redacted(url)}: {error}")


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _storable(text: str) -> str:
    """``text`` without NUL, which PostgreSQL text refuses (as ``bot.channels.email`` does)."""
    return text.replace("\x00", "")


def _opt_storable(text: str | None) -> str | None:
    return None if text is None else _storable(text)


def _lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for a sender or an identity."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _schema_script() -> str:
    return resources.files("bot.store").joinpath("pg", "schema.sql").read_text(encoding="utf-8")


def migrations() -> list[tuple[int, str]]:
    """``pg/migrations/NNN_*.sql``, by version: each mirrors SQLite's migration NNN."""
    return migration_scripts("pg", "migrations")


async def _init_connection(conn: Conn) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _unavailable(error: BaseException) -> StorageUnavailable:
    unavailable = StorageUnavailable(str(error) or type(error).__name__)
    unavailable.__cause__ = error
    return unavailable


_UNANSWERED = "direction = 'in' AND status IN ('received', 'pending')"
_DELIVERIES = "delivery_status = 'pending'"


class PostgresStore:
    """``Store`` on a PostgreSQL database that several gateway processes may share.

    A caller cancelled while its operation runs rolls that transaction back (asyncpg resets
    the connection), unlike SQLite, where an operation once started completes.
    """

    def __init__(
        self, pool: asyncpg.Pool, owner: str | None = None, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        self._pool = pool
        # The gateway this store serves: what it stores to answer or deliver is claimed for
        # it (leased), so another gateway sharing the database leaves it alone while it lives.
        self.owner = owner
        self.lease = lease

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        owner: str | None = None,
        lease: timedelta = DEFAULT_LEASE,
    ) -> PostgresStore:
        """Connect a pool to ``url``, then create or migrate the schema, once across
        processes: the work runs under a transaction-scoped advisory lock, so a second
        process opening at the same time waits, then finds the schema current."""
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                command_timeout=_COMMAND_TIMEOUT,
            )
        except (*_UNAVAILABLE, asyncpg.PostgresError) as e:
            raise connect_error(url, e) from e
        store = cls(pool, owner, lease)
        try:
            await store._tx(store._migrate)
        except BaseException as e:
            await store.close()
            if isinstance(e, asyncpg.PostgresError):  # e.g. no right to create tables
                raise StorageError(f"cannot create or migrate the schema: {e}") from e
            raise
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    async def run(self, fn: Callable[[Conn], Awaitable[T]], *, write: bool) -> T:
        """Run ``await fn(connection)``, as one transaction when ``write`` (retried like the
        store's own after a deadlock or serialisation failure): ``SQLiteStore.run``'s
        counterpart for repositories in their own modules (accounts, articles, …)."""
        if write:
            return await self._tx(fn)
        async with self._connection() as conn:
            return await fn(conn)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        """A pooled connection; a server that cannot take the work is ``StorageUnavailable``."""
        try:
            async with self._pool.acquire(timeout=_ACQUIRE_TIMEOUT) as conn:
                try:
                    yield conn
                except asyncpg.InterfaceError as e:
                    # Lost under a transaction: asyncpg reports that its rollback cannot run.
                    lost = e.__context__
                    if isinstance(lost, _UNAVAILABLE) or "connection is closed" in str(e):
                        raise _unavailable(lost if isinstance(lost, _UNAVAILABLE) else e) from e
                    raise
        except _UNAVAILABLE as e:
            raise _unavailable(e) from e

    async def _tx(
        self,
        fn: Callable[Concatenate[Conn, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(connection, …)`` as one transaction; again, up to twice, when it asks to
        (``_Retry``) or PostgreSQL rolled it back for a deadlock or a serialisation failure."""
        for attempt in range(_ATTEMPTS):
            try:
                async with self._connection() as conn, conn.transaction():
                    return await fn(conn, *args, **kwargs)
            except (_Retry, StorageUnavailable) as e:
                rolled_back = isinstance(e.__cause__, asyncpg.TransactionRollbackError)
                if not (isinstance(e, _Retry) or rolled_back):
                    raise
                if attempt == _ATTEMPTS - 1:
                    raise StorageUnavailable("concurrent changes kept conflicting") from e
                logger.debug("running %s again: %s", fn.__name__, e)
        raise AssertionError("unreachable")

    async def _read(self, query: str, *args: Any) -> list[Record]:
        async with self._connection() as conn:
            rows: list[Record] = await conn.fetch(query, *args)
        return rows

    async def _read_one(self, query: str, *args: Any) -> Record | None:
        async with self._connection() as conn:
            return await conn.fetchrow(query, *args)

    # -- schema --------------------------------------------------------------------------

    async def _migrate(self, conn: Conn) -> None:
        """Version 1 is ``pg/schema.sql``; each ``pg/migrations/NNN_*.sql`` raises it by one."""
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
            await conn.execute(_schema_script())
        current = await conn.fetchval("SELECT max(version) FROM schema_version")
        if current is None:
            current = 1
            await conn.execute("INSERT INTO schema_version VALUES (1)")
        check_schema_version(current)
        for version, script in migrations():
            if version > current:
                logger.info("migrating the database to schema version %d", version)
                await conn.execute(script)
                await conn.execute("UPDATE schema_version SET version = $1", version)

    # -- inbox ---------------------------------------------------------------------------

    async def receive(self, msg: InboundMessage) -> Received:
        aware(msg.received_at)
        return await self._tx(self._receive, msg)

    async def _receive(self, conn: Conn, msg: InboundMessage) -> Received:
        claimed = identities(msg)
        keys = [_lock_key("account", msg.channel, msg.customer.external_id)]
        keys += [_lock_key(kind, value) for kind, value in claimed]
        await conn.executemany("SELECT pg_advisory_xact_lock($1)", [(k,) for k in sorted(keys)])
        customer = await self._customer_for(conn, msg, claimed)
        existing = await conn.fetchrow(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE direction = 'in' "
            "AND channel = $1 AND sender = $2 AND client_message_id = $3",
            msg.channel,
            msg.customer.external_id,
            msg.platform_message_id,
        )
        if existing is not None:
            stored = _message(existing)
            conversation = await _get_conversation(conn, stored.conversation_id)
            assert conversation is not None
            return Received(stored, conversation, customer, duplicate=True)
        conversation = await self._conversation_for(conn, msg, customer.id)
        reply_to = moved_reply_to(msg, conversation)
        if reply_to is not None:
            await conn.execute(
                "UPDATE conversations SET reply_to = $1 WHERE id = $2", reply_to, conversation.id
            )
            conversation = replace(conversation, reply_to=reply_to)
        if msg.kind not in EVENT_KINDS:  # a reaction or a join is not the customer writing
            conversation = await self._follow_open_ticket(conn, conversation, msg.received_at)
        stored = await _insert_message(
            conn,
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
            claim=self._claim_for_me,
            status=MessageStatus.RECEIVED,
            at=msg.received_at,
        )
        await _event_row(
            conn,
            "received",
            msg.received_at,
            conversation.id,
            stored.id,
            None,
            {"channel": msg.channel, "chars": len(msg.text)},
        )
        return Received(stored, conversation, customer, duplicate=False)

    async def _customer_for(
        self, conn: Conn, msg: InboundMessage, claimed: list[tuple[str, str]]
    ) -> CustomerRecord:
        row = await conn.fetchrow(
            "SELECT customer_id FROM channel_accounts WHERE channel = $1 AND external_id = $2",
            msg.channel,
            msg.customer.external_id,
        )
        name, email = _opt_storable(msg.customer.name), _opt_storable(msg.customer.email)
        customer_id = row[0] if row else await _customer_by_identity(conn, claimed)
        if customer_id is None:
            customer_id = uuid.uuid4().hex
            await conn.execute(
                "INSERT INTO customers (id, name, email, tier, created_at) "
                "VALUES ($1, $2, $3, 'consumer', $4)",
                customer_id,
                name,
                email,
                msg.received_at,
            )
        # Locked before anything refers to it: a merge or a message of this customer on
        # another channel waits for us (and a merge that deleted it first makes us start over).
        locked = await conn.fetchrow(
            "SELECT id, name, email, tier FROM customers WHERE id = $1 FOR NO KEY UPDATE",
            customer_id,
        )
        if locked is None:
            raise _Retry("the customer was merged into another concurrently")
        if row is None:
            linked = await conn.fetchval(
                "INSERT INTO channel_accounts (channel, external_id, customer_id) "
                "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING customer_id",
                msg.channel,
                msg.customer.external_id,
                customer_id,
            )
            if linked is None:
                raise _Retry("the channel account was linked concurrently")
        await _claim_identities(conn, customer_id, claimed, msg.received_at)
        record = CustomerRecord(locked[0], locked[1], locked[2], locked[3])
        updated = with_details(record, name, email)
        if updated is not None:
            await conn.execute(
                "UPDATE customers SET name = coalesce($1, name), email = coalesce($2, email) "
                "WHERE id = $3",
                name,
                email,
                record.id,
            )
            record = updated
        return record

    async def _conversation_for(
        self, conn: Conn, msg: InboundMessage, customer_id: str
    ) -> Conversation:
        if msg.conversation_id is not None:
            conversation = await _lock_conversation(conn, msg.conversation_id)
            return owned_conversation(conversation, customer_id)
        row = await conn.fetchrow(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations "
            "WHERE customer_id = $1 AND channel = $2 ORDER BY created_at DESC LIMIT 1 "
            "FOR NO KEY UPDATE",
            customer_id,
            msg.channel,
        )
        if row is not None:
            return _conversation(row)
        conversation = new_conversation(msg, customer_id)
        await conn.execute(
            "INSERT INTO conversations (id, customer_id, channel, state, created_at, reply_to) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            conversation.id,
            customer_id,
            msg.channel,
            conversation.state,
            msg.received_at,
            conversation.reply_to,
        )
        await _event_row(
            conn,
            "conversation_started",
            msg.received_at,
            conversation.id,
            None,
            None,
            {"channel": msg.channel},
        )
        return conversation

    async def _follow_open_ticket(
        self, conn: Conn, conversation: Conversation, at: datetime
    ) -> Conversation:
        """The customer's open ticket moves to the conversation they wrote in last, so one
        customer has one open ticket and agents answer where the customer is."""
        if conversation.state is not ConversationState.BOT:
            return conversation
        row = await conn.fetchrow(
            "SELECT id, conversation_id FROM tickets WHERE customer_id = $1 "
            "AND status <> 'resolved' AND conversation_id <> $2 "
            "ORDER BY created_at DESC LIMIT 1",
            conversation.customer_id,
            conversation.id,
        )
        if row is None:
            return conversation
        ticket_id, previous_id = row
        previous = await _lock_conversation(conn, previous_id)
        if previous is None or not await _lock_open_ticket(conn, ticket_id, previous_id):
            raise _Retry("the ticket was resolved or moved concurrently")
        await _move_ticket(conn, ticket_id, previous, conversation, at)
        return replace(conversation, state=previous.state)

    async def move_ticket(self, ticket_id: str, conversation_id: str, at: datetime) -> Ticket:
        return await self._tx(self._move_ticket_to, ticket_id, conversation_id, aware(at))

    async def _move_ticket_to(
        self, conn: Conn, ticket_id: str, conversation_id: str, at: datetime
    ) -> Ticket:
        ticket = await _get_ticket(conn, ticket_id)
        if ticket is not None:
            await _lock_customer(conn, ticket.customer_id)
            ticket = await _get_ticket(conn, ticket_id)  # as it is now that no one moves it
        if ticket is None or not ticket.is_open:
            raise NotFound("not_found", "no open ticket with that id")
        conversation = await _lock_conversation(conn, conversation_id)
        if conversation is None or conversation.customer_id != ticket.customer_id:
            raise NotFound("unknown_conversation", "the customer has no such conversation")
        if conversation.id != ticket.conversation_id:
            previous = await _lock_conversation(conn, ticket.conversation_id)
            if previous is None or not await _lock_open_ticket(conn, ticket.id, previous.id):
                raise _Retry("the ticket was resolved or moved concurrently")
            await _move_ticket(conn, ticket.id, previous, conversation, at)
        moved = await _get_ticket(conn, ticket_id)
        assert moved is not None
        return moved

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
        at = aware(at) if at is not None else _now()
        return await self._tx(
            self._add_reply, conversation_id, reply, event, data, acks, at, pending, finishes
        )

    async def _add_reply(
        self,
        conn: Conn,
        conversation_id: str,
        reply: OutboundMessage,
        event: str,
        data: dict[str, Any] | None,
        acks: str | None,
        at: datetime,
        pending: str | None,
        finishes: str | None,
    ) -> StoredMessage:
        conversation = await _lock_conversation(conn, conversation_id)
        if conversation is None:
            raise NotFound("unknown_conversation", "no conversation with that id")
        stored = await _insert_message(
            conn,
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
            claim=self._claim_for_me,
        )
        if acks is not None:
            await conn.execute(
                "UPDATE messages SET acked_at = $1 WHERE id = $2 AND acked_at IS NULL", at, acks
            )
        await _event_row(conn, event, at, conversation_id, acks or stored.id, None, data)
        if acks is not None and pending is not None:
            await conn.execute(
                "UPDATE messages SET status = $1 WHERE id = $2", MessageStatus.PENDING, acks
            )
            await _event_row(conn, "pending", at, conversation_id, acks, None, {"reason": pending})
        if finishes is not None:
            await conn.execute(
                "UPDATE messages SET status = $1 WHERE id = $2", MessageStatus.DONE, finishes
            )
        return stored

    async def messages(self, conversation_id: str, after: int = 0) -> list[StoredMessage]:
        rows = await self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND seq > $2 "
            "ORDER BY seq",
            conversation_id,
            after,
        )
        return [_message(row) for row in rows]

    async def message(self, message_id: str) -> StoredMessage | None:
        row = await self._read_one(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = $1", message_id
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

    async def _set_status(
        self,
        conn: Conn,
        message_id: str,
        status: MessageStatus,
        event: str | None,
        data: dict[str, Any] | None,
    ) -> None:
        conversation_id = await conn.fetchval(
            "UPDATE messages SET status = $1 WHERE id = $2 RETURNING conversation_id",
            status,
            message_id,
        )
        if event is not None:
            await _event_row(conn, event, _now(), conversation_id, message_id, None, data)

    async def unanswered(self) -> list[StoredMessage]:
        rows = await self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE direction = 'in' "
            "AND status IN ('received', 'pending') ORDER BY seq"
        )
        return [_message(row) for row in rows]

    @property
    def _claim_for_me(self) -> tuple[str, timedelta] | None:
        return None if self.owner is None else (self.owner, self.lease)

    async def renew_claims(self) -> int:
        """Extend this gateway's claims on work it still has (the heartbeat); how many."""
        if self.owner is None:
            return 0
        async with self._connection() as conn:
            status = await conn.execute(
                "UPDATE messages SET claimed_until = now() + $2::interval WHERE claimed_by = $1 "
                "AND ((direction = 'in' AND status IN ('received', 'pending')) "
                "OR delivery_status = 'pending')",
                self.owner,
                self.lease,
            )
        return int(status.split()[-1])

    async def take_over(self, limit: int = 100) -> tuple[list[StoredMessage], list[StoredMessage]]:
        """Unanswered messages and replies to deliver whose claim lapsed (their gateway died
        or lost the database), claimed for this one: ``FOR UPDATE SKIP LOCKED``, so two
        gateways taking over at once split them. Nothing while this store has no owner."""
        if self.owner is None:
            return [], []
        unanswered = await self._claim(_UNANSWERED, self.owner, self.lease, limit, lapsed=True)
        deliveries = await self._claim(_DELIVERIES, self.owner, self.lease, limit, lapsed=True)
        return unanswered, deliveries

    async def claim_unanswered(
        self, owner: str | None = None, *, lease: timedelta | None = None, limit: int = 1000
    ) -> list[StoredMessage]:
        """Claim up to ``limit`` unanswered inbound messages for gateway ``owner``, oldest
        first, until ``lease`` from now (the database's clock).

        Picks rows with ``FOR UPDATE SKIP LOCKED``: gateways claiming at once skip each
        other's rows instead of waiting, and each message goes to one of them. A message
        another gateway holds is left out until its lease ends (that gateway died); the
        owner's own claims come back, renewed. Without an owner (one gateway): all of them.
        """
        owner = owner or self.owner
        if owner is None:
            return await self.unanswered()
        return await self._claim(_UNANSWERED, owner, self.lease if lease is None else lease, limit)

    async def claim_deliveries(
        self, owner: str | None = None, *, lease: timedelta | None = None, limit: int = 1000
    ) -> list[StoredMessage]:
        """``claim_unanswered`` for replies still to push to a platform (``FOR UPDATE SKIP
        LOCKED``, leased): one gateway's dispatcher sends each."""
        owner = owner or self.owner
        if owner is None:
            return await self.pending_deliveries()
        return await self._claim(_DELIVERIES, owner, self.lease if lease is None else lease, limit)

    async def _claim(
        self, condition: str, owner: str, lease: timedelta, limit: int, *, lapsed: bool = False
    ) -> list[StoredMessage]:
        # ``lapsed``: only work nobody holds (a take-over), not this gateway's own.
        mine = "" if lapsed else " OR claimed_by = $1"
        async with self._connection() as conn:
            rows = await conn.fetch(
                "UPDATE messages m SET claimed_by = $1, claimed_until = now() + $2::interval "
                f"FROM (SELECT seq FROM messages WHERE {condition} "
                f"AND (claimed_until IS NULL OR claimed_until < now(){mine}) "
                "ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED) picked "
                f"WHERE m.seq = picked.seq RETURNING "
                + ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(",")),
                owner,
                lease,
                limit,
            )
        return sorted((_message(row) for row in rows), key=lambda m: m.seq)

    async def conversation(self, conversation_id: str) -> Conversation | None:
        async with self._connection() as conn:
            return await _get_conversation(conn, conversation_id)

    async def conversations_of(self, customer_id: str) -> list[Conversation]:
        rows = await self._read(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c WHERE customer_id = $1 "
            "ORDER BY (SELECT max(seq) FROM messages m WHERE m.conversation_id = c.id) "
            "DESC NULLS LAST",
            customer_id,
        )
        return [_conversation(row) for row in rows]

    async def set_delivery(
        self, message_id: str, status: DeliveryStatus, info: dict[str, Any]
    ) -> StoredMessage | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "UPDATE messages SET delivery_status = $1, delivery = $2 WHERE id = $3 "
                f"RETURNING {_MESSAGE_COLUMNS}",
                status,
                info,
                message_id,
            )
        return None if row is None else _message(row)

    async def pending_deliveries(self) -> list[StoredMessage]:
        rows = await self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE delivery_status = 'pending' "
            "ORDER BY seq"
        )
        return [_message(row) for row in rows]

    async def route(self, conversation_id: str) -> Route | None:
        async with self._connection() as conn:
            return await _route(conn, conversation_id)

    # -- customers -----------------------------------------------------------------------

    async def merge_customers(
        self, into: str, other: str, at: datetime, *, by: str | None = None
    ) -> CustomerRecord:
        if into == other:
            raise Conflict("same_customer", "a customer cannot be merged into itself")
        return await self._tx(self._merge_customers, into, other, aware(at), by)

    async def _merge_customers(
        self, conn: Conn, into: str, other: str, at: datetime, by: str | None
    ) -> CustomerRecord:
        kept, gone = customers_to_merge(
            await conn.fetch(
                "SELECT id, name, email, tier, language FROM customers WHERE id = any($1) "
                "ORDER BY id FOR UPDATE",
                [into, other],
            ),
            into,
            other,
        )
        for table in ("channel_accounts", "conversations", "identities"):
            await conn.execute(
                f"UPDATE {table} SET customer_id = $1 WHERE customer_id = $2", into, other
            )
        await conn.execute(
            "UPDATE tickets SET customer_id = $1, version = version + 1 WHERE customer_id = $2",
            into,
            other,
        )
        merged = merged_customer(kept, gone)
        await conn.execute(
            "UPDATE customers SET name = coalesce(name, $1), email = coalesce(email, $2), "
            "language = coalesce(language, $3), tier = $4 WHERE id = $5",
            gone.name,
            gone.email,
            gone.language,
            merged.tier,
            into,
        )
        await conn.execute("DELETE FROM customers WHERE id = $1", other)
        data = {"into": into, "from": other, "by": by}
        await _event_row(conn, "customers_merged", at, None, None, None, data)
        return merged

    async def customer(self, customer_id: str) -> CustomerRecord | None:
        row = await self._read_one(
            "SELECT id, name, email, tier, language FROM customers WHERE id = $1", customer_id
        )
        return None if row is None else CustomerRecord(*row)

    async def customer_id_for(self, channel: str, external_id: str) -> str | None:
        row = await self._read_one(
            "SELECT customer_id FROM channel_accounts WHERE channel = $1 AND external_id = $2",
            channel,
            external_id,
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

    async def _link_customer(
        self,
        conn: Conn,
        channel: str,
        external_id: str,
        tier: str,
        name: str | None,
        email: str | None,
        language: str | None,
    ) -> tuple[str, bool]:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1)", _lock_key("account", channel, external_id)
        )
        customer_id = await conn.fetchval(
            "SELECT customer_id FROM channel_accounts WHERE channel = $1 AND external_id = $2",
            channel,
            external_id,
        )
        if customer_id is not None:
            updated = await conn.fetchval(
                "UPDATE customers SET tier = $1, name = coalesce($2, name), "
                "email = coalesce($3, email), language = coalesce($4, language) WHERE id = $5 "
                "RETURNING 1",
                tier,
                name,
                email,
                language,
                customer_id,
            )
            if updated is None:
                raise _Retry("the customer was merged into another concurrently")
            return str(customer_id), False
        customer_id = uuid.uuid4().hex
        await conn.execute(
            "INSERT INTO customers (id, name, email, tier, language, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            customer_id,
            name,
            email,
            tier,
            language,
            _now(),
        )
        await conn.execute(
            "INSERT INTO channel_accounts (channel, external_id, customer_id) VALUES ($1, $2, $3)",
            channel,
            external_id,
            customer_id,
        )
        return customer_id, True

    # -- tickets -------------------------------------------------------------------------

    async def create_ticket(self, ticket: NewTicket) -> Ticket:
        for value in (ticket.created_at, ticket.first_response_due):
            aware(value)
        return await self._tx(self._create_ticket, ticket)

    async def _create_ticket(self, conn: Conn, ticket: NewTicket) -> Ticket:
        # Locked first: two handoffs of one conversation at once make one ticket.
        conversation = await _lock_conversation(conn, ticket.conversation_id)
        if conversation is None:
            raise NotFound("unknown_conversation", "no conversation with that id")
        open_row = await conn.fetchrow(
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE conversation_id = $1 "
            "AND status <> 'resolved'",
            ticket.conversation_id,
        )
        if open_row is not None:
            return _ticket(open_row)
        for _ in range(10):
            reference = new_reference()
            if await conn.fetchval("SELECT 1 FROM tickets WHERE reference = $1", reference) is None:
                break
        created = new_ticket(ticket, conversation.customer_id, reference)
        placeholders = ", ".join(f"${n}" for n in range(1, 19))
        await conn.execute(
            f"INSERT INTO tickets (id, reference, conversation_id, customer_id, reason, "
            f"created_at, {_TICKET_MUTABLE}) VALUES ({placeholders})",
            created.id,
            created.reference,
            created.conversation_id,
            created.customer_id,
            created.reason,
            created.created_at,
            *_ticket_values(created),
        )
        await conn.execute(
            "UPDATE conversations SET state = $1 WHERE id = $2",
            ConversationState.WAITING_AGENT,
            ticket.conversation_id,
        )
        await _event_row(
            conn,
            "handed_off",
            ticket.created_at,
            ticket.conversation_id,
            None,
            created.id,
            handoff_data(created),
        )
        return created

    async def ticket(self, ticket_id: str) -> Ticket | None:
        async with self._connection() as conn:
            return await _get_ticket(conn, ticket_id)

    async def open_ticket(self, conversation_id: str) -> Ticket | None:
        row = await self._read_one(
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE conversation_id = $1 "
            "AND status <> 'resolved'",
            conversation_id,
        )
        return None if row is None else _ticket(row)

    async def tickets(self, status: str | None = None) -> list[Ticket]:
        query = f"SELECT {_TICKET_COLUMNS} FROM tickets"
        args: tuple[str, ...] = ()
        if status == "open":
            query += " WHERE status <> 'resolved'"
        elif status is not None:
            query += " WHERE status = $1"
            args = (status,)
        rows = await self._read(query + " ORDER BY created_at, id", *args)
        return [_ticket(row) for row in rows]

    async def assigned_load(self) -> dict[str, int]:
        rows = await self._read(
            "SELECT assignee, count(*) FROM tickets WHERE status <> 'resolved' "
            "AND assignee IS NOT NULL GROUP BY assignee"
        )
        return {str(assignee): int(count) for assignee, count in rows}

    async def queue_position(self, queue: str, created_before: datetime) -> int:
        row = await self._read_one(
            "SELECT count(*) FROM tickets WHERE queue = $1 AND status <> 'resolved' "
            "AND assignee IS NULL AND created_at < $2",
            queue,
            aware(created_before),
        )
        return int(row[0]) if row else 0

    async def first_responses(self, queue: str, limit: int) -> list[tuple[datetime, datetime]]:
        rows = await self._read(
            "SELECT created_at, first_responded_at FROM tickets WHERE queue = $1 "
            "AND first_responded_at IS NOT NULL ORDER BY first_responded_at DESC LIMIT $2",
            queue,
            limit,
        )
        return [(a, b) for a, b in rows]

    async def save_ticket(
        self,
        ticket: Ticket,
        *,
        event: str,
        at: datetime,
        data: dict[str, Any] | None = None,
        conversation_state: ConversationState | None = None,
    ) -> Ticket:
        values = _ticket_values(ticket)
        await self._tx(
            self._save_ticket, ticket, values, event, aware(at), data, conversation_state
        )
        return replace(ticket, version=ticket.version + 1)

    async def _save_ticket(
        self,
        conn: Conn,
        ticket: Ticket,
        values: tuple[Any, ...],
        event: str,
        at: datetime,
        data: dict[str, Any] | None,
        conversation_state: ConversationState | None,
    ) -> None:
        if conversation_state is not None:  # the conversation row before the ticket's
            await conn.execute(
                "UPDATE conversations SET state = $1 WHERE id = $2",
                conversation_state,
                ticket.conversation_id,
            )
        await _write_ticket(conn, ticket, values)
        await _event_row(conn, event, at, ticket.conversation_id, None, ticket.id, data)

    async def assign_ticket(
        self,
        ticket: Ticket,
        *,
        event: str,
        at: datetime,
        data: dict[str, Any] | None = None,
        within_capacity: bool = True,
    ) -> Ticket:
        """Gateways assigning at once queue on the agent's row (``FOR UPDATE``): the capacity
        check counts the open tickets committed before it, the previous assignment's too."""
        if ticket.assignee is None:
            raise ValueError("assign_ticket needs a ticket with an assignee")
        values = _ticket_values(ticket)
        await self._tx(self._assign_ticket, ticket, values, event, aware(at), data, within_capacity)
        return replace(ticket, version=ticket.version + 1)

    async def _assign_ticket(
        self,
        conn: Conn,
        ticket: Ticket,
        values: tuple[Any, ...],
        event: str,
        at: datetime,
        data: dict[str, Any] | None,
        within_capacity: bool,
    ) -> None:
        agent_id = ticket.assignee
        assert agent_id is not None
        agent = await conn.fetchrow(
            "SELECT presence, capacity FROM agents WHERE id = $1 FOR UPDATE", agent_id
        )
        if agent is None:
            raise NotFound("unknown_agent", f"no agent {agent_id!r}", field="agent")
        if within_capacity:
            load = await conn.fetchval(
                "SELECT count(*) FROM tickets WHERE assignee = $1 AND status <> 'resolved' "
                "AND id <> $2",
                agent_id,
                ticket.id,
            )
            check_capacity(agent_id, agent[0], agent[1], int(load))
        await conn.execute(
            "UPDATE agents SET last_assigned = $1, updated_at = $2 WHERE id = $3",
            await _next_assignment(conn),
            at,
            agent_id,
        )
        await _write_ticket(conn, ticket, values)
        await _event_row(conn, event, at, ticket.conversation_id, None, ticket.id, data)

    async def record_agent_reply(
        self,
        ticket: Ticket,
        reply: OutboundMessage,
        agent_id: str,
        at: datetime,
        data: dict[str, Any],
    ) -> StoredMessage:
        values = _ticket_values(ticket)
        return await self._tx(
            self._record_agent_reply, ticket, values, reply, agent_id, aware(at), data
        )

    async def _record_agent_reply(
        self,
        conn: Conn,
        ticket: Ticket,
        values: tuple[Any, ...],
        reply: OutboundMessage,
        agent_id: str,
        at: datetime,
        data: dict[str, Any],
    ) -> StoredMessage:
        conversation = await _lock_conversation(conn, ticket.conversation_id)
        assert conversation is not None
        stored = await _insert_message(
            conn,
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
            claim=self._claim_for_me,
        )
        await _write_ticket(conn, ticket, values)  # a stale ticket rolls the reply back
        await conn.execute(
            "UPDATE conversations SET state = $1 WHERE id = $2",
            ConversationState.WITH_AGENT,
            ticket.conversation_id,
        )
        await _event_row(
            conn, "agent_replied", at, ticket.conversation_id, stored.id, ticket.id, data
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
        then: TicketChange | None = None,
    ) -> bool:
        """Exactly once across gateways too: ``INSERT … ON CONFLICT DO NOTHING`` on
        ``sla_fired``'s key; a second gateway firing the same timer at once waits for the
        first's commit, then finds it fired (no claim needed)."""
        values = None if then is None else _ticket_values(then.ticket)
        return await self._tx(
            self._fire_timer, ticket_id, name, aware(due), aware(at), event, data, then, values
        )

    async def _fire_timer(
        self,
        conn: Conn,
        ticket_id: str,
        name: str,
        due: datetime,
        at: datetime,
        event: str,
        data: dict[str, Any],
        then: TicketChange | None,
        values: tuple[Any, ...] | None,
    ) -> bool:
        fired = await conn.fetchval(
            "INSERT INTO sla_fired (ticket_id, name, due, fired_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            ticket_id,
            name,
            due,
            at,
        )
        if fired is None:
            return False
        conversation_id = await conn.fetchval(
            "SELECT conversation_id FROM tickets WHERE id = $1", ticket_id
        )
        await _event_row(conn, event, at, conversation_id, None, ticket_id, data)
        if then is not None and values is not None:
            await _write_ticket(conn, then.ticket, values)
            for name_, data_ in then.events:
                await _event_row(conn, name_, at, conversation_id, None, ticket_id, data_)
        return True

    # -- agents --------------------------------------------------------------------------

    async def save_agent(self, agent: AgentRecord, at: datetime) -> None:
        async with self._connection() as conn:
            await conn.execute(
                f"INSERT INTO agents ({_AGENT_COLUMNS}, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                "presence = excluded.presence, capacity = excluded.capacity, "
                "skills = excluded.skills, queues = excluded.queues, "
                "updated_at = excluded.updated_at",
                agent.id,
                agent.name,
                agent.presence,
                agent.capacity,
                list(agent.skills),
                list(agent.queues),
                agent.last_assigned,
                aware(at),
            )

    async def agents(self) -> list[AgentRecord]:
        rows = await self._read(f"SELECT {_AGENT_COLUMNS} FROM agents ORDER BY id")
        return [_agent(row) for row in rows]

    async def next_assignment(self) -> int:
        async with self._connection() as conn:
            return await _next_assignment(conn)

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
        at = aware(at) if at is not None else _now()
        async with self._connection() as conn:
            await _event_row(conn, type, at, conversation_id, message_id, ticket_id, data)

    async def event_cursor(self) -> EventCursor:
        """Where ``events_after`` starts to read only what is logged from now on."""
        async with self._connection() as conn:
            xmin = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        return EventCursor(int(xmin), 0)

    async def events_after(
        self, cursor: EventCursor, limit: int = 200
    ) -> tuple[list[Event], EventCursor]:
        """Events logged after ``cursor``, at most ``limit``, and the cursor after them.

        For a reader that tails the log (the console feed, metrics): it never skips an event,
        which ``seq > last seen`` can on PostgreSQL (a lower seq may commit after a higher one
        was read). It reads in (transaction, seq) order, only the events of transactions older
        than every transaction still running, whose events are all there for good; so a
        transaction left open anywhere on the server delays the tail (and loses nothing).
        """
        rows = await self._read(
            "SELECT seq, at, type, conversation_id, message_id, ticket_id, data, tx::text "
            "FROM events WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) "
            "AND (tx, seq) > ($1::text::xid8, $2) ORDER BY tx, seq LIMIT $3",
            str(cursor.tx),
            cursor.seq,
            limit,
        )
        if not rows:
            return [], cursor
        return [_event(row) for row in rows], EventCursor(int(rows[-1][7]), rows[-1][0])

    async def events(self, conversation_id: str | None = None) -> list[Event]:
        query = "SELECT seq, at, type, conversation_id, message_id, ticket_id, data FROM events"
        args: tuple[str, ...] = ()
        if conversation_id is not None:
            query += " WHERE conversation_id = $1"
            args = (conversation_id,)
        rows = await self._read(query + " ORDER BY seq", *args)
        return [_event(row) for row in rows]


# -- statements shared by the operations above (each runs inside the caller's transaction) --


async def _get_conversation(conn: Conn, conversation_id: str) -> Conversation | None:
    row = await conn.fetchrow(
        f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = $1", conversation_id
    )
    return None if row is None else _conversation(row)


async def _lock_conversation(conn: Conn, conversation_id: str) -> Conversation | None:
    """The conversation, its row locked until commit: taken before adding a message to it."""
    row = await conn.fetchrow(
        f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE id = $1 FOR NO KEY UPDATE",
        conversation_id,
    )
    return None if row is None else _conversation(row)


async def _lock_customer(conn: Conn, customer_id: str) -> None:
    await conn.execute("SELECT 1 FROM customers WHERE id = $1 FOR NO KEY UPDATE", customer_id)


async def _lock_open_ticket(conn: Conn, ticket_id: str, conversation_id: str) -> bool:
    """Lock the ticket if it is still open in that conversation (after locking that)."""
    found = await conn.fetchval(
        "SELECT 1 FROM tickets WHERE id = $1 AND conversation_id = $2 "
        "AND status <> 'resolved' FOR NO KEY UPDATE",
        ticket_id,
        conversation_id,
    )
    return found is not None


async def _get_ticket(conn: Conn, ticket_id: str) -> Ticket | None:
    row = await conn.fetchrow(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE id = $1", ticket_id)
    return None if row is None else _ticket(row)


async def _write_ticket(conn: Conn, ticket: Ticket, values: tuple[Any, ...]) -> None:
    """The whole row, only over the version it was read at (see ``Ticket.version``). A
    concurrent writer's uncommitted change of the row makes this wait for its commit, then
    match no row: a ``Conflict``, never a lost update."""
    assignments = ", ".join(
        f"{column.strip()} = ${n}" for n, column in enumerate(_TICKET_MUTABLE.split(","), 1)
    )
    updated = await conn.fetchval(
        f"UPDATE tickets SET {assignments}, version = version + 1 "
        "WHERE id = $13 AND version = $14 RETURNING 1",
        *values,
        ticket.id,
        ticket.version,
    )
    if updated is None:
        exists = await conn.fetchval("SELECT 1 FROM tickets WHERE id = $1", ticket.id)
        raise stale_ticket(exists is not None)


async def _next_assignment(conn: Conn) -> int:
    value = await conn.fetchval(
        "INSERT INTO counters (name, value) VALUES ('assignment', 1) "
        "ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value"
    )
    return int(value)


async def _move_ticket(
    conn: Conn, ticket_id: str, previous: Conversation, conversation: Conversation, at: datetime
) -> None:
    """Both conversations are locked by the caller."""
    await conn.execute(
        "UPDATE tickets SET conversation_id = $1, version = version + 1 WHERE id = $2",
        conversation.id,
        ticket_id,
    )
    await conn.execute(
        "UPDATE conversations SET state = $1 WHERE id = $2", previous.state, conversation.id
    )
    await conn.execute(
        "UPDATE conversations SET state = $1 WHERE id = $2", ConversationState.BOT, previous.id
    )
    await _event_row(
        conn,
        "ticket_followed",
        at,
        conversation.id,
        None,
        ticket_id,
        {"from_conversation": previous.id, "channel": conversation.channel},
    )


async def _customer_by_identity(conn: Conn, claimed: list[tuple[str, str]]) -> str | None:
    for kind, value in claimed:
        customer_id = await conn.fetchval(
            "SELECT customer_id FROM identities WHERE kind = $1 AND value = $2", kind, value
        )
        if customer_id is not None:
            return str(customer_id)
    return None


async def _claim_identities(
    conn: Conn, customer_id: str, claimed: list[tuple[str, str]], at: datetime
) -> None:
    # First come, first served: an identity already linked elsewhere is left to an agent
    # to merge, never moved silently.
    if claimed:
        await conn.executemany(
            "INSERT INTO identities (kind, value, customer_id, created_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            [(kind, value, customer_id, at) for kind, value in claimed],
        )


async def _insert_message(
    conn: Conn,
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
    claim: tuple[str, timedelta] | None = None,
) -> StoredMessage:
    """Insert into a conversation the caller has locked, claimed for ``claim``'s (gateway,
    lease) when given. An inbound message already stored
    (the inbox key) cannot be under ``receive``'s sender lock; should it be, the transaction
    is run again and finds it a duplicate. PostgreSQL text holds no NUL: it is dropped."""
    message_id = uuid.uuid4().hex
    text = _storable(text)
    delivery_status = delivery_status_for(direction, channel)
    owner, lease = claim if claim is not None else (None, timedelta(0))
    seq = await conn.fetchval(
        "INSERT INTO messages (id, conversation_id, direction, channel, sender, "
        "client_message_id, type, kind, text, payload, in_reply_to, status, created_at, "
        "delivery_status, claimed_by, claimed_until) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
        "$9, $10, $11, $12, $13, $14, $15, CASE WHEN $15::text IS NULL THEN NULL "
        "ELSE now() + $16::interval END) "
        "ON CONFLICT (channel, sender, client_message_id) WHERE direction = 'in' DO NOTHING "
        "RETURNING seq",
        message_id,
        conversation_id,
        direction,
        channel,
        sender,
        client_message_id,
        type,
        kind,
        text,
        payload,
        in_reply_to,
        status,
        aware(at),
        delivery_status,
        owner,
        lease,
    )
    if seq is None:
        raise _Retry("the message was stored concurrently")  # the retry finds it: a duplicate
    return StoredMessage(
        seq=seq,
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
        route=None if delivery_status is None else await _route(conn, conversation_id),
    )


async def _event_row(
    conn: Conn,
    type: str,
    at: datetime,
    conversation_id: str | None,
    message_id: str | None,
    ticket_id: str | None,
    data: dict[str, Any] | None,
) -> None:
    await conn.execute(
        "INSERT INTO events (at, type, conversation_id, message_id, ticket_id, data) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        aware(at),
        type,
        conversation_id,
        message_id,
        ticket_id,
        data or {},
    )


async def _route(conn: Conn, conversation_id: str) -> Route | None:
    conversation = await _get_conversation(conn, conversation_id)
    if conversation is None:
        return None
    last = await conn.fetchval(
        "SELECT created_at FROM messages WHERE conversation_id = $1 AND direction = 'in' "
        "AND (kind IS NULL OR kind <> all($2::text[])) ORDER BY seq DESC LIMIT 1",
        conversation_id,
        _EVENT_KINDS,
    )
    return Route(conversation.channel, conversation.reply_to, last)
