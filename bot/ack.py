"""Ack policy: what to send a customer first, and when. Pure: no I/O, the clock is an argument.

Every message gets a first reply inside its channel's promised window. The bot's answer is
that reply when it is ready by ``window - margin`` (a ``solution`` ack); otherwise a
``receipt`` goes out, at once when the answer is predicted to miss the window (so the
customer is not kept waiting for nothing) or at ``window - margin`` at the latest. A
conversation already handed to a human gets a ``plan`` ack straight away.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.channels.base import AckKind


class Mode(StrEnum):
    BOT = "bot"
    DEGRADED = "degraded"  # Rasa is down: a receipt at once; a confident KB answer may follow
    HANDED_OFF = "handed_off"


@dataclass(frozen=True)
class Promise:
    window: timedelta
    margin: timedelta
    # False where a reply that arrives later should be preceded by a receipt anyway (email:
    # a customer expects the "we've got it, expect an answer by ..." mail at once).
    answer_as_ack: bool = True

    @property
    def hold(self) -> timedelta:
        """How long the answer may take and still be the first reply."""
        return max(self.window - self.margin, timedelta(0))


@dataclass(frozen=True)
class Plan:
    """The first step for a new message.

    ``ack_now``: the ack kind to send immediately, or None to wait up to ``wait`` for the answer.
    """

    ack_now: AckKind | None
    wait: timedelta
    run_bot: bool


def first_step(mode: Mode, promise: Promise, expected_answer_in: timedelta | None) -> Plan:
    """Decide the first step; ``expected_answer_in`` is None when the bot cannot answer now."""
    if mode is Mode.HANDED_OFF:
        return Plan(ack_now=AckKind.PLAN, wait=timedelta(0), run_bot=False)
    # Without Rasa the ack never waits on the knowledge base: most messages get no answer
    # from it at all, and the ack path must not depend on it.
    late = expected_answer_in is None or expected_answer_in > promise.hold
    if mode is Mode.DEGRADED or late or not promise.answer_as_ack:
        return Plan(ack_now=AckKind.RECEIPT, wait=timedelta(0), run_bot=True)
    return Plan(ack_now=None, wait=promise.hold, run_bot=True)


def answer_is_ack(elapsed: timedelta, promise: Promise, receipt_sent: bool) -> bool:
    """Is an answer that took ``elapsed`` the first reply (a ``solution`` ack)?"""
    return not receipt_sent and elapsed <= promise.hold


def expected_reply_by(deadline: datetime, estimate: datetime | None) -> datetime:
    """The time a plan ack states: the queue estimate when there is one, else the SLA deadline.

    A later estimate than the deadline is stated as is: never promise what the queue
    cannot support.
    """
    if deadline.tzinfo is None or (estimate is not None and estimate.tzinfo is None):
        raise ValueError("expected_reply_by needs time-zone-aware datetimes")
    return deadline if estimate is None else estimate
