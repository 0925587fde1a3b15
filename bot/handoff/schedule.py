"""A ticket's deadlines and SLA timers, derived from the ticket record alone. No I/O.

Everything here is recomputed from the ticket whenever it changes (priority, queue, pause,
reply), so a restart rebuilds exactly the same timers from the store.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from bot.handoff import sla
from bot.handoff.calendar import Calendar
from bot.handoff.config import Policy, SLASettings
from bot.handoff.monitor import Timer
from bot.store.base import Ticket


def policy_of(ticket: Ticket) -> Policy:
    return Policy.model_validate(ticket.sla.policy)


def clocks_of(ticket: Ticket) -> sla.Clocks:
    return sla.Clocks(
        created_at=ticket.created_at,
        first_responded_at=ticket.first_responded_at,
        next_response_from=ticket.sla.next_response_from,
        resolved_at=ticket.resolved_at,
        pauses=ticket.sla.pauses,
    )


def with_deadlines(ticket: Ticket, calendar: Calendar) -> Ticket:
    """The ticket with every deadline recomputed; a met first response keeps its deadline."""
    due = sla.deadlines(policy_of(ticket), calendar, clocks_of(ticket))
    return replace(
        ticket,
        first_response_due=due.first_response or ticket.first_response_due,
        next_response_due=due.next_response,
        resolution_due=due.resolution,
    )


def timers(ticket: Ticket, calendar: Calendar, settings: SLASettings) -> list[Timer]:
    """Warning and breach timers of every running clock, and the assignment return timer."""
    found: list[Timer] = []
    for clock in sla.running_clocks(policy_of(ticket), calendar, clocks_of(ticket)):
        due = clock.due()
        if due is None:  # paused for now
            continue
        warn = clock.warning(due, settings.warn_fraction, settings.warn_at_most)
        if warn < due:
            found.append(Timer(ticket.id, f"{clock.name}:warning", warn))
        found.append(Timer(ticket.id, f"{clock.name}:breach", due))
    if (timeout := assignment_timeout(ticket, settings.assignment_timeout)) is not None:
        found.append(Timer(ticket.id, "assignment:timeout", timeout))
    return found


def assignment_timeout(ticket: Ticket, timeout: timedelta) -> datetime | None:
    """When an assignee who has not replied since taking the ticket loses it."""
    if not ticket.is_open or ticket.assignee is None or ticket.assigned_at is None:
        return None
    if not timeout:
        return None
    replied = ticket.sla.last_agent_reply_at
    if replied is not None and replied >= ticket.assigned_at:
        return None
    return ticket.assigned_at + timeout
