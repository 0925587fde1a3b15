from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.ack import Mode, Promise, answer_is_ack, expected_reply_by, first_step
from bot.channels.base import AckKind

ms = st.integers(min_value=0, max_value=120_000).map(lambda v: timedelta(milliseconds=v))
promises = st.builds(Promise, window=ms, margin=ms, answer_as_ack=st.booleans())
expectations = st.none() | ms


@given(promises, expectations)
def test_handed_off_conversations_get_a_plan_at_once_and_no_bot(promise, expected):
    step = first_step(Mode.HANDED_OFF, promise, expected)
    assert step.ack_now is AckKind.PLAN
    assert step.wait == timedelta(0)
    assert not step.run_bot


@given(promises, expectations, ms)
def test_first_reply_always_lands_inside_the_window(promise, expected, answer_after):
    step = first_step(Mode.BOT, promise, expected)
    assert step.run_bot
    # An ack now goes out at once; otherwise we wait at most `wait`, then a receipt goes out.
    first_reply_at = timedelta(0) if step.ack_now is not None else min(answer_after, step.wait)
    assert first_reply_at <= promise.window


@given(promises, ms, ms)
def test_a_later_expected_answer_never_delays_the_receipt(promise, a, b):
    sooner, later = sorted((a, b))
    if first_step(Mode.BOT, promise, sooner).ack_now is AckKind.RECEIPT:
        assert first_step(Mode.BOT, promise, later).ack_now is AckKind.RECEIPT


@given(promises)
def test_unknown_answer_time_means_receipt_now(promise):
    assert first_step(Mode.BOT, promise, None).ack_now is AckKind.RECEIPT


@given(promises, ms, st.booleans())
def test_answer_is_the_ack_only_when_in_time_and_nothing_was_sent(promise, elapsed, sent):
    assert answer_is_ack(elapsed, promise, sent) == (not sent and elapsed <= promise.hold)


@given(promises)
def test_hold_is_never_negative_nor_past_the_window(promise):
    assert timedelta(0) <= promise.hold <= max(promise.window, timedelta(0))


@given(promises, expectations)
def test_without_rasa_the_receipt_never_waits_for_the_knowledge_base(promise, expected):
    step = first_step(Mode.DEGRADED, promise, expected)
    assert step.ack_now is AckKind.RECEIPT and step.wait == timedelta(0) and step.run_bot


def test_fast_answer_waits_for_the_answer():
    promise = Promise(timedelta(seconds=2), timedelta(milliseconds=250))
    step = first_step(Mode.BOT, promise, timedelta(milliseconds=40))
    assert step.ack_now is None
    assert step.wait == timedelta(milliseconds=1750)


def test_expected_reply_by_prefers_the_estimate_and_needs_aware_times():
    deadline = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
    assert expected_reply_by(deadline, None) == deadline
    later = deadline + timedelta(hours=1)
    assert expected_reply_by(deadline, later) == later  # honest, even past the deadline
    with pytest.raises(ValueError):
        expected_reply_by(datetime(2026, 11, 23, 15, 30), None)  # noqa: DTZ001


@given(promises, expectations)
def test_a_receipt_first_channel_always_gets_the_receipt_at_once(promise, expected):
    receipt_first = Promise(promise.window, promise.margin, answer_as_ack=False)
    step = first_step(Mode.BOT, receipt_first, expected)
    assert (step.ack_now, step.wait, step.run_bot) == (AckKind.RECEIPT, timedelta(0), True)
