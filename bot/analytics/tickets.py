"""Replay each ticket's events into its times and SLA outcomes. Pure.

A ticket is measured from its ``handed_off`` event. Its labels are those it was handed off
with (queue, priority, tier) and its conversation's channel; ``agent`` is the agent of its
latest reply (else of its latest assignment). Waiting on the customer runs from
``waiting_on_customer`` to the next ``customer_replied`` or ``resolved`` (or the period's end)
and pauses the next-response and resolution clocks, as in ``bot.handoff.sla``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.analytics.model import Log, Options
from bot.handoff.calendar import Calendar, business_time_between
from bot.store.base import Event

CLOCKS = ("first_response", "next_response", "resolution")
Span = tuple[datetime, datetime]


@dataclass
class TicketTimes:
    id: str
    created: datetime
    labels: dict[str, str]
    calendar: Calendar | None
    has_resolution_target: bool
    first_reply: datetime | None = None
    first_reply_in_sla: bool | None = None
    assigned: datetime | None = None
    resolved: datetime | None = None
    next_responses: list[Span] = field(default_factory=list)
    next_from: datetime | None = None
    late_replies: int = 0  # later replies with within_sla false (next response missed)
    pauses: list[Span] = field(default_factory=list)
    paused_from: datetime | None = None
    warned: set[str] = field(default_factory=set)
    breached: set[str] = field(default_factory=set)
    warned_first: set[str] = field(default_factory=set)  # breached after a warning was logged
    stated_met: list[bool] = field(default_factory=list)  # the reply times customers were told

    def closed_pauses(self, until: datetime) -> list[Span]:
        if self.paused_from is None:
            return list(self.pauses)
        return [*self.pauses, (self.paused_from, until)]

    def business(self, start: datetime, end: datetime, pauses: Sequence[Span] = ()) -> float | None:
        """Seconds on the ticket's SLA calendar between two instants, minus pauses."""
        if self.calendar is None:
            return None
        return business_time_between(start, end, self.calendar, pauses).total_seconds()

    def outcome(self, clock: str) -> str | None:
        """met / breached / open, or None when the clock never ran."""
        if clock == "first_response":
            if "first_response" in self.breached or self.first_reply_in_sla is False:
                return "breached"
            return "open" if self.first_reply is None else "met"
        if clock == "next_response":
            if "next_response" in self.breached or self.late_replies:
                return "breached"
            if self.next_from is not None and self.resolved is None:
                return "open"
            return "met" if self.next_responses else None
        if "resolution" in self.breached:
            return "breached"
        if not self.has_resolution_target:
            return None
        return "open" if self.resolved is None else "met"


def replay(log: Log, options: Options) -> dict[str, TicketTimes]:
    """Every ticket handed off before the period's end, by id."""
    tickets: dict[str, TicketTimes] = {}
    for event in log.events:
        if event.ticket_id is None:
            continue
        if event.type == "handed_off":
            tickets[event.ticket_id] = _opened(event, log, options)
        elif (ticket := tickets.get(event.ticket_id)) is not None:
            _apply(ticket, event)
    return tickets


def _opened(event: Event, log: Log, options: Options) -> TicketTimes:
    assert event.ticket_id is not None
    data = event.data
    calendar_name = log.calendars.get(event.ticket_id, "")
    return TicketTimes(
        id=event.ticket_id,
        created=event.at,
        labels={
            "channel": log.channels.get(event.conversation_id or "", "unknown"),
            "queue": str(data.get("queue")),
            "priority": str(data.get("priority")),
            "tier": str(data.get("tier")),
            "agent": "(none)",
        },
        calendar=options.calendars.get(calendar_name),
        has_resolution_target=data.get("resolution_due") is not None,
    )


def _apply(ticket: TicketTimes, event: Event) -> None:
    data, at = event.data, event.at
    if event.type == "agent_replied":
        _agent_replied(ticket, at, data.get("agent"), data.get("within_sla"))
        if data.get("stated_met") is not None:
            ticket.stated_met.append(bool(data["stated_met"]))
    elif event.type == "customer_replied":
        _resume(ticket, at)
        if ticket.first_reply is not None and ticket.next_from is None:
            ticket.next_from = at
    elif event.type == "waiting_on_customer" and ticket.paused_from is None:
        ticket.paused_from = at
    elif event.type in ("taken", "assigned"):
        ticket.assigned = ticket.assigned or at
        if ticket.first_reply is None:
            ticket.labels["agent"] = str(data.get("agent"))
    elif event.type == "resolved":
        _resume(ticket, at)
        ticket.resolved = at
    elif event.type == "sla_warning":
        ticket.warned.add(_clock_of(data))
    elif event.type == "sla_breach":
        clock = _clock_of(data)
        ticket.breached.add(clock)
        if clock in ticket.warned:  # log order: a warning logged after the breach is no warning
            ticket.warned_first.add(clock)


def _clock_of(data: Mapping[str, object]) -> str:
    return str(data.get("timer", "")).partition(":")[0]


def _agent_replied(ticket: TicketTimes, at: datetime, agent: object, within: object) -> None:
    ticket.labels["agent"] = str(agent)
    if ticket.first_reply is None:
        ticket.first_reply = at
        ticket.first_reply_in_sla = None if within is None else bool(within)
        ticket.assigned = ticket.assigned or at
        return
    if within is False:
        ticket.late_replies += 1
    if ticket.next_from is not None:
        ticket.next_responses.append((ticket.next_from, at))
        ticket.next_from = None


def _resume(ticket: TicketTimes, at: datetime) -> None:
    if ticket.paused_from is not None:
        ticket.pauses.append((ticket.paused_from, at))
        ticket.paused_from = None


def paused_seconds(pauses: Sequence[Span]) -> float:
    return sum((end - start for start, end in pauses), timedelta(0)).total_seconds()
