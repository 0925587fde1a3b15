"""A ticket's SLA clocks: which policy applies and when each clock falls due. Pure.

Three clocks, as in Zendesk and Zammad: ``first_response`` runs from the handoff to the first
public agent reply; ``next_response`` from a customer message that follows an agent reply to
the next agent reply; ``resolution`` from the handoff to resolve. Waiting on the customer
pauses ``next_response`` and ``resolution``. Business-time policies count the queue calendar's
open time only; "Nd" counts business days (same local time on the N-th open day).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.handoff import calendar as cal
from bot.handoff.config import Policy, Target

CLOCKS = ("first_response", "next_response", "resolution")
PAUSED_CLOCKS = frozenset({"next_response", "resolution"})
_CALENDAR_TIME = cal.Calendar.always_open()


def choose_policy(policies: Sequence[Policy], facts: dict[str, str | None]) -> Policy:
    """The first policy whose conditions match (priority, tier, channel, queue)."""
    for policy in policies:
        if policy.when.matches(facts):
            return policy
    raise LookupError("no SLA policy matches; the last policy must match every ticket")


@dataclass(frozen=True)
class Clocks:
    """The moments the deadlines derive from."""

    created_at: datetime
    first_responded_at: datetime | None = None
    next_response_from: datetime | None = None  # a customer message awaiting an agent reply
    resolved_at: datetime | None = None
    pauses: tuple[cal.Pause, ...] = ()


@dataclass(frozen=True)
class Deadlines:
    """When each running clock falls due; None for a stopped or paused clock."""

    first_response: datetime | None = None
    next_response: datetime | None = None
    resolution: datetime | None = None


@dataclass(frozen=True)
class Clock:
    """One running clock: where it started, its target and the calendar it counts on."""

    name: str
    start: datetime
    target: Target
    calendar: cal.Calendar
    pauses: tuple[cal.Pause, ...]

    def due(self) -> datetime | None:
        if self.target.days is not None:  # on the 24x7 calendar a day is 24 hours
            return cal.deadline_in_days(self.start, self.target.days, self.calendar, self.pauses)
        return cal.deadline(self.start, self.target.span, self.calendar, self.pauses)

    def warning(self, due: datetime, fraction: float, at_most: timedelta) -> datetime:
        """``fraction`` of the target's business time ahead of ``due``, at most ``at_most``."""
        total = cal.business_time_between(self.start, due, self.calendar, self.pauses)
        lead = min(total * fraction, at_most)
        warn = cal.deadline(self.start, total - lead, self.calendar, self.pauses)
        return due if warn is None else warn


def running_clocks(policy: Policy, calendar: cal.Calendar, clocks: Clocks) -> list[Clock]:
    """The clocks that are running now, with what they count on."""
    if clocks.resolved_at is not None:
        return []
    counting = calendar if policy.business_hours else _CALENDAR_TIME
    starts = {
        "first_response": clocks.created_at if clocks.first_responded_at is None else None,
        "next_response": clocks.next_response_from,
        "resolution": clocks.created_at,
    }
    running = []
    for name in CLOCKS:
        start, target = starts[name], getattr(policy, name)
        if start is None or target is None:
            continue
        pauses = clocks.pauses if name in PAUSED_CLOCKS else ()
        running.append(Clock(name, start, target, counting, pauses))
    return running


def deadlines(policy: Policy, calendar: cal.Calendar, clocks: Clocks) -> Deadlines:
    due = {c.name: c.due() for c in running_clocks(policy, calendar, clocks)}
    return Deadlines(**due)
