"""Ticket service: create handoffs, agent replies, resolve. Uses the store and the outbox."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.ack import expected_reply_by
from bot.channels.base import AckKind, OutboundMessage, ReplyType
from bot.errors import Conflict, NotFound
from bot.handoff import routing, sla
from bot.outbox import Outbox
from bot.settings import Priority, Settings, Tier
from bot.store.base import NewTicket, Store, StoredMessage, Ticket, TicketStatus

logger = logging.getLogger(__name__)
Clock = Callable[[], datetime]


class TicketService:
    def __init__(self, store: Store, outbox: Outbox, settings: Settings, clock: Clock) -> None:
        self._store = store
        self._outbox = outbox
        self._settings = settings
        self._clock = clock

    async def escalate(self, conversation_id: str, intent: str | None, text: str) -> Ticket:
        """Open (or return the already open) ticket for a conversation."""
        existing = await self._store.open_ticket(conversation_id)
        if existing is not None:
            return existing
        conversation = await self._store.conversation(conversation_id)
        if conversation is None:
            raise NotFound("unknown_conversation", "no conversation with that id")
        customer = await self._store.customer(conversation.customer_id)
        tier = Tier(customer.tier) if customer else Tier.CONSUMER
        priority = routing.priority_for(intent, text)
        now = self._clock()
        reason = ", ".join([intent or "unknown", *routing.cues(text)])
        ticket = await self._store.create_ticket(
            NewTicket(
                conversation_id=conversation_id,
                queue=routing.queue_for(intent, self._settings.routing),
                priority=priority,
                tier=tier,
                reason=reason,
                created_at=now,
                first_response_due=sla.first_response_due(now, priority, tier, self._settings.sla),
            )
        )
        logger.info("handoff %s to %s (%s, %s)", ticket.reference, ticket.queue, priority, tier)
        return ticket

    def promised_by(self, ticket: Ticket) -> datetime:
        due = ticket.next_response_due or ticket.first_response_due
        # No live queue model yet: the commitment is the SLA deadline itself.
        return expected_reply_by(due, estimate=None)

    def plan(self, ticket: Ticket, in_reply_to: str | None, *, waiting: bool) -> OutboundMessage:
        """The ``plan`` ack for a handed-off conversation."""
        by = self.promised_by(ticket)
        queue_name = self._settings.routing.queue_names.get(ticket.queue, ticket.queue)
        local = by.astimezone(ZoneInfo(self._settings.sla.timezone))
        when = local.strftime("%H:%M %Z on %a %d %b").replace(" 0", " ")
        if waiting:
            text = (
                f"Your request {ticket.reference} is with our {queue_name} team. "
                f"We've added this message to it; an agent will reply by {when}."
            )
        else:
            text = (
                f"I've passed this to our {queue_name} team (reference {ticket.reference}). "
                f"An agent will reply here by {when}."
            )
        return OutboundMessage(
            type=ReplyType.ACK,
            kind=AckKind.PLAN,
            text=text,
            in_reply_to=in_reply_to,
            extra={
                "queue": ticket.queue,
                "queue_name": queue_name,
                "reference": ticket.reference,
                "expected_reply_by": by.isoformat(),
            },
        )

    async def customer_wrote(self, ticket: Ticket, at: datetime) -> Ticket:
        """A customer message after an agent reply starts the next-response clock."""
        if ticket.first_responded_at is None or ticket.next_response_due is not None:
            return ticket
        due = sla.next_response_due(
            at, Priority(ticket.priority), Tier(ticket.tier), self._settings.sla
        )
        await self._store.set_next_response_due(ticket.id, due)
        refreshed = await self._store.ticket(ticket.id)
        assert refreshed is not None
        return refreshed

    async def reply(
        self, ticket_id: str, text: str, agent_id: str, agent_name: str
    ) -> StoredMessage:
        ticket = await self._require_open(ticket_id)
        message = OutboundMessage(
            type=ReplyType.AGENT, text=text, extra={"agent": {"name": agent_name}}
        )
        stored = await self._store.record_agent_reply(ticket, message, agent_id, self._clock())
        self._outbox.publish(stored)
        return stored

    async def resolve(self, ticket_id: str, agent_id: str | None) -> Ticket:
        ticket = await self._store.resolve_ticket(ticket_id, agent_id, self._clock())
        await self._outbox.send(
            ticket.conversation_id,
            OutboundMessage(
                type=ReplyType.SYSTEM,
                text=f"Your request {ticket.reference} has been resolved. "
                "You can keep chatting with the assistant here.",
            ),
            event="system_sent",
        )
        return ticket

    async def _require_open(self, ticket_id: str) -> Ticket:
        ticket = await self._store.ticket(ticket_id)
        if ticket is None:
            raise NotFound("not_found", "no ticket with that id")
        if ticket.status is TicketStatus.RESOLVED:
            raise Conflict("ticket_resolved", "this ticket is already resolved")
        return ticket
