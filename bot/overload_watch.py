"""Samples the live signals, runs the overload policy (``bot/overload.py``) and acts on a change.

Every ``interval`` it reads the pipeline's accepted-message count and backlog and Rasa's and
the knowledge base's expected latency, and every ``eta_interval`` the queues' expected reply
against the SLA (database reads, so less often); a change of state is appended to the event
log (``overload_started`` with its cause, ``overload_ended`` with how long it lasted), logged,
and sent to the queues' leads through the signed alert webhook. The pipeline and the ticket
service read ``overloaded``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot import overload
from bot.errors import StorageUnavailable
from bot.handoff.notify import Notifier
from bot.settings import OverloadSettings
from bot.store.base import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sources:
    accepted: Callable[[], int]  # messages accepted since start (a counter)
    backlog: Callable[[], int]  # turns in flight
    latency: Callable[[], float | None]  # Rasa's expected seconds, None when it is down
    window: float  # the promised window, seconds
    kb_latency: Callable[[], float | None] = lambda: None  # the KB's expected seconds
    queue_eta: Callable[[], Awaitable[float | None]] | None = None  # ``QueueModel.pressure``


def overload_thresholds(settings: OverloadSettings) -> overload.Thresholds:
    return overload.Thresholds(
        rate=overload.Level(settings.rate_enter, settings.rate_leave),
        backlog=overload.Level(settings.backlog_enter, settings.backlog_leave),
        latency=overload.Level(settings.latency_enter, settings.latency_leave),
        hold=settings.hold,
        eta=overload.Level(settings.eta_enter, settings.eta_leave),
    )


class OverloadWatch:
    def __init__(
        self,
        store: Store,
        sources: Sources,
        limits: overload.Thresholds,
        clock: Callable[[], datetime],
        *,
        notifier: Notifier | None = None,
        leads: tuple[str, ...] = (),
        interval: float = 1.0,
        eta_interval: float = 10.0,
    ) -> None:
        self._store = store
        self._sources = sources
        self._limits = limits
        self._clock = clock
        self._notifier = notifier
        self._leads = leads
        self._interval = interval
        self._eta_interval = eta_interval
        self._eta: float | None = None
        self._eta_at: float | None = None  # monotonic time of the last queue reading
        self._last_count = sources.accepted()
        self._last_at = time.monotonic()
        self.state = overload.State()

    @property
    def overloaded(self) -> bool:
        return self.state.on

    def to_json(self) -> dict[str, Any]:
        since = self.state.since
        return {
            "on": self.state.on,
            "since": None if since is None else since.isoformat(),
            "cause": list(self.state.cause),
        }

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sample()
            except Exception:
                logger.exception("overload sampling failed; trying again")

    async def sample(self) -> overload.State:
        count, at = self._sources.accepted(), time.monotonic()
        window = self._sources.window
        latency, kb_latency = self._sources.latency(), self._sources.kb_latency()
        if self._sources.queue_eta is not None and (
            self._eta_at is None or at - self._eta_at >= self._eta_interval
        ):
            self._eta_at = at
            try:
                self._eta = await self._sources.queue_eta()
            except StorageUnavailable:
                self._eta = None  # the database's own mode says so; no guess here
        signals = overload.Signals(
            # Over the real time since the last sample: a busy loop wakes the sampler late.
            rate=(count - self._last_count) / max(at - self._last_at, 1e-3),
            backlog=float(self._sources.backlog()),
            latency=None if latency is None else latency / window,
            kb_latency=None if kb_latency is None else kb_latency / window,
            eta=self._eta,
        )
        self._last_count, self._last_at = count, at
        before = self.state
        self.state = overload.step(before, signals, self._limits, self._clock())
        if self.state.on != before.on:
            await self._changed(before, signals)
        return self.state

    async def _changed(self, before: overload.State, signals: overload.Signals) -> None:
        now = self._clock()
        measured = {
            "rate": signals.rate,
            "backlog": signals.backlog,
            "latency": signals.latency,
            "kb_latency": signals.kb_latency,
            "eta": signals.eta,
        }
        if self.state.on:
            kind = "overload_started"
            data: dict[str, Any] = {"cause": list(self.state.cause), "signals": measured}
            logger.warning("overload started: %s (%s)", ", ".join(self.state.cause), measured)
        else:
            kind = "overload_ended"
            lasted = (now - before.since).total_seconds() if before.since else None
            data = {"lasted_s": lasted, "cause": list(before.cause)}
            logger.warning("overload ended after %.0f s", lasted or 0)
        await self._store.log_event(kind, data=data, at=now)
        if self._notifier is not None:
            self._notifier.send({"type": kind, "recipients": {"leads": list(self._leads)}, **data})
