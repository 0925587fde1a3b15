"""The channel contract and the message types every channel speaks."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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


# A code point no UTF-8 can carry: half of a UTF-16 pair ("\ud83d" of a truncated emoji).
_SURROGATE = re.compile("[\ud800-\udfff]")


def scrubbed(msg: InboundMessage) -> InboundMessage:
    """``msg`` with every unpaired surrogate replaced by U+FFFD, so a platform's broken
    character is stored and shown as one rather than failing the write (a platform resends
    what it could not deliver; refusing would never end). The web API refuses them instead."""
    customer = msg.customer
    fixed = replace(
        msg,
        customer=replace(
            customer,
            external_id=_text(customer.external_id),
            name=_text(customer.name),
            email=_text(customer.email),
            phone=_text(customer.phone),
        ),
        platform_message_id=_text(msg.platform_message_id),
        text=_text(msg.text),
        conversation_id=_text(msg.conversation_id),
        attachments=tuple(_deep(a) for a in msg.attachments),
        reply_to=_deep(dict(msg.reply_to)),
    )
    return msg if fixed == msg else fixed


def _text(value: Any) -> Any:
    return _SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value


def _deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {_text(k): _deep(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_deep(v) for v in value]
    return _text(value)


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
