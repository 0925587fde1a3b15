"""Business-hours calendars and SLA deadline arithmetic over them. Pure.

A calendar says when a queue is open: weekly local hours in an IANA time zone, public holidays
from the ``holidays`` package, custom closed dates and custom open dates. Local wall-clock
boundaries are converted to UTC and all arithmetic is done on UTC instants, so business time is
real elapsed time even across DST switches. Results are aware UTC datetimes; naive datetimes are
refused with ValueError.

A wall-clock boundary means the first instant at which the local clock reads that time or later:
an ambiguous time (autumn) is its first occurrence, a time skipped by a spring-forward jump is the
instant of the jump. An interval whose end is not after its start (22:00-06:00, 00:00-24:00) runs
into the next day and belongs to the day it starts on, for holidays too.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

Interval = tuple[time, time]
Hours = tuple[Interval, ...]
Span = tuple[datetime, datetime]
Pause = tuple[datetime, datetime | None]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)
_MIDNIGHT = time(0)


@dataclass(frozen=True)
class Calendar:
    """When a queue is open.

    ``weekly`` holds each weekday's local (start, end) intervals, Monday first. A date in
    ``opened`` is open with ``opened_hours`` whatever its weekday or holidays; otherwise a date in
    ``closed`` or a public holiday of ``country`` (and ``subdivision``) is closed all day.
    """

    timezone: ZoneInfo
    weekly: tuple[Hours, ...]
    closed: frozenset[date] = frozenset()
    opened: frozenset[date] = frozenset()
    opened_hours: Hours = ((time(9), time(17)),)
    country: str | None = None
    subdivision: str | None = None

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError(f"weekly hours need 7 days, Monday first; got {len(self.weekly)}")
        # Custom open dates are finite: without weekly hours, deadlines past them never come.
        if not any(self.weekly):
            raise ValueError("calendar has no open hours")
        # Sorted intervals keep each day's UTC spans in order, which merging relies on.
        object.__setattr__(self, "weekly", tuple(tuple(sorted(day)) for day in self.weekly))
        object.__setattr__(self, "opened_hours", tuple(sorted(self.opened_hours)))
        if self.country is not None:
            _check_country(self.country, self.subdivision)

    @classmethod
    def build(
        cls,
        timezone: str,
        hours: Mapping[str, str],
        *,
        country: str | None = None,
        subdivision: str | None = None,
        closed: Iterable[date] = (),
        opened: Iterable[date] = (),
        opened_hours: str = "09:00-17:00",
    ) -> Calendar:
        """A calendar from config, e.g. ``hours={"mon-fri": "09:00-12:00,13:00-18:00"}``.

        Keys name days: "sat", ranges "mon-fri", comma lists "mon,wed-fri"; days not named are
        closed. Values are comma lists of HH:MM-HH:MM intervals; 24:00 is allowed as an end.
        """
        weekly: list[Hours] = [()] * 7
        for days_spec, hours_spec in hours.items():
            intervals = _parse_hours(hours_spec)
            for day in _parse_days(days_spec):
                if weekly[day]:
                    raise ValueError(f"invalid hours: {DAY_NAMES[day]!r} is given more than once")
                weekly[day] = intervals
        return cls(
            _zone(timezone),
            tuple(weekly),
            frozenset(closed),
            frozenset(opened),
            _parse_hours(opened_hours),
            country,
            subdivision,
        )

    @classmethod
    def always_open(cls, timezone: str = "UTC") -> Calendar:
        """Calendar time: open around the clock, every day; a business day is a calendar day."""
        return cls(_zone(timezone), (((_MIDNIGHT, _MIDNIGHT),),) * 7)

    def hours_on(self, day: date) -> Hours:
        """The local intervals that start on ``day``; a custom open date beats a holiday."""
        if day in self.opened:
            return self.opened_hours
        if day in self.closed or self._is_holiday(day):
            return ()
        return self.weekly[day.weekday()]

    def _is_holiday(self, day: date) -> bool:
        if self.country is None:
            return False
        return day in _holiday_dates(self.country, self.subdivision, day.year)


def open_intervals(
    calendar: Calendar, start: datetime, end: datetime | None = None
) -> Iterator[Span]:
    """The open time from ``start`` to ``end`` (or forever) as ordered [open, close) UTC spans.

    Spans are clipped to the range and never overlap; they may touch (two 24-hour days).
    """
    return _open_spans(calendar, _utc(start, "start"), None if end is None else _utc(end, "end"))


@overload
def deadline(
    start: datetime,
    target: timedelta,
    calendar: Calendar,
    pauses: Sequence[tuple[datetime, datetime]] = (),
) -> datetime: ...
@overload
def deadline(
    start: datetime, target: timedelta, calendar: Calendar, pauses: Sequence[Pause]
) -> datetime | None: ...
def deadline(
    start: datetime, target: timedelta, calendar: Calendar, pauses: Sequence[Pause] = ()
) -> datetime | None:
    """The earliest instant by which ``target`` of open, unpaused time has elapsed since ``start``.

    A target that exactly uses up an open interval falls due at its close, not at the next
    opening; a zero target is due at ``start``. Pauses (start, end) stop the clock. A pause with
    end None stops it for good: the result is None ("no deadline while paused") if the target is
    not met before that pause starts. It is never None otherwise.
    """
    lo = _utc(start, "start")
    if target < timedelta(0):
        raise ValueError(f"target must not be negative, got {target}")
    if not target:
        return lo
    remaining = target
    for opens, closes in _unpaused(calendar, lo, None, pauses):
        if closes - opens >= remaining:
            return opens + remaining
        remaining -= closes - opens
    return None


@overload
def deadline_in_days(
    start: datetime,
    days: int,
    calendar: Calendar,
    pauses: Sequence[tuple[datetime, datetime]] = (),
) -> datetime: ...
@overload
def deadline_in_days(
    start: datetime, days: int, calendar: Calendar, pauses: Sequence[Pause]
) -> datetime | None: ...
def deadline_in_days(
    start: datetime, days: int, calendar: Calendar, pauses: Sequence[Pause] = ()
) -> datetime | None:
    """When a target of ``days`` business days ("1d": "within one business day") falls due.

    Counting starts at ``start``, or at the next opening if the calendar is closed then. The due
    time is the same local time on the ``days``-th following open day: Friday 17:00 + 1d is Monday
    17:00, not 24 open hours later. If that time is not open on that day, it moves back to the
    close before it (shorter hours, lunch break), or forward to the day's first opening if it is
    earlier. A time inside an overnight shift counts from the day the shift started. Pauses push
    the result by the open time they take, as in ``deadline``; zero days are due at ``start``.
    """
    lo = _utc(start, "start")
    if days < 0:
        raise ValueError(f"days must not be negative, got {days}")
    if days == 0:
        return lo
    due = _same_time_on_open_day(calendar, lo, days)
    target = business_time_between(lo, due, calendar)
    if business_time_between(lo, due, calendar, pauses) == target:
        return due  # no pause took open time before it
    return deadline(lo, target, calendar, pauses)


def business_time_between(
    start: datetime, end: datetime, calendar: Calendar, pauses: Sequence[Pause] = ()
) -> timedelta:
    """Open, unpaused time in [start, end); zero if ``end`` is not after ``start``.

    The inverse of ``deadline``: ``business_time_between(s, deadline(s, t)) == t``.
    """
    spans = _unpaused(calendar, _utc(start, "start"), _utc(end, "end"), pauses)
    return sum((closes - opens for opens, closes in spans), timedelta(0))


def _unpaused(
    calendar: Calendar, start: datetime, end: datetime | None, pauses: Sequence[Pause]
) -> Iterator[Span]:
    finite: list[Span] = []
    for pause_start, pause_end in pauses:
        lo = _utc(pause_start, "pause start")
        if pause_end is None:
            # The clock never restarts, so open time ends where this pause begins.
            end = lo if end is None else min(end, lo)
        elif (hi := _utc(pause_end, "pause end")) < lo:
            raise ValueError(f"pause ends before it starts: {pause_start} > {pause_end}")
        else:
            finite.append((lo, hi))
    return _subtract(_open_spans(calendar, start, end), sorted(finite))


def _subtract(spans: Iterator[Span], pauses: list[Span]) -> Iterator[Span]:
    for opens, closes in spans:
        for pause_start, pause_end in pauses:
            if pause_start >= closes:
                break
            if pause_end <= opens:
                continue
            if pause_start > opens:
                yield opens, pause_start
            opens = pause_end
            if opens >= closes:
                break
        if opens < closes:
            yield opens, closes


def _open_spans(calendar: Calendar, start: datetime, end: datetime | None) -> Iterator[Span]:
    # Begin a day early: yesterday's overnight shift may still be running at `start`.
    day = _wall(start, calendar.timezone).date() - _DAY
    for opens, closes in _merge(_spans_from(calendar, day)):
        if end is not None and opens >= end:
            return
        opens, closes = max(opens, start), closes if end is None else min(closes, end)
        if opens < closes:
            yield opens, closes


def _spans_from(calendar: Calendar, day: date) -> Iterator[Span]:
    while True:
        yield from _day_spans(calendar, day)
        day += _DAY


# Every deadline and every SLA clock walks these days again; the time-zone arithmetic was
# most of an escalation's cost on the event loop.
@functools.lru_cache(maxsize=8192)
def _day_spans(calendar: Calendar, day: date) -> tuple[Span, ...]:
    tz = calendar.timezone
    spans = []
    for opens, closes in calendar.hours_on(day):
        close_day = day + _DAY if closes <= opens else day
        span = _to_utc(day, opens, tz), _to_utc(close_day, closes, tz)
        if span[0] < span[1]:  # a shift inside a spring-forward gap is empty
            spans.append(span)
    return tuple(spans)


def _merge(spans: Iterator[Span]) -> Iterator[Span]:
    """Joins overlapping spans; touching ones stay apart so a 24x7 calendar still yields."""
    current: Span | None = None
    for span in spans:
        if current is not None and span[0] < current[1]:
            current = current[0], max(current[1], span[1])
            continue
        if current is not None:
            yield current
        current = span
    if current is not None:
        yield current


def _same_time_on_open_day(calendar: Calendar, start: datetime, days: int) -> datetime:
    tz = calendar.timezone
    opening = next(_open_spans(calendar, start, None))[0]
    day = _owner(calendar, opening)
    offset = _wall(opening, tz) - datetime.combine(day, _MIDNIGHT)  # over 24h in a night shift
    for _ in range(days):
        day = _next_open_day(calendar, day)
    wall = datetime.combine(day, _MIDNIGHT) + offset
    return _clamp(_to_utc(wall.date(), wall.time(), tz), _day_spans(calendar, day))


def _owner(calendar: Calendar, moment: datetime) -> date:
    """The day whose own spans contain an open ``moment``: today, or yesterday's night shift."""
    today = _wall(moment, calendar.timezone).date()
    return next(
        day
        for day in (today, today - _DAY)
        if any(opens <= moment < closes for opens, closes in _day_spans(calendar, day))
    )


