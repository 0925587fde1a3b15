"""In-process fan-out of conversation frames to connected clients (WebSockets).

Frames are stored before they are published, so a client that was not connected (or whose
queue overflowed) loses nothing: it reconnects with ``after=<seq>`` and replays from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any, Protocol

Frame = dict[str, Any]


class FrameHub(Protocol):
    """What the web channel, the outbox and the dispatcher need of a hub: ``Hub`` (one
    process) or ``bot.hub_redis.RedisHub`` (frames shared between gateway processes)."""

    def subscribe(self) -> Subscription: ...

    def publish(self, conversation_id: str, frame: Frame) -> None: ...

    def listeners(self, conversation_id: str) -> int: ...


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

    def drop(self) -> None:
        """Stop following and tell the client to go (``None``): it reconnects with
        ``after=<seq>`` and replays what it missed from the store.

        Whatever is still queued goes too: the client resumes after the last frame it got,
        so sending the frames after one that was discarded would skip that one for good.
        """
        self.close()
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                self.queue.get_nowait()
        self.queue.put_nowait(None)


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
                subscription.drop()

    def listeners(self, conversation_id: str) -> int:
        return len(self._subscribers.get(conversation_id, ()))

    def drop_all(self) -> int:
        """Drop every subscription following a conversation (frames may have been missed:
        their clients replay from the store); returns how many."""
        dropped = {s for subscribers in self._subscribers.values() for s in subscribers}
        for subscription in dropped:
            subscription.drop()
        return len(dropped)
