"""Ticket service: handoffs, agent actions, SLA clocks and their timers. Uses the store.

Every change to a ticket goes through ``_change``: under the ticket's lock, compute the new
ticket, recompute its deadlines (``bot.handoff.schedule``), store it with its event, and
reschedule its timers. The lock is this process's; gateways sharing a database compose their
changes through the ticket's version: the store writes a ticket only over the version it was
read at, and a change another gateway's got in the way of (``Conflict("ticket_changed")``) is
re-read and applied again (``_optimistic``). Automatic assignment checks the agent's capacity
in the store's transaction (``Store.assign_ticket``), so two gateways never overfill an agent.

The monitor calls ``on_timer``; a timer fires once, across restarts, because the store
records it (``Store.fire_timer``) in the same transaction as what it does to the ticket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bot.channels.base import AckKind, OutboundMessage, ReplyType
from bot.emergency import Mode, Switch
from bot.errors import Conflict, NotFound, StorageUnavailable, Unprocessable
from bot.handoff import csat, eta, routing, schedule, sla
from bot.handoff.assignment import Presence, choose_agent
from bot.handoff.calendar import Calendar
from bot.handoff.config import ALWAYS_OPEN, Priority, Tier
from bot.handoff.monitor import SLAMonitor, Timer
from bot.handoff.notify import Notifier
from bot.handoff.queues import QueueModel
from bot.locks import KeyedLocks
from bot.outbox import Outbox
from bot.settings import Settings
from bot.store.base import (
    AgentRecord,
    ConversationState,
    NewTicket,
    Pause,
    Store,
    StoredMessage,
    Ticket,
    TicketChange,
    TicketSLA,
    TicketStatus,
)

logger = logging.getLogger(__name__)
Clock = Callable[[], datetime]
T = TypeVar("T")
# Of a ticket change that other gateways' changes of the ticket kept getting in the way of, and
# of an automatic assignment whose chosen agent another gateway filled meanwhile.
_ATTEMPTS = 5
_REPLY_CLOCKS = ("first_response", "next_response")  # a breach of these is a customer waiting


class TicketService:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        settings: Settings,
        clock: Clock,
        notifier: Notifier | None = None,
        switch: Callable[[], Switch] = Switch,
        overloaded: Callable[[], bool] = lambda: False,
    ) -> None:
        self._store = store
        self._switch = switch  # "bot only" changes the handoff's queue and wording
        self._overloaded = overloaded  # handoffs up to overflow_priority go to the overflow
        self._outbox = outbox
        self._settings = settings
        self._clock = clock
        self._notifier = notifier
        self._calendars: dict[str, Calendar] = {ALWAYS_OPEN: Calendar.always_open()}
        self._calendars.update({k: c.build() for k, c in settings.calendars.items()})
        self.monitor = SLAMonitor(self.on_timer, clock)
        self.queues = QueueModel(store, settings, self._calendars, clock)
        self._locks = KeyedLocks()
        self._assigning = asyncio.Lock()
        # Timers this process saw fire: a rescheduled ticket does not re-queue them (the store
        # would refuse them anyway; this saves the round trip).
        self._fired: dict[str, set[Timer]] = {}

    # -- handoff ---------------------------------------------------------------------------

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
        facts: dict[str, str | None] = {
            "intent": intent,
            "tier": tier,
            "channel": conversation.channel,
            "language": customer.language if customer else None,
        }
        queue = routing.queue_for(self._settings.routing, facts)
        priority = routing.priority_for(intent, text, tier)
        queue = self._diverted(queue, priority)
        now = self._clock()
        draft = self._measured(
            Ticket(
                id="",
                reference="",
                conversation_id=conversation_id,
                customer_id=conversation.customer_id,
                queue=queue,
                priority=priority,
                tier=tier,
                status=TicketStatus.NEW,
                reason=", ".join([intent or "unknown", *routing.cues(text, tier)]),
                created_at=now,
                first_response_due=now,
                first_responded_at=None,
                next_response_due=None,
                resolved_at=None,
                assignee=None,
                resolution_due=None,
                assigned_at=None,
                sla=TicketSLA(policy={}, calendar=""),
            ),
            conversation.channel,
        )
        ticket = await self._store.create_ticket(
            NewTicket(
                conversation_id=conversation_id,
                queue=draft.queue,
                priority=draft.priority,
                tier=draft.tier,
                reason=draft.reason,
                created_at=now,
                first_response_due=draft.first_response_due,
                resolution_due=draft.resolution_due,
                sla=draft.sla,
            )
        )
        logger.info("handoff %s to %s (%s, %s)", ticket.reference, ticket.queue, priority, tier)
        self._reschedule(ticket)
        return await self._assign(ticket) or ticket

    def _diverted(self, queue: str, priority: Priority) -> str:
        """The emergency switch's "bot only" queue, or the overflow queue in overload."""
        followup = self._settings.emergency.followup_queue
        overload = self._settings.overload
        if followup is not None and self._switch().mode is Mode.BOT_ONLY:
            return followup
        if (
            overload.overflow_queue is not None
            and self._overloaded()
            and routing.at_most(priority, overload.overflow_priority)
        ):
            return overload.overflow_queue
        return queue

    def _measured(self, ticket: Ticket, channel: str) -> Ticket:
        """The ticket under the policy matching it now, with its deadlines."""
        facts: dict[str, str | None] = {
            "priority": ticket.priority,
            "tier": ticket.tier,
            "channel": channel,
            "queue": ticket.queue,
        }
        policy = sla.choose_policy(self._settings.sla.policies, facts)
        calendar = self._settings.queues[ticket.queue].calendar
        measured = replace(
            ticket,
            sla=replace(
                ticket.sla,
                policy=policy.model_dump(mode="json"),
                calendar=calendar if policy.business_hours else ALWAYS_OPEN,
            ),
        )
        return schedule.with_deadlines(measured, self._calendars[measured.sla.calendar])

    # -- plan acks ---------------------------------------------------------------------------

    async def plan(
        self, ticket: Ticket, in_reply_to: str | None, *, waiting: bool
    ) -> OutboundMessage:
        """The ``plan`` ack for a handed-off conversation: commitment and honest estimate."""
        promise = await self.queues.promise(ticket)
        agent: dict[str, str] | None = None
        if self._switch().mode is Mode.BOT_ONLY:
            # Nobody takes live conversations: no queue estimate holds, only the commitment.
            promise = replace(
                promise,
                estimate=replace(
                    promise.estimate,
                    expected_by=None,
                    stated_by=promise.estimate.committed_by,
                    predicted_breach=False,
                    opens_at=None,
                ),
            )
            timezone = self.queues.calendar(ticket.queue).timezone
            sentence = eta.describe(promise.estimate, timezone, self._clock())
            text = (
                "Our team isn't taking live conversations right now. I've logged your request "
                f"(reference {ticket.reference}): {sentence}."
            )
        elif waiting and ticket.assignee is not None and ticket.first_responded_at is not None:
            # An agent is already talking with them: not "passed to our team" all over again.
            agent = {"name": await self._agent_name(ticket.assignee)}
            text = (
                f"Thanks, {agent['name']} has your message (request {ticket.reference}) and will "
                f"reply here; {promise.sentence}."
            )
        elif waiting:
            text = (
                f"Your request {ticket.reference} is with our {promise.queue_name} team. "
                f"We've added this message to it; {promise.sentence}."
            )
        else:
            text = (
                f"I've passed this to our {promise.queue_name} team "
                f"(reference {ticket.reference}): {promise.sentence}."
            )
        if promise.estimate.predicted_breach:
            await self._predicted_breach(ticket, promise.estimate)
        extra: dict[str, Any] = {
            "queue": ticket.queue,
            "queue_name": promise.queue_name,
            "reference": ticket.reference,
            "expected_reply_by": promise.estimate.stated_by.isoformat(),
            "deadline": promise.estimate.committed_by.isoformat(),
        }
        if agent is not None:
            extra["agent"] = agent
        return OutboundMessage(
            type=ReplyType.ACK,
            kind=AckKind.PLAN,
            text=text,
            in_reply_to=in_reply_to,
            extra=extra,
        )

    async def _agent_name(self, agent_id: str) -> str:
        known = next((a for a in await self._store.agents() if a.id == agent_id), None)
        return known.name if known is not None else agent_id

    async def _predicted_breach(self, ticket: Ticket, estimate: eta.Estimate) -> None:
        due = estimate.committed_by
        data = {"expected_by": estimate.stated_by.isoformat(), "due": due.isoformat()}
        fired = await self._store.fire_timer(
            ticket.id, "predicted:breach", due, self._clock(), "sla_predicted_breach", data
        )
        if fired:
            self._alert("sla_predicted_breach", ticket, data, lead=True)

    # -- customer and agent actions ------------------------------------------------------------

    async def customer_wrote(self, ticket: Ticket, at: datetime) -> Ticket:
        """Resume paused clocks; after an agent reply, start the next-response clock."""

        def change(t: Ticket) -> Ticket:
            pauses = _closed_pauses(t.sla.pauses, at)
            start = t.sla.next_response_from
            if t.first_responded_at is not None and start is None:
                start = at
            status = TicketStatus.OPEN if t.status is TicketStatus.WAITING else t.status
            return replace(
                t, status=status, sla=replace(t.sla, pauses=pauses, next_response_from=start)
            )

        return await self._change(ticket.id, change, "customer_replied", at=at)

    async def reply(
        self, ticket_id: str, text: str, agent_id: str, agent_name: str
    ) -> StoredMessage:
        """A public agent reply: goes out on the customer's channel and meets the clock."""

        async def write(ticket: Ticket) -> StoredMessage:
            now = self._clock()
            first = ticket.first_responded_at is None
            due = ticket.first_response_due if first else ticket.next_response_due
            updated = replace(
                ticket,
                status=TicketStatus.OPEN if ticket.status is TicketStatus.NEW else ticket.status,
                first_responded_at=ticket.first_responded_at or now,
                assignee=ticket.assignee or agent_id,
                assigned_at=ticket.assigned_at or now,
                sla=replace(ticket.sla, next_response_from=None, last_agent_reply_at=now),
            )
            updated = schedule.with_deadlines(updated, self._calendars[updated.sla.calendar])
            message = OutboundMessage(
                type=ReplyType.AGENT, text=text, extra={"agent": {"name": agent_name}}
            )
            stated = await self._last_stated(ticket)
            data = {
                "agent": agent_id,
                "first_response": first,
                "due": due.isoformat() if due else None,
                "within_sla": (now <= due) if due else None,
                # The reply time the customer was last told, and whether it held.
                "stated_by": stated.isoformat() if stated else None,
                "stated_met": (now <= stated) if stated else None,
            }
            stored = await self._store.record_agent_reply(updated, message, agent_id, now, data)
            self._reschedule(updated)
            return stored

        stored = await self._optimistic(ticket_id, write)
        self._outbox.publish(stored)
        return stored

    async def _last_stated(self, ticket: Ticket) -> datetime | None:
        for message in reversed(await self._store.messages(ticket.conversation_id)):
            if message.type == "agent":
                return None  # answered since the last promise
            if message.kind == "plan" and "expected_reply_by" in message.payload:
                return datetime.fromisoformat(message.payload["expected_reply_by"])
        return None

    async def set_waiting(self, ticket_id: str, agent_id: str) -> Ticket:
        """Waiting on the customer: pause the next-response and resolution clocks."""
        now = self._clock()

        def change(t: Ticket) -> Ticket:
            if t.status is TicketStatus.WAITING:
                return t
            pauses = (*t.sla.pauses, (now, None))
            return replace(t, status=TicketStatus.WAITING, sla=replace(t.sla, pauses=pauses))

        return await self._change(ticket_id, change, "waiting_on_customer", data={"by": agent_id})

    async def set_priority(self, ticket_id: str, priority: Priority, agent_id: str) -> Ticket:
        """A new priority re-matches the policy, and every deadline follows."""
        channel = await self._channel(ticket_id)
        return await self._change(
            ticket_id,
            lambda t: self._measured(replace(t, priority=priority), channel),
            "priority_changed",
            data={"by": agent_id, "priority": priority},
        )

    async def take(self, ticket_id: str, agent_id: str) -> Ticket:
        return await self._give(ticket_id, agent_id, "taken", {"by": agent_id})

    async def transfer(
        self, ticket_id: str, *, queue: str | None, agent_id: str | None, by: str
    ) -> Ticket:
        """To another queue (re-matched policy, auto-assigned there) and/or a named agent."""
        if queue is not None and queue not in self._settings.queues:
            raise Unprocessable("unknown_queue", f"no queue {queue!r}", field="queue")
        if queue is None and agent_id is None:
            raise Unprocessable("validation_error", "name a queue, an agent or both")
        if queue is not None:
            channel = await self._channel(ticket_id)
            ticket = await self._change(
                ticket_id,
                lambda t: self._measured(
                    replace(t, queue=queue, assignee=None, assigned_at=None), channel
                ),
                "transferred",
                data={"by": by, "queue": queue},
            )
            if agent_id is None:
                return await self._assign(ticket) or ticket
        assert agent_id is not None
        return await self.take(ticket_id, agent_id)

    async def resolve(self, ticket_id: str, agent_id: str | None) -> Ticket:
        now = self._clock()

        def change(t: Ticket) -> Ticket:
            pauses = _closed_pauses(t.sla.pauses, now)
            return replace(
                t,
                status=TicketStatus.RESOLVED,
                resolved_at=now,
                sla=replace(t.sla, pauses=pauses, next_response_from=None),
            )

        ticket = await self._change(
            ticket_id,
            change,
            "resolved",
            data={"agent": agent_id},
            conversation_state=ConversationState.BOT,
        )
        await self._tell(
            ticket,
            f"Your request {ticket.reference} has been resolved. "
            f"You can keep chatting with the assistant here.\n{csat.QUESTION}",
            # The widget renders the scale as buttons; platforms show the text.
            {"csat": csat.question(ticket)},
        )
        await self.assign_waiting()  # the agent has a free slot now
        return ticket

    # -- agents and assignment ----------------------------------------------------------------

    async def set_presence(self, agent: AgentRecord) -> AgentRecord:
        """Save an agent; going away or offline re-queues their tickets, online pulls work."""
        await self._store.save_agent(agent, self._clock())
        await self._store.log_event(
            "agent_presence",
            data={"agent": agent.id, "presence": agent.presence, "capacity": agent.capacity},
            at=self._clock(),
        )
        if agent.presence != Presence.ONLINE:
            for ticket in await self._store.tickets("open"):
                if ticket.assignee == agent.id:
                    await self._requeue(ticket, "agent_" + agent.presence)
        await self.assign_waiting()
        return agent

    async def assign_waiting(self) -> None:
        """Give unassigned open tickets to agents with free capacity, oldest first."""
        if not any(a.presence == Presence.ONLINE for a in await self._store.agents()):
            return
        full: set[str] = set()  # queues nobody can take more of now
        for ticket in await self._store.tickets("open"):
            waiting = ticket.assignee is None and ticket.queue not in full
            if waiting and await self._assign(ticket) is None:
                full.add(ticket.queue)

    async def _assign(self, ticket: Ticket, exclude: frozenset[str] = frozenset()) -> Ticket | None:
        """To the agent ``choose_agent`` picks; that agent's capacity is checked again in the
        store's transaction, and when another gateway filled them (or they left) since the
        loads were read, the choice is made again on fresh loads."""
        async with self._assigning:
            skills = frozenset(self._settings.queues[ticket.queue].skills)
            for _ in range(_ATTEMPTS):
                loads = await self.queues.agent_loads()
                agent_id = choose_agent(loads, ticket.queue, skills, exclude)
                if agent_id is None:
                    return None
                try:
                    return await self._give(
                        ticket.id, agent_id, "assigned", {"agent": agent_id}, automatic=True
                    )
                except Conflict as e:
                    if e.code not in ("agent_full", "agent_away"):
                        raise
                    logger.info("assigning %s: %s; choosing again", ticket.reference, e.message)
            return None  # still waiting: the next assign_waiting tries again

    async def _give(
        self,
        ticket_id: str,
        agent_id: str,
        event: str,
        data: dict[str, Any],
        *,
        automatic: bool = False,
    ) -> Ticket:
        """Give the ticket to the agent, stamping their round-robin counter in the same write.
        ``automatic``: only within the agent's capacity, and only while the ticket is still
        unassigned (another gateway may have assigned it since it was read)."""
        if not any(a.id == agent_id for a in await self._store.agents()):
            raise NotFound("unknown_agent", f"no agent {agent_id!r}", field="agent")
        now = self._clock()

        def change(t: Ticket) -> Ticket:
            if automatic and t.assignee is not None:
                return t
            return replace(t, assignee=agent_id, assigned_at=now)

        return await self._change(
            ticket_id, change, event, data={**data, "agent": agent_id}, assigning=automatic
        )

    async def _requeue(self, ticket: Ticket, why: str) -> None:
        previous = ticket.assignee
        ticket = await self._change(
            ticket.id,
            lambda t: replace(t, assignee=None, assigned_at=None),
            "returned_to_queue",
            data={"agent": previous, "why": why},
        )
        await self._assign(ticket, exclude=frozenset({previous}) if previous else frozenset())

    # -- SLA timers -----------------------------------------------------------------------------

    async def rebuild(self) -> None:
        """After a start: schedule every open ticket's timers (what fell due fires at once),
        and give online agents the tickets waiting for one (say, returned to the queue just
        before a crash)."""
        for ticket in await self._store.tickets("open"):
            self._reschedule(ticket)
        logger.info("SLA monitor: %d timers", self.monitor.pending())
        await self.assign_waiting()

    async def resync(self, interval: float) -> None:
        """Every ``interval``: ``rebuild`` again, for the tickets other gateways sharing the
        database created or changed (their deadlines move with agent replies and waits)."""
        while True:
            await asyncio.sleep(interval)
            try:
                for ticket in await self._store.tickets("open"):
                    self._reschedule(ticket)
            except StorageUnavailable as e:
                logger.warning("SLA resync skipped: %s", e)

    def sla_timers(self, ticket: Ticket) -> list[Timer]:
        """The warnings and breaches still ahead of (or due on) an open ticket's running
        clocks, as the monitor has them: what the agent console counts down to."""
        if not ticket.is_open:
            return []
        calendar = self._calendars[ticket.sla.calendar]
        return schedule.timers(ticket, calendar, self._settings.sla)

    def watch(self, ticket: Ticket) -> None:
        """Track the timers of a ticket another process created."""
        self._reschedule(ticket)

    def _reschedule(self, ticket: Ticket) -> None:
        self.monitor.cancel(ticket.id)
        if not ticket.is_open:
            self._fired.pop(ticket.id, None)
            return
        fired = self._fired.get(ticket.id, set())
        calendar = self._calendars[ticket.sla.calendar]
        for timer in schedule.timers(ticket, calendar, self._settings.sla):
            if timer not in fired:
                self.monitor.schedule(timer)

    async def on_timer(self, timer: Timer, lateness: timedelta) -> None:
        """The monitor's callback: fire a warning, breach or assignment timeout once, if still
        due, with what it does to the ticket in the same write (``Store.fire_timer``)."""
        clock, _, kind = timer.name.partition(":")
        event = "sla_" + kind  # sla_warning, sla_breach, sla_timeout

        async def fire(ticket: Ticket) -> tuple[Ticket, Ticket, dict[str, Any]] | None:
            calendar = self._calendars[ticket.sla.calendar]
            if timer not in schedule.timers(ticket, calendar, self._settings.sla):
                return None  # the ticket changed since this timer was scheduled
            data = {
                "timer": timer.name,
                "due": timer.due.isoformat(),
                "lateness_ms": round(lateness.total_seconds() * 1000, 3),
                "priority": ticket.priority,
                "assignee": ticket.assignee,
            }
            changed, events = self._consequence(ticket, clock, kind)
            then = None
            if events:
                changed = schedule.with_deadlines(changed, calendar)
                then = TicketChange(changed, events)
            if not await self._store.fire_timer(
                ticket.id, timer.name, timer.due, self._clock(), event, data, then
            ):
                return None  # fired before a restart, or by another gateway
            saved = replace(changed, version=ticket.version + 1) if then else ticket
            return ticket, saved, data

        self._fired.setdefault(timer.ticket_id, set()).add(timer)
        try:
            fired = await self._optimistic(timer.ticket_id, fire)
        except (NotFound, Conflict) as e:
            if e.code in ("not_found", "ticket_resolved"):
                return
            raise
        if fired is None:
            return
        before, ticket, data = fired
        if ticket is not before:
            self._reschedule(ticket)
        if kind == "warning":
            self._alert("sla_warning", ticket, data, lead=False)
        elif kind == "breach":
            self._alert("sla_breach", before, data, lead="notify_lead" in self._on_breach)
        if before.assignee is not None and ticket.assignee is None:
            ticket = await self._assign(ticket, exclude=frozenset({before.assignee})) or ticket
        if kind == "breach" and clock in _REPLY_CLOCKS:
            await self._late(ticket)

    async def _late(self, ticket: Ticket) -> None:
        """The reply we promised did not come in time: say so, with a new honest estimate,
        rather than leave the customer looking at a time that has passed."""
        promise = await self.queues.promise(ticket)
        when = promise.sentence[:1].upper() + promise.sentence[1:]
        await self._tell(
            ticket,
            f"Sorry, your request {ticket.reference} is taking longer than we said. {when}.",
            {
                "reference": ticket.reference,
                "expected_reply_by": promise.estimate.stated_by.isoformat(),
            },
        )

    async def _tell(self, ticket: Ticket, text: str, extra: dict[str, Any]) -> None:
        """A notice to the customer about their request (a ``system`` frame)."""
        notice = OutboundMessage(type=ReplyType.SYSTEM, text=text, extra=extra)
        await self._outbox.send(
            ticket.conversation_id, notice, event="system_sent", at=self._clock()
        )

    @property
    def _on_breach(self) -> tuple[str, ...]:
        return self._settings.sla.on_breach

    def _consequence(
        self, ticket: Ticket, clock: str, kind: str
    ) -> tuple[Ticket, tuple[tuple[str, dict[str, Any]], ...]]:
        """What a firing timer does to the ticket, and its events: an assignment timeout
        takes the ticket from its assignee; a breach runs the escalation chain from config.
        Raising the priority does not re-measure: the breached deadlines stand, and the queue
        serves the ticket sooner."""
        events: list[tuple[str, dict[str, Any]]] = []
        reassign = clock == "assignment"
        if kind == "breach":
            steps = self._on_breach
            higher = routing.raised(Priority(ticket.priority))
            if "raise_priority" in steps and higher != ticket.priority:
                ticket = replace(ticket, priority=higher)
                events.append(
                    ("escalated", {"clock": clock, "step": "raise_priority", "priority": higher})
                )
            reassign = "reassign" in steps
        if reassign and ticket.assignee is not None:
            why = "assignment_timeout" if clock == "assignment" else f"{clock}_breach"
            events.append(("returned_to_queue", {"agent": ticket.assignee, "why": why}))
            ticket = replace(ticket, assignee=None, assigned_at=None)
        return ticket, tuple(events)

    def _alert(self, kind: str, ticket: Ticket, data: dict[str, Any], *, lead: bool) -> None:
        """To the assignee and the queue, and the queue's lead when asked: not every admin."""
        queue = self._settings.queues[ticket.queue]
        recipients = {"assignee": ticket.assignee, "queue": ticket.queue}
        if lead:
            recipients["lead"] = queue.lead
        logger.warning("%s on %s (%s): %s", kind, ticket.reference, ticket.queue, data)
        if self._notifier is not None:
            self._notifier.send(
                {
                    "type": kind,
                    "ticket": {"id": ticket.id, "reference": ticket.reference},
                    "recipients": recipients,
                    **data,
                }
            )

    # -- plumbing -------------------------------------------------------------------------------

    async def _change(
        self,
        ticket_id: str,
        change: Callable[[Ticket], Ticket],
        event: str,
        *,
        data: dict[str, Any] | None = None,
        at: datetime | None = None,
        conversation_state: ConversationState | None = None,
        assigning: bool | None = None,
    ) -> Ticket:
        """Apply the pure ``change`` to the ticket as stored and save it with its event; again
        on a fresh read when another gateway changed the ticket meanwhile (``_optimistic``).

        ``assigning`` (the change gives the ticket to its new assignee): stored with
        ``Store.assign_ticket``, which also stamps the agent's round-robin counter and, when
        True (automatic assignment), refuses an agent at capacity.
        """

        async def write(ticket: Ticket) -> Ticket:
            updated = change(ticket)
            if updated == ticket:
                return ticket
            updated = schedule.with_deadlines(updated, self._calendars[updated.sla.calendar])
            if assigning is None:
                saved = await self._store.save_ticket(
                    updated,
                    event=event,
                    at=at or self._clock(),
                    data=data,
                    conversation_state=conversation_state,
                )
            else:
                saved = await self._store.assign_ticket(
                    updated,
                    event=event,
                    at=at or self._clock(),
                    data=data,
                    within_capacity=assigning,
                )
            self._reschedule(saved)
            return saved

        return await self._optimistic(ticket_id, write)

    async def _optimistic(self, ticket_id: str, write: Callable[[Ticket], Awaitable[T]]) -> T:
        """``write(ticket)`` on the open ticket as stored now, under this process's lock of it.
        The store writes only over the version read; when another gateway changed the ticket
        in between (``Conflict("ticket_changed")``), read it again and ``write`` again, so a
        pure change computed from the fresh ticket keeps the other gateway's change too."""
        async with self._locks.hold(ticket_id):
            for attempt in range(1, _ATTEMPTS + 1):
                ticket = await self._require_open(ticket_id)
                try:
                    return await write(ticket)
                except Conflict as e:
                    if e.code != "ticket_changed" or attempt == _ATTEMPTS:
                        raise
                    logger.info("ticket %s changed meanwhile: applying again", ticket.reference)
        raise AssertionError("unreachable")

    async def _require_open(self, ticket_id: str) -> Ticket:
        ticket = await self._store.ticket(ticket_id)
        if ticket is None:
            raise NotFound("not_found", "no ticket with that id")
        if not ticket.is_open:
            raise Conflict("ticket_resolved", "this ticket is already resolved")
        return ticket

    async def _channel(self, ticket_id: str) -> str:
        ticket = await self._require_open(ticket_id)
        conversation = await self._store.conversation(ticket.conversation_id)
        return conversation.channel if conversation else "web"


def _closed_pauses(pauses: tuple[Pause, ...], at: datetime) -> tuple[Pause, ...]:
    return tuple((start, end if end is not None else at) for start, end in pauses)
