"""Overload detection: the pure policy's hysteresis, and the gateway declaring and ending it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import keys
from bot.app import create_app
from bot.overload import Level, Signals, State, Thresholds, step
from bot.overload_watch import OverloadWatch, Sources
from bot.pipeline import RECEIPT_BUSY_TEXT
from tests.unit.test_gateway import frames, make_settings, post, wait_for_rasa
from tests.unit.test_tickets import engine  # noqa: F401 (fixture)

LIMITS = Thresholds(
    rate=Level(40, 25), backlog=Level(300, 100), latency=Level(2, 1), hold=timedelta(seconds=30)
)
START = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)

# Values below, between and above each signal's two levels, so every transition is reached.
samples = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=20),  # seconds since the previous sample
        st.sampled_from([0.0, 20.0, 25.0, 30.0, 40.0, 500.0]),
        st.sampled_from([0.0, 100.0, 200.0, 300.0]),
        st.sampled_from([None, 0.1, 1.0, 1.5, 2.0, 5.0]),
        st.sampled_from([None, 0.1, 1.0, 1.5, 2.0, 5.0]),  # the KB's latency
        st.sampled_from([None, 0.5, 0.8, 0.9, 1.0, 3.0]),  # queue ETA / SLA target
    ),
    max_size=60,
)


def run(
    sequence: list[tuple[int, float, float, float | None, float | None, float | None]],
) -> list[tuple[datetime, Signals, State]]:
    state, now, seen = State(), START, []
    for gap, rate, backlog, latency, kb_latency, eta in sequence:
        now += timedelta(seconds=gap)
        signals = Signals(rate, backlog, latency, kb_latency, eta)
        state = step(state, signals, LIMITS, now)
        seen.append((now, signals, state))
    return seen


@given(samples)
def test_overload_starts_exactly_when_a_signal_reaches_its_enter_level(sequence) -> None:
    previous = State()
    for _, signals, state in run(sequence):
        if not previous.on:
            assert state.on == bool(signals.high(LIMITS))
            assert state.cause == (signals.high(LIMITS) if state.on else ())
        previous = state


@given(samples)
def test_overload_ends_only_after_every_signal_stayed_low_for_the_hold(sequence) -> None:
    seen = run(sequence)
    ended = 0
    for i, (now, _, state) in enumerate(seen):
        if i and seen[i - 1][2].on and not state.on:
            ended += 1
            streak = i  # the calm samples that end here
            while streak > 0 and seen[streak - 1][1].calm(LIMITS):
                streak -= 1
            assert seen[i][1].calm(LIMITS)
            assert now - seen[streak][0] >= LIMITS.hold


def test_the_samples_reach_the_end_of_an_overload() -> None:
    # The property above is not vacuous: its strategy's kind of sequence does end one.
    sequence = [(1, 500.0, 0.0, None, None, None)] + [(10, 0.0, 0.0, 0.1, 0.1, 0.5)] * 4
    assert [state.on for _, _, state in run(sequence)] == [True, True, True, True, False]


@given(st.lists(st.floats(min_value=25.0001, max_value=39.999), min_size=1, max_size=50))
def test_a_rate_between_the_two_levels_never_toggles_the_state(rates) -> None:
    for on in (False, True):
        state = State(on=on, since=START if on else None, cause=("rate",) if on else ())
        for i, rate in enumerate(rates):
            state = step(state, Signals(rate, 0, 0), LIMITS, START + timedelta(seconds=i))
            assert state.on is on


def test_naive_times_and_inverted_levels_are_refused() -> None:
    with pytest.raises(ValueError, match="time-zone aware"):
        step(State(), Signals(0, 0, 0), LIMITS, datetime(2026, 12, 6))  # noqa: DTZ001
    with pytest.raises(ValueError, match="leave <= enter"):
        Level(enter=1, leave=2)


async def test_the_gateway_declares_a_surge_says_so_in_receipts_and_ends_it(
    tmp_path: Path, aiohttp_client, rasa_server, fake_rasa
) -> None:
    surge = '[overload]\nrate_enter = 4\nrate_leave = 1\nhold = "300ms"\n'
    client = await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port, surge)))
    await wait_for_rasa(client)
    for i in range(12):
        await post(client, f"surge {i}", mid=f"s{i}", customer=f"c{i}")
    deadline = time.monotonic() + 5
    while not (health := await (await client.get("/health")).json())["overload"]["on"]:
        assert time.monotonic() < deadline, "the surge was never declared"
        await asyncio.sleep(0.1)
    assert health["overload"]["cause"] == ["rate"]

    fake_rasa.delay = 1.0  # the answer misses the window: a receipt, saying when
    accepted = await (await post(client, "still there?", mid="late", customer="late")).json()
    [receipt] = await frames(client, accepted["conversation_id"], customer="late")
    assert receipt["kind"] == "receipt"
    assert receipt["text"].startswith(RECEIPT_BUSY_TEXT.split("{")[0])
    assert "expected_reply_by" in receipt

    while (await (await client.get("/health")).json())["overload"]["on"]:
        assert time.monotonic() < deadline + 5, "the surge never ended"
        await asyncio.sleep(0.1)
    events = [e for e in await client.server.app[keys.STORE].events() if "overload" in e.type]
    assert [e.type for e in events] == ["overload_started", "overload_ended"]
    assert events[0].data["cause"] == ["rate"] and events[0].data["signals"]["rate"] >= 4
    assert events[1].data["lasted_s"] > 0


async def test_queue_waits_reaching_the_sla_target_start_overload(engine) -> None:  # noqa: F811
    """Sam alone online, one ticket at a time, 10 minutes each (the default handling time):
    on Friday at 17:55 a new ticket behind 24 waiting ones would wait 250 open minutes, past
    its 4-hour first-response target."""
    await engine.agent("sam", capacity=1)
    watch = OverloadWatch(
        engine.store,
        Sources(
            accepted=lambda: 0,
            backlog=lambda: 0,
            latency=lambda: 0.0,
            window=2.0,
            queue_eta=engine.tickets.queues.pressure,
        ),
        LIMITS,
        engine.clock,
        eta_interval=0,
    )
    assert not (await watch.sample()).on
    for i in range(25):
        await engine.tickets.escalate(await engine.conversation(f"c{i}"), "human_handoff", "hi")
    engine.clock.now += timedelta(minutes=1)
    assert await engine.tickets.queues.pressure() == pytest.approx(250 / 240)
    state = await watch.sample()
    assert state.on and state.cause == ("eta",)
    [started] = [e for e in await engine.store.events() if e.type == "overload_started"]
    assert started.data["signals"]["eta"] == pytest.approx(250 / 240)
