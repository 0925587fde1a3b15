"""The content-gap report: grouping questions by meaning (the real model on a fixture written
here), ``GET /api/kb/gaps`` over what the bot declined or only offered through the gateway,
``promptly kb gaps``; and a gateway serving articles that another process imported."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from bot import cli, keys
from bot.app import create_app
from bot.channels.base import Customer, InboundMessage
from bot.console.article_content import make_content
from bot.console.articles import ArticleStore
from bot.hub import Hub
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from knowledge_base import Article, HashingEmbedder, KnowledgeBase, LiveKnowledgeBase
from knowledge_base.embedder import Vectors
from knowledge_base.gaps import Asked, group
from knowledge_base.importers import Location, Record
from tests.unit.conftest import FakeRasa
from tests.unit.test_gateway import TOKEN, frames, make_settings, post, wait_for_rasa
from tests.unit.test_kb_bands import articles
from tests.unit.test_kb_import import config
from tests.unit.test_store import store as backend  # noqa: F401  (both backends)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# Three needs the fixture KB has no article for, worded as customers word them, plus one-offs.
GIFT_CARDS = [
    "Do you sell gift cards?",
    "can i buy a gift card for my sister",
    "Is there a gift voucher I can send someone?",
    "gift certificate available?",
]
STORE_HOURS = [
    "What time does your shop in Leeds open?",
    "opening hours of the Leeds store",
    "Is the Leeds shop open on Sunday?",
]
CRYPTO = ["Can I pay with bitcoin?", "do you accept crypto payments"]


def asked(texts: Sequence[str], unanswered: bool = True) -> list[Asked]:
    return [Asked(text, T0 + timedelta(minutes=i), unanswered, 0.2) for i, text in enumerate(texts)]


@pytest.fixture(scope="module")
def embed() -> Any:
    from knowledge_base import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder().encode


def test_questions_group_by_meaning_largest_first(embed: Any) -> None:
    questions = asked(GIFT_CARDS + STORE_HOURS + CRYPTO)
    questions += asked(["Do you sell gift cards?"] * 3, unanswered=False)  # repeats count
    grouping = group(questions, embed)
    sizes = [(gap.count, set(gap.examples)) for gap in grouping.gaps]
    assert [count for count, _ in sizes] == [7, 3, 2]
    assert sizes[0][1] <= set(GIFT_CARDS) and sizes[1][1] <= set(STORE_HOURS)
    assert sizes[2][1] == set(CRYPTO)
    gift = grouping.gaps[0]
    assert (gift.unanswered, len(gift.examples)) == (4, 3)
    assert gift.examples[0] in GIFT_CARDS
    assert grouping.questions == len(questions) and grouping.left_out == 0


def unit(*values: float) -> Vectors:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_rare_texts_past_the_cap_are_counted_as_left_out() -> None:
    table = {"a": unit(1, 0), "A": unit(1, 0), "b": unit(0, 1), "c": unit(-1, 0)}

    def embed(texts: Sequence[str]) -> Vectors:
        return np.stack([table[t] for t in texts])

    grouping = group(asked(["a", "a", "c", "b", " A "]), embed, max_texts=2)
    # " A " is "a" asked again; "b" and "c" were asked once each, and "c" sorts last.
    assert [(gap.count, gap.examples) for gap in grouping.gaps] == [(3, ("A",)), (1, ("b",))]
    assert grouping.left_out == 1
    assert group([], embed).gaps == ()
    with pytest.raises(ValueError, match="similarity"):
        group(asked(["a"]), embed, similarity=0)


# -- through the gateway ------------------------------------------------------------------------


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client, fake_rasa: FakeRasa) -> TestClient:
    app = create_app(make_settings(tmp_path, rasa_server.port))
    app[keys.KB] = LiveKnowledgeBase(KnowledgeBase.build(articles(), HashingEmbedder(256)))
    client: TestClient = await aiohttp_client(app)
    await wait_for_rasa(client)
    return client


async def test_gap_report_lists_declined_and_offered_questions(
    client: TestClient, fake_rasa: FakeRasa
) -> None:
    async def not_sure(body: dict[str, Any]) -> list[dict[str, Any]]:
        text = body["message"]
        custom: dict[str, Any] = {"promptly": "answer", "text": "?", "citations": [], "score": 0.1}
        if text.startswith("gift"):
            custom["unsure"] = True
        else:
            custom["choices"] = [{"article_id": "returns", "title": "Returns"}]
        return [{"recipient_id": body["sender"], "custom": custom}]

    fake_rasa.action = not_sure
    questions = ["gift cards for sale", "gift cards for sale?", "exchange a broken lamp"]
    for n, text in enumerate(questions):
        accepted = await (await post(client, text, mid=f"m{n}", customer=f"c{n}")).json()
        await frames(client, accepted["conversation_id"], customer=f"c{n}", until=1)

    report = await (await client.get("/api/kb/gaps", headers=AUTH)).json()
    assert report["questions"] == 3
    gaps = report["gaps"]
    assert [gap["count"] for gap in gaps] == [2, 1]
    assert (gaps[0]["unanswered"], gaps[0]["low_confidence"]) == (2, 0)
    assert set(gaps[0]["examples"]) <= set(questions[:2])
    assert gaps[1]["examples"] == ["exchange a broken lamp"]
    assert gaps[1]["nearest"]["article_id"] in {a.id for a in articles()}

    empty = await client.get(
        "/api/kb/gaps", params={"until": "2020-01-01T00:00:00+00:00"}, headers=AUTH
    )
    assert (await empty.json())["gaps"] == []
    top = await (await client.get("/api/kb/gaps?min_count=2", headers=AUTH)).json()
    assert [gap["count"] for gap in top["gaps"]] == [2]
    bad = await client.get("/api/kb/gaps?since=yesterday", headers=AUTH)
    assert bad.status == 422
    assert (await client.get("/api/kb/gaps")).status == 401
    assert (await client.get("/api/kb/search?q=refund")).status == 401


# -- promptly kb gaps ---------------------------------------------------------------------------


async def test_the_gaps_command_reports_recent_questions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_embedder", lambda settings: HashingEmbedder(256))
    conf = config(tmp_path)
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    now = datetime.now(UTC)
    for n, (text, at) in enumerate(
        [
            ("gift cards for sale", now - timedelta(hours=1)),
            ("gift cards for sale", now - timedelta(hours=2)),
            ("gift cards for sale", now - timedelta(days=40)),  # before the period
        ]
    ):
        message = InboundMessage(
            channel="web",
            customer=Customer("c1"),
            platform_message_id=f"m{n}",
            text=text,
            received_at=at,
        )
        received = await store.receive(message)
        data = {"unsure": True, "question": received.message.id, "score": 0.2}
        await store.log_event("acked", conversation_id=received.conversation.id, data=data, at=at)
    await store.close()

    # Run off this test's event loop: the command starts its own.
    assert await asyncio.to_thread(cli.main, ["--config", str(conf), "kb", "gaps"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 unanswered or low-confidence questions in the last 30 days")
    assert "1. 2 questions (2 declined, 0 offered choices)" in out
    assert "“gift cards for sale”" in out
    argv = ["--config", str(conf), "kb", "gaps", "--days", "60", "--json"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert [gap["count"] for gap in report["gaps"]] == [3]
    assert report["gaps"][0]["nearest"] is None  # no articles yet


# -- articles published by another process --------------------------------------------------------


async def test_a_gateway_serves_articles_another_process_imports(
    tmp_path: Path,
    backend: SQLiteStore | PostgresStore,  # noqa: F811
) -> None:
    """``promptly kb import`` writes the database; a running gateway's watch picks it up."""
    mine, theirs = ArticleStore(backend), ArticleStore(backend)
    kb = LiveKnowledgeBase(KnowledgeBase.build([], HashingEmbedder(256)))
    watching = asyncio.create_task(mine.watch(kb, interval=0.02))
    try:
        await asyncio.sleep(0.05)
        gift = Article(
            "gift-cards", "Gift cards", "We sell gift cards from 10 euros.", None, (), ()
        )
        report = await theirs.import_records([Record(Location(tmp_path / "x.csv", 2), gift)])
        assert report.added == ["gift-cards"]
        await until(lambda: [h.article_id for h in kb.search("gift cards")] == ["gift-cards"])
        await theirs.archive("gift-cards", version=1, author="ed")
        await until(lambda: kb.search("gift cards") == [])
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


