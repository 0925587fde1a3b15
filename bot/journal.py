"""Messages accepted while the database took no writes, kept in a local append-only file.

When the store cannot take a message inside its ack budget (locked past its timeout, full,
unreachable), the pipeline appends it here with the receipt the customer was sent from memory
and answers the request at once. Each record is one JSON line, written and fsync'ed before
the request is answered, so a crash after the ack loses nothing. When the database takes
writes again, ``replay`` hands every record to the pipeline in order and the file is removed.

Replay is safe to repeat: the store's ``receive`` is idempotent on (channel, customer,
platform message id), and the receipt is recorded only while the stored message has no ack.
So a crash mid-replay only means the next replay skips what is already stored.

Records: ``{"type": "message", ...}`` for a message and its receipt, then optionally
``{"type": "delivery", "key": ..., "info": ...}`` once a platform confirmed the receipt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.channels.base import AckKind, Customer, InboundMessage, OutboundMessage, ReplyType

logger = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (channel, customer external id, platform message id)


def key_of(message: InboundMessage) -> Key:
    return (message.channel, message.customer.external_id, message.platform_message_id)


def topic(key: Key) -> str:
    """The hub topic a web socket follows until its journaled message has a conversation."""
    return "journal:" + json.dumps(list(key))


@dataclass(frozen=True)
class Entry:
    message: InboundMessage
    receipt: OutboundMessage  # what the customer was told from memory
    acked_at: datetime
    latency_ms: float
    delivery: dict[str, Any] | None = None  # the platform's confirmation of the receipt

    @property
    def key(self) -> Key:
        return key_of(self.message)


@dataclass
class _Pending:
    entries: list[Entry] = field(default_factory=list)
    delivered: dict[Key, dict[str, Any]] = field(default_factory=dict)


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._replaying = path.with_name(path.name + ".replaying")
        self._rejected = path.with_name(path.name + ".rejected")
        self._lock = asyncio.Lock()  # appends and the rotation do not interleave
        self._delivered: dict[Key, dict[str, Any]] = {}  # this run's confirmations
        self._waiting = self._count_existing()

    @property
    def waiting(self) -> int:
        """Messages journaled and not yet replayed (as of this process's view)."""
        return self._waiting

    async def append(self, entry: Entry) -> None:
        """Durably add a message (fsync'ed before it returns); raises ``OSError`` if it cannot."""
        await self._write(_encode(entry))
        self._waiting += 1

    async def delivered(self, key: Key, info: dict[str, Any]) -> None:
        """Record that a platform confirmed the receipt of the message with ``key``."""
        self._delivered[key] = info
        try:
            await self._write({"type": "delivery", "key": list(key), "info": info})
        except OSError:  # without it the receipt may be sent once more: never lost
            logger.warning("could not record the delivery of a journaled receipt", exc_info=True)

    def delivery(self, key: Key) -> dict[str, Any] | None:
        """The platform's confirmation of a journaled receipt, once this run has it."""
        return self._delivered.get(key)

    async def replay(self, apply: Callable[[Entry], Awaitable[None]]) -> int:
        """Hand every journaled message to ``apply`` in order; the file goes once all are in.

        An ``apply`` that raises stops the replay with that error; what was not applied stays
        for the next call (what was is skipped then by the store's idempotency).
        """
        async with self._lock:
            if not self._replaying.exists():
                if not self.path.exists():
                    return 0
                # New messages go to a fresh file while these are replayed.
                await asyncio.to_thread(os.replace, self.path, self._replaying)
            elif self.path.exists():
                # A replay was cut short (a crash, the database failing again): it goes first,
                # then what came after it, in order.
                await asyncio.to_thread(_concatenate, self.path, self._replaying)
        pending = await asyncio.to_thread(self._load, self._replaying)
        delivered = {**pending.delivered, **self._delivered}
        for entry in pending.entries:
            await apply(replace(entry, delivery=delivered.get(entry.key)))
        await asyncio.to_thread(self._replaying.unlink)
        for entry in pending.entries:
            self._delivered.pop(entry.key, None)
        self._waiting = max(self._waiting - len(pending.entries), 0)
        if pending.entries:
            logger.info("replayed %d journaled messages", len(pending.entries))
        return len(pending.entries)

    async def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        async with self._lock:
            await asyncio.to_thread(_append_line, self.path, line.encode())

    def _count_existing(self) -> int:
        paths = (self._replaying, self.path)
        return sum(len(self._load(p, keep_bad=False).entries) for p in paths if p.exists())

    def _load(self, path: Path, keep_bad: bool = True) -> _Pending:
        pending = _Pending()
        lines = path.read_bytes().split(b"\n")
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                if record.get("type") == "delivery":
                    pending.delivered[_key(record["key"])] = dict(record["info"])
                else:
                    pending.entries.append(_decode(record))
            except (ValueError, KeyError, TypeError) as e:
                if number == len(lines):  # no newline: the write a crash cut short
                    logger.warning("%s: ignoring a torn last record", path)
                    continue
                if not keep_bad:
                    continue
                # Kept aside for a person to read, never dropped silently.
                logger.error(
                    "%s line %d: unreadable record (%s), moved to %s",
                    path,
                    number,
                    e,
                    self._rejected,
                )
                with self._rejected.open("ab") as out:
                    out.write(raw + b"\n")
        return pending


def _append_line(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # after a torn write, the next record starts on its own line
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def _concatenate(source: Path, target: Path) -> None:
    data = source.read_bytes()
    if data and not data.endswith(b"\n"):
        data += b"\n"
    _append_line(target, data)
    source.unlink()


def _key(value: Any) -> Key:
    channel, customer, message_id = (str(v) for v in value)
    return (channel, customer, message_id)


def _encode(entry: Entry) -> dict[str, Any]:
    msg = entry.message
    customer = msg.customer
    return {
        "type": "message",
        "channel": msg.channel,
        "customer": {
            "external_id": customer.external_id,
            "name": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "verified": customer.verified,
        },
        "platform_message_id": msg.platform_message_id,
        "text": msg.text,
        "received_at": msg.received_at.isoformat(),
        "conversation_id": msg.conversation_id,
        "attachments": list(msg.attachments),
        "kind": msg.kind,
        "reply_to": dict(msg.reply_to),
        "receipt": {
            "text": entry.receipt.text,
            "in_reply_to": entry.receipt.in_reply_to,
            "extra": entry.receipt.extra,
        },
        "acked_at": entry.acked_at.isoformat(),
        "latency_ms": entry.latency_ms,
    }


def _decode(record: dict[str, Any]) -> Entry:
    customer = record["customer"]
    receipt = record["receipt"]
    message = InboundMessage(
        channel=str(record["channel"]),
        customer=Customer(
            external_id=str(customer["external_id"]),
            name=customer.get("name"),
            email=customer.get("email"),
            phone=customer.get("phone"),
            verified=bool(customer.get("verified", False)),
        ),
        platform_message_id=str(record["platform_message_id"]),
        text=str(record["text"]),
        received_at=datetime.fromisoformat(record["received_at"]),
        conversation_id=record.get("conversation_id"),
        attachments=tuple(record.get("attachments") or ()),
        kind=str(record.get("kind", "text")),
        reply_to=dict(record.get("reply_to") or {}),
    )
    return Entry(
        message=message,
        receipt=OutboundMessage(
            type=ReplyType.ACK,
            kind=AckKind.RECEIPT,
            text=str(receipt["text"]),
            in_reply_to=receipt.get("in_reply_to"),
            extra=dict(receipt.get("extra") or {}),
        ),
        acked_at=datetime.fromisoformat(record["acked_at"]),
        latency_ms=float(record["latency_ms"]),
    )
