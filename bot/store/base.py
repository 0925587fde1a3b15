"""Storage contract: records and the async ``Store`` protocol every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from bot.channels.base import InboundMessage, OutboundMessage


class ConversationState(StrEnum):
    BOT = "bot"
    WAITING_AGENT = "waiting_agent"
    WITH_AGENT = "with_agent"


class MessageStatus(StrEnum):
    RECEIVED = "received"  # stored, not yet answered
    PENDING = "pending"  # the bot could not answer yet (Rasa down); retried when it is back
    DONE = "done"


class DeliveryStatus(StrEnum):
    """A reply's delivery through a messaging platform (``bot.delivery``)."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class TicketStatus(StrEnum):
    NEW = "new"  # no agent has replied yet
    OPEN = "open"
    WAITING = "waiting_on_customer"  # pauses the next-response and resolution clocks
    RESOLVED = "resolved"


@dataclass(frozen=True)
class CustomerRecord:
    id: str
    name: str | None
    email: str | None
    tier: str
    language: str | None = None


@dataclass(frozen=True)
class Conversation:
    id: str
    customer_id: str
    channel: str
    state: ConversationState
    created_at: datetime
    reply_to: dict[str, Any] = field(default_factory=dict)  # where replies go (platforms)


@dataclass(frozen=True)
class Route:
    """Where a platform reply goes and what its messaging window counts from, read in the
    transaction that stored the reply, so delivering it needs no further store access."""

    channel: str
    reply_to: dict[str, Any]
    last_inbound_at: datetime | None


@dataclass(frozen=True)
class StoredMessage:
    """A message in a conversation: inbound (``direction == "in"``) or a reply we sent."""

    seq: int
    id: str
    conversation_id: str
    direction: str
    type: str
    kind: str | None
    text: str
    payload: dict[str, Any]
    in_reply_to: str | None
    client_message_id: str | None
    status: str | None
    created_at: datetime
    acked_at: datetime | None
    delivery_status: DeliveryStatus | None = None  # None: nothing to push (inbound, web)
    delivery: dict[str, Any] = field(default_factory=dict)  # attempts, error, platform ids
    route: Route | None = None  # set on a freshly stored platform reply; never persisted


@dataclass(frozen=True)
class Received:
    message: StoredMessage
    conversation: Conversation
    customer: CustomerRecord
    duplicate: bool


Pause = tuple[datetime, datetime | None]


@dataclass(frozen=True)
class TicketSLA:
    """What a ticket's deadlines derive from, kept with it (see ``bot.handoff.sla``)."""

    policy: dict[str, Any]  # snapshot of the policy it is measured against
    calendar: str  # the queue calendar's name when the policy counts business hours
    pauses: tuple[Pause, ...] = ()  # waiting on the customer; the last may still be open
    next_response_from: datetime | None = None  # customer message awaiting an agent reply
    last_agent_reply_at: datetime | None = None


@dataclass(frozen=True)
class NewTicket:
    conversation_id: str
    queue: str
    priority: str
    tier: str
    reason: str
    created_at: datetime
    first_response_due: datetime
    resolution_due: datetime | None
    sla: TicketSLA


@dataclass(frozen=True)
class Ticket:
    id: str
    reference: str
    conversation_id: str
    customer_id: str
    queue: str
    priority: str
    tier: str
    status: TicketStatus
    reason: str
    created_at: datetime
    first_response_due: datetime
    first_responded_at: datetime | None
    next_response_due: datetime | None
    resolved_at: datetime | None
    assignee: str | None
    resolution_due: datetime | None
    assigned_at: datetime | None
    sla: TicketSLA
    # Bumped by every write of the ticket's row. A whole-row write (``save_ticket``,
    # ``record_agent_reply``, ``assign_ticket``) lands only on the version it was computed
    # from and returns the ticket at the next one; a stale write is ``Conflict("ticket_changed")``.
    version: int = 1

    @property
    def is_open(self) -> bool:
        return self.status is not TicketStatus.RESOLVED


@dataclass(frozen=True)
class TicketChange:
    """A ticket to write (over the version it was read at, like ``save_ticket``) with its
    events, in the transaction of another write (``fire_timer``)."""

    ticket: Ticket
    events: tuple[tuple[str, dict[str, Any]], ...]


