"""CSAT on every channel: a written rating after resolve (web and Telegram through the real
app), the widget's tap replacing it, anything else still reaching Rasa; unsure KB answers in
the event log and the unanswered rate; CSAT by topic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot import keys
from bot.analytics import conversations as conv
from bot.analytics.model import Log
from bot.analytics.stats import compute
from bot.app import create_app
from bot.handoff import csat
from bot.store.base import Event, Store
from bot.store.sqlite import SQLiteStore
from tests.fakes.meta import FakeGraph
from tests.fakes.telegram import FakeTelegram
from tests.unit.conftest import FakeRasa
from tests.unit.test_analytics import SCENARIO, handoff, log_of, options
from tests.unit.test_channel_gateway import SECRETS, conversation_of, webhook
from tests.unit.test_channel_gateway import settings as platform_settings
from tests.unit.test_gateway import TOKEN, frames, make_settings, open_ticket, post, wait_for_rasa

AUTH = {"Authorization": f"Bearer {TOKEN}"}
Client = TestClient[Any, Any]

# -- the grammar -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rating", "comment"),
    [
        ("5", 5, None),
        ("4/5", 4, None),
        ("5 - great service", 5, "great service"),
        ("⭐⭐⭐⭐", 4, None),
        ("★★★ slow but kind", 3, "slow but kind"),
        ("five", 5, None),
        ("Two stars. The form was confusing", 2, "The form was confusing"),
        (" 3 out of 5, ok", 3, "ok"),
        ("5️⃣", 5, None),
        ("1!", 1, None),
    ],
)
def test_written_ratings(text: str, rating: int, comment: str | None) -> None:
    assert csat.parse(text) == csat.Written(rating, comment)


@pytest.mark.parametrize(
    "text",
    ["hello", "5 items are missing", "10", "5.5", "4,5", "5/10", "one more thing", "⭐" * 6, ""],
)
def test_other_text_is_not_a_rating(text: str) -> None:
    assert csat.parse(text) is None


# -- when a written rating counts --------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await SQLiteStore.open(tmp_path / "csat.db")
    yield opened
    await opened.close()


async def test_the_question_is_outstanding_until_rated_superseded_or_a_week_old(
    store: Store,
) -> None:
    asked = datetime(2026, 11, 20, 10, tzinfo=UTC)
    ratings = csat.Ratings(store, lambda: asked)
    assert await ratings.outstanding("c1", asked) is None  # never asked
    await store.log_event("resolved", conversation_id="c1", ticket_id="t1", at=asked)
    assert await ratings.outstanding("c1", asked + timedelta(days=6)) == "t1"
    assert await ratings.outstanding("c1", asked + csat.ANSWER_WINDOW) is None  # too late
    await store.log_event("handed_off", conversation_id="c1", ticket_id="t2", at=asked)
    assert await ratings.outstanding("c1", asked) is None  # a newer request is under way
    await store.log_event("resolved", conversation_id="c1", ticket_id="t2", at=asked)
    assert await ratings.outstanding("c1", asked) == "t2"  # its own question
    await store.log_event("csat", conversation_id="c1", ticket_id="t1", at=asked)
    assert await ratings.outstanding("c1", asked) == "t2"  # a late tap on t1 changes nothing
    await store.log_event("csat", conversation_id="c1", ticket_id="t2", at=asked)
    assert await ratings.outstanding("c1", asked) is None  # rated


# -- the web channel -------------------------------------------------------------------------


@pytest.fixture
async def web_client(tmp_path: Path, rasa_server: TestServer, aiohttp_client: Any) -> Client:
    client: Client = await aiohttp_client(create_app(make_settings(tmp_path, port(rasa_server))))
    await wait_for_rasa(client)
    return client


def port(server: TestServer) -> int:
    assert server.port is not None
    return server.port


async def resolve(client: Client, ticket_id: str) -> None:
    response = await client.post(f"/api/agent/tickets/{ticket_id}/resolve", headers=AUTH)
    assert response.status == 200


async def csat_events(client: Client, conversation_id: str) -> list[Event]:
    return [e for e in await client.app[keys.STORE].events(conversation_id) if e.type == "csat"]


async def test_web_written_rating_is_thanked_kept_from_rasa_and_a_tap_replaces_it(
    web_client: Client, fake_rasa: FakeRasa, tmp_path: Path
) -> None:
    client = web_client
    conversation_id = (await (await post(client, "I want a refund")).json())["conversation_id"]
    await frames(client, conversation_id, until=1)
    ticket = await open_ticket(tmp_path, conversation_id)
    await resolve(client, ticket.id)
    await frames(client, conversation_id, until=2)  # the question
    asked = len(fake_rasa.calls)

    await post(client, "5 - great service", mid="m2", conversation_id=conversation_id)
    replies = await frames(client, conversation_id, until=3)
    assert replies[-1]["text"] == csat.thanks(5)
    assert (replies[-1]["type"], replies[-1]["kind"]) == ("ack", "solution")
    # The widget marks the rating on the buttons it drew for that request.
    assert replies[-1]["rated"] == {"ticket_id": ticket.id, "rating": 5}
    [written] = await csat_events(client, conversation_id)
    assert (written.data["rating"], written.data["comment"]) == (5, "great service")
    assert written.message_id is not None and written.ticket_id == ticket.id
    assert len(fake_rasa.calls) == asked  # the rating never reached the bot

    tapped = await client.post(
        f"/api/conversations/{conversation_id}/csat",
        json={"customer_id": "c1", "ticket_id": ticket.id, "rating": 3},
    )
    assert tapped.status == 201 and (await tapped.json())["replaced"]
    first, second = await csat_events(client, conversation_id)
    assert second.data["replaces"]["seq"] == first.seq

    # Rated now: another "4" is an ordinary message.
    await post(client, "4", mid="m3", conversation_id=conversation_id)
    replies = await frames(client, conversation_id, until=4)
    assert replies[-1]["text"] == "echo: 4"
    assert len(await csat_events(client, conversation_id)) == 2


async def test_other_text_after_resolve_still_reaches_rasa(
    web_client: Client, fake_rasa: FakeRasa, tmp_path: Path
) -> None:
    client = web_client
    conversation_id = (await (await post(client, "help")).json())["conversation_id"]
    await frames(client, conversation_id, until=1)
    ticket = await open_ticket(tmp_path, conversation_id)
    await resolve(client, ticket.id)
    await frames(client, conversation_id, until=2)

    await post(client, "5 items are still missing", mid="m2", conversation_id=conversation_id)
    replies = await frames(client, conversation_id, until=3)
    assert replies[-1]["text"] == "echo: 5 items are still missing"
    assert fake_rasa.calls[-1]["message"] == "5 items are still missing"
    assert await csat_events(client, conversation_id) == []


async def test_unsure_answers_are_marked_in_the_log_and_count_as_unanswered(
    web_client: Client, fake_rasa: FakeRasa
) -> None:
    async def unsure(body: dict[str, Any]) -> list[dict[str, Any]]:
        custom = {"promptly": "answer", "text": "Not sure.", "citations": [], "unsure": True}
        return [{"recipient_id": body["sender"], "custom": custom}]

    client = web_client
    fake_rasa.action = unsure
    conversation_id = (await (await post(client, "how do I frobnicate?")).json())["conversation_id"]
    await frames(client, conversation_id, until=1)
    fake_rasa.action = None
    await post(client, "hours?", mid="m2", conversation_id=conversation_id)
    await frames(client, conversation_id, until=2)

    log = await client.app[keys.STORE].events(conversation_id)
    [marked] = [e for e in log if e.type == "acked" and e.data.get("unsure")]
    assert marked.data["unsure"] is True
    received = [e.message_id for e in log if e.type == "received"]
    assert conv.unanswered_messages(Log(events=tuple(log))) == {received[0]}


# -- a messaging platform ----------------------------------------------------------------------


@pytest.fixture
async def telegram_client(
    tmp_path: Path, rasa_server: TestServer, aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Client, FakeTelegram]]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    tg = FakeTelegram()
    async with tg, FakeGraph() as graph:
        app = create_app(platform_settings(tmp_path, port(rasa_server), tg.url, graph.url))
        client: Client = await aiohttp_client(app)
        await wait_for_rasa(client)
        yield client, tg


def unescaped(markdown: str) -> str:
    """Telegram's MarkdownV2 escapes, taken out."""
    return markdown.replace("\\", "")


