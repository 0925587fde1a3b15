"""The leads' emergency switch: "all to humans", "bot only", "pause channel X".

The state is one row in the database, so it survives a restart and reaches every gateway that
shares the database: the CLI writes it and a running gateway picks it up within
``WATCH_INTERVAL``. Every change is appended to the event log (``emergency``) and the audit
trail, with who made it and why.

What each setting does (``bot/pipeline.py`` and ``bot/handoff/tickets.py`` apply it):

* ``all_to_humans``: the bot is bypassed. Each new message in a bot conversation opens a
  ticket at once and gets a ``plan`` ack; Rasa and the knowledge base are not asked.
* ``bot_only``: no one takes live conversations. The bot answers what it can; a handoff still
  opens a ticket (nothing is lost) but its ``plan`` ack promises a reply by the ticket's SLA
  deadline, not a live queue estimate, and it goes to ``emergency.followup_queue`` when set.
* a paused channel: its messages are stored and acked with a receipt as always, then wait
  (``pending``) until the channel is resumed; they are answered in order then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bot.errors import Unprocessable
from bot.store.postgres import PostgresStore

if TYPE_CHECKING:
    from bot.store.open import AnyStore

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0
PAUSED = "channel_paused"  # why a message waits (its ``pending`` event)


class Mode(StrEnum):
    NORMAL = "normal"
    ALL_TO_HUMANS = "all_to_humans"
    BOT_ONLY = "bot_only"


@dataclass(frozen=True)
class Switch:
    mode: Mode = Mode.NORMAL
    paused: frozenset[str] = frozenset()
    by: str | None = None
    at: datetime | None = None
    reason: str = ""

    def is_paused(self, channel: str) -> bool:
        return channel in self.paused

    @property
    def normal(self) -> bool:
        return self.mode is Mode.NORMAL and not self.paused

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "paused_channels": sorted(self.paused),
            "by": self.by,
            "at": None if self.at is None else self.at.isoformat(),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Switch:
        at = data.get("at")
        return cls(
            mode=Mode(data.get("mode", Mode.NORMAL)),
            paused=frozenset(data.get("paused_channels", ())),
            by=data.get("by"),
            at=None if at is None else datetime.fromisoformat(at),
            reason=data.get("reason", ""),
        )


def mode_named(name: str) -> Mode:
    """``Mode`` from its name ("all-to-humans" or "all_to_humans"), or a clear error."""
    try:
        return Mode(name.replace("-", "_"))
    except ValueError:
        choices = ", ".join(m.value for m in Mode)
        raise Unprocessable("validation_error", f"mode: must be one of {choices}") from None


OnChange = Callable[[Switch, Switch], Awaitable[None]]


class EmergencySwitch:
    """The switch's current state in memory, read and written through the database."""

    def __init__(self, store: AnyStore, clock: Callable[[], datetime], channels: set[str]):
        self._store = store
        self._clock = clock
        self._channels = channels  # what may be paused
        self._current = Switch()
        self._version = 0
        self._listeners: list[OnChange] = []
        self._lock = asyncio.Lock()

    @property
    def current(self) -> Switch:
        return self._current

    def on_change(self, listener: OnChange) -> None:
        """``listener(before, after)`` runs after every change, here or seen from elsewhere."""
        self._listeners.append(listener)

    async def load(self) -> Switch:
        version, state = await self._read()
        if version != self._version:
            before, self._version = self._current, version
            self._current = Switch() if state is None else Switch.from_json(state)
            if before != self._current:
                await self._notify(before, self._current)
        return self._current

    async def set_mode(self, mode: Mode, by: str, reason: str = "") -> Switch:
        return await self._change(lambda s: replace(s, mode=mode), by, reason, "mode")

    async def pause(self, channel: str, by: str, reason: str = "") -> Switch:
        self._known(channel)
        return await self._change(lambda s: replace(s, paused=s.paused | {channel}), by, reason)

    async def resume(self, channel: str, by: str, reason: str = "") -> Switch:
        self._known(channel)
        return await self._change(lambda s: replace(s, paused=s.paused - {channel}), by, reason)

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Pick up changes other processes make (the CLI, another gateway)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.load()
            except Exception:
                logger.exception("reading the emergency switch failed; trying again")

    def _known(self, channel: str) -> None:
        if channel not in self._channels:
            known = ", ".join(sorted(self._channels))
            raise Unprocessable(
                "validation_error", f"channel: unknown {channel!r} (one of {known})"
            )

    async def _change(
        self, change: Callable[[Switch], Switch], by: str, reason: str, what: str = "channels"
    ) -> Switch:
        at = self._clock()

        def apply(db: sqlite3.Connection) -> tuple[int, Switch, Switch]:
            # Read, change and write in one write transaction (BEGIN IMMEDIATE): a change made
            # meanwhile by another process is built on, never overwritten.
            _, state = _read(db)
            before = Switch() if state is None else Switch.from_json(state)
            after = replace(change(before), by=by, at=at, reason=reason.strip()[:500])
            return _write(db, after, {**after.to_json(), "changed": what}, at), before, after

        async def apply_pg(conn: Any) -> tuple[int, Switch, Switch]:
            # The same on PostgreSQL, where the row lock (FOR UPDATE) makes a concurrent
            # change wait for this one, then build on it.
            _, state = await _pg_read(conn, lock=True)
            before = Switch() if state is None else Switch.from_json(state)
            after = replace(change(before), by=by, at=at, reason=reason.strip()[:500])
            data = {**after.to_json(), "changed": what}
            return await _pg_write(conn, after, data, at), before, after

        async with self._lock:
            seen = self._current
            if isinstance(self._store, PostgresStore):
                changed = await self._store.run(apply_pg, write=True)
            else:
                changed = await self._store.run(apply, write=True)
            self._version, before, after = changed
            self._current = after
        if (before.mode, before.paused) != (after.mode, after.paused):
            logger.warning(
                "emergency switch: %s, paused %s (by %s: %s)",
                after.mode.value,
                sorted(after.paused) or "none",
                by,
                after.reason or "no reason given",
            )
        await self._notify(seen, after)
        return after

    async def _read(self) -> tuple[int, dict[str, Any] | None]:
        if isinstance(self._store, PostgresStore):
            return await self._store.run(_pg_read, write=False)
        return await self._store.run(_read, write=False)

    async def _notify(self, before: Switch, after: Switch) -> None:
        for listener in self._listeners:
            try:
                await listener(before, after)
            except Exception:
                logger.exception("an emergency switch listener failed")


