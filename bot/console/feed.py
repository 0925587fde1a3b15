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
import functools
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from bot.clock import Clock
from bot.store.sqlite import SQLiteStore

logger = logging.getLogger(__name__)
Frame = dict[str, Any]
Render = Callable[[str], Awaitable[dict[str, Any] | None]]
Row = tuple[Any, ...]
# Not about one ticket, but what the queue view shows (who is online to take work).
_ALSO = ("agent_presence",)


def _last_seq(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])


def _events_after(after: int, limit: int, db: sqlite3.Connection) -> list[Row]:
    # ``seq`` is the primary key: a range read from the cursor, however long the log is.
    marks = ", ".join("?" for _ in _ALSO)
    rows: list[Row] = db.execute(
        "SELECT seq, at, type, conversation_id, ticket_id, data FROM events "
        f"WHERE seq > ? AND (ticket_id IS NOT NULL OR type IN ({marks})) ORDER BY seq LIMIT ?",
        (after, *_ALSO, limit),
    ).fetchall()
    return rows


class Feed:
    def __init__(
        self,
        store: SQLiteStore,
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
        self.cursor = 0  # the last event pushed; consoles load their state as of it

    async def start(self) -> None:
        """Begin at the end of the log: consoles load the present when they connect."""
        self.cursor = await self._store.run(_last_seq, write=False)

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
            self.cursor = await self._store.run(_last_seq, write=False)
            return False
        read = functools.partial(_events_after, self.cursor, self._batch)
        rows = await self._store.run(read, write=False)
        if not rows:
            return False
        tickets = {row[4] for row in rows if row[4] is not None}
        # Rendered after the batch was read, so each frame carries the ticket's latest state.
        views = {ticket_id: await _render(render, ticket_id) for ticket_id in sorted(tickets)}
        now = self._clock().isoformat()
        for seq, at, kind, conversation_id, ticket_id, data in rows:
            self._publish(
                {
                    "type": "event",
                    "seq": seq,
                    "at": at,
                    "now": now,
                    "event": kind,
                    "conversation_id": conversation_id,
                    "ticket_id": ticket_id,
                    "data": json.loads(data),
                    "ticket": views.get(ticket_id) if ticket_id else None,
                }
            )
            self.cursor = seq
        return len(rows) == self._batch

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
    ws = web.WebSocketResponse(heartbeat=25)
    await ws.prepare(request)
    queue = feed.subscribe()  # before the hello: nothing after its cursor can be missed
    try:
        await ws.send_json({"type": "hello", "seq": feed.cursor, "now": clock().isoformat()})
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
