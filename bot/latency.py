"""Predict how long the next call to a backend will take, from its recent latency and queue."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class LatencyGauge:
    """EWMA of successful call latency, scaled by how many calls wait for a free slot."""

    def __init__(self, initial: float, parallelism: int, weight: float = 0.2) -> None:
        self.average = initial
        self.parallelism = max(parallelism, 1)
        self.inflight = 0
        self._weight = weight

    def expected(self) -> float:
        queued = max(self.inflight - self.parallelism + 1, 0)
        return self.average * (1 + queued / self.parallelism)

    def observe(self, seconds: float) -> None:
        self.average += self._weight * (seconds - self.average)

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count a call in flight; the caller ``observe``s it when it succeeded."""
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1

    @contextmanager
    def measure(self) -> Iterator[None]:
        with self.track():
            started = time.monotonic()
            yield
            self.observe(time.monotonic() - started)
