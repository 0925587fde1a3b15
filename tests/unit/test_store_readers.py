"""Modules that run their own queries on the store (metrics, the KB gap report, the emergency
switch), on both backends: the same assertions on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.channels.base import Customer, InboundMessage, OutboundMessage, ReplyType
from bot.emergency import EmergencySwitch
from bot.kb_api import gap_report
from bot.metrics import _Cursor, _read
from bot.store.base import EventCursor, NewTicket, TicketSLA
from bot.store.open import AnyStore
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from knowledge_base import HashingEmbedder, KnowledgeBase, LiveKnowledgeBase
from tests.unit.test_kb_bands import articles
from tests.unit.test_store import pg_database

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Where a database is: a SQLite path, or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "promptly.db")
        return
    async with pg_database() as pg_url:
        yield pg_url


async def opened(url: str) -> AnyStore:
    if url.startswith("postgresql://"):
        return await PostgresStore.open(url)
    return await SQLiteStore.open(Path(url))


@pytest.fixture
async def store(url: str) -> AsyncIterator[AnyStore]:
    backend = await opened(url)
    try:
        yield backend
    finally:
        await backend.close()


def inbound(text: str, mid: str, customer: str = "c1") -> InboundMessage:
    return InboundMessage(
        channel="web",
        customer=Customer(external_id=customer),
        platform_message_id=mid,
        text=text,
        received_at=NOW,
    )


def new_ticket(conversation_id: str) -> NewTicket:
    return NewTicket(
        conversation_id=conversation_id,
        queue="billing",
        priority="normal",
        tier="consumer",
        reason="refund_request",
        created_at=NOW,
        first_response_due=NOW + timedelta(hours=8),
        resolution_due=None,
        sla=TicketSLA(policy={}, calendar="24x7"),
    )


async def test_metrics_read_the_backlog_open_tickets_and_what_the_log_gained(
    store: AnyStore,
) -> None:
    first = await store.receive(inbound("hello", "m1"))
    await store.receive(inbound("hi", "m2", customer="c2"))
    ticket = await store.create_ticket(new_ticket(first.conversation.id))
    cursor = _Cursor(await store.event_cursor())
    await store.fire_timer(
        ticket.id,
        "first_response:breach",
        NOW,
        NOW,
        "sla_breach",
        {"timer": "first_response:breach"},
    )
    await store.log_event(
        "delivery_failed", conversation_id=first.conversation.id, data={"error": "send_failed"}
    )
    await store.log_event("sla_warning", data={})
    rows = await _read(store, cursor)
    logged = rows.logged
    for _ in range(250):  # on PostgreSQL a transaction open anywhere on the server delays the tail
        if len(logged) >= 3:
            break
        await asyncio.sleep(0.02)
        logged += (await _read(store, cursor)).logged
    assert rows.backlog == {"received": 2, "pending": 0}
    assert [t.id for _, t in rows.tickets] == [ticket.id]
    assert sorted(logged, key=str) == sorted(
        [
            ("sla_breach", "web", "first_response:breach", None),
            ("delivery_failed", "web", None, "send_failed"),
            ("sla_warning", None, None, None),
        ],
        key=str,
    )
    again = await _read(store, cursor)  # counted once
    assert again.logged == [] and again.tickets[0][0] == rows.tickets[0][0]
    assert cursor.at > EventCursor(0, 0)


async def test_the_gap_report_lists_declined_and_offered_questions(store: AnyStore) -> None:
    kb = LiveKnowledgeBase(KnowledgeBase.build(articles(), HashingEmbedder(256)))
    questions = ["gift cards for sale", "gift cards for sale?", "exchange a broken lamp"]
    for n, text in enumerate(questions):
        received = await store.receive(inbound(text, f"m{n}", customer=f"c{n}"))
        data: dict[str, object] = {"question": received.message.id, "score": 0.1}
        data |= {"unsure": True} if text.startswith("gift") else {"offered": ["returns"]}
        reply = OutboundMessage(type=ReplyType.ANSWER, text="?")
        await store.add_reply(received.conversation.id, reply, event="answered", data=data, at=NOW)
    report = await gap_report(store, kb, NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert report["questions"] == 3
    gaps = report["gaps"]
    assert [gap["count"] for gap in gaps] == [2, 1]
    assert (gaps[0]["unanswered"], gaps[0]["low_confidence"]) == (2, 0)
    assert gaps[1]["examples"] == ["exchange a broken lamp"]
    empty = await gap_report(store, kb, NOW - timedelta(days=2), NOW - timedelta(days=1))
    assert empty["gaps"] == []


async def test_concurrent_switch_changes_from_two_processes_build_on_each_other(
    url: str,
) -> None:
    stores = [await opened(url), await opened(url)]
    try:
        channels = {"web", "telegram", "email"}
        switches = [EmergencySwitch(s, lambda: datetime.now(UTC), channels) for s in stores]
        await asyncio.gather(
            switches[0].pause("telegram", "lee"),
            switches[1].pause("email", "kim"),
            switches[0].pause("web", "lee"),
        )
        assert (await EmergencySwitch(stores[1], NOW.now, channels).load()).paused == channels
        logged = [e for e in await stores[0].events() if e.type == "emergency"]
        assert len(logged) == 3
    finally:
        for s in stores:
            await s.close()