async def test_telegram_rating_is_recorded_thanked_on_telegram_and_kept_from_rasa(
    telegram_client: tuple[Client, FakeTelegram], fake_rasa: FakeRasa, tmp_path: Path
) -> None:
    client, tg = telegram_client
    assert await webhook(client, "telegram", tg.signed_update("I want a refund")) == 200
    await tg.wait_for_calls(1)
    conversation_id = conversation_of(tmp_path, "telegram")
    ticket = await open_ticket(tmp_path, conversation_id, reason="refund_request")
    await resolve(client, ticket.id)
    calls = await tg.wait_for_calls(2)
    assert csat.QUESTION in unescaped(calls[-1].json["text"])
    asked = len(fake_rasa.calls)

    assert await webhook(client, "telegram", tg.signed_update("⭐⭐⭐⭐")) == 200
    calls = await tg.wait_for_calls(3)
    assert unescaped(calls[-1].json["text"]) == csat.thanks(4)
    [rating] = await csat_events(client, conversation_id)
    assert (rating.data["rating"], rating.data["comment"]) == (4, None)
    assert len(fake_rasa.calls) == asked

    assert await webhook(client, "telegram", tg.signed_update("thanks!")) == 200
    calls = await tg.wait_for_calls(4)
    assert unescaped(calls[-1].json["text"]) == "echo: thanks!"
    await asyncio.sleep(0.1)
    assert len(await csat_events(client, conversation_id)) == 1

    # The written rating is a rating, not a bot session; its topic is the handoff's intent.
    log = Log(
        events=tuple(await client.app[keys.STORE].events()), channels={conversation_id: "telegram"}
    )
    now = datetime.now(UTC)
    period = options(since=now - timedelta(hours=1), until=now + timedelta(minutes=1))
    report = compute(log, period)
    assert report.csat.by["topic"]["refund_request"].mean == 4
    assert report.csat.by["channel"]["telegram"].count == 1
    [session] = conv.sessions(log, period)
    assert rating.message_id not in session.messages and len(session.messages) == 2


