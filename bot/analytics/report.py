"""``promptly report``: the statistics of a period as text, CSV or JSON, and PNG charts
beside them when written to a folder."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from bot.analytics import events
from bot.analytics.model import Distribution, Options
from bot.analytics.stats import Report, compute
from bot.errors import PromptlyError
from bot.handoff.calendar import Calendar
from bot.handoff.config import ALWAYS_OPEN
from bot.settings import Settings
from bot.store.open import AnyStore

T = TypeVar("T")


def options_for(settings: Settings, since: datetime, until: datetime) -> Options:
    """Windows and calendars from config; hours and weekdays in the default queue's zone."""
    promises = {
        # timedelta division is exact: 300ms is 300.0, not 300.00000000000006
        name: getattr(settings.channels, name).promise / timedelta(milliseconds=1)
        for name in type(settings.channels).model_fields
    }
    calendars: dict[str, Calendar] = {ALWAYS_OPEN: Calendar.always_open()}
    calendars.update({name: c.build() for name, c in settings.calendars.items()})
    queue = settings.queues.get(settings.routing.default_queue)
    zone = settings.calendars.get(queue.calendar) if queue else None
    return Options(since, until, ZoneInfo(zone.timezone if zone else "UTC"), promises, calendars)


async def build(store: AnyStore, options: Options) -> Report:
    return compute(await events.load(store, options.until), options)


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(asdict(report), indent=2, sort_keys=True) + "\n"
    if fmt == "csv":
        return to_csv(report)
    return to_text(report)


def write(report: Report, fmt: str, out: Path) -> list[Path]:
    """The report and its charts in ``out``; the report file first."""
    from bot.analytics import charts  # matplotlib loads only when charts are asked for

    path = out / f"report.{'txt' if fmt == 'text' else fmt}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(render(report, fmt), encoding="utf-8")
        return [path, *charts.render(report, out)]
    except OSError as e:
        raise PromptlyError(
            f"cannot write the report to {e.filename or out}: {e.strerror or e}"
        ) from e


# -- CSV: one row per figure ----------------------------------------------------------------


def rows(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Leaves of the report as (section, dimension, key, field, value) after the period."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from rows(item, (*path, str(key)))
    else:
        yield (*path, "" if value is None else str(value))


def to_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["figure", "value"])
    data = asdict(report)
    for key in ("since", "until", "timezone"):
        writer.writerow([key, data.pop(key)])
    for *path, value in rows(data):
        writer.writerow([".".join(path), value])
    return buffer.getvalue()


# -- text: the headline figures ---------------------------------------------------------------


def to_text(report: Report) -> str:
    acks, s = report.acks.all, report.sessions
    lines = [
        f"Promptly report {report.since} .. {report.until} ({report.timezone})",
        "",
        f"Acks: {acks.distribution.count}, inside the promised window {_pct(acks.within.share)}",
        f"  latency ms {_dist(acks.distribution)}",
        *_by("  ", report.acks.by.get("channel", {}), lambda v: _pct(v.within.share)),
        f"Bot answers: ms {_dist(report.answers.all)}",
        f"Sessions: {s.count}, deflected {_pct(s.deflected.share)} (came back within 24 h "
        f"{_pct(s.came_back.share)}), handed off {_pct(s.handed_off.share)}, "
        f"unanswered messages {_pct(s.unanswered.share)}",
        f"  handoff reasons: {_counts(s.reasons)}",
        "",
        f"Tickets handed off: {report.tickets}",
    ]
    for name in ("first_response", "next_response", "resolution"):
        times = getattr(report, name)
        lines.append(f"  {name} s: calendar {_dist(times.calendar.all)}")
        lines.append(f"  {' ' * len(name)}    business {_dist(times.business.all)}")
    for clock, split in report.sla.items():
        c = split.all
        lines.append(
            f"  SLA {clock}: met {c.met}, breached {c.breached}, open {c.open} "
            f"({_pct(c.share_met)} met)"
        )
    w = report.warnings
    lines += [
        f"  warnings later breached {_pct(w.warned_then_breached.share)}; "
        f"breaches warned first {_pct(w.breaches_warned.share)}",
        f"  stated reply times met {_pct(report.eta_met.share)}",
        f"  bot stages ms (per turn): {_stages(report.stages.bot)}",
        f"  slowest bot stage (p90): {_slowest(report.stages.bot)}",
        f"  stages s (all): {_stages(report.stages.all)}",
        f"  stages s (first response breached): {_stages(report.stages.breached)}",
        f"  stage contributing most to breaches (p90): {_slowest(report.stages.breached)}",
        f"  breaches by hour of handoff (most first): {_counts(_breach_hours(report))}",
        "",
        f"CSAT: {report.csat.all.count} ratings, mean {report.csat.all.mean}, "
        f"satisfied (4-5) {_pct(report.csat.all.satisfied.share)}, "
        f"changed {report.csat.all.replaced}",
        *_by("  ", report.csat.by.get("agent", {}), lambda v: f"{v.count} mean {v.mean}"),
    ]
    return "\n".join(lines) + "\n"


def _breach_hours(report: Report) -> dict[str, int]:
    """Breaches of every clock per hour of handoff, the three worst hours."""
    totals: Counter[str] = Counter()
    for split in report.sla.values():
        for hour, outcome in split.by.get("hour", {}).items():
            if outcome.breached:
                totals[hour] += outcome.breached
    return dict(totals.most_common(3))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _dist(d: Distribution) -> str:
    return f"n={d.count} p50 {_num(d.p50)} p90 {_num(d.p90)} p99 {_num(d.p99)} max {_num(d.max)}"


def _by(indent: str, groups: dict[str, T], show: Callable[[T], str]) -> list[str]:
    return [f"{indent}{key}: {show(value)}" for key, value in groups.items()]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def _slowest(stages: dict[str, Distribution]) -> str:
    measured = {name: d.p90 for name, d in stages.items() if d.p90 is not None}
    return max(measured, key=lambda name: measured[name]) if measured else "no data"


def _stages(stages: dict[str, Distribution]) -> str:
    return "; ".join(f"{name} p50 {_num(d.p50)} p90 {_num(d.p90)}" for name, d in stages.items())
