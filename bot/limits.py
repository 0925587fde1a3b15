"""The customer-facing rate limits of ``[limits]``: the clock, the keys, and the error.

The policy is ``bot.ratelimit`` (pure); this module reads the monotonic clock and raises
``TooManyRequests``, which ``bot.http`` turns into a 429 with Retry-After and the web channel
into an ``error`` frame. A refused message is never stored: the client is told, and sends it
again after the wait.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from bot.errors import TooManyRequests
from bot.ratelimit import Limit, SlidingWindow
from bot.settings import LimitSettings

Monotonic = Callable[[], float]
_KEY = "socket"


class ClientLimits:
    """Budgets shared by every request of the gateway: per customer and per client address."""

    def __init__(self, settings: LimitSettings, clock: Monotonic = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        window = self._window = settings.window.total_seconds()
        self._open: dict[str, int] = {}  # WebSockets open per address
        self._sender = _window(settings.messages_per_sender, window)
        self._address = _window(settings.requests_per_address, window)
        self._webhooks = _window(settings.webhooks_per_address, window)

    def address(self, address: str | None) -> None:
        """One web chat request (a message, a rating, a WebSocket connect or frame)."""
        _take(self._address, address or "unknown", self._clock(), "requests from your address")

    def sender(self, customer_id: str) -> None:
        """One message or rating from this web customer."""
        _take(self._sender, customer_id, self._clock(), "messages from this customer")

    def webhook(self, address: str | None) -> None:
        """One ``/webhooks/<channel>`` request, before its body is read or verified."""
        _take(self._webhooks, address or "unknown", self._clock(), "webhook requests")

    @contextlib.contextmanager
    def open_socket(self, address: str | None) -> Iterator[None]:
        """Hold one of the address's ``sockets_per_address`` while a WebSocket is open."""
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


def _take(window: SlidingWindow | None, key: str, now: float, what: str) -> None:
    if window is None:
        return
    wait = window.take(key, now)
    if wait:
        raise TooManyRequests(what, wait)
