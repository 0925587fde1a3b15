"""The one clock the gateway reads. Tests and demos can start it at a chosen instant
(``[debug] clock_start``) so a Friday-evening handoff can be tried on a Tuesday morning, and
run it faster than real time (``[debug] clock_speed``) so a whole day passes in minutes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ShiftedClock:
    """``start`` plus the real time elapsed since ``real_start``, times ``speed``."""

    __slots__ = ("real_start", "speed", "start")

    def __init__(self, start: datetime, real_start: datetime, speed: float = 1.0) -> None:
        if speed < 1:
            raise ValueError(f"clock speed {speed} below 1")
        self.start = start
        self.real_start = real_start
        self.speed = speed

    def __call__(self) -> datetime:
        elapsed = utc_now() - self.real_start
        return self.start + (elapsed if self.speed == 1 else elapsed * self.speed)


def clock_from(
    start: datetime | None, real_start: datetime | None = None, speed: float = 1.0
) -> Clock:
    """Real time; or ``start`` plus the real time elapsed since ``real_start`` (default: now)
    times ``speed``, so several processes, or one restarted, share one shifted clock.

    A speed above 1 without ``start`` runs from the real now. Raises ValueError below 1.
    """
    if speed < 1:
        raise ValueError(f"clock speed {speed} below 1")
    if start is None and speed == 1:
        return utc_now
    now = utc_now()
    return ShiftedClock(now if start is None else start, real_start or now, speed)


def speed_of(clock: Clock) -> float:
    """How many clock seconds pass per real second: 1 unless ``clock`` is a faster clock."""
    speed = getattr(clock, "speed", 1.0)
    return float(speed) if isinstance(speed, int | float) and speed >= 1 else 1.0


def real_seconds(clock: Clock, seconds: float) -> float:
    """The real time until ``clock`` has advanced by ``seconds``: what to sleep for."""
    return seconds / speed_of(clock)
