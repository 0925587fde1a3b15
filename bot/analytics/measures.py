"""Percentiles, shares and splits by label. Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar
from zoneinfo import ZoneInfo

from bot.analytics.model import (
    PERCENTILES,
    WEEKDAYS,
    Compliance,
    Distribution,
    Latency,
    Sample,
    Share,
)

T = TypeVar("T")
OUTCOMES = ("met", "breached", "open")


def percentile(ordered: Sequence[float], p: int) -> float:
    """Nearest rank: the value at 1-based rank ceil(p * n / 100) of the sorted values."""
    if not ordered:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} outside (0, 100]")
    rank = -(-p * len(ordered) // 100)  # ceil in integers: no float rounding at the edges
    return ordered[rank - 1]


def distribution(values: Iterable[float]) -> Distribution:
    ordered = sorted(values)
    if not ordered:
        return Distribution(0, None, None, None, None)
    p50, p90, p99 = (percentile(ordered, p) for p in PERCENTILES)
    return Distribution(len(ordered), p50, p90, p99, ordered[-1])


def share(hits: int, count: int) -> Share:
    return Share(count, hits, hits / count if count else None)


def latency(samples: Sequence[Sample]) -> Latency:
    return Latency(
        distribution(s.value for s in samples), share(sum(s.hit for s in samples), len(samples))
    )


def compliance(samples: Sequence[Sample]) -> Compliance:
    counts = [sum(1 for s in samples if s.outcome == o) for o in OUTCOMES]
    met, breached, still_open = counts
    decided = met + breached
    return Compliance(met, breached, still_open, met / decided if decided else None)


def split(
    samples: Sequence[Sample],
    labels: Iterable[str],
    summarize: Callable[[Sequence[Sample]], T],
) -> dict[str, dict[str, T]]:
    """For each label, its values (sorted) and the summary of the samples carrying each."""
    out: dict[str, dict[str, T]] = {}
    for label in labels:
        groups: defaultdict[str, list[Sample]] = defaultdict(list)
        for sample in samples:
            if label in sample.labels:
                groups[sample.labels[label]].append(sample)
        out[label] = {key: summarize(groups[key]) for key in sorted(groups)}
    return out


def time_labels(at: datetime, tz: ZoneInfo) -> dict[str, str]:
    """Hour of day ("00".."23"), weekday ("mon".."sun") and both ("mon 09", for heat maps)
    in the report's time zone."""
    local = at.astimezone(tz)
    hour, weekday = f"{local.hour:02d}", WEEKDAYS[local.weekday()]
    return {"hour": hour, "weekday": weekday, "weekday_hour": f"{weekday} {hour}"}
