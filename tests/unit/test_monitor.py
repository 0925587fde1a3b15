import asyncio
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.handoff.monitor import SLAMonitor, Timer

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
WARN, BREACH = "first_response:warning", "first_response:breach"


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """A fire callback that records what fired, and when the clock said it did."""

    def __init__(self, clock: FakeClock | None = None, step: timedelta = timedelta(0)) -> None:
        self.fired: list[tuple[Timer, timedelta]] = []
        self.clock, self.step = clock, step

    async def __call__(self, timer: Timer, lateness: timedelta) -> None:
        self.fired.append((timer, lateness))
        if self.clock is not None:
            self.clock.now += self.step  # each callback takes `step` of fake time

    @property
    def timers(self) -> list[Timer]:
        return [timer for timer, _ in self.fired]


def fake_monitor(step: timedelta = timedelta(0)) -> tuple[SLAMonitor, FakeClock, Recorder]:
    clock = FakeClock()
    recorder = Recorder(clock, step)
    return SLAMonitor(recorder, clock), clock, recorder


async def test_fires_exactly_the_timers_due_by_now_in_due_order_and_once() -> None:
    monitor, clock, recorder = fake_monitor()
    late, early, exact, future = (
        Timer("t1", BREACH, T0 + 30 * S),
        Timer("t2", WARN, T0 + 10 * S),
        Timer("t1", WARN, T0 + 60 * S),
        Timer("t3", WARN, T0 + 61 * S),
    )
    for timer in (late, early, exact, future):
        monitor.schedule(timer)
    clock.now = T0 + 60 * S

    assert await monitor.fire_due() == 3
    assert recorder.timers == [early, late, exact]
    assert await monitor.fire_due() == 0
    assert (monitor.pending(), monitor.next_due()) == (1, future.due)


async def test_a_moved_deadline_fires_only_at_its_new_time() -> None:
    monitor, clock, recorder = fake_monitor()
    monitor.schedule(Timer("t1", BREACH, T0 + 10 * S))
    monitor.schedule(Timer("t1", BREACH, T0 + 30 * S))  # e.g. the customer tier changed
    monitor.schedule(Timer("t2", BREACH, T0 + 30 * S))
    monitor.schedule(Timer("t2", BREACH, T0 + 5 * S))  # moved earlier
    assert monitor.pending() == 2

    clock.now = T0 + 20 * S
    assert await monitor.fire_due() == 1
    clock.now = T0 + 40 * S
    assert await monitor.fire_due() == 1
    assert recorder.timers == [
        Timer("t2", BREACH, T0 + 5 * S),
        Timer("t1", BREACH, T0 + 30 * S),
    ]


async def test_cancelled_timers_never_fire() -> None:
    monitor, clock, recorder = fake_monitor()
    for ticket in ("t1", "t2"):
        monitor.schedule(Timer(ticket, WARN, T0 + 10 * S))
        monitor.schedule(Timer(ticket, BREACH, T0 + 20 * S))
    monitor.cancel("t1")  # resolved: all its timers go
    monitor.cancel("t2", WARN)  # answered before the warning
    monitor.cancel("t2", "no-such-timer")
    monitor.cancel("no-such-ticket")
    assert monitor.pending() == 1

    clock.now = T0 + 1000 * S
    assert await monitor.fire_due() == 1
    assert recorder.timers == [Timer("t2", BREACH, T0 + 20 * S)]
    assert (monitor.pending(), monitor.next_due()) == (0, None)


async def test_lateness_is_the_clock_at_fire_time_minus_due() -> None:
    monitor, clock, recorder = fake_monitor(step=2 * S)  # each callback takes 2 s
    monitor.schedule(Timer("t1", WARN, T0 + 10 * S))
    monitor.schedule(Timer("t2", WARN, T0 + 11 * S))
    monitor.schedule(Timer("t3", WARN, T0 + 20 * S))
    clock.now = T0 + 15 * S

    assert await monitor.fire_due() == 2  # t3 came due during the batch: it waits for the next
    assert [lateness for _, lateness in recorder.fired] == [5 * S, 6 * S]


async def test_timers_due_while_down_fire_at_once_with_their_lateness() -> None:
    # A restart: the owner rebuilds the monitor from the store, deadlines already passed.
    monitor, clock, recorder = fake_monitor()
    monitor.schedule(Timer("t1", BREACH, T0 - 3600 * S))
    monitor.schedule(Timer("t2", WARN, T0 - 90 * S))
    monitor.schedule(Timer("t3", WARN, T0 + 90 * S))

    assert await monitor.fire_due() == 2
    assert recorder.fired == [
        (Timer("t1", BREACH, T0 - 3600 * S), 3600 * S),
        (Timer("t2", WARN, T0 - 90 * S), 90 * S),
    ]


async def test_a_failing_callback_is_logged_and_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    fired: list[str] = []

    async def fire(timer: Timer, lateness: timedelta) -> None:
        fired.append(timer.ticket_id)
        if timer.ticket_id == "t2":
            raise RuntimeError("store unavailable")

    monitor = SLAMonitor(fire, clock)
    for i in (1, 2, 3):
        monitor.schedule(Timer(f"t{i}", WARN, T0 + i * S))
    clock.now = T0 + 10 * S

    with caplog.at_level(logging.ERROR, logger="bot.handoff.monitor"):
        assert await monitor.fire_due() == 3
    assert fired == ["t1", "t2", "t3"]
    assert "t2" in caplog.text and "store unavailable" in caplog.text
    assert await monitor.fire_due() == 0  # retrying is the callback's job, not the monitor's