def _next_open_day(calendar: Calendar, day: date) -> date:
    day += _DAY
    while not _day_spans(calendar, day):
        day += _DAY
    return day


def _clamp(moment: datetime, spans: Sequence[Span]) -> datetime:
    if moment < spans[0][0]:
        return spans[0][0]
    return min(moment, max(closes for opens, closes in spans if opens <= moment))


def _to_utc(day: date, clock: time, tz: ZoneInfo) -> datetime:
    wall = datetime.combine(day, clock)
    after = wall.replace(tzinfo=tz).astimezone(UTC)
    if _wall(after, tz) == wall:
        return after
    # Skipped by a spring-forward jump: fold=1 gives an instant before the jump, fold=0 one
    # after it; bisect for the jump, the first instant the clock reads `wall` or later.
    before = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    while after - before > _TICK:
        middle = before + (after - before) // 2
        if _wall(middle, tz) >= wall:
            after = middle
        else:
            before = middle
    return after


def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _utc(moment: datetime, name: str) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"{name} must be time-zone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name!r}") from e


def _check_country(country: str, subdivision: str | None) -> None:
    try:
        holidays.country_holidays(country, subdiv=subdivision)
    except NotImplementedError as e:
        raise ValueError(f"no holidays for country {country!r}, subdivision {subdivision!r}") from e


