"""Degraded modes: a knowledge base that fails (at start or in a search) leaves Rasa's replies,
handoffs and every ack working, and says so on /health and in the console."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions import services
from actions.kb import KB_DOWN_TEXT, ActionAnswerFromKB
from bot.app import create_app
from bot.settings import load_settings
from knowledge_base import Article, HashingEmbedder, KnowledgeBase, LiveKnowledgeBase
from knowledge_base.embedder import Vectors
from tests.conftest import ROOT
from tests.console_helpers import call, signed_in
from tests.unit.test_gateway import TOKEN, frames, post, wait_for_rasa


class BreakableEmbedder(HashingEmbedder):
    """Fails every encode while ``broken`` (an embedding process gone for good)."""

    broken = False

    def encode(self, texts: Any) -> Vectors:
        if self.broken:
            raise RuntimeError("embedding process died")
        return super().encode(texts)


def breakable_kb() -> tuple[LiveKnowledgeBase, BreakableEmbedder]:
    embedder = BreakableEmbedder(64)
    refunds = Article("refunds", "Refunds", "We refund within 5 days.", None, (), ())
    return LiveKnowledgeBase(KnowledgeBase.build([refunds], embedder)), embedder


async def test_a_failing_search_reports_the_kb_down_until_one_succeeds() -> None:
    kb, embedder = breakable_kb()
    assert kb.up
    embedder.broken = True
    try:
        await kb.asearch("how do refunds work")
    except RuntimeError:
        pass
    else:
        raise AssertionError("the search should have failed")
    assert not kb.up and kb.failure is not None and "embedding process died" in kb.failure
    embedder.broken = False
    assert [hit.article_id for hit in await kb.asearch("how do refunds work")] == ["refunds"]
    assert kb.up


async def test_the_kb_action_offers_a_person_when_the_kb_fails() -> None:
    kb, embedder = breakable_kb()
    embedder.broken = True
    services.configure(
        services.Services(
            kb=kb,
            tickets=None,  # type: ignore[arg-type]  # the KB action never opens a ticket
            orders=None,  # type: ignore[arg-type]
            kb_floor=0.5,
            kb_offer_floor=0.4,
        )
    )
    try:
        dispatcher = CollectingDispatcher()
        tracker = Tracker("c1", {}, {"text": "refunds?"}, [], False, None, {}, "")
        events = await ActionAnswerFromKB().run(dispatcher, tracker, {})
    finally:
        services.configure(None)
    [message] = dispatcher.messages
    assert message["custom"]["text"] == KB_DOWN_TEXT
    assert "unsure" not in message["custom"]  # not a content gap: nothing was consulted
    assert events == [{"event": "slot", "timestamp": None, "name": "offered_human", "value": True}]


async def test_a_kb_that_cannot_load_leaves_the_gateway_acking_and_answering(
    tmp_path: Path, aiohttp_client, rasa_server, fake_rasa
) -> None:
    config = tmp_path / "promptly.toml"
    config.write_text(
        f"""
[storage]
database = "promptly.db"
[rasa]
url = "http://127.0.0.1:{rasa_server.port}"
manage = false
probe_interval = "50ms"
[kb]
articles = "{ROOT / "kb" / "articles"}"
model = "no-such-model"
isolate = false
[channels.web]
promise = "600ms"
margin = "100ms"
""",
        encoding="utf-8",
    )
    settings = load_settings(config, env={"PROMPTLY_AGENT_TOKEN": TOKEN})
    client = await aiohttp_client(create_app(settings))
    await wait_for_rasa(client)
    health = await (await client.get("/health")).json()
    assert health["components"]["kb"] == "down" and health["status"] == "degraded"
    accepted = await (await post(client, "where is my order")).json()
    [reply] = await frames(client, accepted["conversation_id"])
    assert reply["text"] == "echo: where is my order"
    await signed_in(client, "agent")
    shown = await call(client, "GET", "/api/console/emergency")
    assert shown["components"] == {"rasa": "up", "kb": "down", "database": "up"}
