"""PNG charts of a report, for a weekly email. Needs matplotlib (Agg, no display).

Figures are built with ``matplotlib.figure.Figure`` directly, not pyplot, so no global
state is kept between reports.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from bot.analytics.model import WEEKDAYS
from bot.analytics.stats import Report

HOURS = [f"{h:02d}" for h in range(24)]


def render(report: Report, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    charts = {
        "ack_heatmap.png": _ack_heatmap,
        "ack_by_hour.png": _ack_by_hour,
        "sla_by_weekday.png": _sla_by_weekday,
        "stages.png": _stages,
        "csat.png": _csat,
    }
    written = []
    for name, draw in charts.items():
        figure = Figure(figsize=(9, 4.5), layout="constrained")
        draw(report, figure)
        figure.savefig(out / name, format="png", dpi=100)
        written.append(out / name)
    return written


def _ack_heatmap(report: Report, figure: Figure) -> None:
    cells = report.acks.by.get("weekday_hour", {})
    nan = float("nan")  # an hour without acks stays blank rather than looking fast
    grid = [
        [
            (c.distribution.p90 or nan) if (c := cells.get(f"{d} {h}")) is not None else nan
            for h in HOURS
        ]
        for d in WEEKDAYS
    ]
    axes = figure.add_subplot()
    image = axes.imshow(grid, aspect="auto", cmap="viridis")
    axes.set_yticks(range(7), WEEKDAYS)
    axes.set_xticks(range(0, 24, 2), HOURS[::2])
    axes.set_title(f"Ack latency p90 (ms) by weekday and hour ({report.timezone})")
    figure.colorbar(image, ax=axes)


def _ack_by_hour(report: Report, figure: Figure) -> None:
    by_hour = report.acks.by.get("hour", {})
    axes = figure.add_subplot()
    for name in ("p50", "p90", "p99"):
        values = [getattr(by_hour[h].distribution, name) if h in by_hour else None for h in HOURS]
        axes.plot(HOURS, [float("nan") if v is None else v for v in values], label=name)
    axes.set_ylabel("ms")
    axes.set_title("Ack latency by hour of day")
    axes.legend()


def _sla_by_weekday(report: Report, figure: Figure) -> None:
    axes = figure.add_subplot()
    width = 0.25
    for i, (clock, split) in enumerate(report.sla.items()):
        by_day = split.by.get("weekday", {})
        shares = [(by_day[d].share_met or 0.0) * 100 if d in by_day else 0.0 for d in WEEKDAYS]
        axes.bar([x + i * width for x in range(7)], shares, width, label=clock)
    axes.set_xticks([x + width for x in range(7)], WEEKDAYS)
    axes.set_ylim(0, 100)
    axes.set_ylabel("% met (of decided)")
    axes.set_title("SLA compliance by weekday of handoff")
    axes.legend()


def _stages(report: Report, figure: Figure) -> None:
    axes = figure.add_subplot()
    names = list(report.stages.all)
    for i, (label, stages) in enumerate(
        (("all tickets", report.stages.all), ("first response breached", report.stages.breached))
    ):
        p50 = [(stages[n].p50 or 0.0) / 60 for n in names]
        axes.bar([x + i * 0.4 for x in range(len(names))], p50, 0.4, label=label)
    axes.set_xticks([x + 0.2 for x in range(len(names))], names)
    axes.set_ylabel("minutes (p50)")
    axes.set_title("Where tickets wait")
    axes.legend()


def _csat(report: Report, figure: Figure) -> None:
    axes = figure.add_subplot()
    scores = report.csat.all.by_score
    axes.bar(list(scores), list(scores.values()))
    axes.set_xlabel("rating")
    axes.set_ylabel("tickets")
    axes.set_title(f"CSAT: {report.csat.all.count} ratings, mean {report.csat.all.mean}")