def _read(db: sqlite3.Connection) -> tuple[int, dict[str, Any] | None]:
    row = db.execute("SELECT version, state FROM emergency WHERE id = 1").fetchone()
    return (0, None) if row is None else (int(row[0]), json.loads(row[1]))


def _write(db: sqlite3.Connection, switch: Switch, data: dict[str, Any], at: datetime) -> int:
    state = json.dumps(switch.to_json())
    db.execute(
        "INSERT INTO emergency (id, version, state) VALUES (1, 1, ?) "
        "ON CONFLICT (id) DO UPDATE SET version = version + 1, state = excluded.state",
        (state,),
    )
    db.execute(
        "INSERT INTO events (type, at, data) VALUES ('emergency', ?, ?)",
        (_ts(at), json.dumps(data)),
    )
    db.execute(
        "INSERT INTO audit (at, actor, action, target, data) "
        "VALUES (?, ?, 'emergency.set', NULL, ?)",
        (_ts(at), switch.by, json.dumps(data)),
    )
    return int(db.execute("SELECT version FROM emergency WHERE id = 1").fetchone()[0])


def _ts(value: datetime) -> str:
    # The event log's format (bot/store/sqlite.py): UTC, microseconds.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


# PostgreSQL: the same statements (``state`` is text there too, the JSON of the switch).


async def _pg_read(conn: Any, lock: bool = False) -> tuple[int, dict[str, Any] | None]:
    query = "SELECT version, state FROM emergency WHERE id = 1"
    if lock:
        # No row yet: two first changes both insert; ON CONFLICT below makes the second an
        # update, and the advisory lock makes it wait for the first to commit.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('promptly.emergency'))")
    row = await conn.fetchrow(query + (" FOR UPDATE" if lock else ""))
    return (0, None) if row is None else (int(row[0]), json.loads(row[1]))


async def _pg_write(conn: Any, switch: Switch, data: dict[str, Any], at: datetime) -> int:
    version = await conn.fetchval(
        "INSERT INTO emergency (id, version, state) VALUES (1, 1, $1) "
        "ON CONFLICT (id) DO UPDATE SET version = emergency.version + 1, "
        "state = excluded.state RETURNING version",
        json.dumps(switch.to_json()),
    )
    await conn.execute("INSERT INTO events (type, at, data) VALUES ('emergency', $1, $2)", at, data)
    await conn.execute(
        "INSERT INTO audit (at, actor, action, target, data) "
        "VALUES ($1, $2, 'emergency.set', NULL, $3)",
        at,
        switch.by,
        data,
    )
    return int(version)
