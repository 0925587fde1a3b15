"""What the statistics take and give: plain typed records, no behaviour beyond arithmetic.

Percentiles are **nearest-rank**: for ``n`` values sorted ascending, the p-th percentile is the
value at 1-based rank ``ceil(p * n / 100)`` (computed in integers). It is always one of the
observed values, so an independent recomputation matches exactly. Shares are ``hits / count``
and are None when ``count`` is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.handoff.calendar import Calendar
from bot.store.base import Event

PERCENTILES = (50, 90, 99)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Log:
    """Every event before ``until`` in log order, with the labels the statistics split by."""

    events: tuple[Event, ...]
    channels: Mapping[str, str] = field(default_factory=dict)  # conversation id -> channel
    tiers: Mapping[str, str] = field(default_factory=dict)  # conversation id -> customer tier
    calendars: Mapping[str, str] = field(default_factory=dict)  # ticket id -> calendar name
    # Inbound "messages" that are not the customer writing (reactions, edits, joins).
    not_messages: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Options:
    since: datetime
    until: datetime  # exclusive
    timezone: ZoneInfo  # what hour of day and weekday mean
    promises_ms: Mapping[str, float]  # channel -> promised ack window
    calendars: Mapping[str, Calendar]  # calendar name -> calendar (business time)

    def covers(self, at: datetime) -> bool:
        return self.since <= at < self.until


@dataclass(frozen=True)
class Sample:
    """One measurement (or one outcome) with the labels it can be split by."""

    value: float
    labels: Mapping[str, str]
    hit: bool = False  # e.g. inside the promised window
    outcome: str = ""  # an SLA clock's: met, breached or open


@dataclass(frozen=True)
class Distribution:
    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


@dataclass(frozen=True)
class Share:
    count: int
    hits: int
    share: float | None


@dataclass(frozen=True)
class Latency:
    """A distribution and the share of it inside a bound (the promise, the SLA)."""

    distribution: Distribution
    within: Share


@dataclass(frozen=True)
class Compliance:
    """SLA outcomes of one clock. ``share_met`` = met / (met + breached); open is left out."""

    met: int
    breached: int
    open: int
    share_met: float | None


@dataclass(frozen=True)
class Ratings:
    """The latest rating per ticket; ``replaced`` counts earlier ratings a customer changed."""

    count: int
    mean: float | None  # rounded to 4 places
    satisfied: Share  # ratings of 4 or 5
    by_score: dict[str, int]
    replaced: int = 0