def test_due_times_in_any_zone_are_ordered_by_instant_and_naive_ones_are_refused() -> None:
    monitor, _, _ = fake_monitor()
    shanghai = (T0 + 10 * S).astimezone(ZoneInfo("Asia/Shanghai"))  # 17:00:10 local
    monitor.schedule(Timer("t1", WARN, T0 + 20 * S))
    monitor.schedule(Timer("t2", WARN, shanghai))
    assert monitor.next_due() == shanghai

    with pytest.raises(ValueError, match="time-zone-aware"):
        monitor.schedule(Timer("t3", WARN, datetime(2026, 3, 2, 9, 0)))  # noqa: DTZ001
    assert monitor.pending() == 2


def test_replace_and_cancel_churn_does_not_grow_the_heap() -> None:
    monitor, _, _ = fake_monitor()
    for i in range(10_000):
        monitor.schedule(Timer("t1", BREACH, T0 + i * S))
        monitor.schedule(Timer(f"x{i}", WARN, T0 + i * S))
        monitor.cancel(f"x{i}")
    assert monitor.pending() == 1
    assert len(monitor._heap) <= 3  # dead entries are compacted away once they outnumber live ones


# --- run() against the real clock --------------------------------------------------------------

ON_TIME = timedelta(milliseconds=40)


def now() -> datetime:
    return datetime.now(UTC)


class RealRecorder:
    def __init__(self, expected: int) -> None:
        self.fired: list[tuple[Timer, timedelta, datetime]] = []
        self.expected = expected
        self.done = asyncio.Event()

    async def __call__(self, timer: Timer, lateness: timedelta) -> None:
        self.fired.append((timer, lateness, now()))
        if len(self.fired) == self.expected:
            self.done.set()


async def run_until_done(monitor: SLAMonitor, recorder: RealRecorder, setup_after: float) -> None:
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.sleep(setup_after)
        await asyncio.wait_for(recorder.done.wait(), timeout=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_fires_a_timer_on_time() -> None:
    recorder = RealRecorder(expected=1)
    monitor = SLAMonitor(recorder, now)
    due = now() + timedelta(milliseconds=50)
    monitor.schedule(Timer("t1", WARN, due))

    await run_until_done(monitor, recorder, setup_after=0)

    [(timer, lateness, fired_at)] = recorder.fired
    assert timer.due == due
    assert due <= fired_at <= due + ON_TIME
    assert timedelta(0) <= lateness <= ON_TIME


async def test_an_earlier_timer_wakes_run_while_it_sleeps_on_a_later_one() -> None:
    recorder = RealRecorder(expected=2)
    monitor = SLAMonitor(recorder, now)
    later = Timer("t1", BREACH, now() + timedelta(milliseconds=300))
    monitor.schedule(later)
    task = asyncio.create_task(monitor.run())
    try:
        await asyncio.sleep(0.05)  # run() is asleep until `later`
        earlier = Timer("t2", WARN, now() + timedelta(milliseconds=50))
        monitor.schedule(earlier)
        await asyncio.wait_for(recorder.done.wait(), timeout=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert [timer for timer, _, _ in recorder.fired] == [earlier, later]
    for timer, _, fired_at in recorder.fired:
        assert timer.due <= fired_at <= timer.due + ON_TIME


# --- the property ------------------------------------------------------------------------------

tickets = st.sampled_from(["t1", "t2", "t3", "t4"])
names = st.sampled_from([WARN, BREACH, "assignment:timeout"])
offsets = st.integers(min_value=-100, max_value=100).map(lambda s: s * S)
# (ticket, name, offset) schedules a timer; (ticket, name or None, None) cancels.
schedules = st.tuples(tickets, names, offsets)
cancels = st.tuples(tickets, st.none() | names, st.none())


@given(st.lists(schedules | cancels, max_size=60), offsets)
async def test_fire_due_fires_exactly_the_live_timers_due_by_then(
    operations: list[tuple[str, str | None, timedelta | None]], at: timedelta
) -> None:
    monitor, clock, recorder = fake_monitor()
    live: dict[tuple[str, str], Timer] = {}  # the model: the last schedule of a key wins
    for ticket, name, offset in operations:
        if offset is None:
            monitor.cancel(ticket, name)
            live = {k: t for k, t in live.items() if k[0] != ticket or name not in (None, k[1])}
        else:
            assert name is not None
            live[ticket, name] = Timer(ticket, name, T0 + offset)
            monitor.schedule(live[ticket, name])
    clock.now = T0 + at

    fired = await monitor.fire_due()

    expected = {timer for timer in live.values() if timer.due <= clock.now}
    assert len(recorder.timers) == fired == len(expected)
    assert set(recorder.timers) == expected
    due = [timer.due for timer in recorder.timers]
    assert due == sorted(due)
    assert await monitor.fire_due() == 0
    assert monitor.pending() == len(live) - fired
