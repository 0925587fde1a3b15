"""In-process fan-out of conversation frames to connected clients (WebSockets).

Frames are stored before they are published, so a client that was not connected (or whose
queue overflowed) loses nothing: it reconnects with ``after=<seq>`` and replays from the store.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

Frame = dict[str, Any]


class Subscription:
    def __init__(self, hub: Hub, maxsize: int) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[Frame | None] = asyncio.Queue(maxsize)
        self.conversations: set[str] = set()

    def follow(self, conversation_id: str) -> None:
        if conversation_id not in self.conversations:
            self.conversations.add(conversation_id)
            self._hub._subscribers[conversation_id].add(self)

    def close(self) -> None:
        for conversation_id in self.conversations:
            subscribers = self._hub._subscribers.get(conversation_id)
            if subscribers is not None:
                subscribers.discard(self)
                if not subscribers:
                    del self._hub._subscribers[conversation_id]
        self.conversations.clear()


class Hub:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._queue_size = queue_size

    def subscribe(self) -> Subscription:
        return Subscription(self, self._queue_size)

    def publish(self, conversation_id: str, frame: Frame) -> None:
        for subscription in list(self._subscribers.get(conversation_id, ())):
            try:
                subscription.queue.put_nowait(frame)
            except asyncio.QueueFull:
                # A client this far behind is dropped; it replays from the store on reconnect.
                subscription.close()
                subscription.queue.get_nowait()
                subscription.queue.put_nowait(None)

    def listeners(self, conversation_id: str) -> int:
        return len(self._subscribers.get(conversation_id, ()))
