"""The contract of a messaging-platform channel (Telegram, Slack, WhatsApp, Messenger, Twilio,
email): verify and parse what the platform sends, render and send what Promptly says.

An adapter does no storage and no retries: the webhook endpoint (``bot.channels.webhooks``)
stores what ``parse`` returns before answering the platform, and the dispatcher
(``bot.delivery``) calls ``send`` with retry, backoff and ordering. Everything an adapter needs
to know about a platform (signature scheme, payload shapes, length limits, formatting, the
24-hour rule) lives in its one file.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import aiohttp

from bot.channels.base import InboundMessage, OutboundMessage
from bot.errors import ConfigError


@dataclass(frozen=True)
class Webhook:
    """One HTTP request from a platform, as it arrived (signatures cover the raw bytes)."""

    method: str
    url: str  # the full public URL the platform called (Twilio signs it)
    headers: Mapping[str, str]  # case-insensitive
    query: Mapping[str, str]
    body: bytes
    received_at: datetime


@dataclass(frozen=True)
class Response:
    """What the endpoint answers the platform (a handshake, or the 2xx after storing)."""

    status: int = 200
    body: str = '{"ok":true}'
    content_type: str = "application/json"


@dataclass(frozen=True)
class Sent:
    platform_message_id: str | None = None


class SendError(Exception):
    """A send that failed. ``retryable``: 429, 5xx, timeouts, connection errors."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


@dataclass(frozen=True)
class Window:
    """When free-form messages may still go out (WhatsApp, Messenger: 24 h after the
    customer's last message); ``None`` fields mean no limit."""

    automated: timedelta | None = None  # acks and bot answers
    agent: timedelta | None = None  # human replies (Messenger's HUMAN_AGENT tag: 7 days)


class PlatformChannel(abc.ABC):
    """Base of every platform adapter (one subclass per file in ``bot/channels/``): how
    Promptly talks on the platform. How it listens is ``WebhookChannel`` or, for email,
    the adapter's own listener."""

    name: ClassVar[str]
    # role -> environment variable holding it; a channel missing any is disabled at start.
    SECRETS: ClassVar[Mapping[str, str]]
    OPTIONAL_SECRETS: ClassVar[Mapping[str, str]] = {}  # passed on when set (a relay password)
    MAX_CHARS: ClassVar[int]  # the platform's limit for one message's text
    WINDOW: ClassVar[Window] = Window()
    DEFAULT_API_BASE: ClassVar[str] = ""  # the platform's public API, when api_base is empty

    def __init__(
        self,
        secrets: Mapping[str, str],
        options: Mapping[str, Any],
        session: aiohttp.ClientSession,
        api_base: str,
    ) -> None:
        for role, variable in self.SECRETS.items():
            if not secrets.get(role):
                raise ConfigError(f"{variable}: required")
        self.secrets = secrets
        self.options = options
        self.session = session
        self.api_base = (api_base or self.DEFAULT_API_BASE).rstrip("/")

    # -- outbound -----------------------------------------------------------------------------

    @abc.abstractmethod
    def render(self, reply: OutboundMessage) -> list[str]:
        """The reply as this platform's text (its formatting and escaping), split into parts
        of at most ``MAX_CHARS`` at paragraph, line, sentence or word boundaries."""

    @abc.abstractmethod
    async def send(self, reply_to: Mapping[str, Any], text: str, *, agent: bool) -> Sent:
        """Send one rendered part to the conversation's ``reply_to`` (from the customer's last
        inbound message). Raise ``SendError`` on failure; never retry here."""

    def render_for(self, reply: OutboundMessage, reply_to: Mapping[str, Any]) -> list[str]:
        """``render`` for one address; platforms whose limits depend on it override this."""
        return self.render(reply)

    def window_for(self, reply_to: Mapping[str, Any]) -> Window:
        """The messaging window for one address (default: the platform's ``WINDOW``)."""
        return self.WINDOW

    def max_chars_for(self, reply_to: Mapping[str, Any]) -> int:
        """One message's length limit for one address (default: the platform's ``MAX_CHARS``)."""
        return self.MAX_CHARS


class WebhookChannel(PlatformChannel):
    """A platform that calls ``/webhooks/<name>`` over HTTP."""

    @abc.abstractmethod
    def verify(self, hook: Webhook) -> Response | None:
        """Check the platform's signature or secret before anything else.

        Raise ``Unauthorized``/``Forbidden`` (bot.errors) on a bad or missing one or a replay
        outside the platform's window. Return a ``Response`` when the request is a handshake to
        answer as is (Slack's url_verification, Meta's GET hub.challenge), else ``None``.
        """

    @abc.abstractmethod
    def parse(self, hook: Webhook) -> list[InboundMessage]:
        """The customer messages in a verified request (none for events we ignore).

        Never raises on well-signed input the adapter does not understand: unknown kinds become
        an ``InboundMessage`` with ``kind="other"``; malformed JSON raises ``BadRequest``.
        """

    def ok(self) -> Response:
        """The 2xx the platform expects once the messages are stored."""
        return Response()


class ListeningChannel(PlatformChannel):
    """A platform Promptly listens to itself (email over SMTP)."""

    @abc.abstractmethod
    async def start_listener(
        self, on_messages: Callable[[list[InboundMessage]], Awaitable[None]]
    ) -> None:
        """Start listening; ``on_messages`` stores them (it raises if it could not)."""

    @abc.abstractmethod
    async def stop_listener(self) -> None: ...


# -- helpers shared by the adapters ---------------------------------------------------------------


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters, preferring paragraph, then
    line, then sentence, then word boundaries; a word longer than ``limit`` is cut."""
    if limit < 1:
        raise ValueError("limit must be positive")
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        head = rest[: limit + 1]
        cut = -1
        for separator in ("\n\n", "\n", ". ", "! ", "? ", " "):
            position = head.rfind(separator, 0, limit + 1)
            if position > 0:
                cut = position + (1 if separator in (". ", "! ", "? ") else 0)
                break
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def split_escaped(text: str, limit: int, escape: Callable[[str], str]) -> list[str]:
    """``text`` split into escaped parts of at most ``limit`` characters. Splitting comes
    first, so no escape sequence is ever cut."""
    return [p for part in split_text(text, limit) for p in _fit(part, limit, escape)]


def _fit(part: str, limit: int, escape: Callable[[str], str]) -> list[str]:
    """A part that escaping pushes over ``limit`` is split again, shorter by its own expansion;
    every piece is shorter than the part, so this ends (``limit`` must hold one escaped
    character)."""
    escaped = escape(part)
    if len(escaped) <= limit:
        return [escaped]
    shorter = len(part) * limit // len(escaped)
    if shorter < 1:
        raise ValueError(f"limit {limit} cannot hold {escaped!r}")
    return [p for piece in split_text(part, shorter) for p in _fit(piece, limit, escape)]


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - now).total_seconds(), 0.0)


def error_from_status(status: int, body: str, retry_after: float | None) -> SendError:
    """The ``SendError`` for a non-2xx platform answer: 408, 429 and 5xx are worth retrying."""
    retryable = status in (408, 429) or status >= 500
    return SendError(
        f"HTTP {status}: {body[:200]}", retryable=retryable, retry_after=retry_after, status=status
    )


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): uniform(0, min(cap,
    base * 2**attempt))."""
    upper = min(cap, base * (2 ** max(attempt, 0)))
    return (rng or random).uniform(0, upper)
