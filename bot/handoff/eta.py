"""The reply time a plan ack states, estimated from the queue. Pure: the clock is an argument.

The queue model: the agents online work through the tickets ahead in parallel, one handling
time per ticket, so a ticket with ``position`` tickets ahead waits ``position // agents_online``
handling times ("waves") before an agent picks it up, none if free slots outnumber the tickets
ahead, and one more handling time for the reply. The wait counts the queue's business time only,
since agents answer in open hours. With nobody online, a closed queue is assumed to open with
one agent, who works through the queue from the opening; an open queue with nobody online
supports no estimate.

The ack states the estimate when there is one, even when it is later than the SLA deadline (a
predicted breach: the honest later time, never a promise the queue cannot keep), and the
deadline otherwise. Results are aware UTC datetimes; naive datetimes raise ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.handoff.calendar import Calendar, business_time_between, open_intervals
from bot.handoff.calendar import deadline as add_business_time

_MINUTE = timedelta(minutes=1)
# Longer waits are told in hours: "within 2 hours", not "within 97 minutes".
_LONGEST_IN_MINUTES = 90


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue as a ticket sees it: ``position`` tickets ahead (0: next), the agents online
    for the queue and their free capacity, and the recent time per ticket to first response."""

    position: int
    agents_online: int
    free_slots: int
    handling_time: timedelta

    def __post_init__(self) -> None:
        if min(self.position, self.agents_online, self.free_slots) < 0:
            raise ValueError(f"queue counts must not be negative: {self}")
        if self.handling_time <= timedelta(0):
            raise ValueError(f"handling time must be positive, got {self.handling_time}")
        if self.free_slots and not self.agents_online:
            raise ValueError(f"free slots without an agent online: {self}")

    @property
    def waves(self) -> int:
        """Handling times before an agent picks the ticket up; needs an agent online."""
        if self.free_slots > self.position:
            return 0
        return self.position // self.agents_online


@dataclass(frozen=True)
class Estimate:
    """What a plan ack says.

    ``expected_by``: the queue model's estimate, None when it supports none. ``committed_by``:
    the SLA deadline. ``stated_by``: the time told to the customer. ``predicted_breach``: the
    estimate is later than the deadline. ``opens_at``: with nobody online and the queue closed,
    its next opening.
    """

    expected_by: datetime | None
    committed_by: datetime
    stated_by: datetime
    predicted_breach: bool
    opens_at: datetime | None


def estimate(
    now: datetime, snapshot: QueueSnapshot, deadline: datetime, calendar: Calendar
) -> Estimate:
    """States the queue estimate when the model gives one, sooner or later than ``deadline``
    (later is a predicted breach), else ``deadline``, which is already past for an overdue
    ticket."""
    now, committed = _utc(now, "now"), _utc(deadline, "deadline")
    expected, opens_at = expected_reply(now, snapshot, calendar)
    return Estimate(
        expected_by=expected,
        committed_by=committed,
        stated_by=committed if expected is None else expected,
        predicted_breach=expected is not None and expected > committed,
        opens_at=opens_at,
    )


def expected_reply(
    now: datetime, snapshot: QueueSnapshot, calendar: Calendar
) -> tuple[datetime | None, datetime | None]:
    """(expected reply, next opening if the queue is closed with nobody online)."""
    if snapshot.agents_online:
        waits = snapshot.waves + 1
        return add_business_time(now, waits * snapshot.handling_time, calendar), None
    opens_at = next(open_intervals(calendar, now))[0]
    if opens_at == now:
        return None, None  # open but unstaffed: nothing to base an estimate on
    waits = snapshot.position + 1  # one agent at opening, an assumption
    return add_business_time(opens_at, waits * snapshot.handling_time, calendar), opens_at


def pressure(
    now: datetime,
    snapshot: QueueSnapshot,
    deadline: datetime,
    calendar: Calendar,
    measure: Calendar,
) -> float | None:
    """How far the estimate for a ticket handed off at ``now`` reaches toward its
    first-response ``deadline``, both as time on ``measure`` (the SLA policy's calendar):
    1.0 is the deadline itself, more a predicted breach. None when the model gives no estimate
    (an open queue with nobody online) or the deadline is not ahead."""
    now, deadline = _utc(now, "now"), _utc(deadline, "deadline")
    expected, _ = expected_reply(now, snapshot, calendar)
    target = business_time_between(now, deadline, measure)
    if expected is None or target <= timedelta(0):
        return None
    return business_time_between(now, expected, measure) / target


def describe(est: Estimate, tz: ZoneInfo, now: datetime) -> str:
    """The sentence a plan ack tells the customer, with times in ``tz``.

    Estimates are rounded up to the minute, the deadline down, so the wording never promises
    sooner than the model supports nor later than the commitment. A time not on today's date in
    ``tz`` carries its date.
    """
    today = _utc(now, "now").astimezone(tz).date()
    if est.opens_at is not None:
        back = _clock(est.opens_at, tz, today, up=True)
        reply_day = est.opens_at.astimezone(tz).date()
        reply = _clock(est.stated_by, tz, reply_day, up=True, zone=False)
        return f"our team is back at {back}; expect a reply by {reply}"
    if est.predicted_breach:
        later = _clock(est.stated_by, tz, today, up=True)
        return f"we're busier than usual: expect a reply by {later}"
    if est.expected_by is None and est.committed_by <= now:
        # Overdue and nobody online: any clock time would be a guess.
        return "we're running late: an agent will reply as soon as one is available"
    latest = _clock(est.committed_by, tz, today, up=False)
    if est.expected_by is None or est.expected_by == est.committed_by:
        return f"an agent will reply by {latest}"
    return f"usually {soon(est.expected_by, tz, now)}, at the latest by {latest}"


def soon(expected: datetime, tz: ZoneInfo, now: datetime) -> str:
    """A wait today as a duration rounded up; a later day as a dated clock time."""
    today = now.astimezone(tz).date()
    if expected.astimezone(tz).date() != today:
        return f"by {_clock(expected, tz, today, up=True)}"
    minutes = max(-(-(expected - now) // _MINUTE), 1)
    if minutes > _LONGEST_IN_MINUTES:
        hours = -(-minutes // 60)
        return f"within {hours} hours"
    return f"within {minutes} minute{'s' if minutes > 1 else ''}"


def _clock(moment: datetime, tz: ZoneInfo, today: date, *, up: bool, zone: bool = True) -> str:
    """'15:30 CET', with ' on Mon 30 Nov' when not on ``today``."""
    local = _whole_minute(moment, up).astimezone(tz)
    text = f"{local:%H:%M %Z}" if zone else f"{local:%H:%M}"
    if local.date() != today:
        text += f" on {local:%a} {local.day} {local:%b}"
    return text


def _whole_minute(moment: datetime, up: bool) -> datetime:
    # Rounded in UTC: local wall-clock arithmetic is off by the jump at a DST switch.
    floor = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return floor + _MINUTE if up and floor < moment else floor


def _utc(moment: datetime, name: str) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"{name} must be time-zone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)
