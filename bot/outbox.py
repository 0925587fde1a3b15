"""Outbox: store a reply, then hand it to the conversation's channel for delivery."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from bot.channels.base import OutboundMessage
from bot.frames import frame
from bot.hub import Hub
from bot.store.base import DeliveryStatus, Store, StoredMessage


class Dispatch(Protocol):
    def enqueue(self, message: StoredMessage) -> None: ...

    async def send_now(
        self, channel: str, reply_to: Mapping[str, Any], reply: OutboundMessage
    ) -> dict[str, Any] | None: ...


class ReplyObserver(Protocol):
    """Sees every stored reply with its event (``bot.metrics.Metrics``)."""

    def replied(self, stored: StoredMessage, event: str, data: dict[str, Any] | None) -> None: ...


class Outbox:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        dispatcher: Dispatch | None = None,
        observer: ReplyObserver | None = None,
    ) -> None:
        self._store = store
        self._hub = hub
        self._dispatcher = dispatcher
        self._observer = observer

    async def send(
        self,
        conversation_id: str,
        reply: OutboundMessage,
        *,
        event: str,
        data: dict[str, Any] | None = None,
        acks: str | None = None,
        at: datetime | None = None,
        pending: str | None = None,
        finishes: str | None = None,
    ) -> StoredMessage:
        stored = await self._store.add_reply(
            conversation_id,
            reply,
            event=event,
            data=data,
            acks=acks,
            at=at,
            pending=pending,
            finishes=finishes,
        )
        self.publish(stored)
        if self._observer is not None:
            self._observer.replied(stored, event, data)
        return stored

    async def push(
        self, channel: str, reply_to: Mapping[str, Any], reply: OutboundMessage
    ) -> dict[str, Any] | None:
        """Send a reply that is not stored (a receipt while the database is away) through a
        platform channel; what the platform confirmed, or None (web: the request carries it)."""
        if self._dispatcher is None:
            return None
        return await self._dispatcher.send_now(channel, reply_to, reply)

    async def restore(
        self,
        conversation_id: str,
        reply: OutboundMessage,
        *,
        event: str,
        data: dict[str, Any],
        acks: str,
        at: datetime,
        delivered: dict[str, Any] | None,
    ) -> StoredMessage:
        """Store a reply that already went out from memory (``push``), dated when it did; a
        platform reply nobody confirmed stays pending, so it is sent (again, at worst)."""
        stored = await self._store.add_reply(
            conversation_id, reply, event=event, data=data, acks=acks, at=at
        )
        if delivered is not None and stored.delivery_status is DeliveryStatus.PENDING:
            sent = await self._store.set_delivery(stored.id, DeliveryStatus.SENT, delivered)
            stored = sent or stored
        self.publish(stored)
        if self._observer is not None:
            self._observer.replied(stored, event, data)
        return stored

    def announce(self, topic: str, frame: dict[str, Any]) -> None:
        """A frame that is not a stored message, for whoever follows ``topic``."""
        self._hub.publish(topic, frame)

    def publish(self, stored: StoredMessage) -> None:
        # Web clients (and agents following the conversation) get the frame; a platform
        # channel's reply is pushed by the dispatcher (the store marked it pending).
        self._hub.publish(stored.conversation_id, frame(stored))
        if stored.delivery_status is DeliveryStatus.PENDING and self._dispatcher is not None:
            self._dispatcher.enqueue(stored)
