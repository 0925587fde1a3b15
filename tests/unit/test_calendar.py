from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bot.handoff.calendar import (
    Calendar,
    business_time_between,
    deadline,
    deadline_in_days,
    open_intervals,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
TICK = timedelta(microseconds=1)
H = timedelta(hours=1)

OFFICE = Calendar.build("Asia/Shanghai", {"mon-fri": "09:00-18:00"})
OFFICE_CN = Calendar.build(
    "Asia/Shanghai",
    {"mon-fri": "09:00-18:00"},
    country="CN",
    opened=[date(2026, 9, 20), date(2026, 10, 10)],  # weekend working days in lieu
    opened_hours="09:00-18:00",
)
# Lunch breaks, a short Friday and a Sunday shift that spans both DST switches.
SPLIT_DE = Calendar.build(
    "Europe/Berlin",
    {"mon-thu": "09:00-12:00,13:00-18:00", "fri": "09:00-14:00", "sun": "01:00-04:00"},
    country="DE",
    subdivision="BE",
)
# Night shifts; Saturday's runs over the 02:00 DST switches on Sunday.
NIGHT_US = Calendar.build(
    "America/New_York",
    {"mon-fri": "22:00-06:00", "sat": "20:00-04:00"},
    country="US",
    closed=[date(2026, 12, 24)],
)
ALWAYS_BERLIN = Calendar.always_open("Europe/Berlin")
WITH_GAPS = [OFFICE_CN, SPLIT_DE, NIGHT_US]


def at(tz: ZoneInfo, *fields: int) -> datetime:
    return datetime(*fields, tzinfo=tz)


# --- Worked examples -------------------------------------------------------------------------


def test_two_business_hours_from_friday_22_are_due_monday_11():
    assert deadline(at(SHANGHAI, 2026, 3, 6, 22), 2 * H, OFFICE) == at(SHANGHAI, 2026, 3, 9, 11)


def test_one_business_day_from_friday_17_is_monday_17_not_24_open_hours_later():
    friday = at(SHANGHAI, 2026, 3, 6, 17)
    assert deadline_in_days(friday, 1, OFFICE) == at(SHANGHAI, 2026, 3, 9, 17)
    assert deadline_in_days(friday, 5, OFFICE) == at(SHANGHAI, 2026, 3, 13, 17)


def test_business_days_from_closed_time_count_from_the_next_opening():
    friday_evening = at(SHANGHAI, 2026, 3, 6, 20)
    assert deadline_in_days(friday_evening, 1, OFFICE) == at(SHANGHAI, 2026, 3, 10, 9)


@pytest.mark.parametrize(
    ("hour", "due"),
    [(17, (14, 0)), (12, (12, 0)), (9, (10, 0))],
    ids=["after-close-moves-to-close", "open-stays", "before-opening-moves-to-opening"],
)
def test_a_business_day_ending_on_a_shorter_day_stays_within_its_hours(hour, due):
    calendar = Calendar.build("Asia/Shanghai", {"mon-fri": "09:00-18:00", "sat": "10:00-14:00"})
    friday = at(SHANGHAI, 2026, 3, 6, hour)
    assert deadline_in_days(friday, 1, calendar) == at(SHANGHAI, 2026, 3, 7, *due)


def test_a_business_day_ending_in_a_lunch_break_moves_to_the_close_before_it():
    calendar = Calendar.build(
        "Europe/Berlin", {"mon": "09:00-18:00", "tue": "09:00-12:00,13:00-18:00"}
    )
    monday = at(BERLIN, 2026, 3, 2, 12, 30)
    assert deadline_in_days(monday, 1, calendar) == at(BERLIN, 2026, 3, 3, 12)


def test_a_target_that_uses_up_a_day_falls_due_at_its_close_not_the_next_opening():
    monday = at(SHANGHAI, 2026, 3, 2, 9)
    assert deadline(monday, 9 * H, OFFICE) == at(SHANGHAI, 2026, 3, 2, 18)
    assert deadline(monday, 9 * H + TICK, OFFICE) == at(SHANGHAI, 2026, 3, 3, 9) + TICK


def test_a_zero_target_is_due_at_start_even_when_closed():
    sunday = at(SHANGHAI, 2026, 3, 8, 3)
    assert deadline(sunday, timedelta(0), OFFICE) == sunday
    assert deadline_in_days(sunday, 0, OFFICE) == sunday


def test_thanksgiving_is_closed():
    calendar = Calendar.build("America/New_York", {"mon-fri": "09:00-17:00"}, country="US")
    wednesday = at(NEW_YORK, 2026, 11, 25, 16)
    assert deadline(wednesday, 2 * H, calendar) == at(NEW_YORK, 2026, 11, 27, 10)
    assert deadline_in_days(wednesday, 1, calendar) == at(NEW_YORK, 2026, 11, 27, 16)


def test_national_day_week_is_closed_and_a_working_saturday_is_open():
    assert deadline(at(SHANGHAI, 2026, 9, 30, 17), 2 * H, OFFICE_CN) == at(
        SHANGHAI, 2026, 10, 8, 10
    )
    friday = at(SHANGHAI, 2026, 10, 9, 17)
    assert deadline(friday, 2 * H, OFFICE_CN) == at(SHANGHAI, 2026, 10, 10, 10)
    assert OFFICE_CN.hours_on(date(2026, 10, 10)) == ((time(9), time(18)),)


def test_custom_closed_dates_are_closed():
    calendar = Calendar.build(
        "Asia/Shanghai", {"mon-fri": "09:00-18:00"}, closed=[date(2026, 3, 9)]
    )
    assert deadline(at(SHANGHAI, 2026, 3, 6, 17), 2 * H, calendar) == at(SHANGHAI, 2026, 3, 10, 10)


@pytest.mark.parametrize(
    ("calendar", "start", "target", "due"),
    [
        (OFFICE_CN, at(SHANGHAI, 2026, 12, 31, 17), 2 * H, at(SHANGHAI, 2027, 1, 4, 10)),
        # New Year's Eve's night shift runs into 1 January; there is none on 1 January.
        (NIGHT_US, at(NEW_YORK, 2030, 12, 31, 23), 8 * H, at(NEW_YORK, 2031, 1, 2, 23)),
    ],
    ids=["cn-2026", "us-2030"],
)
def test_new_years_day_is_closed_in_any_year(calendar, start, target, due):
    assert deadline(start, target, calendar) == due


def test_split_shifts_skip_the_lunch_break():
    monday = at(BERLIN, 2026, 3, 2, 11, 30)
    assert deadline(monday, H, SPLIT_DE) == at(BERLIN, 2026, 3, 2, 13, 30)


def test_an_overnight_shift_belongs_to_the_day_it_starts_on():
    calendar = Calendar.build(
        "America/New_York", {"mon-fri": "22:00-06:00"}, closed=[date(2026, 3, 2)]
    )
    # Friday's shift runs into Saturday; closed Monday means no shift from Monday 22:00.
    assert deadline(at(NEW_YORK, 2026, 2, 28, 5), 2 * H, calendar) == at(NEW_YORK, 2026, 3, 3, 23)
    tuesday_small_hours = at(NEW_YORK, 2026, 3, 3), at(NEW_YORK, 2026, 3, 3, 6)
    assert business_time_between(*tuesday_small_hours, calendar) == timedelta(0)
    in_tuesdays_shift = at(NEW_YORK, 2026, 3, 4, 2)
    assert deadline_in_days(in_tuesdays_shift, 1, calendar) == at(NEW_YORK, 2026, 3, 5, 2)


@pytest.mark.parametrize(
    ("day", "real_hours"),
    [(date(2026, 3, 29), 2), (date(2026, 10, 25), 4)],
    ids=["spring-forward", "fall-back"],
)
def test_business_time_across_a_dst_switch_is_real_elapsed_time(day, real_hours):
    sunday = at(BERLIN, day.year, day.month, day.day)
    assert business_time_between(sunday, sunday + 24 * H, SPLIT_DE) == real_hours * H
    assert deadline(sunday, real_hours * H, SPLIT_DE) == at(BERLIN, day.year, day.month, day.day, 4)


def test_a_night_shift_over_spring_forward_is_an_hour_shorter():
    saturday = at(NEW_YORK, 2026, 3, 7, 12)
    assert business_time_between(saturday, saturday + 24 * H, NIGHT_US) == 7 * H


def test_skipped_and_repeated_wall_times_map_to_the_first_instant_the_clock_reads_them():
    calendar = Calendar.build("Europe/Berlin", {"sun": "02:30-05:00"})
    spring = list(open_intervals(calendar, at(BERLIN, 2026, 3, 29), at(BERLIN, 2026, 3, 30)))
    assert spring == [(at(UTC, 2026, 3, 29, 1), at(UTC, 2026, 3, 29, 3))]  # opens at the jump
    autumn = list(open_intervals(calendar, at(BERLIN, 2026, 10, 25), at(BERLIN, 2026, 10, 26)))
    assert autumn == [(at(UTC, 2026, 10, 25, 0, 30), at(UTC, 2026, 10, 25, 4))]


def test_calendar_time_counts_every_hour_and_a_day_is_a_calendar_day():
    calendar = Calendar.always_open("America/New_York")
    saturday = at(NEW_YORK, 2026, 3, 7, 12)
    assert deadline(saturday, 365 * 24 * H, calendar) == saturday + 365 * 24 * H
    assert deadline_in_days(saturday, 1, calendar) == at(NEW_YORK, 2026, 3, 8, 12)
    assert business_time_between(saturday, at(NEW_YORK, 2026, 3, 8, 12), calendar) == 23 * H


def test_a_pause_in_open_hours_pushes_the_deadline_by_its_length():
    pause = (at(SHANGHAI, 2026, 3, 9, 9), at(SHANGHAI, 2026, 3, 9, 10))
    friday = at(SHANGHAI, 2026, 3, 6, 17)
    assert deadline(friday, 2 * H, OFFICE, [pause]) == at(SHANGHAI, 2026, 3, 9, 11)
    assert deadline_in_days(friday, 1, OFFICE, [pause]) == at(SHANGHAI, 2026, 3, 9, 18)


def test_an_open_ended_pause_before_the_deadline_means_no_deadline():
    friday = at(SHANGHAI, 2026, 3, 6, 17)
    assert deadline(friday, 2 * H, OFFICE, [(at(SHANGHAI, 2026, 3, 9, 9), None)]) is None
    assert deadline_in_days(friday, 1, OFFICE, [(at(SHANGHAI, 2026, 3, 9, 12), None)]) is None
    later = [(at(SHANGHAI, 2026, 3, 9, 17), None)]
    assert deadline_in_days(friday, 1, OFFICE, later) == at(SHANGHAI, 2026, 3, 9, 17)


def test_year_long_targets_are_exact():
    start = at(SHANGHAI, 2026, 3, 6, 22)
    due = deadline(start, 365 * 24 * H, OFFICE_CN)
    assert business_time_between(start, due, OFFICE_CN) == 365 * 24 * H


def test_24_00_ends_a_day():
    calendar = Calendar.build("UTC", {"mon-sun": "00:00-24:00"})
    assert calendar.hours_on(date(2026, 1, 1)) == ((time(0), time(0)),)
    assert deadline(at(UTC, 2026, 1, 1), 48 * H, calendar) == at(UTC, 2026, 1, 3)


# --- Validation ------------------------------------------------------------------------------

NAIVE = datetime(2026, 3, 6, 12)  # noqa: DTZ001 - deliberately naive
AWARE = at(UTC, 2026, 3, 6, 12)
CALLS: list[Callable[[], object]] = [
    lambda: deadline(NAIVE, H, OFFICE),
    lambda: deadline(AWARE, H, OFFICE, [(NAIVE, AWARE)]),
    lambda: deadline(AWARE, H, OFFICE, [(AWARE, NAIVE)]),
    lambda: deadline_in_days(NAIVE, 1, OFFICE),
    lambda: business_time_between(AWARE, NAIVE, OFFICE),
    lambda: open_intervals(OFFICE, NAIVE),
    lambda: open_intervals(OFFICE, AWARE, NAIVE),
]


@pytest.mark.parametrize("call", CALLS)
def test_naive_datetimes_are_refused(call):
    with pytest.raises(ValueError, match="time-zone-aware"):
        call()


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ({"mon-fri": "9-18"}, "'9' is not HH:MM"),
        ({"mon-fri": "09:00"}, "'09:00' is not an interval"),
        ({"mon": "25:00-26:00"}, "'25:00' is not HH:MM"),
        ({"mon": "09:60-10:00"}, "'09:60' is not HH:MM"),
        ({"mon": "24:00-06:00"}, "'24:00' is not HH:MM"),
        ({"mon": "09:00-09:00"}, "'09:00-09:00' is empty"),
        ({"funday": "09:00-18:00"}, "'funday' is not one of mon"),
        ({"fri-mon": "09:00-18:00"}, "'fri-mon' runs backwards"),
        ({"mon-fri": "09:00-18:00", "fri": "10:00-12:00"}, "'fri' is given more than once"),
        ({}, "calendar has no open hours"),
    ],
)
def test_bad_hours_are_refused_naming_the_bad_value(hours, message):
    with pytest.raises(ValueError, match=message):
        Calendar.build("UTC", hours)


