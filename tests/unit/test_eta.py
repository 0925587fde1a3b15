from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.handoff.calendar import Calendar, business_time_between
from bot.handoff.eta import Estimate, QueueSnapshot, describe, estimate, pressure

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MIN = timedelta(minutes=1)
H = timedelta(hours=1)

ALWAYS = Calendar.always_open("Europe/Berlin")
OFFICE = Calendar.build("Europe/Berlin", {"mon-fri": "09:00-18:00"})
SPLIT = Calendar.build(
    "Europe/Berlin",
    {"mon-thu": "09:00-12:00,13:00-18:00", "fri": "09:00-14:00"},
    country="DE",
    subdivision="BE",
)
NIGHT = Calendar.build("America/New_York", {"mon-fri": "22:00-06:00"})

WEDNESDAY_10 = datetime(2026, 11, 25, 10, tzinfo=BERLIN)
NOON = WEDNESDAY_10 + 2 * H


def berlin(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=BERLIN)


def queue(position: int, agents: int, free: int = 0, handling: timedelta = 10 * MIN):
    return QueueSnapshot(position, agents, free, handling)


def told(now: datetime, snapshot: QueueSnapshot, due: datetime, calendar: Calendar) -> str:
    return describe(estimate(now, snapshot, due, calendar), BERLIN, now)


# --- Worked examples -------------------------------------------------------------------------


def test_five_ahead_with_two_agents_is_three_handling_times():
    est = estimate(WEDNESDAY_10, queue(5, 2), NOON, ALWAYS)
    assert est.expected_by == WEDNESDAY_10 + 30 * MIN
    assert est.stated_by == est.expected_by
    assert est.committed_by == NOON
    assert not est.predicted_breach
    assert est.opens_at is None
    assert told(WEDNESDAY_10, queue(5, 2), NOON, ALWAYS) == (
        "usually within 30 minutes, at the latest by 12:00 CET"
    )


@pytest.mark.parametrize(
    ("position", "free", "minutes"),
    [(1, 2, 10), (2, 2, 20), (0, 0, 10)],
    ids=["free-slot-picks-up-now", "slots-all-taken-by-those-ahead", "next-in-line"],
)
def test_a_free_slot_picks_the_ticket_up_at_once(position, free, minutes):
    est = estimate(WEDNESDAY_10, queue(position, 2, free), NOON, ALWAYS)
    assert est.expected_by == WEDNESDAY_10 + minutes * MIN


def test_the_wait_counts_open_hours_only():
    est = estimate(berlin(25, 17, 50), queue(3, 2), berlin(26, 11), OFFICE)
    assert est.expected_by == berlin(26, 9, 10)
    assert est.opens_at is None  # agents are online


def test_closed_with_nobody_online_counts_from_the_next_opening_with_one_agent():
    friday_22 = berlin(27, 22)
    est = estimate(friday_22, queue(1, 0), berlin(30, 11), OFFICE)
    assert est.opens_at == berlin(30, 9)
    assert est.expected_by == berlin(30, 9, 20)
    assert est.stated_by == est.expected_by
    assert describe(est, BERLIN, friday_22) == (
        "our team is back at 09:00 CET on Mon 30 Nov; expect a reply by 09:20"
    )


def test_an_opening_later_today_carries_no_date():
    noon = datetime(2026, 11, 25, 12, tzinfo=NEW_YORK)
    est = estimate(noon, queue(0, 0), noon + 12 * H, NIGHT)
    assert est.opens_at == noon + 10 * H
    assert describe(est, NEW_YORK, noon) == "our team is back at 22:00 EST; expect a reply by 22:10"


def test_open_but_nobody_online_supports_no_estimate_so_the_deadline_is_stated():
    est = estimate(WEDNESDAY_10, queue(3, 0), NOON, OFFICE)
    assert est == Estimate(None, NOON, NOON, predicted_breach=False, opens_at=None)
    assert describe(est, BERLIN, WEDNESDAY_10) == "an agent will reply by 12:00 CET"


def test_an_estimate_past_the_deadline_is_a_predicted_breach_stated_honestly():
    est = estimate(WEDNESDAY_10, queue(20, 1), NOON, ALWAYS)
    assert est.predicted_breach
    assert est.stated_by == est.expected_by == berlin(25, 13, 30)
    assert describe(est, BERLIN, WEDNESDAY_10) == (
        "we're busier than usual: expect a reply by 13:30 CET"
    )