@functools.cache
def _holiday_dates(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    # One year at a time, so any year works without choosing a range up front.
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))


def _parse_days(spec: str) -> list[int]:
    days: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        lo, hi = _day_index(first, spec), _day_index(last or first, spec)
        if hi < lo:
            raise ValueError(f"invalid days {spec!r}: {part.strip()!r} runs backwards")
        days.extend(range(lo, hi + 1))
    return days


def _day_index(name: str, spec: str) -> int:
    try:
        return DAY_NAMES.index(name.strip().lower())
    except ValueError:
        names = ", ".join(DAY_NAMES)
        raise ValueError(f"invalid days {spec!r}: {name.strip()!r} is not one of {names}") from None


def _parse_hours(spec: str) -> Hours:
    return tuple(_parse_interval(part.strip(), spec) for part in spec.split(","))


def _parse_interval(part: str, spec: str) -> Interval:
    opens, dash, closes = part.partition("-")
    if not dash:
        raise ValueError(f"invalid hours {spec!r}: {part!r} is not an interval HH:MM-HH:MM")
    start, end = _minutes(opens, spec, last=23 * 60 + 59), _minutes(closes, spec, last=24 * 60)
    if start == end:
        raise ValueError(f"invalid hours {spec!r}: {part!r} is empty")
    return _clock(start), _clock(end)


def _minutes(text: str, spec: str, last: int) -> int:
    match = _CLOCK.match(text.strip())
    minutes = int(match[1]) * 60 + int(match[2]) if match and int(match[2]) < 60 else -1
    if not 0 <= minutes <= last:
        raise ValueError(f"invalid hours {spec!r}: {text.strip()!r} is not HH:MM (24:00 only ends)")
    return minutes


def _clock(minutes: int) -> time:
    return time(minutes // 60 % 24, minutes % 60)