def test_day_lists_and_split_hours_parse():
    calendar = Calendar.build("UTC", {"mon,wed-thu": "09:00-12:00,13:00-18:00"})
    split = ((time(9), time(12)), (time(13), time(18)))
    assert calendar.weekly == (split, (), split, split, (), (), ())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"country": "XX"}, "no holidays for country 'XX'"),
        ({"country": "US", "subdivision": "ZZ"}, "subdivision 'ZZ'"),
    ],
)
def test_unknown_zones_and_countries_are_refused(kwargs, message):
    arguments = {"timezone": "UTC", "hours": {"mon": "09:00-10:00"}, **kwargs}
    with pytest.raises(ValueError, match=message):
        Calendar.build(**arguments)


def test_negative_targets_and_backward_pauses_are_refused():
    with pytest.raises(ValueError, match="negative"):
        deadline(AWARE, -TICK, OFFICE)
    with pytest.raises(ValueError, match="negative"):
        deadline_in_days(AWARE, -1, OFFICE)
    with pytest.raises(ValueError, match="pause ends before it starts"):
        deadline(AWARE, H, OFFICE, [(AWARE, AWARE - TICK)])


# --- Properties ------------------------------------------------------------------------------

SWITCHES = [
    at(UTC, 2026, 3, 8, 7),  # New York spring forward
    at(UTC, 2026, 3, 29, 1),  # Berlin spring forward
    at(UTC, 2026, 10, 25, 1),  # Berlin fall back
    at(UTC, 2026, 11, 1, 6),  # New York fall back
    at(UTC, 2026, 12, 31, 12),  # year end
]
DAYS_US = 86_400_000_000
anywhere = st.datetimes(
    min_value=datetime(2020, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
    max_value=datetime(2030, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
near_switches = st.builds(
    lambda switch, us: switch + timedelta(microseconds=us),
    st.sampled_from(SWITCHES),
    st.integers(-4 * DAYS_US, 4 * DAYS_US),
)
instants = anywhere | near_switches
durations = st.integers(0, DAYS_US // 6) | st.integers(0, 20 * DAYS_US)
targets = durations.map(lambda us: timedelta(microseconds=us))
calendars = st.sampled_from([*WITH_GAPS, ALWAYS_BERLIN])
fractions = st.floats(0, 1)


@st.composite
def pause_lists(draw: st.DrawFn, around: datetime) -> list[tuple[datetime, datetime]]:
    pauses = []
    for _ in range(draw(st.integers(0, 3))):
        begin = around + timedelta(microseconds=draw(st.integers(-2 * DAYS_US, 10 * DAYS_US)))
        pauses.append((begin, begin + timedelta(microseconds=draw(st.integers(0, 3 * DAYS_US)))))
    return pauses


def between(lo: datetime, hi: datetime, fraction: float) -> datetime:
    return lo + (hi - lo) * fraction


@given(calendars, instants, targets)
def test_deadline_is_after_start_by_exactly_the_target_in_business_time(calendar, start, target):
    due = deadline(start, target, calendar)
    assert due >= start
    assert business_time_between(start, due, calendar) == target


@given(calendars, instants, targets, targets)
def test_deadline_is_monotone_in_target(calendar, start, t1, t2):
    t1, t2 = sorted((t1, t2))
    assert deadline(start, t1, calendar) <= deadline(start, t2, calendar)


@given(calendars, instants, instants, targets)
def test_deadline_is_monotone_in_start(calendar, s1, s2, target):
    s1, s2 = sorted((s1, s2))
    assert deadline(s1, target, calendar) <= deadline(s2, target, calendar)


@given(calendars, instants, targets)
def test_deadline_never_falls_inside_closed_time(calendar, start, target):
    assume(target > timedelta(0))
    due = deadline(start, target, calendar)
    # Open just before it: inside an open interval or exactly at its close.
    assert business_time_between(due - TICK, due, calendar) == TICK


@given(calendars, instants, targets)
def test_deadline_inverts_business_time_at_open_instants(calendar, start, span):
    moment = start + span
    due = deadline(start, business_time_between(start, moment, calendar), calendar)
    assert due <= moment
    if moment > start and business_time_between(moment - TICK, moment, calendar) == TICK:
        assert due == moment


@given(calendars, instants, targets, targets, st.data())
def test_deadline_is_additive_with_pauses(calendar, start, t1, t2, data):
    pauses = data.draw(pause_lists(start))
    first = deadline(start, t1, calendar, pauses)
    assert deadline(first, t2, calendar, pauses) == deadline(start, t1 + t2, calendar, pauses)


@given(st.sampled_from(WITH_GAPS), instants, targets, fractions, fractions)
def test_a_pause_in_closed_time_changes_nothing(calendar, start, target, f1, f2):
    spans = open_intervals(calendar, start)
    (_, closes), (opens, _) = next(spans), next(spans)
    assume(closes < opens)
    pause = (between(closes, opens, min(f1, f2)), between(closes, opens, max(f1, f2)))
    assert deadline(start, target, calendar, [pause]) == deadline(start, target, calendar)


@given(calendars, instants, targets, fractions, fractions)
def test_a_pause_in_open_time_pushes_the_deadline_by_its_length(calendar, start, target, f1, f2):
    assume(target > timedelta(0))
    opens, closes = next(open_intervals(calendar, start))
    pause = (between(opens, closes, min(f1, f2)), between(opens, closes, max(f1, f2)))
    unpaused = deadline(start, target, calendar)
    pushed = deadline(start, target + pause[1] - pause[0], calendar)
    expected = pushed if pause[0] < unpaused else unpaused
    assert deadline(start, target, calendar, [pause]) == expected


@given(calendars, instants, targets, instants)
def test_an_open_ended_pause_before_the_deadline_leaves_no_deadline(
    calendar, start, target, paused_at
):
    assume(target > timedelta(0))
    unpaused = deadline(start, target, calendar)
    expected = None if paused_at < unpaused else unpaused
    assert deadline(start, target, calendar, [(paused_at, None)]) == expected


@given(calendars, instants, targets, instants, targets)
def test_business_time_leaves_out_the_open_time_a_pause_takes(
    calendar, start, span, paused_at, length
):
    end, resumed_at = start + span, paused_at + length
    taken = business_time_between(max(start, paused_at), min(end, resumed_at), calendar)
    paused = business_time_between(start, end, calendar, [(paused_at, resumed_at)])
    assert paused == business_time_between(start, end, calendar) - taken


@given(calendars, instants, st.integers(1, 15), st.integers(1, 15))
def test_business_days_are_monotone_and_never_inside_closed_time(calendar, start, d1, d2):
    d1, d2 = sorted((d1, d2))
    due = deadline_in_days(start, d1, calendar)
    assert due > start
    assert d1 == d2 or due < deadline_in_days(start, d2, calendar)
    open_at = business_time_between(due, due + TICK, calendar) == TICK
    assert open_at or business_time_between(due - TICK, due, calendar) == TICK


def unambiguous(moment: datetime, tz: ZoneInfo) -> bool:
    local = moment.astimezone(tz)
    return local.replace(fold=0).utcoffset() == local.replace(fold=1).utcoffset()


@given(calendars, instants, instants, st.integers(1, 15))
def test_business_days_are_monotone_in_start(calendar, s1, s2, days):
    # In the hour a fall-back repeats, a later start can read an earlier local time.
    assume(unambiguous(s1, calendar.timezone) and unambiguous(s2, calendar.timezone))
    s1, s2 = sorted((s1, s2))
    assert deadline_in_days(s1, days, calendar) <= deadline_in_days(s2, days, calendar)
