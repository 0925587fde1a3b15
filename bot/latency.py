"""Predict how long the next call to a backend will take, from its recent latency and queue."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager


class LatencyGauge:
    """EWMA of successful call latency, scaled by how many calls wait for a free slot.

    The average only learns when calls finish; a call still running for longer than the
    average is evidence the backend slowed down, so the oldest in-flight age counts too.
    """

    def __init__(self, initial: float, parallelism: int, weight: float = 0.2) -> None:
        self.average = initial
        self.parallelism = max(parallelism, 1)
        self._weight = weight
        self._started: dict[int, float] = {}  # insertion order: the first is the oldest
        self._ids = itertools.count()

    @property
    def inflight(self) -> int:
        return len(self._started)

    def expected(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        oldest = now - next(iter(self._started.values()), now)
        queued = max(self.inflight - self.parallelism + 1, 0)
        return max(self.average, oldest) * (1 + queued / self.parallelism)

    def observe(self, seconds: float) -> None:
        self.average += self._weight * (seconds - self.average)

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count a call in flight; the caller ``observe``s it when it succeeded."""
        call = next(self._ids)
        self._started[call] = time.monotonic()
        try:
            yield
        finally:
            del self._started[call]

    @contextmanager
    def measure(self) -> Iterator[None]:
        with self.track():
            started = time.monotonic()
            yield
            self.observe(time.monotonic() - started)
