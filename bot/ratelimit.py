"""Sliding-window rate limits per key (pure: the caller passes the time, in seconds).

One policy serves every limit Promptly keeps: failed console sign-ins, web chat messages per
customer, requests per client address, messages per WebSocket, webhooks per address. The
I/O around it (which clock, which key, what the client is told) lives with each caller.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

MIN_WAIT = 0.001  # seconds


@dataclass(frozen=True)
class Limit:
    events: int  # allowed inside any ``window``; the next one waits
    window: float  # seconds

    def __post_init__(self) -> None:
        if self.events < 1 or not self.window > 0:
            raise ValueError(f"a limit needs events >= 1 and window > 0, not {self}")


class SlidingWindow:
    """At most ``limit.events`` events per key inside any ``limit.window`` seconds.

    An event at ``t`` counts while ``now - t < window``. Only each key's latest ``events``
    times are kept (all the check needs), and keys whose events have all left the window are
    dropped, in one sweep at most once per window: memory follows the keys seen in the last
    window, however many distinct keys a client sprays.
    """

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self._times: dict[str, deque[float]] = {}
        self._swept_at = -math.inf

    def __len__(self) -> int:
        return len(self._times)

    def wait(self, key: str, now: float) -> float:
        """Seconds before ``key`` may have another event (0: now)."""
        self._sweep(now)
        times = self._times.get(key)
        if times is None or len(times) < self.limit.events:
            return 0.0
        oldest = times[0]
        if now - oldest >= self.limit.window:
            return 0.0
        wait = max(self.limit.window - (now - oldest), MIN_WAIT)
        # Rounding must not make the promised moment a hair early (hypothesis found such
        # cases with events at 1e-61 s): at ``now + wait`` the oldest has surely left.
        while (now + wait) - oldest < self.limit.window:
            wait = math.nextafter(wait, math.inf)
        return wait

    def record(self, key: str, now: float) -> None:
        times = self._times.get(key)
        if times is None:
            times = self._times[key] = deque(maxlen=self.limit.events)
        times.append(now)

    def take(self, key: str, now: float) -> float:
        """Record an event for ``key`` if it is allowed now; else the seconds to wait."""
        return take_all([(self, key)], now)

    def forget(self, key: str) -> None:
        self._times.pop(key, None)

    def _sweep(self, now: float) -> None:
        if now - self._swept_at < self.limit.window:
            return
        self._swept_at = now
        stale = [k for k, t in self._times.items() if now - t[-1] >= self.limit.window]
        for key in stale:
            del self._times[key]


def take_all(checks: Iterable[tuple[SlidingWindow, str]], now: float) -> float:
    """Record one event in every (window, key) if all allow it now; else record nothing and
    return the longest wait. A refused event costs no key its budget."""
    checks = list(checks)
    wait = max((window.wait(key, now) for window, key in checks), default=0.0)
    if wait == 0:
        for window, key in checks:
            window.record(key, now)
    return wait


class AsyncWindow(Protocol):
    """``SlidingWindow``'s methods, awaited: what a limit shared between gateway processes
    offers (``bot.ratelimit_redis.RedisSlidingWindow``). ``now=None`` reads the window's own
    clock (Redis's, for the shared one)."""

    limit: Limit

    async def wait(self, key: str, now: float | None = None) -> float: ...

    async def record(self, key: str, now: float | None = None) -> None: ...

    async def take(self, key: str, now: float | None = None) -> float: ...

    async def forget(self, key: str) -> None: ...


class LocalWindow:
    """A ``SlidingWindow`` of this process behind the awaited interface (the default where
    limits are not shared); ``now=None`` reads ``clock``."""

    def __init__(self, limit: Limit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = SlidingWindow(limit)
        self._clock = clock

    async def wait(self, key: str, now: float | None = None) -> float:
        return self.window.wait(key, self._clock() if now is None else now)

    async def record(self, key: str, now: float | None = None) -> None:
        self.window.record(key, self._clock() if now is None else now)

    async def take(self, key: str, now: float | None = None) -> float:
        return self.window.take(key, self._clock() if now is None else now)

    async def forget(self, key: str) -> None:
        self.window.forget(key)
