"""Overload detection with hysteresis (pure: signals and the time in, a verdict out).

Overload starts as soon as any signal reaches its ``enter`` level, and ends only once every
signal has stayed at or below its lower ``leave`` level for ``hold``: a surge that dips for a
moment does not end it, and a rate hovering between the two levels never toggles it.
Signals: the inbound message rate (per second, over the sampling window), the backlog of
turns still being worked on, Rasa's and the knowledge base's expected latency against the
promised window (both on the ``latency`` levels), and the queues' expected reply time against
the SLA's first-response target (``eta``, from ``bot.handoff.eta.pressure``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Level:
    enter: float
    leave: float

    def __post_init__(self) -> None:
        if not 0 <= self.leave <= self.enter:
            raise ValueError(
                f"need 0 <= leave <= enter, got leave {self.leave}, enter {self.enter}"
            )


@dataclass(frozen=True)
class Thresholds:
    rate: Level  # messages per second
    backlog: Level  # turns accepted and not finished
    latency: Level  # Rasa's or the KB's expected latency as a multiple of the promised window
    hold: timedelta  # how long every signal must stay low before overload ends
    eta: Level = Level(1.0, 0.8)  # the worst queue's expected reply / first-response target


@dataclass(frozen=True)
class Signals:
    rate: float
    backlog: float
    latency: float | None  # None: the bot is down (degraded mode, not overload)
    kb_latency: float | None = None  # None: no knowledge base, or it is down
    eta: float | None = None  # None: no queue supports an estimate

    def high(self, limits: Thresholds) -> tuple[str, ...]:
        """The signals at or above their ``enter`` level, by name."""
        return tuple(
            name
            for name, value, level in self._pairs(limits)
            if value is not None and value >= level.enter
        )

    def calm(self, limits: Thresholds) -> bool:
        return all(value is None or value <= level.leave for _, value, level in self._pairs(limits))

    def _pairs(self, limits: Thresholds) -> tuple[tuple[str, float | None, Level], ...]:
        return (
            ("rate", self.rate, limits.rate),
            ("backlog", self.backlog, limits.backlog),
            ("latency", self.latency, limits.latency),
            ("kb_latency", self.kb_latency, limits.latency),
            ("eta", self.eta, limits.eta),
        )


@dataclass(frozen=True)
class State:
    on: bool = False
    since: datetime | None = None  # when overload started (on) or ended (off)
    cause: tuple[str, ...] = ()  # the signals that started it
    calm_since: datetime | None = None  # on: when every signal last went low


def step(state: State, signals: Signals, limits: Thresholds, now: datetime) -> State:
    """The state after one sample taken at ``now`` (time-zone aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be time-zone aware")
    if not state.on:
        high = signals.high(limits)
        return State(True, now, high) if high else state
    if not signals.calm(limits):
        return State(True, state.since, state.cause, None)
    calm_since = state.calm_since or now
    if now - calm_since >= limits.hold:
        return State(False, now)
    return State(True, state.since, state.cause, calm_since)
