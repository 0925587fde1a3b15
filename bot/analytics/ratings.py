"""CSAT from ``csat`` events. Pure.

A customer may rate a ticket again; the newer rating replaces the older (``bot.handoff.csat``).
Each ticket counts once, with its latest rating before the period's end, in the period that
rating falls in. A late rating counts when it arrives; a replaced one never counts.

Splits: the ticket's agent and queue (``bot.analytics.tickets``), its conversation's channel,
and its **topic**: the intent it was handed off for (the first part of the ``handed_off``
event's ``reason``, before any priority cues such as ``, urgency``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.analytics.measures import share
from bot.analytics.model import Log, Options, Ratings, Sample
from bot.analytics.tickets import TicketTimes
from bot.store.base import Event

SCALE = ("1", "2", "3", "4", "5")
REPLACED = "replaced"  # a sample's outcome when its ticket was rated before
LABELS = ("agent", "queue", "channel", "topic")


def ratings(log: Log, options: Options, tickets: Mapping[str, TicketTimes]) -> list[Sample]:
    latest: dict[str, Event] = {}
    times: dict[str, int] = {}
    topics: dict[str, str] = {}
    for event in log.events:
        if event.type == "handed_off" and event.ticket_id:
            topics[event.ticket_id] = topic(event)
        elif event.type == "csat" and event.ticket_id and isinstance(event.data.get("rating"), int):
            latest[event.ticket_id] = event
            times[event.ticket_id] = times.get(event.ticket_id, 0) + 1
    samples = []
    for ticket_id, event in latest.items():
        if not options.covers(event.at):
            continue
        ticket = tickets.get(ticket_id)
        labels = {
            "agent": ticket.labels["agent"] if ticket else "(none)",
            "queue": ticket.labels["queue"] if ticket else "unknown",
            "channel": log.channels.get(event.conversation_id or "", "unknown"),
            "topic": topics.get(ticket_id, "unknown"),
        }
        rating = int(event.data["rating"])
        outcome = REPLACED if times[ticket_id] > 1 else ""
        samples.append(Sample(float(rating), labels, hit=rating >= 4, outcome=outcome))
    return samples


def topic(handed_off: Event) -> str:
    return str(handed_off.data.get("reason") or "unknown").split(", ")[0]


def summarize(samples: Sequence[Sample]) -> Ratings:
    scores = [int(s.value) for s in samples]
    return Ratings(
        count=len(scores),
        mean=round(sum(scores) / len(scores), 4) if scores else None,
        satisfied=share(sum(s.hit for s in samples), len(samples)),
        by_score={k: sum(1 for v in scores if str(v) == k) for k in SCALE},
        replaced=sum(1 for s in samples if s.outcome == REPLACED),
    )
