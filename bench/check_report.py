"""The independent check: Promptly's headline figures recomputed from the raw event log.

Deliberately simple and separate: plain ``sqlite3`` on the ``events`` table (plus each
conversation's channel), nothing imported from ``bot/``, every rule written out here from the
definitions in docs/analytics.md:

* **Period** ``[since, until)``. Acks count the ``acked`` events in it. Tickets count when
  handed off in it (a ticket handed off again counts from its latest ``handed_off``),
  measured with their events before ``until``. A ticket's CSAT is its latest rating before
  ``until``, counted when that rating falls in the period.
* **Percentiles**: nearest rank, the value at 1-based rank ``ceil(p * n / 100)`` of the sorted
  values. **Shares**: hits / count, ``None`` when nothing was counted.
* **Ack inside the window**: ``latency_ms`` at most the channel's promise (``--promise``).
* **SLA outcome per clock**: *breached* if an ``sla_breach`` fired for it or an agent reply
  on it was logged outside the SLA (``within_sla`` false); *met* once the clock stopped
  otherwise; else *open*. First response stops at the first agent reply; next response runs
  from a customer message after an agent reply to the next agent reply; resolution (only
  when the ticket has a resolution deadline) stops at ``resolved``.
* **Warned before breach**: of the (ticket, clock) pairs breached, those with an
  ``sla_warning`` for the same clock logged before the breach.
* **Promised ETA met**: agent replies whose event says whether the reply time the customer
  was told held (``stated_met``).

    .venv/bin/python bench/check_report.py --db promptly.db --since 2026-11-23T00:00:00+00:00 \
        --until 2026-11-24T00:00:00+00:00 [--promise web=2000 --promise telegram=3000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import datetime
from typing import Any

CLOCKS = ("first_response", "next_response", "resolution")
DEFAULT_PROMISES = {
    "web": 2000.0,
    "telegram": 3000.0,
    "slack": 3000.0,
    "whatsapp": 5000.0,
    "messenger": 5000.0,
    "twilio": 10000.0,
    "email": 300000.0,
}


def nearest_rank(values: list[float], p: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (p * len(ordered) + 99) // 100  # ceil(p * n / 100) in integers
    return ordered[max(rank, 1) - 1]


def ratio(hits: int, count: int) -> float | None:
    return hits / count if count else None


def read_events(db_path: str) -> tuple[list[tuple[Any, ...]], dict[str, str]]:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        events = db.execute(
            "SELECT seq, at, type, conversation_id, ticket_id, data FROM events ORDER BY seq"
        ).fetchall()
        channels = dict(db.execute("SELECT id, channel FROM conversations").fetchall())
    finally:
        db.close()
    return events, channels


def new_ticket(at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "handed_off": at,
        "has_resolution": data.get("resolution_due") is not None,
        "replies": 0,  # agent replies so far
        "first_in_sla": None,
        "late_next": False,  # a later reply outside its SLA
        "next_running": False,  # customer wrote after an agent reply, no agent reply since
        "next_done": 0,
        "resolved": False,
        "warned_seq": {},  # clock -> seq of its first warning
        "breach_seq": {},  # clock -> seq of its first breach
        "stated": [],  # stated_met of each agent reply that has one
    }


def recompute(
    db_path: str, since: datetime, until: datetime, promises: dict[str, float]
) -> dict[str, Any]:
    """Flat figures: ``acks.<channel>.count`` ... ``csat.mean``; ``acks.all.*`` over every
    channel."""
    events, channels = read_events(db_path)
    acks: dict[str, list[float]] = {}
    tickets: dict[str, dict[str, Any]] = {}
    ratings: dict[str, tuple[datetime, int]] = {}
    for seq, at_text, kind, conversation, ticket_id, data_text in events:
        at = datetime.fromisoformat(at_text)
        if at >= until:
            continue
        data = json.loads(data_text)
        if kind == "acked" and since <= at:
            channel = channels.get(conversation, "unknown")
            acks.setdefault(channel, []).append(float(data.get("latency_ms", 0.0)))
        if ticket_id is None:
            continue
        if kind == "csat" and isinstance(data.get("rating"), int):
            ratings[ticket_id] = (at, data["rating"])
        if kind == "handed_off":
            tickets[ticket_id] = new_ticket(at, data)
            continue
        t = tickets.get(ticket_id)
        if t is None:
            continue
        if kind == "agent_replied":
            within = data.get("within_sla")
            if t["replies"] == 0:
                t["first_in_sla"] = within
            else:
                if within is False:
                    t["late_next"] = True
                if t["next_running"]:
                    t["next_running"] = False
                    t["next_done"] += 1
            t["replies"] += 1
            if data.get("stated_met") is not None:
                t["stated"].append(bool(data["stated_met"]))
        elif kind == "customer_replied":
            if t["replies"] > 0:
                t["next_running"] = True
        elif kind == "resolved":
            t["resolved"] = True
        elif kind in ("sla_warning", "sla_breach"):
            clock = str(data.get("timer", "")).split(":")[0]
            marks = t["warned_seq"] if kind == "sla_warning" else t["breach_seq"]
            marks.setdefault(clock, seq)

    out: dict[str, Any] = {}
    every: list[float] = []
    every_hits = 0
    for channel in sorted(acks):
        values = acks[channel]
        promise = promises.get(channel)
        hits = sum(1 for v in values if promise is not None and v <= promise)
        every += values
        every_hits += hits
        out[f"acks.{channel}.count"] = len(values)
        out[f"acks.{channel}.within"] = hits
        out[f"acks.{channel}.share"] = ratio(hits, len(values))
        out[f"acks.{channel}.p50"] = nearest_rank(values, 50)
        out[f"acks.{channel}.p99"] = nearest_rank(values, 99)
    out["acks.all.count"] = len(every)
    out["acks.all.within"] = every_hits
    out["acks.all.share"] = ratio(every_hits, len(every))
    out["acks.all.p50"] = nearest_rank(every, 50)
    out["acks.all.p99"] = nearest_rank(every, 99)

    cohort = [t for t in tickets.values() if since <= t["handed_off"] < until]
    out["tickets"] = len(cohort)
    for clock in CLOCKS:
        counts = {"met": 0, "breached": 0, "open": 0}
        for t in cohort:
            outcome = sla_outcome(t, clock)
            if outcome is not None:
                counts[outcome] += 1
        for name, n in counts.items():
            out[f"sla.{clock}.{name}"] = n
        out[f"sla.{clock}.share_met"] = ratio(counts["met"], counts["met"] + counts["breached"])
    breaches = [(t, c) for t in cohort for c in t["breach_seq"]]
    warned = sum(
        1 for t, c in breaches if c in t["warned_seq"] and t["warned_seq"][c] < t["breach_seq"][c]
    )
    out["warnings.breaches"] = len(breaches)
    out["warnings.breaches_warned"] = warned
    out["warnings.share"] = ratio(warned, len(breaches))
    stated = [m for t in cohort for m in t["stated"]]
    out["eta.count"] = len(stated)
    out["eta.met"] = sum(stated)
    out["eta.share"] = ratio(sum(stated), len(stated))
    scores = [rating for at, rating in ratings.values() if since <= at < until]
    out["csat.count"] = len(scores)
    out["csat.mean"] = round(sum(scores) / len(scores), 4) if scores else None
    return out


def sla_outcome(t: dict[str, Any], clock: str) -> str | None:
    if clock in t["breach_seq"]:
        return "breached"
    if clock == "first_response":
        if t["first_in_sla"] is False:
            return "breached"
        return "met" if t["replies"] else "open"
    if clock == "next_response":
        if t["late_next"]:
            return "breached"
        if t["next_running"] and not t["resolved"]:
            return "open"
        return "met" if t["next_done"] else None
    if not t["has_resolution"]:
        return None
    return "met" if t["resolved"] else "open"


def moment(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise SystemExit(f"{text}: give the time with its offset (e.g. +00:00)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="the gateway's SQLite database")
    parser.add_argument("--since", required=True, type=moment)
    parser.add_argument("--until", required=True, type=moment)
    parser.add_argument(
        "--promise",
        action="append",
        default=[],
        metavar="CHANNEL=MS",
        help="a channel's promised ack window in ms (default: Promptly's defaults)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    promises = dict(DEFAULT_PROMISES)
    for item in args.promise:
        channel, _, ms = item.partition("=")
        promises[channel] = float(ms)
    figures = recompute(args.db, args.since, args.until, promises)
    if args.json:
        print(json.dumps(figures, indent=2, sort_keys=True))
    else:
        for key, value in figures.items():
            print(f"{key:36} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
