"""The sliding-window policy behind every rate limit (bot/ratelimit.py), clock passed in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.ratelimit import Limit, SlidingWindow, take_all

gaps = st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), min_size=1, max_size=60)
limits = st.builds(
    Limit,
    events=st.integers(min_value=1, max_value=8),
    window=st.floats(min_value=0.001, max_value=60, allow_nan=False),
)


def times(steps: list[float]) -> list[float]:
    now, out = 0.0, []
    for step in steps:
        now += step
        out.append(now)
    return out


@settings(max_examples=300)
@given(limit=limits, steps=gaps)
def test_never_more_than_the_limit_inside_any_window(limit, steps):
    window = SlidingWindow(limit)
    allowed = [now for now in times(steps) if window.take("k", now) == 0]
    for t in allowed:
        assert sum(0 <= u - t < limit.window for u in allowed) <= limit.events


@settings(max_examples=300)
@given(limit=limits, steps=gaps)
def test_waiting_the_stated_time_is_always_enough(limit, steps):
    window = SlidingWindow(limit)
    for now in times(steps):
        wait = window.take("k", now)
        if wait:
            assert wait > 0
            assert window.wait("k", now + wait) == 0


@settings(max_examples=200)
@given(limit=limits, steps=gaps)
def test_a_client_under_the_limit_is_never_refused(limit, steps):
    """Events spaced at least window/events apart never wait: normal use is not throttled."""
    window = SlidingWindow(limit)
    spacing = limit.window / limit.events
    now = 0.0
    for step in steps:
        now += spacing * 1.001 + step
        assert window.take("k", now) == 0


@given(limit=limits, keys=st.lists(st.text(max_size=5), min_size=1, max_size=30))
def test_keys_are_independent(limit, keys):
    window = SlidingWindow(limit)
    for _ in range(limit.events):
        assert window.take("busy", 0.0) == 0
    assert window.wait("busy", 0.0) > 0
    for key in keys:
        if key != "busy":
            assert window.wait(key, 0.0) == 0


@given(limit=limits, count=st.integers(min_value=1, max_value=500))
def test_memory_follows_the_keys_of_the_last_window(limit, count):
    window = SlidingWindow(limit)
    for i in range(count):  # a spray of distinct keys, each seen once
        window.take(f"k{i}", 0.0)
    assert len(window) == count
    window.wait("someone", limit.window * 2)
    assert len(window) == 0


def test_take_all_records_nothing_when_one_key_refuses():
    sender, address = SlidingWindow(Limit(1, 10)), SlidingWindow(Limit(5, 10))
    assert take_all([(address, "10.0.0.1"), (sender, "ann")], 0) == 0
    assert take_all([(address, "10.0.0.1"), (sender, "ann")], 1) == pytest.approx(9)
    # The refused attempt cost the address nothing: four more from other senders pass.
    for i in range(4):
        assert take_all([(address, "10.0.0.1"), (sender, f"b{i}")], 2) == 0
    assert take_all([(address, "10.0.0.1"), (sender, "carl")], 2) == pytest.approx(8)


def test_the_wait_ends_when_the_oldest_event_leaves_the_window():
    window = SlidingWindow(Limit(2, 10))
    window.take("k", 0)
    window.take("k", 4)
    assert window.wait("k", 5) == pytest.approx(5)
    assert window.wait("k", 10) == 0
    assert window.take("k", 10) == 0
    assert window.wait("k", 11) == pytest.approx(3)


@pytest.mark.parametrize(("events", "window"), [(0, 10), (1, 0), (1, -1), (1, float("nan"))])
def test_a_limit_must_allow_something(events, window):
    with pytest.raises(ValueError, match="events >= 1"):
        Limit(events, window)
