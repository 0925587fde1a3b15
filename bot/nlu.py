"""Rasa REST client: bounded concurrency, timeouts, a circuit breaker and a latency estimate.

The estimate lets the ack policy send a receipt at once when Rasa is backed up, instead of
holding the customer for the whole window for an answer that cannot come in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bot.errors import NLUUnavailable
from bot.latency import LatencyGauge

logger = logging.getLogger(__name__)
RecoveryHook = Callable[[], Awaitable[None]]


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures, or at once on a refused connection.

    It closes only when a health probe succeeds, so a down Rasa costs no request time.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.failures = 0
        self.open = False

    def success(self) -> None:
        """The probe found Rasa up: close."""
        self.failures = 0
        self.open = False

    def call_succeeded(self) -> None:
        """A call answered. It never closes an open circuit: a call sent before the circuit
        opened can answer after it, and only the probe's closing runs the recovery hooks that
        answer the messages left pending meanwhile."""
        if not self.open:
            self.failures = 0

    def failure(self, *, hard: bool = False) -> None:
        self.failures += 1
        if hard or self.failures >= self.threshold:
            self.open = True


class RasaClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        timeout: float,
        concurrency: int,
        breaker_failures: int,
        probe_interval: float,
    ) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._slots = asyncio.Semaphore(concurrency)
        # Pessimistic until measured: the first turns after a start wait less for nothing.
        self.latency = LatencyGauge(initial=0.3, parallelism=concurrency)
        self._probe_interval = probe_interval
        self.breaker = CircuitBreaker(breaker_failures)
        self._recovery_hooks: list[RecoveryHook] = []
        self._wake = asyncio.Event()

    @property
    def up(self) -> bool:
        return not self.breaker.open

    def on_recovery(self, hook: RecoveryHook) -> None:
        self._recovery_hooks.append(hook)

    def expected_latency(self) -> float | None:
        """Seconds a new request should take, or None when Rasa is known to be down."""
        return None if self.breaker.open else self.latency.expected()

    async def send(self, sender: str, text: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        """Post one message to Rasa's REST webhook; returns the bot's messages."""
        if self.breaker.open:
            raise NLUUnavailable("Rasa is down (circuit open)")
        with self.latency.track():
            async with self._slots:
                if self.breaker.open:
                    raise NLUUnavailable("Rasa is down (circuit open)")
                return await self._post(sender, text, metadata)

    async def _post(self, sender: str, text: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        started = time.monotonic()
        body = {"sender": sender, "message": text, "metadata": metadata}
        try:
            async with self._session.post(
                f"{self._url}/webhooks/rest/webhook", json=body, timeout=self._timeout
            ) as response:
                if response.status >= 500:
                    raise NLUUnavailable(f"Rasa answered HTTP {response.status}")
                response.raise_for_status()
                messages = await response.json()
        except aiohttp.ClientConnectorError as e:
            self._failed(hard=True)
            raise NLUUnavailable(f"Rasa unreachable: {e}") from e
        except (TimeoutError, aiohttp.ClientError, NLUUnavailable, ValueError) as e:
            self._failed(hard=False)
            raise NLUUnavailable(f"Rasa call failed: {e!r}") from e
        self.breaker.call_succeeded()
        self.latency.observe(time.monotonic() - started)
        if not isinstance(messages, list):
            return []
        return [m for m in messages if isinstance(m, dict)]

    def _failed(self, *, hard: bool) -> None:
        was_open = self.breaker.open
        self.breaker.failure(hard=hard)
        if self.breaker.open and not was_open:
            logger.warning("Rasa marked down; acks continue, answers wait for it")
            self._wake.set()

    async def probe(self) -> bool:
        try:
            async with self._session.get(
                f"{self._url}/", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def watch(self) -> None:
        """Background task: probe Rasa every interval so health is current; on recovery close
        the circuit and run the recovery hooks (which answer what waited)."""
        was_up: bool | None = None
        while True:
            up = await self.probe()
            if up and (self.breaker.open or was_up is None):
                if was_up is False:
                    logger.info("Rasa is back")
                self.breaker.success()
                for hook in self._recovery_hooks:
                    await hook()
            elif not up and not self.breaker.open:
                logger.info("Rasa is not reachable at %s; acks go out, answers wait", self._url)
                self.breaker.open = True
            was_up = up
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._probe_interval)