# -- analytics ---------------------------------------------------------------------------------


def test_csat_by_topic_is_the_handoff_intent_without_cues() -> None:
    report = compute(log_of(SCENARIO), options())
    by_topic = report.csat.by["topic"]
    assert set(by_topic) == {"refund", "human"}  # "refund, urgent" counts as refund
    assert (by_topic["refund"].mean, by_topic["human"].mean) == (4, 5)


def test_unsure_replies_join_pending_messages_in_the_unanswered_rate() -> None:
    t = datetime(2026, 11, 17, 9, tzinfo=UTC)
    unsure = {"latency_ms": 10, "source": "rasa", "type": "answer", "unsure": True}
    rows: list[tuple[Any, ...]] = [
        (t, "received", "c1", "q1", None, {}),
        (t, "acked", "c1", "q1", None, {"latency_ms": 10, "type": "ack", "kind": "receipt"}),
        (t, "answered", "c1", "r1", None, {**unsure, "question": "q1"}),
        (t, "received", "c1", "q2", None, {}),
        (t, "acked", "c1", "q2", None, {"latency_ms": 10, "kind": "solution"}),
        (t, "received", "c3", "q3", None, {}),
        (t, "pending", "c3", "q3", None, {"reason": "rasa_unavailable"}),
        (t, "handed_off", "c3", None, "t9", handoff("billing", "normal", "consumer", "x", False)),
    ]
    log = Log(events=tuple(Event(i + 1, *row) for i, row in enumerate(rows)))
    assert conv.unanswered_messages(log) == {"q1", "q3"}
    unanswered = compute(log, options()).sessions.unanswered
    assert (unanswered.hits, unanswered.count) == (2, 3)
