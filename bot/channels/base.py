"""The channel contract and the message types every channel speaks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol


class ReplyType(StrEnum):
    ACK = "ack"
    ANSWER = "answer"
    AGENT = "agent"
    SYSTEM = "system"


class AckKind(StrEnum):
    RECEIPT = "receipt"
    SOLUTION = "solution"
    PLAN = "plan"


@dataclass(frozen=True)
class Customer:
    """The sender as the channel knows them; the inbox links it to one identity."""

    external_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None  # E.164 ("+447700900123")
    # The platform vouches for email/phone (WhatsApp's wa_id, Twilio's From, a shared
    # Telegram contact, an email's sender): they link this sender to an existing customer.
    verified: bool = False


@dataclass(frozen=True)
class InboundMessage:
    """A customer message parsed from a platform payload.

    ``platform_message_id`` is the idempotency key within (channel, customer): a platform
    retry or a client resend with the same id is stored once. ``kind`` is what the customer
    sent: ``text``, or a non-text kind (``MEDIA_KINDS``, ``EVENT_KINDS``, ``other``) whose
    ``text`` is its caption or empty and whose ``attachments`` describe it for the agent.
    ``reply_to`` is where replies go, in the platform's terms (chat id, channel and thread,
    phone number, email thread); the latest message's wins.
    """

    channel: str
    customer: Customer
    platform_message_id: str
    text: str
    received_at: datetime
    conversation_id: str | None = None
    attachments: tuple[dict[str, Any], ...] = ()
    kind: str = "text"
    reply_to: Mapping[str, Any] = field(default_factory=dict)


# Content the bot cannot read but an agent can: the customer is told so, the agent gets it.
MEDIA_KINDS = frozenset(
    {"image", "sticker", "voice", "audio", "video", "file", "location", "contact", "other"}
)
# Events that are not messages: stored and acknowledged to the platform, never replied to.
EVENT_KINDS = frozenset({"reaction", "edit", "join", "leave", "delete", "read", "delivery"})


@dataclass(frozen=True)
class Citation:
    title: str
    url: str


@dataclass(frozen=True)
class OutboundMessage:
    """Something Promptly says in a conversation (acks, answers, agent replies)."""

    type: ReplyType
    text: str
    kind: AckKind | None = None
    in_reply_to: str | None = None
    citations: tuple[Citation, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    """What a channel adapter provides.

    A channel verifies and parses platform input into ``InboundMessage`` and hands it to the
    pipeline; it never touches storage or tickets. Delivery of replies is the channel's job.
    """

    name: str
    # (method, path, handler method name): the app routes these to the live instance.
    ROUTES: ClassVar[list[tuple[str, str, str]]]

    def parse(self, data: Any) -> InboundMessage:
        """Validate platform input into an ``InboundMessage`` or raise a ``RequestError``."""
        ...
