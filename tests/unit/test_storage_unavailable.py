"""A database that takes no writes (full, locked, failing): a clear 503 that stores nothing,
and the gateway carries on when it takes writes again."""

from __future__ import annotations

import asyncio
import sqlite3

import bot.pipeline
from bot import keys
from bot.app import create_app
from bot.errors import StorageUnavailable
from bot.store.worker import _translated
from tests.unit.test_gateway import frames, make_settings, post, wait_for_rasa
from tests.unit.test_journal import with_storage


def fill_up(db: sqlite3.Connection, extra_pages: int = 0) -> None:
    """Cap the file at its current size (SQLite then reports SQLITE_FULL, as on a full disk)."""
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


def test_only_errors_of_an_unavailable_database_are_translated() -> None:
    db = sqlite3.connect(":memory:")
    try:
        db.execute("SELECT * FROM no_such_table")
    except sqlite3.OperationalError as bug:
        assert _translated(bug) is bug  # a statement's bug stays a 500
    db.execute("CREATE TABLE t (x TEXT)")
    fill_up(db)
    try:
        db.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    except sqlite3.OperationalError as full:
        unavailable = _translated(full)
        assert isinstance(unavailable, StorageUnavailable)
        assert unavailable.__cause__ is full and unavailable.retry_after == 5
    else:
        raise AssertionError("the insert should not fit")


async def test_a_full_database_refuses_with_503_stores_nothing_and_recovers(
    tmp_path, aiohttp_client, rasa_server
) -> None:
    settings = with_storage(make_settings(tmp_path, rasa_server.port), journal=None)
    client = await aiohttp_client(create_app(settings))
    await wait_for_rasa(client)
    store = client.server.app[keys.STORE]
    await store.run(fill_up, write=False)
    for n in range(100):  # the file's free pages fill first
        refused = await post(client, "x" * 3900, mid=f"big{n}", customer=f"c{n}")
        if refused.status != 202:
            break
    assert refused.status == 503 and refused.headers["Retry-After"] == "5"
    body = await refused.json()
    assert body["error"]["code"] == "storage_unavailable"
    assert "nothing was stored" in body["error"]["message"]
    await store.run(lambda db: fill_up(db, extra_pages=10_000), write=False)
    again = await post(client, "x" * 3900, mid=f"big{n}", customer=f"c{n}")  # the resend
    assert again.status == 202
    accepted = await again.json()
    assert not accepted["duplicate"]  # the first try left nothing behind
    replies = await frames(client, accepted["conversation_id"], customer=f"c{n}")
    assert replies and replies[0]["type"] == "ack"


async def test_a_full_database_journals_and_stores_it_all_when_space_returns(
    tmp_path, aiohttp_client, rasa_server, monkeypatch
) -> None:
    monkeypatch.setattr(bot.pipeline, "STORAGE_RETRY_SECONDS", 0.2)
    client = await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port)))
    await wait_for_rasa(client)
    store = client.server.app[keys.STORE]
    await store.run(fill_up, write=False)
    for n in range(100):
        response = await post(client, "x" * 3900, mid=f"big{n}", customer=f"c{n}")
        assert response.status == 202
        if (await response.json()).get("journaled"):
            break
    else:
        raise AssertionError("the database never filled up")
    await store.run(lambda db: fill_up(db, extra_pages=10_000), write=False)
    for _ in range(200):
        status = await (await client.get("/health")).json()
        if status["journal"]["waiting"] == 0:
            break
        await asyncio.sleep(0.05)
    customer = await store.customer_id_for("web", f"c{n}")
    [conversation] = await store.conversations_of(customer)
    replies = await frames(client, conversation.id, customer=f"c{n}", until=2)
    assert [(r["type"], r.get("kind")) for r in replies] == [("ack", "receipt"), ("answer", None)]
