"""What every backend does the same way: ticket SLA snapshots, references, identities, and
the records built from (and the values written for) rows whose encoding the backend handles."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from bot.channels.base import EVENT_KINDS, InboundMessage, OutboundMessage
from bot.errors import Conflict, Forbidden, NotFound, StorageError
from bot.store.base import (
    AgentRecord,
    Conversation,
    ConversationState,
    CustomerRecord,
    DeliveryStatus,
    Event,
    NewTicket,
    StoredMessage,
    Ticket,
    TicketSLA,
    TicketStatus,
)

# The schema version this code writes: version 1 is the base schema, and each backend's
# ``NNN_*.sql`` migration raises it by one (PostgreSQL's mirror SQLite's).
SCHEMA_VERSION = 8
TIER_RANK = {"consumer": 0, "business": 1, "enterprise": 2}  # bot.handoff.config.Tier
# Crockford-style alphabet without look-alikes, for references customers read out loud.
_REF_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


def aware(value: datetime) -> datetime:
    """``value``, refused when naive: every stored time is an instant."""
    if value.tzinfo is None:
        raise ValueError("timestamps must be time-zone aware")
    return value


def iso(value: datetime) -> str:
    return aware(value).astimezone(UTC).isoformat(timespec="microseconds")


def opt_iso(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


def opt_dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def stale_ticket(exists: bool) -> Conflict | NotFound:
    """The error for a versioned ticket write that matched no row."""
    if not exists:
        return NotFound("not_found", "no ticket with that id")
    return Conflict(
        "ticket_changed", "the ticket was changed since it was read: read it again and retry"
    )


def check_capacity(agent_id: str, presence: str, capacity: int, load: int) -> None:
    """Automatic assignment, checked with the agent's row held: online and below capacity
    (``load``: the agent's open tickets other than the one being assigned)."""
    if presence != "online":  # bot.handoff.assignment.Presence.ONLINE
        raise Conflict("agent_away", f"agent {agent_id!r} is {presence}", field="agent")
    if load >= capacity:
        raise Conflict(
            "agent_full", f"agent {agent_id!r} holds {load} of {capacity} tickets", field="agent"
        )


def new_reference() -> str:
    return "PR-" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(5))


def better_tier(a: str, b: str) -> str:
    """The higher of two tiers: a merge never demotes anyone."""
    return max(a, b, key=lambda t: TIER_RANK.get(t, -1))


def sla_to_dict(sla: TicketSLA) -> dict[str, Any]:
    return {
        "policy": sla.policy,
        "calendar": sla.calendar,
        "pauses": [[iso(a), opt_iso(b)] for a, b in sla.pauses],
        "next_response_from": opt_iso(sla.next_response_from),
        "last_agent_reply_at": opt_iso(sla.last_agent_reply_at),
    }


def sla_from_dict(data: dict[str, Any]) -> TicketSLA:
    return TicketSLA(
        policy=data.get("policy", {}),
        calendar=data.get("calendar", "default"),
        pauses=tuple((datetime.fromisoformat(a), opt_dt(b)) for a, b in data.get("pauses", [])),
        next_response_from=opt_dt(data.get("next_response_from")),
        last_agent_reply_at=opt_dt(data.get("last_agent_reply_at")),
    )


def identities(msg: InboundMessage) -> list[tuple[str, str]]:
    """The verified email/phone a platform vouched for, normalised."""
    if not msg.customer.verified:
        return []
    found = []
    if msg.customer.email:
        found.append(("email", msg.customer.email.strip().lower()))
    if msg.customer.phone:
        found.append(("phone", "+" + "".join(c for c in msg.customer.phone if c.isdigit())))
    return found


def reply_payload(reply: OutboundMessage) -> dict[str, Any]:
    payload: dict[str, Any] = dict(reply.extra)
    if reply.citations:
        payload["citations"] = [{"title": c.title, "url": c.url} for c in reply.citations]
    return payload