async def test_a_publish_announced_on_the_hub_is_served_without_waiting_for_the_poll(
    tmp_path: Path,
    backend: SQLiteStore | PostgresStore,  # noqa: F811
) -> None:
    """Gateways sharing a hub (Redis, across processes) announce what they publish: the
    other's watch syncs at once, long before its next poll."""
    hub = Hub()
    mine, theirs = ArticleStore(backend, hub=hub), ArticleStore(backend, hub=hub)
    kb = LiveKnowledgeBase(KnowledgeBase.build([], HashingEmbedder(256)))
    watching = asyncio.create_task(mine.watch(kb, interval=3600))
    try:
        await asyncio.sleep(0.05)
        gift = Article(
            "gift-cards", "Gift cards", "We sell gift cards from 10 euros.", None, (), ()
        )
        await theirs.import_records([Record(Location(tmp_path / "x.csv", 2), gift)])
        await until(lambda: [h.article_id for h in kb.search("gift cards")] == ["gift-cards"])
        content = make_content(title="Gift cards", body="Drafts are not served.")
        draft = await theirs.save_draft("gift-cards", content, version=1, author="ed")
        await theirs.archive("gift-cards", version=draft.version, author="ed")
        await until(lambda: kb.search("gift cards") == [])
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


async def until(condition: Any, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not served in time"
        await asyncio.sleep(0.02)
