"""Predict how long the next call to a backend will take, from its recent latency and queue."""

from __future__ import annotations

import asyncio
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


class LoopLag:
    """How late the event loop runs a timer, smoothed: the gateway's own saturation.

    Work that only makes answers sooner (the answer fast path) yields when this grows, so the
    acks keep the loop: measured at 500 msg/s with Rasa up, the fast path's turns pushed the
    ack p99 from 255 ms to 1.1 s and out of the window over a minute.
    """

    def __init__(self, interval: float = 0.05, weight: float = 0.2) -> None:
        self.interval = interval
        self.lag = 0.0  # seconds
        self._weight = weight

    def observe(self, late: float) -> None:
        self.lag += self._weight * (max(late, 0.0) - self.lag)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            self.observe(loop.time() - started - self.interval)