def migration_scripts(*folder: str) -> list[tuple[int, str]]:
    """The ``NNN_*.sql`` scripts in ``bot/store/<folder>``, as (version, script) by version."""
    found = [
        (int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8"))
        for entry in resources.files("bot.store").joinpath(*folder).iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


def check_schema_version(current: int) -> None:
    """Refuse a database that a newer release migrated past ``SCHEMA_VERSION``."""
    if current > SCHEMA_VERSION:
        raise StorageError(
            f"database schema version {current} is newer than this code ({SCHEMA_VERSION}): "
            "run the Promptly release that wrote it, or restore a backup made by this one"
        )


# -- records from rows -------------------------------------------------------------------
# A backend selects a record's columns in the order of its fields and decodes what its driver
# leaves encoded (SQLite: ISO-8601 and JSON text) before handing the row to these.


def message_from_row(row: Sequence[Any]) -> StoredMessage:
    return StoredMessage(
        seq=row[0],
        id=row[1],
        conversation_id=row[2],
        direction=row[3],
        type=row[4],
        kind=row[5],
        text=row[6],
        payload=row[7],
        in_reply_to=row[8],
        client_message_id=row[9],
        status=row[10],
        created_at=row[11],
        acked_at=row[12],
        delivery_status=None if row[13] is None else DeliveryStatus(row[13]),
        delivery=row[14],
    )


def ticket_from_row(row: Sequence[Any]) -> Ticket:
    """A ticket from its columns, ``sla`` as the dict ``sla_to_dict`` makes."""
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
        created_at=row[9],
        first_response_due=row[10],
        first_responded_at=row[11],
        next_response_due=row[12],
        resolved_at=row[13],
        assignee=row[14],
        resolution_due=row[15],
        assigned_at=row[16],
        sla=sla_from_dict(row[17]),
        version=row[18],
    )


def agent_from_row(row: Sequence[Any]) -> AgentRecord:
    return AgentRecord(
        id=row[0],
        name=row[1],
        presence=row[2],
        capacity=row[3],
        skills=tuple(row[4]),
        queues=tuple(row[5]),
        last_assigned=row[6],
    )


def conversation_from_row(row: Sequence[Any]) -> Conversation:
    return Conversation(
        id=row[0],
        customer_id=row[1],
        channel=row[2],
        state=ConversationState(row[3]),
        created_at=row[4],
        reply_to=row[5],
    )


def event_from_row(row: Sequence[Any]) -> Event:
    return Event(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


def ticket_values(ticket: Ticket) -> tuple[Any, ...]:
    """What a ticket update may change (the backends' ``_TICKET_MUTABLE`` columns), in field
    order: times as they are and the SLA as its dict, for the backend to encode."""
    return (
        ticket.queue,
        ticket.priority,
        ticket.tier,
        ticket.status,
        ticket.first_response_due,
        ticket.first_responded_at,
        ticket.next_response_due,
        ticket.resolved_at,
        ticket.assignee,
        ticket.resolution_due,
        ticket.assigned_at,
        sla_to_dict(ticket.sla),
    )


# -- what operations compute between their statements -----------------------------------


def new_ticket(ticket: NewTicket, customer_id: str, reference: str) -> Ticket:
    """The ticket a handoff opens: new, unassigned and unanswered."""
    return Ticket(
        id=uuid.uuid4().hex,
        reference=reference,
        conversation_id=ticket.conversation_id,
        customer_id=customer_id,
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


def handoff_data(ticket: Ticket) -> dict[str, Any]:
    """The ``handed_off`` event's data for a ticket ``new_ticket`` made."""
    return {
        "queue": ticket.queue,
        "priority": ticket.priority,
        "tier": ticket.tier,
        "reason": ticket.reason,
        "policy": ticket.sla.policy.get("name"),
        "first_response_due": iso(ticket.first_response_due),
        "resolution_due": opt_iso(ticket.resolution_due),
    }


def customers_to_merge(
    rows: Iterable[Sequence[Any]], into: str, other: str
) -> tuple[CustomerRecord, CustomerRecord]:
    """``into`` and ``other`` from their (id, name, email, tier, language) rows;
    ``NotFound`` for either one missing."""
    found = {row[0]: CustomerRecord(*row) for row in rows}
    for customer_id, field in ((into, "into"), (other, "from")):
        if customer_id not in found:
            raise NotFound("unknown_customer", f"no customer {customer_id!r}", field=field)
    return found[into], found[other]


def merged_customer(kept: CustomerRecord, gone: CustomerRecord) -> CustomerRecord:
    """``kept`` once ``gone`` is merged into it: what it lacks comes from ``gone``, and it
    keeps the better of the two tiers."""
    return CustomerRecord(
        kept.id,
        kept.name or gone.name,
        kept.email or gone.email,
        better_tier(kept.tier, gone.tier),
        kept.language or gone.language,
    )


def with_details(
    record: CustomerRecord, name: str | None, email: str | None
) -> CustomerRecord | None:
    """``record`` with the name and email a message brings, when they change it (else None)."""
    if (name and name != record.name) or (email and email != record.email):
        return replace(record, name=name or record.name, email=email or record.email)
    return None


def owned_conversation(conversation: Conversation | None, customer_id: str) -> Conversation:
    """The conversation a message names, refused when unknown or another customer's."""
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


def new_conversation(msg: InboundMessage, customer_id: str) -> Conversation:
    """The conversation a customer's first message on a channel starts, with the bot."""
    return Conversation(
        uuid.uuid4().hex,
        customer_id,
        msg.channel,
        ConversationState.BOT,
        msg.received_at,
        dict(msg.reply_to),
    )


def moved_reply_to(msg: InboundMessage, conversation: Conversation) -> dict[str, Any] | None:
    """Where the conversation's replies go after ``msg``, when it moves them (else None).
    Events (reactions, joins) carry a coarser address (no thread): they never move it."""
    if not msg.reply_to or msg.kind in EVENT_KINDS:
        return None
    reply_to = dict(msg.reply_to)
    return None if reply_to == conversation.reply_to else reply_to


def delivery_status_for(direction: str, channel: str) -> DeliveryStatus | None:
    """Replies on a platform channel wait for the dispatcher; web clients replay the store."""
    return DeliveryStatus.PENDING if direction == "out" and channel != "web" else None
