"""The agent console's live feed: ticket changes tailed from the event log, pushed to sockets.

Every ticket change is logged in the transaction that makes it, by this process or another
one sharing the database (a standalone action server opens tickets too), so the log is the
one place that sees them all. One task per app reads what was logged after the last event it
saw, renders each changed ticket once, and fans the frames out to every connected console:
the database is read once per interval however many agents are connected, and not at all
for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from bot.clock import Clock
from bot.store.base import Event, EventCursor
from bot.store.common import iso
from bot.store.open import AnyStore

logger = logging.getLogger(__name__)
Frame = dict[str, Any]
Render = Callable[[str], Awaitable[dict[str, Any] | None]]
# Not about one ticket, but what the queue view shows (who is online to take work).
_ALSO = ("agent_presence",)


def _shown(event: Event) -> bool:
    return event.ticket_id is not None or event.type in _ALSO


class Feed:
    def __init__(
        self,
        store: AnyStore,
        clock: Clock,
        *,
        interval: float = 0.5,
        batch: int = 200,
        queue_size: int = 1000,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._batch = batch
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Frame | None]] = set()
        # After the last event read (``events_after``: on PostgreSQL a range of seq can skip
        # an event that commits late); consoles load their state as of it.
        self.cursor = EventCursor(0, 0)

    async def start(self) -> None:
        """Begin at the end of the log: consoles load the present when they connect."""
        self.cursor = await self._store.event_cursor()

    async def run(self, render: Render) -> None:
        """Tail the log until cancelled; ``render`` gives a ticket's JSON as the API shows it."""
        while True:
            try:
                more = await self.poll(render)
            except Exception:  # a failed read must not end live updates for everyone
                logger.exception("live feed: reading the event log failed")
                more = False
            if not more:
                await asyncio.sleep(self._interval)

    async def poll(self, render: Render) -> bool:
        """Push what was logged since the cursor; True when there may be more right away."""
        if not self._subscribers:
            # No console is open: skip ahead instead of rendering tickets for nobody (under
            # load that was a batch of reads and renders per interval beside the acks).
            self.cursor = await self._store.event_cursor()
            return False
        read, after = await self._store.events_after(self.cursor, self._batch)
        rows = [event for event in read if _shown(event)]
        if not rows:
            self.cursor = after
            return len(read) == self._batch
        tickets = {row.ticket_id for row in rows if row.ticket_id is not None}
        # Rendered after the batch was read, so each frame carries the ticket's latest state.
        views = {ticket_id: await _render(render, ticket_id) for ticket_id in sorted(tickets)}
        now = self._clock().isoformat()
        for event in rows:
            self._publish(
                {
                    "type": "event",
                    "seq": event.seq,
                    "at": iso(event.at),
                    "now": now,
                    "event": event.type,
                    "conversation_id": event.conversation_id,
                    "ticket_id": event.ticket_id,
                    "data": event.data,
                    "ticket": views.get(event.ticket_id) if event.ticket_id else None,
                }
            )
        self.cursor = after
        return len(read) == self._batch

    def subscribe(self) -> asyncio.Queue[Frame | None]:
        queue: asyncio.Queue[Frame | None] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Frame | None]) -> None:
        self._subscribers.discard(queue)

    def close(self) -> None:
        """Tell every connected console to go (at shutdown); they reconnect to the next run."""
        for queue in list(self._subscribers):
            self._drop(queue)

    def _publish(self, frame: Frame) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:
                # A console this far behind reloads instead (it does on every reconnect).
                self._drop(queue)

    def _drop(self, queue: asyncio.Queue[Frame | None]) -> None:
        self._subscribers.discard(queue)
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
        queue.put_nowait(None)


async def _render(render: Render, ticket_id: str) -> dict[str, Any] | None:
    try:
        return await render(ticket_id)
    except Exception:  # one ticket that cannot be shown must not hold up the others
        logger.exception("live feed: rendering ticket %s failed", ticket_id)
        return None


async def serve(feed: Feed, request: web.Request, clock: Clock) -> web.WebSocketResponse:
    """One console's socket: a ``hello`` with the cursor, then every frame after it."""
    # Consoles only listen: a frame of theirs is read and dropped, and a big one closes the
    # socket (1009) instead of being buffered (aiohttp's default allows 4 MiB).
    ws = web.WebSocketResponse(heartbeat=25, max_msg_size=1024)
    await ws.prepare(request)
    queue = feed.subscribe()  # before the hello: nothing after its cursor can be missed
    try:
        hello = {"type": "hello", "seq": feed.cursor.seq, "now": clock().isoformat()}
        await ws.send_json(hello)
        writer = asyncio.create_task(_write(ws, queue))
        try:
            async for message in ws:  # consoles only listen; what they send is ignored
                if message.type is WSMsgType.ERROR:
                    logger.debug("console socket closed with %s", ws.exception())
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
    finally:
        feed.unsubscribe(queue)
    return ws


async def _write(ws: web.WebSocketResponse, queue: asyncio.Queue[Frame | None]) -> None:
    while True:
        frame = await queue.get()
        if frame is None:
            await ws.close()
            return
        await ws.send_json(frame)
