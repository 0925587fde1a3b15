"""``[debug] clock_speed``: a clock that runs faster than real time, and the SLA monitor
sleeping the real time (clock time ÷ speed) until a due time."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from bot import clock as clock_module
from bot.clock import ShiftedClock, clock_from, real_seconds, speed_of, utc_now
from bot.handoff.monitor import MAX_SLEEP, SLAMonitor, Timer
from bot.settings import DebugSettings

MONDAY = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
REAL = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)


class RealNow:
    """Stands in for ``bot.clock.utc_now``: the real time, moved by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def real(monkeypatch: pytest.MonkeyPatch) -> RealNow:
    now = RealNow(REAL)
    monkeypatch.setattr(clock_module, "utc_now", now)
    return now


def test_default_is_the_real_clock_itself() -> None:
    assert clock_from(None) is utc_now
    assert clock_from(None, None, 1.0) is utc_now
    assert speed_of(utc_now) == 1.0


def test_speed_one_is_the_shifted_clock_as_before(real: RealNow) -> None:
    clock = clock_from(MONDAY, REAL)
    real.now = REAL + timedelta(seconds=90, microseconds=7)
    assert clock() == MONDAY + timedelta(seconds=90, microseconds=7)
    assert speed_of(clock) == 1.0


def test_clock_runs_speed_times_real_time_from_real_start(real: RealNow) -> None:
    clock = clock_from(MONDAY, REAL - timedelta(seconds=10), 144.0)
    assert clock() == MONDAY + timedelta(seconds=1440)
    real.now = REAL + timedelta(minutes=10) - timedelta(seconds=10)
    assert clock() == MONDAY + timedelta(days=1)
    assert speed_of(clock) == 144.0
    assert real_seconds(clock, 3600) == pytest.approx(25.0)


def test_real_start_defaults_to_now(real: RealNow) -> None:
    clock = clock_from(MONDAY, None, 60.0)
    assert clock() == MONDAY
    real.now = REAL + timedelta(seconds=2)
    assert clock() == MONDAY + timedelta(minutes=2)


def test_speed_without_start_runs_from_the_real_now(real: RealNow) -> None:
    clock = clock_from(None, None, 10.0)
    real.now = REAL + timedelta(seconds=3)
    assert clock() == REAL + timedelta(seconds=30)


@pytest.mark.parametrize("speed", [0.5, 0.0, -2.0])
def test_speed_below_one_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="below 1"):
        clock_from(MONDAY, REAL, speed)
    with pytest.raises(ValueError, match="below 1"):
        ShiftedClock(MONDAY, REAL, speed)
    with pytest.raises(ValidationError):
        DebugSettings(clock_speed=speed)


def test_settings_default_and_value() -> None:
    assert DebugSettings().clock_speed == 1.0
    assert DebugSettings(clock_speed=144).clock_speed == 144.0
    with pytest.raises(ValidationError):
        DebugSettings(clock_speed=float("inf"))


def test_speed_of_ignores_what_is_not_a_speed() -> None:
    def plain() -> datetime:
        return MONDAY

    assert speed_of(plain) == 1.0
    plain.speed = "fast"  # type: ignore[attr-defined]
    assert speed_of(plain) == 1.0


# -- the monitor on a compressed clock ---------------------------------------------------------


async def _fired_at(speed: float, due_in: list[timedelta]) -> list[tuple[str, float, timedelta]]:
    """Run the real monitor on ``clock_from(MONDAY, now, speed)``; for each timer, the real
    seconds after start it fired at and its lateness in clock time."""
    started = time.monotonic()
    clock = clock_from(MONDAY, utc_now(), speed)
    fired: list[tuple[str, float, timedelta]] = []
    done = asyncio.Event()

    async def fire(timer: Timer, lateness: timedelta) -> None:
        fired.append((timer.ticket_id, time.monotonic() - started, lateness))
        if len(fired) == len(due_in):
            done.set()

    monitor = SLAMonitor(fire, clock)
    for n, delta in enumerate(due_in):
        monitor.schedule(Timer(f"t{n}", "first_response:warning", MONDAY + delta))
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.wait_for(done.wait(), timeout=20)
    finally:
        task.cancel()
    return fired


async def test_monitor_fires_clock_hours_in_real_seconds() -> None:
    # 3600 clock seconds per real second: 1 h and 2 h of clock time are 1 s and 2 s real.
    fired = await _fired_at(3600.0, [timedelta(hours=2), timedelta(hours=1)])
    assert [ticket for ticket, _, _ in fired] == ["t1", "t0"]
    (_, first, late1), (_, second, late2) = fired
    assert 0.9 <= first <= 1.6
    assert 1.9 <= second <= 2.6
    # Lateness is clock time: at 3600x, 0.2 s of real lateness is 12 clock minutes.
    assert late1 < timedelta(minutes=12)
    assert late2 < timedelta(minutes=12)


async def test_monitor_is_woken_by_an_earlier_timer_on_a_fast_clock() -> None:
    started = time.monotonic()
    clock = clock_from(MONDAY, utc_now(), 600.0)
    fired: list[float] = []
    done = asyncio.Event()

    async def fire(timer: Timer, lateness: timedelta) -> None:
        fired.append(time.monotonic() - started)
        done.set()

    monitor = SLAMonitor(fire, clock)
    monitor.schedule(Timer("late", "resolution:breach", MONDAY + timedelta(days=1)))
    task = asyncio.create_task(monitor.run())
    await asyncio.sleep(0.1)
    monitor.schedule(Timer("soon", "first_response:warning", MONDAY + timedelta(minutes=5)))
    try:
        await asyncio.wait_for(done.wait(), timeout=5)  # 5 clock minutes = 0.5 s real
    finally:
        task.cancel()
    assert 0.4 <= fired[0] <= 1.2
    assert monitor.pending() == 1


def test_monitor_speed_argument_overrides_the_clocks() -> None:
    async def fire(timer: Timer, lateness: timedelta) -> None:
        return None

    assert SLAMonitor(fire, utc_now, speed=50.0)._speed == 50.0
    assert SLAMonitor(fire, clock_from(MONDAY, REAL, 7.0))._speed == 7.0
    assert SLAMonitor(fire, utc_now)._speed == 1.0
    with pytest.raises(ValueError, match="below 1"):
        SLAMonitor(fire, utc_now, speed=0.5)
    assert MAX_SLEEP == 60.0