def test_an_estimate_at_the_deadline_states_the_deadline_once():
    est = estimate(WEDNESDAY_10, queue(11, 1), NOON, ALWAYS)
    assert est.expected_by == NOON and not est.predicted_breach
    assert describe(est, BERLIN, WEDNESDAY_10) == "an agent will reply by 12:00 CET"


@pytest.mark.parametrize(
    ("handling", "words"),
    [
        (61 * timedelta(seconds=1), "within 2 minutes"),
        (30 * timedelta(seconds=1), "within 1 minute"),
        (90 * MIN, "within 90 minutes"),
        (91 * MIN, "within 2 hours"),
        (5 * H + MIN, "within 6 hours"),
    ],
)
def test_waits_are_rounded_up_and_told_in_hours_past_90_minutes(handling, words):
    sentence = told(WEDNESDAY_10, queue(0, 1, handling=handling), berlin(25, 23), ALWAYS)
    assert sentence == f"usually {words}, at the latest by 23:00 CET"


def test_estimates_round_up_and_the_deadline_rounds_down_to_the_minute():
    handling = 3 * H + 30 * timedelta(seconds=1)
    breach = estimate(WEDNESDAY_10, queue(0, 1, handling=handling), NOON, ALWAYS)
    assert describe(breach, BERLIN, WEDNESDAY_10).endswith("by 13:01 CET")
    no_estimate = estimate(WEDNESDAY_10, queue(0, 0), berlin(25, 12, 0, 45), OFFICE)
    assert describe(no_estimate, BERLIN, WEDNESDAY_10).endswith("by 12:00 CET")


def test_times_on_another_day_carry_their_date():
    evening = berlin(25, 17, 55)
    sentence = told(evening, queue(1, 1), berlin(26, 12), OFFICE)
    assert (
        sentence == "usually by 09:15 CET on Thu 26 Nov, at the latest by 12:00 CET on Thu 26 Nov"
    )


def test_an_overdue_ticket_states_no_clock_time_without_an_estimate():
    overdue = WEDNESDAY_10 - H
    est = estimate(WEDNESDAY_10, queue(0, 0), overdue, OFFICE)
    assert est.stated_by == overdue and not est.predicted_breach
    assert describe(est, BERLIN, WEDNESDAY_10) == (
        "we're running late: an agent will reply as soon as one is available"
    )
    with_agents = estimate(WEDNESDAY_10, queue(0, 1), overdue, OFFICE)
    assert with_agents.predicted_breach
    assert with_agents.stated_by == WEDNESDAY_10 + 10 * MIN


def test_summer_times_carry_the_summer_zone():
    june = datetime(2026, 6, 3, 10, tzinfo=BERLIN)
    assert told(june, queue(0, 0), june + H, OFFICE) == "an agent will reply by 11:00 CEST"


def test_results_are_utc():
    est = estimate(WEDNESDAY_10, queue(5, 2), NOON, ALWAYS)
    assert est.expected_by is not None
    assert {est.expected_by.tzinfo, est.committed_by.tzinfo, est.stated_by.tzinfo} == {UTC}


@pytest.mark.parametrize(
    "call",
    [
        lambda: estimate(WEDNESDAY_10.replace(tzinfo=None), queue(0, 1), NOON, ALWAYS),
        lambda: estimate(WEDNESDAY_10, queue(0, 1), NOON.replace(tzinfo=None), ALWAYS),
        lambda: describe(
            estimate(WEDNESDAY_10, queue(0, 1), NOON, ALWAYS),
            BERLIN,
            WEDNESDAY_10.replace(tzinfo=None),
        ),
    ],
    ids=["now", "deadline", "describe-now"],
)
def test_naive_datetimes_are_refused(call):
    with pytest.raises(ValueError, match="time-zone-aware"):
        call()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((-1, 1, 0, MIN), "must not be negative"),
        ((0, -1, 0, MIN), "must not be negative"),
        ((0, 1, 0, timedelta(0)), "handling time must be positive"),
        ((0, 0, 2, MIN), "free slots without an agent online"),
    ],
)
def test_inconsistent_snapshots_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        QueueSnapshot(*fields)


# --- Properties ------------------------------------------------------------------------------

