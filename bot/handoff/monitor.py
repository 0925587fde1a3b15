"""SLA monitor: fires each SLA timer (warning, breach, timeout) once, at its due time.

An in-memory index of due times: a heap with lazy deletion, and ``run()`` sleeps until the
earliest live timer instead of polling every ticket. Durability is the owner's: its ``fire``
callback records that a timer fired, and at start it rebuilds the monitor from the store, so
timers that fell due while the process was down fire at once, with their lateness.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.clock import speed_of

logger = logging.getLogger(__name__)

# One sleep never exceeds this (real seconds), so a jump of the wall clock is noticed within it.
MAX_SLEEP = 60.0


@dataclass(frozen=True, slots=True)
class Timer:
    """One SLA deadline of a ticket; a ticket has at most one live timer per ``name``."""

    ticket_id: str
    name: str  # e.g. "first_response:warning", "first_response:breach", "assignment:timeout"
    due: datetime  # aware


Fire = Callable[[Timer, timedelta], Awaitable[None]]
"""Called with the timer and its lateness (``clock() - due``, never negative)."""

# (due as a POSIX timestamp, version, timer): a float and a shared int keep a million
# entries small, and the unique version breaks ties so timers are never compared.
_Entry = tuple[float, int, Timer]


class SLAMonitor:
    """Fires scheduled timers through ``fire`` at their due times; use from one event loop.

    ``speed``: clock seconds per real second (``[debug] clock_speed``), by default the
    clock's own (``bot.clock.speed_of``); the real sleep until a due time is divided by it.
    """

    def __init__(
        self, fire: Fire, clock: Callable[[], datetime], speed: float | None = None
    ) -> None:
        self._fire = fire
        self._clock = clock
        self._speed = speed_of(clock) if speed is None else speed
        if self._speed < 1:
            raise ValueError(f"clock speed {self._speed} below 1")
        self._heap: list[_Entry] = []
        # ticket_id -> name -> version of its one live heap entry; any other entry is dead.
        self._live: dict[str, dict[str, int]] = {}
        self._dead = 0
        self._versions = itertools.count()
        self._wake = asyncio.Event()
        self._sleeping_until = math.inf  # what run() waits for; an earlier timer must wake it

    def schedule(self, timer: Timer) -> None:
        """Add ``timer``, replacing the live timer with the same (ticket_id, name) if any.

        A moved deadline is a replacement: only the new due time fires. Raises ValueError if
        ``timer.due`` is naive.
        """
        if timer.due.utcoffset() is None:
            raise ValueError("SLA timers need a time-zone-aware due time")
        due = timer.due.timestamp()
        names = self._live.setdefault(timer.ticket_id, {})
        if timer.name in names:
            self._dead += 1
        version = next(self._versions)
        names[timer.name] = version
        heapq.heappush(self._heap, (due, version, timer))
        if due < self._sleeping_until:
            self._wake.set()
        self._compact_if_mostly_dead()

    def cancel(self, ticket_id: str, name: str | None = None) -> None:
        """Drop the ticket's timer called ``name``, or all its timers if ``name`` is None.

        Unknown tickets and names are ignored.
        """
        names = self._live.get(ticket_id)
        if names is None:
            return
        if name is None:
            self._dead += len(names)
            del self._live[ticket_id]
        elif names.pop(name, None) is not None:
            self._dead += 1
            if not names:
                del self._live[ticket_id]
        self._compact_if_mostly_dead()

    def pending(self) -> int:
        """How many timers are scheduled and have not fired or been cancelled."""
        return len(self._heap) - self._dead

    def next_due(self) -> datetime | None:
        """Due time of the earliest live timer, or None when there is none."""
        entry = self._head()
        return None if entry is None else entry[2].due

    async def fire_due(self) -> int:
        """Fire every live timer due by ``clock()`` (read once, on entry), earliest first.

        Each is removed before its callback is awaited, so it fires once even if the callback
        raises; such an error is logged and the remaining timers still fire. Callbacks run one
        at a time. Returns how many were fired, counting those whose callback raised.
        """
        now = self._clock().timestamp()
        fired = 0
        while (entry := self._head()) is not None and entry[0] <= now:
            heapq.heappop(self._heap)
            timer = entry[2]
            names = self._live[timer.ticket_id]
            del names[timer.name]
            if not names:
                del self._live[timer.ticket_id]
            lateness = max(self._clock() - timer.due, timedelta(0))
            try:
                await self._fire(timer, lateness)
            except Exception:
                logger.exception("SLA timer %s of ticket %s failed", timer.name, timer.ticket_id)
            fired += 1
        return fired

    async def run(self) -> None:
        """Fire timers at their due times, forever; cancel the task to stop.

        Sleeps until the earliest due time, or until ``schedule()`` adds an earlier timer.
        """
        while True:
            await self.fire_due()
            self._wake.clear()
            entry = self._head()
            self._sleeping_until = math.inf if entry is None else entry[0]
            delay = self._sleeping_until - self._clock().timestamp()
            if self._speed != 1:
                delay /= self._speed  # clock seconds to real seconds
            delay = min(delay, MAX_SLEEP)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.0)):
                    await self._wake.wait()

    def _head(self) -> _Entry | None:
        """The earliest live entry, after discarding dead ones from the top of the heap."""
        while self._heap:
            entry = self._heap[0]
            if self._is_live(entry):
                return entry
            heapq.heappop(self._heap)
            self._dead -= 1
        return None

    def _is_live(self, entry: _Entry) -> bool:
        names = self._live.get(entry[2].ticket_id)
        return names is not None and names.get(entry[2].name) == entry[1]

    def _compact_if_mostly_dead(self) -> None:
        # Replace/cancel churn leaves dead entries deep in the heap; rebuilding once they
        # outnumber the live ones bounds memory at twice the live timers, at O(1) amortized.
        if self._dead > len(self._heap) - self._dead:
            self._heap = [entry for entry in self._heap if self._is_live(entry)]
            heapq.heapify(self._heap)
            self._dead = 0
