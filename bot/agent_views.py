"""The agent API's JSON for tickets: fields, deadlines, and each SLA clock's state now.

Shared by the REST handlers and the console's live feed, so a ticket looks the same however
the console learns of it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.clock import Clock
from bot.handoff.monitor import Timer
from bot.handoff.tickets import TicketService
from bot.store.base import Event, Store, Ticket

CLOCKS = ("first_response", "next_response", "resolution")
PAUSABLE = frozenset({"next_response", "resolution"})  # bot.handoff.sla.PAUSED_CLOCKS
LIVE = frozenset({"running", "warning", "breached"})


class TicketViews:
    def __init__(self, store: Store, tickets: TicketService, clock: Clock) -> None:
        self._store = store
        self._tickets = tickets
        self._clock = clock

    async def by_id(self, ticket_id: str) -> dict[str, Any] | None:
        ticket = await self._store.ticket(ticket_id)
        return None if ticket is None else await self.ticket(ticket)

    async def ticket(self, ticket: Ticket) -> dict[str, Any]:
        conversation = await self._store.conversation(ticket.conversation_id)
        customer = await self._store.customer(ticket.customer_id)
        messages = await self._store.messages(ticket.conversation_id)
        last = next((m.text for m in reversed(messages) if m.direction == "in"), None)
        clocks = clock_states(ticket, self._tickets.sla_timers(ticket), self._clock())
        return {
            "id": ticket.id,
            "reference": ticket.reference,
            "conversation_id": ticket.conversation_id,
            "channel": conversation.channel if conversation else None,
            "queue": ticket.queue,
            "priority": ticket.priority,
            "tier": ticket.tier,
            "status": ticket.status,
            "reason": ticket.reason,
            "created_at": ticket.created_at.isoformat(),
            "assignee": ticket.assignee,
            "assigned_at": iso(ticket.assigned_at),
            "first_responded_at": iso(ticket.first_responded_at),
            "resolved_at": iso(ticket.resolved_at),
            "deadlines": {
                "first_response": ticket.first_response_due.isoformat(),
                "next_response": iso(ticket.next_response_due),
                "resolution": iso(ticket.resolution_due),
            },
            # Kept for clients of the first API version.
            "first_response_due": ticket.first_response_due.isoformat(),
            "next_response_due": iso(ticket.next_response_due),
            "sla": {
                "policy": ticket.sla.policy,
                "calendar": ticket.sla.calendar,
                "paused": _paused(ticket),
                "pauses": [[iso(a), iso(b)] for a, b in ticket.sla.pauses],
                "clocks": clocks,
                "next_deadline": next_deadline(clocks),
            },
            # What the customer has been waiting on, if anything: a reply to their message.
            "waiting_since": iso(_waiting_since(ticket)),
            "customer": {
                "id": ticket.customer_id,
                "name": customer.name if customer else None,
                "email": customer.email if customer else None,
            },
            "last_message": last,
        }


def clock_states(ticket: Ticket, timers: list[Timer], now: datetime) -> dict[str, Any]:
    """Per SLA clock: its deadline, when it warns, and its state at ``now``.

    States: ``running``, ``warning``, ``breached`` (live); ``paused`` (waiting on the
    customer); ``met`` / ``met_late`` (first response given); ``idle`` (not counting).
    """
    warn_at = {t.name.partition(":")[0]: t.due for t in timers if t.name.endswith(":warning")}
    due = {
        "first_response": ticket.first_response_due,
        "next_response": ticket.next_response_due,
        "resolution": ticket.resolution_due,
    }
    return {
        name: {
            "due": iso(due[name]),
            "warn_at": iso(warn_at.get(name)),
            "state": _state(ticket, name, due[name], warn_at.get(name), now),
        }
        for name in CLOCKS
    }


def _state(
    ticket: Ticket, name: str, due: datetime | None, warn: datetime | None, now: datetime
) -> str:
    if name == "first_response" and ticket.first_responded_at is not None:
        return "met" if ticket.first_responded_at <= ticket.first_response_due else "met_late"
    if not ticket.is_open:
        return "idle"
    if name in PAUSABLE and _paused(ticket):
        return "paused"
    if due is None:
        return "idle"
    if now >= due:
        return "breached"
    return "warning" if warn is not None and now >= warn else "running"


def next_deadline(clocks: dict[str, Any]) -> dict[str, Any] | None:
    """The live clock due first (a breached one included): what the queue counts down to."""
    live = [(c["due"], name) for name, c in clocks.items() if c["state"] in LIVE and c["due"]]
    if not live:
        return None
    due, name = min(live, key=lambda item: datetime.fromisoformat(item[0]))
    return {"clock": name, **clocks[name]}


def note_json(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "text": event.data.get("text"),
        "agent": event.data.get("agent"),
        "by": event.data.get("by"),
    }


def _paused(ticket: Ticket) -> bool:
    return bool(ticket.sla.pauses) and ticket.sla.pauses[-1][1] is None


def _waiting_since(ticket: Ticket) -> datetime | None:
    if not ticket.is_open:
        return None
    if ticket.first_responded_at is None:
        return ticket.created_at
    return ticket.sla.next_response_from


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
