"""Outbox: store a reply, then hand it to the conversation's channel for delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.channels.base import OutboundMessage
from bot.frames import frame
from bot.hub import Hub
from bot.store.base import Store, StoredMessage


class Outbox:
    def __init__(self, store: Store, hub: Hub) -> None:
        self._store = store
        self._hub = hub

    async def send(
        self,
        conversation_id: str,
        reply: OutboundMessage,
        *,
        event: str,
        data: dict[str, Any] | None = None,
        acks: str | None = None,
        at: datetime | None = None,
    ) -> StoredMessage:
        stored = await self._store.add_reply(
            conversation_id, reply, event=event, data=data, acks=acks, at=at
        )
        self.publish(stored)
        return stored

    def publish(self, stored: StoredMessage) -> None:
        # Only the web channel exists so far; platform channels will be looked up by
        # the conversation's channel here.
        self._hub.publish(stored.conversation_id, frame(stored))