@dataclass(frozen=True)
class AgentRecord:
    id: str
    name: str
    presence: str  # online / away / offline
    capacity: int
    skills: tuple[str, ...]
    queues: tuple[str, ...]  # empty: every queue
    last_assigned: int  # assignment counter at this agent's latest assignment (round-robin)


@dataclass(frozen=True)
class Event:
    seq: int
    at: datetime
    type: str
    conversation_id: str | None
    message_id: str | None
    ticket_id: str | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, order=True)
class EventCursor:
    """A position in the event log, for readers that tail it (``events_after``).

    ``seq`` alone is not enough on PostgreSQL: with several writers a lower seq can commit
    after a higher one was read, so the tail there goes by (transaction id, seq). On SQLite,
    whose one writer commits in seq order, ``tx`` is always 0.
    """

    tx: int
    seq: int


class Store(Protocol):
    """Durable state. Every write that changes a conversation appends to the event log in the
    same transaction, so analytics can be recomputed from events alone."""

    async def receive(self, msg: InboundMessage) -> Received:
        """Store an inbound message before anything else happens to it.

        Idempotent on (channel, customer external id, platform message id): a repeat returns
        the stored message with ``duplicate=True``. Links the sender to a customer and the
        message to the given conversation (which must belong to that customer) or to the
        customer's open conversation on that channel, creating either when missing.
        Raises ``NotFound``/``Forbidden`` for an unknown or foreign conversation id.
        """
        ...

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
        """Append a reply and its event; ``acks`` marks that inbound message id as acked.

        ``pending`` (a reason) also marks it pending, with its event, in the same write;
        ``finishes`` marks that inbound message done in the same write (a turn's last reply,
        so a crash cannot leave it answered but still in the inbox, to be answered again).
        """
        ...

    async def messages(self, conversation_id: str, after: int = 0) -> list[StoredMessage]: ...

    async def message(self, message_id: str) -> StoredMessage | None: ...

    async def set_status(
        self,
        message_id: str,
        status: MessageStatus,
        *,
        event: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Set an inbound message's status, with an event about it in the same write."""
        ...

    async def unanswered(self) -> list[StoredMessage]:
        """Inbound messages not yet answered (received or pending), oldest first."""
        ...

    async def conversation(self, conversation_id: str) -> Conversation | None: ...

    async def conversations_of(self, customer_id: str) -> list[Conversation]:
        """The customer's conversations on every channel, latest activity first."""
        ...

    async def set_delivery(
        self, message_id: str, status: DeliveryStatus, info: dict[str, Any]
    ) -> StoredMessage | None:
        """Record a reply's delivery state (and ``delivered``/``delivery_failed`` events)."""
        ...

    async def pending_deliveries(self) -> list[StoredMessage]:
        """Replies still to be pushed to a platform, oldest first."""
        ...

    # Several gateways sharing a database each store their work (inbound messages to
    # answer, replies to deliver) claimed for themselves with a lease they renew; a gateway
    # that dies loses its claims when the lease ends and another takes the work over. A store
    # only one gateway uses (SQLite) has nothing to claim: all of it is its own.

    async def claim_unanswered(self) -> list[StoredMessage]:
        """``unanswered``, less what another live gateway holds; claimed for this one."""
        ...

    async def claim_deliveries(self) -> list[StoredMessage]:
        """``pending_deliveries``, less what another live gateway holds; claimed."""
        ...

    async def renew_claims(self) -> int:
        """Extend this gateway's claims on the work it still has; how many."""
        ...

    async def take_over(self, limit: int = 100) -> tuple[list[StoredMessage], list[StoredMessage]]:
        """(unanswered messages, replies to deliver) whose claims lapsed, now this gateway's."""
        ...

    async def route(self, conversation_id: str) -> Route | None:
        """Where a reply in this conversation goes now, and when the customer last wrote a
        message (not a reaction, edit or join): what messaging windows count from. None for an
        unknown conversation."""
        ...

    async def move_ticket(self, ticket_id: str, conversation_id: str, at: datetime) -> Ticket:
        """Move an open ticket to another conversation of its customer (the agent answers on
        another channel); logs ``ticket_followed``. Raises ``NotFound``."""
        ...

    async def merge_customers(
        self, into: str, other: str, at: datetime, *, by: str | None = None
    ) -> CustomerRecord:
        """Move ``other``'s channel accounts, identities, conversations and tickets to ``into``
        and delete ``other``; logs ``customers_merged`` (with who did it). Raises ``NotFound``."""
        ...

    async def customer(self, customer_id: str) -> CustomerRecord | None: ...

    async def customer_id_for(self, channel: str, external_id: str) -> str | None:
        """The customer linked to a channel account, if any."""
        ...

    async def create_ticket(self, ticket: NewTicket) -> Ticket:
        """Open a ticket, move its conversation to waiting_agent, log ``handed_off``."""
        ...

    async def ticket(self, ticket_id: str) -> Ticket | None: ...

    async def open_ticket(self, conversation_id: str) -> Ticket | None: ...

    async def tickets(self, status: str | None = None) -> list[Ticket]: ...

    async def assigned_load(self) -> dict[str, int]:
        """Open tickets per assignee."""
        ...

    async def queue_position(self, queue: str, created_before: datetime) -> int:
        """Unassigned open tickets of ``queue`` created before the given time."""
        ...

    async def first_responses(self, queue: str, limit: int) -> list[tuple[datetime, datetime]]:
        """(created, first responded) of the queue's latest ``limit`` answered tickets."""
        ...

    async def save_ticket(
        self,
        ticket: Ticket,
        *,
        event: str,
        at: datetime,
        data: dict[str, Any] | None = None,
        conversation_state: ConversationState | None = None,
    ) -> Ticket:
        """Write a ticket's changed fields and its event (and its conversation's state) at once.

        Resolving returns the conversation to the bot: pass ``ConversationState.BOT``.
        Optimistic: writes only while the stored ticket is still at ``ticket.version``, and
        returns it at the next version; otherwise (another gateway changed it since it was
        read) raises ``Conflict("ticket_changed")`` and writes nothing, its event included.
        ``NotFound`` for an unknown ticket.
        """
        ...

    async def assign_ticket(
        self,
        ticket: Ticket,
        *,
        event: str,
        at: datetime,
        data: dict[str, Any] | None = None,
        within_capacity: bool = True,
    ) -> Ticket:
        """``save_ticket`` for a ticket given to ``ticket.assignee``, in one transaction with
        the agent: stamps the agent's ``last_assigned`` with a fresh assignment counter value
        (round-robin order). ``within_capacity`` (automatic assignment) first checks, with the
        agent's row locked, that the agent is online and holds fewer open tickets than their
        capacity, this one apart: ``Conflict("agent_full")`` or ``Conflict("agent_away")``
        otherwise, and nothing written, so gateways assigning at once never exceed it.
        ``NotFound("unknown_agent")`` for an unknown agent.
        """
        ...

    async def record_agent_reply(
        self,
        ticket: Ticket,
        reply: OutboundMessage,
        agent_id: str,
        at: datetime,
        data: dict[str, Any],
    ) -> StoredMessage:
        """Store an agent reply with the ticket as it is after it (conversation -> with_agent).

        Optimistic like ``save_ticket``: a stale ``ticket.version`` is
        ``Conflict("ticket_changed")``, and neither the reply nor the ticket is stored. On
        success the stored ticket is at ``ticket.version + 1``.
        """
        ...

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
        """Record that the SLA timer ``name`` for ``due`` fired, with its event, exactly once;
        ``then`` (what the firing does to the ticket: a breach's escalation) in the same
        transaction, so a crash cannot leave a timer fired and its consequence undone.

        False (and nothing written) when it already fired, e.g. before a restart. A stale
        ``then.ticket`` is ``Conflict("ticket_changed")`` with nothing written.
        """
        ...

    async def save_agent(self, agent: AgentRecord, at: datetime) -> None:
        """Insert or update an agent (name, presence, capacity, skills, queues).

        ``last_assigned`` is written on insert only: afterwards the store stamps it in the
        assignment's own write, so a presence change saved at the same moment cannot undo it.
        """
        ...

    async def agents(self) -> list[AgentRecord]: ...

    async def next_assignment(self) -> int:
        """A fresh value of the assignment counter (round-robin order)."""
        ...

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
        """Set a channel account's customer tier (and details), creating the customer if new.

        Returns the customer id and whether it was created.
        """
        ...

    async def log_event(
        self,
        type: str,
        *,
        conversation_id: str | None = None,
        message_id: str | None = None,
        ticket_id: str | None = None,
        data: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> None: ...

    async def events(self, conversation_id: str | None = None) -> list[Event]: ...

    async def ping(self) -> None: ...