calendars = st.sampled_from([ALWAYS, OFFICE, SPLIT, NIGHT])
instants = st.datetimes(
    datetime(2026, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive; timezones makes them aware
    datetime(2027, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
handling_times = st.integers(1, 4 * 3600).map(lambda s: timedelta(seconds=s))
ahead_of_now = st.integers(0, 3 * 24 * 3600).map(lambda s: timedelta(seconds=s))


@st.composite
def snapshots(draw: st.DrawFn) -> QueueSnapshot:
    agents = draw(st.integers(0, 6))
    free = draw(st.integers(0, 10)) if agents else 0
    return QueueSnapshot(draw(st.integers(0, 40)), agents, free, draw(handling_times))


@given(calendars, instants, snapshots(), ahead_of_now)
def test_the_stated_time_is_supported_by_the_model_and_kept_unless_a_breach_is_predicted(
    calendar, now, snapshot, lead
):
    est = estimate(now, snapshot, now + lead, calendar)
    assert est.stated_by >= now
    assert est.expected_by is None or est.stated_by >= est.expected_by
    assert est.predicted_breach or est.stated_by <= est.committed_by
    breach = est.expected_by is not None and est.expected_by > est.committed_by
    assert est.predicted_breach == breach


@given(calendars, instants, snapshots(), ahead_of_now)
def test_the_queue_pressure_passes_one_exactly_when_a_breach_is_predicted(
    calendar, now, snapshot, lead
):
    due = now + lead
    est = estimate(now, snapshot, due, calendar)
    value = pressure(now, snapshot, due, calendar, calendar)
    target = business_time_between(now, due, calendar)
    if est.expected_by is None or target <= timedelta(0):
        assert value is None
        return
    assert value is not None and value >= 0
    assert (value > 1) == est.predicted_breach
    assert value == business_time_between(now, est.expected_by, calendar) / target


def test_queue_pressure_counts_open_time_only():
    # Friday 17:50 in the office: 10 open minutes today, the rest from Monday 09:00. The
    # 4-hour target and the 30-minute wait are both open time, whatever the weekend.
    friday = berlin(27, 17, 50)
    due = berlin(30, 12, 50)  # four open hours later
    assert pressure(friday, queue(2, 1), due, OFFICE, OFFICE) == pytest.approx(30 / 240)
    assert pressure(friday, queue(2, 0), due, OFFICE, OFFICE) is None  # open, nobody online
    assert pressure(friday, queue(30, 1), due, OFFICE, OFFICE) > 1  # a breach, predicted


@given(calendars, instants, snapshots(), st.integers(-3 * 24 * 3600, 3 * 24 * 3600))
def test_any_deadline_even_a_past_one_gives_a_consistent_estimate_and_a_sentence(
    calendar, now, snapshot, seconds
):
    est = estimate(now, snapshot, now + timedelta(seconds=seconds), calendar)
    assert est.expected_by is None or est.expected_by > now
    assert est.stated_by == (est.committed_by if est.expected_by is None else est.expected_by)
    assert 0 < len(describe(est, BERLIN, now)) <= 100


@given(calendars, instants, snapshots(), st.integers(0, 20))
def test_more_tickets_ahead_never_give_an_earlier_estimate(calendar, now, snapshot, more):
    fewer = estimate(now, snapshot, now, calendar).expected_by
    longer = estimate(now, replace(snapshot, position=snapshot.position + more), now, calendar)
    assert (fewer is None) == (longer.expected_by is None)
    assert fewer is None or longer.expected_by is None or longer.expected_by >= fewer


@given(calendars, instants, snapshots(), st.integers(1, 6))
def test_more_agents_online_never_give_a_later_estimate(calendar, now, snapshot, more):
    fewer = estimate(now, snapshot, now, calendar).expected_by
    staffed = replace(snapshot, agents_online=snapshot.agents_online + more)
    more_agents = estimate(now, staffed, now, calendar).expected_by
    assert more_agents is not None
    assert fewer is None or more_agents <= fewer


@given(calendars, instants, snapshots())
def test_the_next_opening_is_open_after_closed_time_and_only_given_with_nobody_online(
    calendar, now, snapshot
):
    opens_at = estimate(now, snapshot, now, calendar).opens_at
    if opens_at is None:
        return
    assert snapshot.agents_online == 0
    assert opens_at > now
    assert business_time_between(now, opens_at, calendar) == timedelta(0)
    assert business_time_between(opens_at, opens_at + MIN, calendar) > timedelta(0)
