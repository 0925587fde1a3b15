"""The customer-facing rate limits of ``[limits]``: the windows, the keys, and the error.

The policy is ``bot.ratelimit`` (pure); this module asks the windows and raises
``TooManyRequests``, which ``bot.http`` turns into a 429 with Retry-After and the web channel
into an ``error`` frame. A refused message is never stored: the client is told, and sends it
again after the wait.

The per-customer, per-address and webhook budgets are ``AsyncWindow``s: in this process
(``LocalWindow``) by default, or shared by every gateway process through Redis
(``RedisSlidingWindow``, when ``[scale] redis_url`` is set; see ``redis_windows``). Open
WebSockets per address and the frames of one WebSocket are always counted per process: a
socket lives in one process, and a client spreading sockets over several processes holds at
most ``sockets_per_address`` in each.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from bot.errors import TooManyRequests
from bot.ratelimit import AsyncWindow, Limit, LocalWindow, SlidingWindow
from bot.settings import LimitSettings

if TYPE_CHECKING:
    from redis.asyncio import Redis

Monotonic = Callable[[], float]
# Makes the window of one named limit ("sender", "address", "webhook", "login-account"...).
WindowFactory = Callable[[str, Limit], AsyncWindow]
_KEY = "socket"


def local_windows(clock: Monotonic = time.monotonic) -> WindowFactory:
    """Windows of this process, on ``clock``."""

    def make(name: str, limit: Limit) -> AsyncWindow:
        return LocalWindow(limit, clock)

    return make


def redis_windows(redis: Redis, prefix: str) -> WindowFactory:
    """Windows shared through ``redis`` by every process using the same ``prefix``."""
    from bot.ratelimit_redis import RedisSlidingWindow

    def make(name: str, limit: Limit) -> AsyncWindow:
        return RedisSlidingWindow(redis, limit, name, prefix=f"{prefix}rl:")

    return make


class ClientLimits:
    """Budgets shared by every request of the gateway: per customer and per client address."""

    def __init__(
        self,
        settings: LimitSettings,
        clock: Monotonic = time.monotonic,
        windows: WindowFactory | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        make = windows or local_windows(clock)
        window = self._window = settings.window.total_seconds()
        self._open: dict[str, int] = {}  # WebSockets open per address, in this process
        self._sender = _shared(make, "sender", settings.messages_per_sender, window)
        self._address = _shared(make, "address", settings.requests_per_address, window)
        self._webhooks = _shared(make, "webhook", settings.webhooks_per_address, window)

    async def address(self, address: str | None) -> None:
        """One web chat request (a message, a rating, a WebSocket connect or frame)."""
        await _take(self._address, address or "unknown", "requests from your address")

    async def sender(self, customer_id: str) -> None:
        """One message or rating from this web customer."""
        await _take(self._sender, customer_id, "messages from this customer")

    async def webhook(self, address: str | None) -> None:
        """One ``/webhooks/<channel>`` request, before its body is read or verified."""
        await _take(self._webhooks, address or "unknown", "webhook requests")

    @contextlib.contextmanager
    def open_socket(self, address: str | None) -> Iterator[None]:
        """Hold one of the address's ``sockets_per_address`` while a WebSocket is open (counted
        per process)."""
        limit, key = self.settings.sockets_per_address, address or "unknown"
        if limit and self._open.get(key, 0) >= limit:
            # Sockets close at any moment; a window is a fair guess at when one will have.
            raise TooManyRequests("open connections from your address", self._window)
        self._open[key] = self._open.get(key, 0) + 1
        try:
            yield
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]

    def socket(self) -> SocketBudget:
        window = self.settings.window.total_seconds()
        return SocketBudget(_window(self.settings.messages_per_socket, window), self._clock)


class SocketBudget:
    """One WebSocket's frames. Past the budget each frame is refused with an error frame;
    a client that ignores as many refusals as its budget inside one window is ``exhausted``
    (the socket is then closed: it is not a widget waiting as told)."""

    def __init__(self, window: SlidingWindow | None, clock: Monotonic) -> None:
        self._frames = window
        self._refusals = SlidingWindow(window.limit) if window is not None else None
        self._clock = clock
        self.exhausted = False

    def frame(self) -> None:
        if self._frames is None or self._refusals is None:
            return
        now = self._clock()
        wait = self._frames.take(_KEY, now)
        if wait:
            self.exhausted = self._refusals.take(_KEY, now) > 0
            raise TooManyRequests("messages on this connection", wait)


def _window(events: int, seconds: float) -> SlidingWindow | None:
    return SlidingWindow(Limit(events, seconds)) if events > 0 else None


def _shared(make: WindowFactory, name: str, events: int, seconds: float) -> AsyncWindow | None:
    return make(name, Limit(events, seconds)) if events > 0 else None


async def _take(window: AsyncWindow | None, key: str, what: str) -> None:
    if window is None:
        return
    wait = await window.take(key)
    if wait:
        raise TooManyRequests(what, wait)
