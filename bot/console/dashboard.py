"""The statistics dashboard (issue 9): key figures for today / 7 days / 30 days and charts
rendered on the server (matplotlib to SVG), each with its data as CSV and JSON.

Periods are calendar days in the default queue's time zone (the report's zone), read off
the app's clock: *today* is since local midnight, *7d* and *30d* are today and the 6 or 29
days before it. The figures are ``bot.analytics``' report for the period; the trends split
its SLA outcomes and ratings per day (per hour for today). A period's statistics are computed once
for every request arriving within ``CACHE_SECONDS`` (the page asks for the figures and four
charts at once), off the event loop.

For admins and team leads (role ``lead``). The ratings behind the CSAT figures are listed
too, newest first, and searchable by their comments (``GET /api/console/csat``): customers'
own words, returned as JSON text for the page to insert as text.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import time as monotonic
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from bot.analytics import events
from bot.analytics.measures import compliance
from bot.analytics.model import WEEKDAYS, Compliance, Log, Options, Ratings, Sample
from bot.analytics.ratings import ratings, summarize
from bot.analytics.report import options_for, to_csv
from bot.analytics.stats import STAGES, Report, compute
from bot.analytics.tickets import CLOCKS, TicketTimes, replay
from bot.clock import Clock
from bot.console.access import require, require_page
from bot.errors import NotFound, Unprocessable
from bot.settings import Settings
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PERIODS = {"today": 1, "7d": 7, "30d": 30}
PERIOD_LABELS = {"today": "Today", "7d": "7 days", "30d": "30 days"}
FORMATS = ("json", "csv")
CHART_FORMATS = ("svg", "csv", "json")
CACHE_SECONDS = 15.0
HOURS = tuple(f"{h:02d}" for h in range(24))
NO_DATA = "no data"
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'"
ROLE = "lead"  # and admins, who pass every check
MAX_RATINGS = 200  # listed per request; ``total`` says how many matched
MAX_QUERY = 200
Cell = str | int | float | None


@dataclass(frozen=True)
class Bucket:
    """One day (or hour, for today) of the period: its SLA outcomes and its CSAT."""

    start: datetime
    label: str
    sla: dict[str, Compliance]
    csat: Ratings


@dataclass(frozen=True)
class Rated:
    """One rating (a ``csat`` event) in the period, as the comments list shows it."""

    seq: int
    at: datetime
    ticket_id: str
    rating: int
    comment: str | None
    agent: str
    queue: str
    channel: str
    current: bool  # False: the customer rated the ticket again later (before the period's end)

    def matches(self, query: str) -> bool:
        """``query``, case-folded, occurs in the comment; an empty query matches every rating."""
        return not query or query.casefold() in (self.comment or "").casefold()


@dataclass(frozen=True)
class View:
    period: str
    report: Report
    trend: tuple[Bucket, ...]
    ratings: tuple[Rated, ...] = ()  # newest first


@dataclass(frozen=True)
class Table:
    """A chart's data: what its SVG draws and its CSV/JSON downloads hold."""

    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]]

    def records(self) -> list[dict[str, Cell]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(["" if v is None else v for v in row] for row in self.rows)
        return buffer.getvalue()


# -- periods -----------------------------------------------------------------------------------


def period_of(request: web.Request) -> str:
    period = request.query.get("period", "today")
    if period not in PERIODS:
        raise Unprocessable(
            "invalid_period", f"period must be one of {', '.join(PERIODS)}", field="period"
        )
    return period


def edges(period: str, now: datetime, zone: ZoneInfo) -> list[datetime]:
    """The period's bucket boundaries, ascending: the first is its start, the last ``now``.
    Days start at local midnight (a DST day has 23 or 25 hours); today is cut in hours."""
    today = now.astimezone(zone).date()
    first = today - timedelta(days=PERIODS[period] - 1)
    start = datetime.combine(first, time(0), tzinfo=zone)
    if period == "today":
        # Hours in UTC steps, so a DST change neither repeats nor skips one.
        steps = [start + timedelta(hours=h) for h in range(25)]
    else:
        steps = [
            datetime.combine(first + timedelta(days=d), time(0), tzinfo=zone)
            for d in range(PERIODS[period] + 1)
        ]
    inside = [s for s in steps if s < now]
    return [*inside, now]


def _label(start: datetime, period: str, zone: ZoneInfo) -> str:
    local = start.astimezone(zone)
    return local.strftime("%H:00") if period == "today" else local.date().isoformat()


def build_view(period: str, log: Log, options: Options, bounds: Sequence[datetime]) -> View:
    """The report for the whole period, and its SLA outcomes and ratings per bucket. Pure and
    CPU-bound.

    Buckets split the period's own figures, measured up to its end: a ticket counts in the
    bucket it was handed off in, with its outcome as of the period's end (not as of the
    bucket's), and a rating in the bucket its latest rating falls in; so the buckets add up
    to the period's totals.
    """
    log = replace(log, events=tuple(e for e in log.events if e.at < options.until))
    report = compute(log, options)
    tickets = replay(log, options)
    trend = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        window = replace(options, since=start, until=end)
        cohort = [t for t in tickets.values() if window.covers(t.created)]
        sla = {
            clock: compliance(
                [
                    Sample(0.0, {}, outcome=outcome)
                    for t in cohort
                    if (outcome := t.outcome(clock)) is not None
                ]
            )
            for clock in CLOCKS
        }
        trend.append(
            Bucket(
                start=start,
                label=_label(start, period, options.timezone),
                sla=sla,
                csat=summarize(ratings(log, window, tickets)),
            )
        )
    return View(period, report, tuple(trend), rated(log, options, tickets))


def rated(log: Log, options: Options, tickets: Mapping[str, TicketTimes]) -> tuple[Rated, ...]:
    """Every rating given in the period, newest first, labelled as the CSAT figures are (the
    ticket's agent and queue, the conversation's channel). A rating the customer replaced
    later is listed too (its comment stays searchable) but is not ``current``; only current
    ones count in the figures."""
    found: list[Rated] = []
    latest: dict[str, int] = {}  # ticket id -> seq of its latest rating before the end
    for event in log.events:
        if event.type != "csat" or not event.ticket_id or event.at >= options.until:
            continue
        rating = event.data.get("rating")
        if not isinstance(rating, int):
            continue
        latest[event.ticket_id] = event.seq
        if not options.covers(event.at):
            continue
        ticket = tickets.get(event.ticket_id)
        comment = event.data.get("comment")
        found.append(
            Rated(
                seq=event.seq,
                at=event.at,
                ticket_id=event.ticket_id,
                rating=rating,
                comment=comment if isinstance(comment, str) and comment else None,
                agent=ticket.labels["agent"] if ticket else "(none)",
                queue=ticket.labels["queue"] if ticket else "unknown",
                channel=log.channels.get(event.conversation_id or "", "unknown"),
                current=True,
            )
        )
    return tuple(
        replace(r, current=latest[r.ticket_id] == r.seq)
        for r in sorted(found, key=lambda r: (r.at, r.seq), reverse=True)
    )


# -- key figures -------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return NO_DATA if value is None else f"{value * 100:.1f} %"


def _ms(value: float | None) -> str:
    return NO_DATA if value is None else f"{value:,.0f} ms"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return NO_DATA
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _figure(key: str, label: str, value: float | None, text: str, detail: str) -> dict[str, Any]:
    return {"key": key, "label": label, "value": value, "text": text, "detail": detail}


def key_figures(report: Report) -> list[dict[str, Any]]:
    """The headline numbers, formatted; ``value`` is None (and ``text`` "no data") when the
    period has nothing to measure."""
    acks = report.acks.all
    first = report.first_response.calendar.all
    sessions = report.sessions
    csat = report.csat.all
    figures = [
        _figure(
            "ack_p99",
            "Ack p99",
            acks.distribution.p99,
            _ms(acks.distribution.p99),
            f"{acks.distribution.count} acks, p50 {_ms(acks.distribution.p50)}",
        ),
        _figure(
            "ack_within",
            "Acked inside the promise",
            acks.within.share,
            _pct(acks.within.share),
            f"{acks.within.hits} of {acks.within.count}",
        ),
        _figure(
            "first_response",
            "First response (median)",
            first.p50,
            _duration(first.p50),
            f"p90 {_duration(first.p90)}, {first.count} of {report.tickets} tickets answered",
        ),
    ]
    for clock in ("first_response", "resolution"):
        outcome = report.sla[clock].all if clock in report.sla else None
        if outcome is None:
            continue
        figures.append(
            _figure(
                f"sla_{clock}",
                f"SLA met: {clock.replace('_', ' ')}",
                outcome.share_met,
                _pct(outcome.share_met),
                f"met {outcome.met}, breached {outcome.breached}, open {outcome.open}",
            )
        )
    figures += [
        _figure(
            "deflection",
            "Deflected (no human)",
            sessions.deflected.share,
            _pct(sessions.deflected.share),
            f"{sessions.deflected.hits} of {sessions.count} conversations; "
            f"came back within 24 h {_pct(sessions.came_back.share)}",
        ),
        _figure(
            "handoff",
            "Handed off",
            sessions.handed_off.share,
            _pct(sessions.handed_off.share),
            f"{sessions.handed_off.hits} of {sessions.count} conversations",
        ),
        _figure(
            "csat",
            "CSAT average",
            csat.mean,
            NO_DATA if csat.mean is None else f"{csat.mean:.2f} / 5",
            f"{csat.count} ratings, satisfied (4-5) {_pct(csat.satisfied.share)}"
            if csat.count
            else "0 ratings",
        ),
    ]
    return figures


def is_empty(report: Report) -> bool:
    return not (report.acks.all.distribution.count or report.sessions.count or report.tickets)


# -- charts: data ------------------------------------------------------------------------------


def _ack_heatmap_table(view: View) -> Table:
    cells = view.report.acks.by.get("weekday_hour", {})
    rows: list[tuple[Cell, ...]] = []
    for day in WEEKDAYS:
        for hour in HOURS:
            cell = cells.get(f"{day} {hour}")
            if cell is not None:
                d = cell.distribution
                rows.append((day, hour, d.count, d.p50, d.p90, d.p99, d.max, cell.within.share))
    return Table(
        ("weekday", "hour", "acks", "p50_ms", "p90_ms", "p99_ms", "max_ms", "share_within"), rows
    )


def _sla_trend_table(view: View) -> Table:
    rows: list[tuple[Cell, ...]] = [
        (b.label, b.start.isoformat(), clock, c.met, c.breached, c.open, c.share_met)
        for b in view.trend
        for clock, c in b.sla.items()
    ]
    return Table(("bucket", "start", "clock", "met", "breached", "open", "share_met"), rows)


def _stages_table(view: View) -> Table:
    stages = view.report.stages
    rows: list[tuple[Cell, ...]] = []
    for cohort, values in (("all", stages.all), ("first_response_breached", stages.breached)):
        for name in STAGES:
            d = values.get(name)
            if d is not None:
                rows.append((cohort, name, d.count, d.p50, d.p90, d.max))
    return Table(("tickets", "stage", "count", "p50_s", "p90_s", "max_s"), rows)


def _csat_trend_table(view: View) -> Table:
    rows: list[tuple[Cell, ...]] = [
        (
            b.label,
            b.start.isoformat(),
            b.csat.count,
            b.csat.mean,
            b.csat.satisfied.share,
            *(b.csat.by_score.get(s, 0) for s in ("1", "2", "3", "4", "5")),
        )
        for b in view.trend
    ]
    columns = ("bucket", "start", "ratings", "mean", "share_satisfied")
    return Table((*columns, "score_1", "score_2", "score_3", "score_4", "score_5"), rows)


# -- charts: drawing (matplotlib, no pyplot: no global state) -----------------------------------


def _no_data(axes: Any, text: str) -> None:
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", color="#6b7280")


def _draw_ack_heatmap(view: View, table: Table, figure: Figure) -> None:
    axes = figure.add_subplot()
    nan = float("nan")  # an hour without acks stays blank rather than looking fast
    p90 = {(r[0], r[1]): r[4] for r in table.rows}
    grid = [
        [float(v) if isinstance(v := p90.get((day, hour)), int | float) else nan for hour in HOURS]
        for day in WEEKDAYS
    ]
    image = axes.imshow(grid, aspect="auto", cmap="viridis")
    axes.set_yticks(range(7), WEEKDAYS)
    axes.set_xticks(range(0, 24, 2), HOURS[::2])
    axes.set_xlabel(f"hour ({view.report.timezone})")
    axes.set_title("Ack latency p90 (ms) by weekday and hour")
    if table.rows:
        figure.colorbar(image, ax=axes)
    else:
        _no_data(axes, "No acks in this period")


def _draw_sla_trend(view: View, table: Table, figure: Figure) -> None:
    axes = figure.add_subplot()
    labels = [b.label for b in view.trend]
    positions = range(len(labels))
    decided = False
    for clock in CLOCKS:
        shares = [b.sla[clock].share_met if clock in b.sla else None for b in view.trend]
        decided = decided or any(s is not None for s in shares)
        values = [float("nan") if s is None else s * 100 for s in shares]
        axes.plot(positions, values, marker="o", label=clock.replace("_", " "))
    _bucket_ticks(axes, labels)
    axes.set_ylim(-2, 102)
    axes.set_ylabel("% met (of decided)")
    axes.set_title("SLA compliance over time")
    if decided:
        axes.legend(loc="lower left")
    else:
        _no_data(axes, "No SLA outcomes in this period")


def _draw_stages(view: View, table: Table, figure: Figure) -> None:
    axes = figure.add_subplot()
    stages = view.report.stages
    width = 0.4
    for i, (label, values) in enumerate(
        (("all tickets", stages.all), ("first response breached", stages.breached))
    ):
        p50 = [((values[n].p50 or 0.0) / 60) if n in values else 0.0 for n in STAGES]
        axes.bar([x + i * width for x in range(len(STAGES))], p50, width, label=label)
    axes.set_xticks(
        [x + width / 2 for x in range(len(STAGES))], [s.replace("_", " ") for s in STAGES]
    )
    axes.set_ylabel("minutes (p50)")
    axes.set_title("Where tickets wait (slow stages)")
    axes.set_ylim(bottom=0)
    if any((d.max or 0.0) > 0 for d in stages.all.values()):
        axes.legend()
    else:
        _no_data(axes, "No ticket waited in this period")


def _draw_csat_trend(view: View, table: Table, figure: Figure) -> None:
    axes = figure.add_subplot()
    labels = [b.label for b in view.trend]
    positions = list(range(len(labels)))
    counts = [b.csat.count for b in view.trend]
    means = [float("nan") if b.csat.mean is None else b.csat.mean for b in view.trend]
    bars = axes.twinx()
    bars.bar(positions, counts, color="#d1d5db", width=0.6)
    bars.set_ylabel("ratings")
    bars.set_ylim(0, max([*counts, 1]) * 1.2)
    axes.set_zorder(bars.get_zorder() + 1)
    axes.patch.set_visible(False)
    axes.plot(positions, means, marker="o", color="#15803d")
    axes.set_ylim(0.8, 5.2)
    axes.set_ylabel("mean rating (1-5)")
    _bucket_ticks(axes, labels)
    total = view.report.csat.all
    if total.mean is None:
        axes.set_title("CSAT trend")
        _no_data(axes, "No ratings in this period")
    else:
        axes.set_title(f"CSAT trend: {total.count} ratings, mean {total.mean:.2f}")


def _bucket_ticks(axes: Any, labels: Sequence[str]) -> None:
    step = max(1, len(labels) // 10)
    axes.set_xticks(range(0, len(labels), step), labels[::step], rotation=30, ha="right")
    axes.set_xlim(-0.5, max(len(labels) - 0.5, 0.5))


Draw = Callable[[View, Table, "Figure"], None]


@dataclass(frozen=True)
class Chart:
    title: str
    table: Callable[[View], Table]
    draw: Draw


CHARTS: dict[str, Chart] = {
    "ack_heatmap": Chart("Ack latency by weekday and hour", _ack_heatmap_table, _draw_ack_heatmap),
    "sla_trend": Chart("SLA compliance over time", _sla_trend_table, _draw_sla_trend),
    "stages": Chart("Slow stages", _stages_table, _draw_stages),
    "csat_trend": Chart("CSAT trend", _csat_trend_table, _draw_csat_trend),
}
_DRAWING = threading.Lock()  # matplotlib is not documented as thread-safe


def chart_svg(name: str, view: View) -> bytes:
    """One chart as SVG; call it off the event loop."""
    from matplotlib.figure import Figure  # loads only when a chart is asked for

    chart = CHARTS[name]
    with _DRAWING:
        figure = Figure(figsize=(8, 4), layout="constrained")
        chart.draw(view, chart.table(view), figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


# -- handlers ----------------------------------------------------------------------------------


class Dashboard:
    """The dashboard page and its data, for team leads and admins."""

    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/console/dashboard", "page"),
        ("GET", "/api/console/report", "report"),
        ("GET", "/api/console/charts/{name}.{ext}", "chart"),
        ("GET", "/api/console/csat", "csat"),
    ]

    def __init__(
        self, store: SQLiteStore | PostgresStore, settings: Settings, clock: Clock
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._cache: dict[str, tuple[float, asyncio.Task[View]]] = {}

    async def page(self, request: web.Request) -> web.Response:
        user, csrf_token = await require_page(request, ROLE)
        context = {
            "title": "Dashboard",
            "user": user,
            "csrf_token": csrf_token,
            "page": "dashboard",
            "periods": PERIOD_LABELS,
            "charts": {name: chart.title for name, chart in CHARTS.items()},
        }
        response = aiohttp_jinja2.render_template("dashboard.html", request, context)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def report(self, request: web.Request) -> web.Response:
        await require(request, ROLE)
        period = period_of(request)
        fmt = request.query.get("format", "json")
        if fmt not in FORMATS:
            raise Unprocessable(
                "invalid_format", f"format must be one of {', '.join(FORMATS)}", field="format"
            )
        view = await self.view(period)
        if fmt == "csv":
            return _download(to_csv(view.report), "text/csv", f"promptly-report-{period}.csv")
        body = {
            "period": period,
            "label": PERIOD_LABELS[period],
            "since": view.report.since,
            "until": view.report.until,
            "timezone": view.report.timezone,
            "empty": is_empty(view.report),
            "figures": key_figures(view.report),
            "report": asdict(view.report),
        }
        return _json(body)

    async def chart(self, request: web.Request) -> web.Response:
        await require(request, ROLE)
        name, ext = request.match_info["name"], request.match_info["ext"]
        if name not in CHARTS:
            raise NotFound("unknown_chart", f"charts: {', '.join(CHARTS)}", field="name")
        if ext not in CHART_FORMATS:
            raise NotFound("unknown_format", f"a chart is .{', .'.join(CHART_FORMATS)}")
        period = period_of(request)
        view = await self.view(period)
        if ext == "svg":
            svg = await asyncio.to_thread(chart_svg, name, view)
            response = web.Response(body=svg, content_type="image/svg+xml")
            response.headers["Cache-Control"] = "no-store"
            response.headers["Content-Security-Policy"] = SVG_CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
            return response
        table = CHARTS[name].table(view)
        if ext == "csv":
            return _download(table.csv(), "text/csv", f"promptly-{name}-{period}.csv")
        body = {
            "chart": name,
            "period": period,
            "since": view.report.since,
            "until": view.report.until,
            "timezone": view.report.timezone,
            "columns": list(table.columns),
            "rows": table.records(),
        }
        return _json(body)

    async def csat(self, request: web.Request) -> web.Response:
        """The period's ratings, newest first; ``q`` keeps those whose comment contains it
        (case-insensitive)."""
        await require(request, ROLE)
        period = period_of(request)
        query = request.query.get("q", "").strip()
        if len(query) > MAX_QUERY:
            raise Unprocessable("invalid_query", f"q is at most {MAX_QUERY} characters", field="q")
        view = await self.view(period)
        found = [r for r in view.ratings if r.matches(query)]
        shown = found[:MAX_RATINGS]
        references = await self._references([r.ticket_id for r in shown])
        body = {
            "period": period,
            "since": view.report.since,
            "until": view.report.until,
            "timezone": view.report.timezone,
            "q": query,
            "total": len(found),
            "truncated": len(found) > len(shown),
            "ratings": [
                {
                    "at": r.at.isoformat(),
                    "ticket_id": r.ticket_id,
                    "reference": references.get(r.ticket_id),
                    "rating": r.rating,
                    "comment": r.comment,
                    "agent": r.agent,
                    "queue": r.queue,
                    "channel": r.channel,
                    "current": r.current,
                }
                for r in shown
            ],
        }
        return _json(body)

    async def _references(self, ticket_ids: Sequence[str]) -> dict[str, str]:
        """The tickets' references (what customers and agents quote), by id."""
        return await ticket_references(self._store, ticket_ids)

    async def view(self, period: str) -> View:
        """The period's statistics, shared by the requests of the next ``CACHE_SECONDS``."""
        now = monotonic.monotonic()
        cached = self._cache.get(period)
        if cached is None or now - cached[0] > CACHE_SECONDS or _failed(cached[1]):
            cached = (now, asyncio.create_task(self._compute(period)))
            self._cache[period] = cached
        # Shielded: one request going away must not cancel the others' computation.
        return await asyncio.shield(cached[1])

    async def _compute(self, period: str) -> View:
        now = self._clock()
        zone = options_for(self._settings, now, now).timezone
        bounds = edges(period, now, zone)
        options = options_for(self._settings, bounds[0], now)
        log = await events.load(self._store, now)
        return await asyncio.to_thread(build_view, period, log, options, bounds)


async def ticket_references(
    store: SQLiteStore | PostgresStore, ticket_ids: Sequence[str]
) -> dict[str, str]:
    """The tickets' references (what customers and agents quote), by id; unknown ids are
    left out."""
    wanted = sorted(set(ticket_ids))
    if not wanted:
        return {}
    if isinstance(store, PostgresStore):

        async def read(db: Any) -> Any:
            return await db.fetch(
                "SELECT id, reference FROM tickets WHERE id = ANY($1::text[])", wanted
            )

        rows = await store.run(read, write=False)
    else:
        marks = ", ".join("?" * len(wanted))
        rows = await store.run(
            lambda db: db.execute(
                f"SELECT id, reference FROM tickets WHERE id IN ({marks})", wanted
            ).fetchall(),
            write=False,
        )
    return {str(ticket_id): str(reference) for ticket_id, reference in rows}


def _failed(task: asyncio.Task[View]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


def _json(body: dict[str, Any]) -> web.Response:
    response = web.Response(
        text=json.dumps(body, indent=2, sort_keys=True, default=str) + "\n",
        content_type="application/json",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _download(text: str, content_type: str, filename: str) -> web.Response:
    response = web.Response(text=text, content_type=content_type, charset="utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
