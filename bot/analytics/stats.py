"""All the report's statistics for one period, from a ``Log``. Pure: no I/O, no clock.

Definitions (an independent recomputation from the raw log must follow them):

- The period is [since, until). Ack and answer figures count events in it; ticket figures
  count tickets handed off in it, measured with their events before ``until`` (a clock still
  running then is ``open``); CSAT counts each ticket's latest rating when that rating is in it.
- Percentiles are nearest-rank (``bot.analytics.model``). Times are milliseconds for the bot
  (as logged) and seconds for tickets. Calendar time is wall-clock time; business time is
  counted on the ticket's SLA calendar (the queue's business hours when its policy counts
  them, else 24x7) with waiting-on-customer pauses removed from next response and resolution.
- SLA per clock: breached if a breach event fired for it or a reply was logged outside its
  deadline (``within_sla`` false); met once stopped without that; else open.
- Warning conversion: of the (ticket, clock) pairs warned, the share later breached; and of
  the pairs breached, the share warned first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from bot.analytics import conversations as conv
from bot.analytics.measures import (
    compliance,
    distribution,
    latency,
    share,
    split,
    time_labels,
)
from bot.analytics.model import (
    Compliance,
    Distribution,
    Latency,
    Log,
    Options,
    Ratings,
    Sample,
    Share,
)
from bot.analytics.ratings import LABELS as RATING_LABELS
from bot.analytics.ratings import ratings, summarize
from bot.analytics.tickets import CLOCKS, TicketTimes, paused_seconds, replay

T = TypeVar("T")
BOT_LABELS = ("channel", "tier", "hour", "weekday")
TICKET_LABELS = ("channel", "queue", "priority", "tier", "agent", "hour", "weekday")
STAGES = ("queue_wait", "agent_reply", "waiting_on_customer")


@dataclass(frozen=True)
class Split(Generic[T]):
    all: T
    by: dict[str, dict[str, T]]


@dataclass(frozen=True)
class Times:
    calendar: Split[Distribution]
    business: Split[Distribution]


@dataclass(frozen=True)
class Sessions:
    count: int
    handed_off: Share
    deflected: Share
    came_back: Share  # of the deflected
    unanswered: Share  # of the bot sessions' customer messages
    reasons: dict[str, int]
    cues: dict[str, int]
    by_channel: dict[str, Share]  # deflected share per channel


@dataclass(frozen=True)
class Warnings:
    warned_then_breached: Share
    breaches_warned: Share


@dataclass(frozen=True)
class Stages:
    """Per ticket: handoff to first agent (queue wait), agent to first reply, paused time.
    ``breached``: the same for tickets whose first response breached."""

    all: dict[str, Distribution]
    breached: dict[str, Distribution]
    # Per bot turn, in milliseconds: inbox → ack, waiting behind the conversation, NLU, KB.
    bot: dict[str, Distribution]


@dataclass(frozen=True)
class Report:
    since: str
    until: str
    timezone: str
    acks: Split[Latency]
    answers: Split[Distribution]
    tickets: int
    first_response: Times
    next_response: Times
    resolution: Times
    sla: dict[str, Split[Compliance]]
    warnings: Warnings
    eta_met: Share  # agent replies that came by the reply time the customer was told
    sessions: Sessions
    csat: Split[Ratings]
    stages: Stages


def compute(log: Log, options: Options) -> Report:
    # Nothing at or after ``until`` counts, even in a log read further (a later rating must
    # not replace one the period saw).
    log = replace(log, events=tuple(e for e in log.events if e.at < options.until))
    every = replay(log, options)
    cohort = [t for t in every.values() if options.covers(t.created)]
    return Report(
        since=options.since.isoformat(),
        until=options.until.isoformat(),
        timezone=str(options.timezone),
        acks=_split(conv.acks(log, options), (*BOT_LABELS, "kind", "weekday_hour"), latency),
        answers=_split(conv.answers(log, options), (*BOT_LABELS, "source"), _values),
        tickets=len(cohort),
        first_response=_times(cohort, options, _first_response),
        next_response=_times(cohort, options, _next_responses),
        resolution=_times(cohort, options, _resolution),
        sla={
            clock: _split(_outcomes(cohort, options, clock), TICKET_LABELS, compliance)
            for clock in CLOCKS
        },
        warnings=_warnings(cohort),
        eta_met=share(
            sum(m for t in cohort for m in t.stated_met), sum(len(t.stated_met) for t in cohort)
        ),
        sessions=_sessions(log, options),
        csat=_split(ratings(log, options, every), RATING_LABELS, summarize),
        stages=_stages(cohort, options, conv.bot_stages(log, options)),
    )


def _split(
    samples: Sequence[Sample], labels: Sequence[str], summarize: Callable[[Sequence[Sample]], T]
) -> Split[T]:
    return Split(summarize(samples), split(samples, labels, summarize))


def _values(samples: Sequence[Sample]) -> Distribution:
    return distribution(s.value for s in samples)


# -- tickets --------------------------------------------------------------------------------

Measured = Callable[[TicketTimes, Options], list[tuple[float, float | None]]]


def _labels(ticket: TicketTimes, options: Options) -> dict[str, str]:
    return {**ticket.labels, **time_labels(ticket.created, options.timezone)}


def _times(cohort: Sequence[TicketTimes], options: Options, measure: Measured) -> Times:
    calendar: list[Sample] = []
    business: list[Sample] = []
    for ticket in cohort:
        labels = _labels(ticket, options)
        for wall, counted in measure(ticket, options):
            calendar.append(Sample(wall, labels))
            if counted is not None:
                business.append(Sample(counted, labels))
    return Times(_split(calendar, TICKET_LABELS, _values), _split(business, TICKET_LABELS, _values))


def _first_response(ticket: TicketTimes, options: Options) -> list[tuple[float, float | None]]:
    if ticket.first_reply is None:
        return []
    wall = (ticket.first_reply - ticket.created).total_seconds()
    return [(wall, ticket.business(ticket.created, ticket.first_reply))]


def _next_responses(ticket: TicketTimes, options: Options) -> list[tuple[float, float | None]]:
    pauses = ticket.closed_pauses(options.until)
    return [
        ((end - start).total_seconds(), ticket.business(start, end, pauses))
        for start, end in ticket.next_responses
    ]


def _resolution(ticket: TicketTimes, options: Options) -> list[tuple[float, float | None]]:
    if ticket.resolved is None:
        return []
    wall = (ticket.resolved - ticket.created).total_seconds()
    return [(wall, ticket.business(ticket.created, ticket.resolved, ticket.pauses))]


def _outcomes(cohort: Sequence[TicketTimes], options: Options, clock: str) -> list[Sample]:
    return [
        Sample(0.0, _labels(t, options), outcome=outcome)
        for t in cohort
        if (outcome := t.outcome(clock)) is not None
    ]


def _warnings(cohort: Sequence[TicketTimes]) -> Warnings:
    warned = [(t, c) for t in cohort for c in sorted(t.warned)]
    breached = [(t, c) for t in cohort for c in sorted(t.breached)]
    return Warnings(
        share(sum(c in t.breached for t, c in warned), len(warned)),
        share(sum(c in t.warned_first for t, c in breached), len(breached)),
    )


def _stages(cohort: Sequence[TicketTimes], options: Options, bot: dict[str, list[float]]) -> Stages:
    def stage_values(tickets: Sequence[TicketTimes]) -> dict[str, Distribution]:
        queue_wait, agent_reply = [], []
        for t in tickets:
            if t.assigned is not None:
                queue_wait.append((t.assigned - t.created).total_seconds())
                if t.first_reply is not None:
                    agent_reply.append((t.first_reply - t.assigned).total_seconds())
        waiting = [paused_seconds(t.closed_pauses(options.until)) for t in tickets]
        return dict(zip(STAGES, map(distribution, (queue_wait, agent_reply, waiting)), strict=True))

    late = [t for t in cohort if t.outcome("first_response") == "breached"]
    return Stages(
        stage_values(cohort),
        stage_values(late),
        {stage: distribution(values) for stage, values in bot.items()},
    )


# -- sessions --------------------------------------------------------------------------------


def _sessions(log: Log, options: Options) -> Sessions:
    every = conv.sessions(log, options)
    bot = [s for s in every if not s.with_human]
    deflected = [s for s in bot if not s.handed_off]
    unanswered = conv.unanswered_messages(log)
    messages = [m for s in bot for m in s.messages]
    intents, cues = conv.handoff_reasons(log, options)
    channels = sorted({log.channels.get(s.conversation_id, "unknown") for s in bot})
    by_channel = {
        c: share(
            sum(1 for s in deflected if log.channels.get(s.conversation_id, "unknown") == c),
            sum(1 for s in bot if log.channels.get(s.conversation_id, "unknown") == c),
        )
        for c in channels
    }
    return Sessions(
        count=len(bot),
        handed_off=share(len(bot) - len(deflected), len(bot)),
        deflected=share(len(deflected), len(bot)),
        came_back=share(sum(conv.came_back(s) for s in deflected), len(deflected)),
        unanswered=share(sum(m in unanswered for m in messages), len(messages)),
        reasons=dict(sorted(intents.items())),
        cues=dict(sorted(cues.items())),
        by_channel=by_channel,
    )
