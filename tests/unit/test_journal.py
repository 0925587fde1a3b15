"""The database away: messages journaled and acked from memory, stored and answered once when
it is back (bot/journal.py, Pipeline.accept)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import bot.pipeline
from bot import keys
from bot.app import create_app
from bot.channels.base import AckKind, Customer, InboundMessage, OutboundMessage, ReplyType
from bot.journal import Entry, Journal
from bot.settings import Settings
from tests.unit.test_gateway import frames, make_settings, post, wait_for_rasa

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def entry(mid: str, text: str = "hello", customer: str = "c1") -> Entry:
    message = InboundMessage(
        channel="web",
        customer=Customer(customer, "Ann", None),
        platform_message_id=mid,
        text=text,
        received_at=NOW,
        reply_to={"thread": [1, 2]},
    )
    receipt = OutboundMessage(
        type=ReplyType.ACK, kind=AckKind.RECEIPT, text="got it", in_reply_to=mid
    )
    return Entry(message, receipt, NOW, 12.5)


class Applied:
    def __init__(self, fail_at: int | None = None) -> None:
        self.entries: list[Entry] = []
        self.fail_at = fail_at

    async def __call__(self, e: Entry) -> None:
        if self.fail_at is not None and len(self.entries) == self.fail_at:
            raise RuntimeError("the database went away again")
        self.entries.append(e)


async def test_replay_hands_back_every_message_in_order_then_removes_the_file(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    for n in range(3):
        await journal.append(entry(f"m{n}", text=f"text {n}"))
    await journal.delivered(("web", "c1", "m1"), {"platform_ids": ["p1"]})
    assert journal.waiting == 3
    assert Journal(tmp_path / "journal.jsonl").waiting == 3  # what a restarted process sees
    applied = Applied()
    assert await journal.replay(applied) == 3
    assert [e.message.text for e in applied.entries] == ["text 0", "text 1", "text 2"]
    assert applied.entries[0] == entry("m0", text="text 0")  # everything survives the file
    assert applied.entries[1].delivery == {"platform_ids": ["p1"]}
    assert journal.waiting == 0 and list(tmp_path.iterdir()) == []
    assert await journal.replay(applied) == 0


async def test_a_replay_cut_short_is_repeated_whole_before_what_came_after(tmp_path):
    journal = Journal(tmp_path / "journal.jsonl")
    await journal.append(entry("a"))
    await journal.append(entry("b"))
    with pytest.raises(RuntimeError):
        await journal.replay(Applied(fail_at=1))
    await journal.append(entry("c"))  # journaled while the first replay was stuck
    applied = Applied()
    assert await journal.replay(applied) == 3
    assert [e.message.platform_message_id for e in applied.entries] == ["a", "b", "c"]


async def test_a_torn_last_record_is_ignored_and_a_bad_one_is_kept_aside(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    await journal.append(entry("a"))
    with path.open("a") as f:
        f.write('{"type": "message", "channel": "web"}\n')  # unreadable: no customer
    await journal.append(entry("b"))
    with path.open("a") as f:
        f.write('{"type": "message", "chan')  # a crash in the middle of a write
    applied = Applied()
    assert await Journal(path).replay(applied) == 2
    assert [e.message.platform_message_id for e in applied.entries] == ["a", "b"]
    rejected = (tmp_path / "journal.jsonl.rejected").read_text().splitlines()
    assert [json.loads(line)["channel"] for line in rejected] == ["web"]


async def test_a_journal_that_cannot_be_written_raises(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(OSError):
        await Journal(blocker / "journal.jsonl").append(entry("a"))


# -- the gateway with its database locked by another process ------------------------------


def with_storage(settings: Settings, **changes: Any) -> Settings:
    storage = settings.storage.model_copy(update=changes)
    return settings.model_copy(update={"storage": storage})


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the database's write lock, as a long backup or a stuck process would."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        db.execute("ROLLBACK")
        db.close()


@pytest.fixture
def quick_retry(monkeypatch):
    monkeypatch.setattr(bot.pipeline, "STORAGE_RETRY_SECONDS", 0.2)


async def health(client) -> dict[str, Any]:
    return await (await client.get("/health")).json()


async def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_locked_database_gets_receipts_from_memory_and_each_message_answered_once(
    tmp_path, aiohttp_client, rasa_server, fake_rasa, quick_retry
):
    settings = with_storage(
        make_settings(tmp_path, rasa_server.port), journal_after=timedelta(milliseconds=200)
    )
    client = await aiohttp_client(create_app(settings))
    await wait_for_rasa(client)
    first = await (await post(client, "hello", mid="before")).json()
    conversation_id = first["conversation_id"]
    await frames(client, conversation_id)
    with locked(tmp_path / "promptly.db"):
        started = time.monotonic()
        response = await post(
            client, "where is my parcel", mid="during", conversation_id=conversation_id
        )
        elapsed = time.monotonic() - started
        assert response.status == 202
        body = await response.json()
        assert elapsed < 0.6  # the window is 600 ms: the receipt made it
        assert body["journaled"] is True and body["message_id"] is None
        assert body["conversation_id"] == conversation_id and not body["duplicate"]
        assert body["receipt"]["kind"] == "receipt" and body["receipt"]["in_reply_to"] == "during"
        again = await (
            await post(client, "where is my parcel", mid="during", conversation_id=conversation_id)
        ).json()
        assert again["duplicate"] is True  # a resend is not journaled twice
        status = await health(client)
        assert status["components"]["database"] == "down"
        assert status["journal"] == {"waiting": 1}
        # Being replayed already (the replay waits for the lock) or not yet.
        [path] = (tmp_path / "var").glob("journal.jsonl*")
        journal = path.read_text().splitlines()
        assert len(journal) == 1 and json.loads(journal[0])["text"] == "where is my parcel"
    replies = await frames(client, conversation_id, until=3, timeout=30)
    await asyncio.sleep(0.5)  # nothing more may come
    replies = await frames(client, conversation_id)
    late = [r for r in replies if r["in_reply_to"] == "during"]
    assert [(r["type"], r.get("kind")) for r in late] == [("ack", "receipt"), ("answer", None)]
    assert late[0]["text"] == body["receipt"]["text"]
    assert late[1]["text"] == "echo: where is my parcel"
    assert [c["message"] for c in fake_rasa.calls].count("where is my parcel") == 1
    await wait_until(lambda: _journal_empty(client))
    assert not (tmp_path / "var" / "journal.jsonl").exists()
    events = await client.server.app[keys.STORE].events(conversation_id)
    acked = [e for e in events if e.type == "acked" and e.data.get("source") == "journal"]
    assert len(acked) == 1 and acked[0].data["latency_ms"] < 600


async def _journal_empty(client) -> bool:
    status = await health(client)
    return status["journal"]["waiting"] == 0 and status["components"]["database"] == "up"


async def test_a_new_web_customer_on_a_socket_learns_the_conversation_when_it_is_stored(
    tmp_path, aiohttp_client, rasa_server, quick_retry
):
    settings = with_storage(
        make_settings(tmp_path, rasa_server.port), journal_after=timedelta(milliseconds=200)
    )
    client = await aiohttp_client(create_app(settings))
    await wait_for_rasa(client)
    await (await post(client, "warm up", mid="w", customer="other")).json()  # creates the db
    async with client.ws_connect("/ws", params={"customer_id": "new"}) as ws:
        with locked(tmp_path / "promptly.db"):
            await ws.send_json(
                {"client_message_id": "n1", "text": "hello there", "customer": {"id": "new"}}
            )
            accepted = await ws.receive_json(timeout=2)
            assert accepted["type"] == "accepted" and accepted["journaled"] is True
            assert accepted["conversation_id"] is None
            assert accepted["receipt"]["text"] == bot.pipeline.JOURNALED_TEXT
        announced = await ws.receive_json(timeout=20)
        assert announced["type"] == "accepted" and announced["client_message_id"] == "n1"
        conversation_id = announced["conversation_id"]
        seen = []
        while not any(f.get("type") == "answer" for f in seen):
            seen.append(await ws.receive_json(timeout=10))
    assert [(f["type"], f.get("kind")) for f in seen] == [
        ("customer", None),
        ("ack", "receipt"),
        ("answer", None),
    ]
    assert {f["conversation_id"] for f in seen} == {conversation_id}


async def test_a_journal_left_by_a_crashed_process_is_replayed_at_start(
    tmp_path, aiohttp_client, rasa_server
):
    settings = make_settings(tmp_path, rasa_server.port)
    await Journal(tmp_path / "var" / "journal.jsonl").append(entry("left", text="still there?"))
    client = await aiohttp_client(create_app(settings))
    await wait_for_rasa(client)
    await wait_until(lambda: _journal_empty(client))
    store = client.server.app[keys.STORE]
    [conversation] = await store.conversations_of(await store.customer_id_for("web", "c1"))
    replies = await frames(client, conversation.id, until=2)
    assert [(r["type"], r.get("kind"), r["text"]) for r in replies] == [
        ("ack", "receipt", "got it"),
        ("answer", None, "echo: still there?"),
    ]


async def test_without_a_journal_a_locked_database_is_a_503(tmp_path, aiohttp_client, rasa_server):
    settings = with_storage(make_settings(tmp_path, rasa_server.port), journal=None)
    client = await aiohttp_client(create_app(settings))
    await wait_for_rasa(client)
    await post(client, "warm up", mid="w")
    with locked(tmp_path / "promptly.db"):
        response = await post(client, "hello", mid="x")
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "storage_unavailable"


async def test_a_turn_the_database_cuts_short_sends_its_receipt_from_memory_once(
    tmp_path, aiohttp_client, rasa_server, fake_rasa, quick_retry
):
    """Stored just before the database went away, before its turn stored a receipt: the
    receipt goes out from memory in the window (a provisional frame), and one receipt is
    stored once it is back."""
    settings = make_settings(tmp_path, rasa_server.port)
    client = await aiohttp_client(create_app(settings))
    await wait_for_rasa(client)
    first = await (await post(client, "hello", mid="before")).json()
    conversation_id = first["conversation_id"]
    await frames(client, conversation_id)
    holder = sqlite3.connect(tmp_path / "promptly.db", isolation_level=None)

    went: list[bool] = []

    async def go_away(body: dict[str, Any]) -> None:
        if body["message"] == "where is it" and not went:
            went.append(True)
            holder.execute("BEGIN IMMEDIATE")  # while Rasa thinks, the database goes
            await asyncio.sleep(1.0)  # past the 600 ms window: the turn writes its receipt

    fake_rasa.action = go_away
    params = {"customer_id": "c1", "conversation_id": conversation_id, "after": "1000"}
    try:
        async with client.ws_connect("/ws", params=params) as ws:
            response = await post(client, "where is it", mid="cut", conversation_id=conversation_id)
            assert response.status == 202 and not (await response.json()).get("journaled")
            receipt = await ws.receive_json(timeout=15)
            assert receipt["provisional"] is True and receipt["kind"] == "receipt"
            assert receipt["in_reply_to"] == "cut" and "seq" not in receipt
            holder.execute("ROLLBACK")
            seen = [await ws.receive_json(timeout=20)]
            while not any(f.get("type") == "answer" for f in seen):
                seen.append(await ws.receive_json(timeout=20))
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    await asyncio.sleep(0.5)
    replies = [r for r in await frames(client, conversation_id) if r["in_reply_to"] == "cut"]
    assert [(r["type"], r.get("kind")) for r in replies] == [("ack", "receipt"), ("answer", None)]
    # One receipt stored: the one sent from memory, or the turn's own if its write, stalled
    # past the window, landed once the lock went (the replay then stores nothing more).
    assert replies[0]["text"] in (receipt["text"], bot.pipeline.RECEIPT_TEXT)
