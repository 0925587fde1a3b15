"""The answer / offer / decline bands: the pure policy, the action that applies it, and a
customer picking an offered article by its number through the real gateway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions import services
from actions.kb import UNSURE_TEXT, ActionAnswerFromKB
from bot import keys
from bot.app import create_app
from knowledge_base import Article, HashingEmbedder, KnowledgeBase, LiveKnowledgeBase
from knowledge_base.bands import (
    MAX_CHOICES,
    Band,
    compose,
    decide,
    offer_text,
    parse_choice,
)
from tests.unit.conftest import FakeRasa
from tests.unit.test_gateway import frames, make_settings, post, wait_for_rasa


@dataclass(frozen=True)
class FakeHit:
    article_id: str
    title: str
    score: float


scores = st.floats(min_value=0, max_value=1, allow_nan=False)


@st.composite
def ranked_hits(draw: st.DrawFn) -> list[FakeHit]:
    values = sorted(draw(st.lists(scores, max_size=6)), reverse=True)
    return [FakeHit(f"a{i}", f"Title {i}", s) for i, s in enumerate(values)]


@given(ranked_hits(), scores, scores)
def test_the_band_follows_the_best_score(hits: list[FakeHit], a: float, b: float) -> None:
    offer_floor, floor = sorted((a, b))
    decision = decide(hits, floor, offer_floor)
    best = hits[0].score if hits else None
    assert decision.best_score == best
    if best is not None and best >= floor:
        assert decision.band is Band.ANSWER
        assert decision.hits == (hits[0],)
    elif best is not None and best >= offer_floor:
        assert decision.band is Band.OFFER
        assert 1 <= len(decision.hits) <= MAX_CHOICES
        assert decision.hits[0] == hits[0]
        assert all(h.score >= offer_floor for h in decision.hits)
        assert list(decision.hits) == hits[: len(decision.hits)]  # best first, none skipped
    else:
        assert decision.band is Band.DECLINE
        assert decision.hits == ()


def test_an_offer_floor_above_the_answer_floor_is_refused() -> None:
    with pytest.raises(ValueError, match="offer_floor"):
        decide([], 0.5, 0.6)


@given(st.text(min_size=1, max_size=3000), st.text(min_size=1, max_size=80), st.integers(60, 5000))
def test_composed_answers_fit_the_limit_and_keep_their_source(
    passage: str, title: str, limit: int
) -> None:
    text = compose(passage, title, limit)
    assert len(text) <= limit
    assert text.endswith(f"\n\nSource: {title}")
    body = text[: -len(f"\n\nSource: {title}")]
    if body.endswith("…"):
        assert passage.strip().startswith(body[:-1])
    else:
        assert body == passage.strip()


def test_a_long_passage_is_cut_at_a_sentence_for_sms() -> None:
    passage = "Refunds take 5 days. " * 30 + "Contact us for more."
    text = compose(passage, "Refunds", 320)
    assert len(text) <= 320
    assert text.startswith("Refunds take 5 days.")
    assert "days.…\n\nSource: Refunds" in text
    assert compose("Short.", "Refunds", 320) == "Short.\n\nSource: Refunds"


@given(st.text(max_size=20), st.integers(1, MAX_CHOICES))
def test_choices_parse_only_bare_numbers_in_range(text: str, choices: int) -> None:
    picked = parse_choice(text, choices)
    if picked is not None:
        assert 0 <= picked < choices
        assert str(picked + 1) in text
        assert len(text.strip()) <= 3


@pytest.mark.parametrize(
    ("text", "picked"),
    [("2", 1), (" 1 ", 0), ("#3", 2), ("2.", 1), ("4", None), ("0", None), ("2 please", None)],
)
def test_choice_examples(text: str, picked: int | None) -> None:
    assert parse_choice(text, 3) == picked


def test_offers_are_numbered_so_any_channel_can_answer() -> None:
    assert "1. Refunds\n2. Returns" in offer_text(["Refunds", "Returns"])
    assert "Reply 1" in offer_text(["Refunds"])


# -- the action --------------------------------------------------------------------------------


def articles() -> list[Article]:
    return [
        Article(
            "refunds",
            "Refunds",
            "We refund returned items within 14 days of receiving them.",
            None,
            (),
            ("How do refunds work?",),
        ),
        Article(
            "returns",
            "Returns",
            "Send items back within 30 days with the prepaid label.",
            None,
            (),
            ("How do I return an item?",),
        ),
        Article(
            "warranty",
            "Warranty",
            "Every device has a two year warranty against defects.",
            None,
            (),
            ("Is there a warranty?",),
        ),
    ]


def live_kb() -> LiveKnowledgeBase:
    return LiveKnowledgeBase(KnowledgeBase.build(articles(), HashingEmbedder(256)))


async def run_action(question: str, floor: float, offer_floor: float) -> dict[str, Any]:
    services.configure(
        services.Services(
            kb=live_kb(),
            tickets=None,  # type: ignore[arg-type]  # the KB action never opens a ticket
            orders=None,  # type: ignore[arg-type]
            kb_floor=floor,
            kb_offer_floor=offer_floor,
        )
    )
    try:
        dispatcher = CollectingDispatcher()
        tracker = Tracker("c1", {}, {"text": question}, [], False, None, {}, "")
        await ActionAnswerFromKB().run(dispatcher, tracker, {})
    finally:
        services.configure(None)
    [message] = dispatcher.messages
    payload: dict[str, Any] = message["custom"]
    return payload


async def test_the_action_answers_offers_or_declines_by_band() -> None:
    answered = await run_action("How do refunds work?", 0.9, 0.5)
    assert answered["passage"].startswith("We refund")
    assert answered["citations"] == [{"title": "Refunds", "url": "/kb/refunds"}]
    assert answered["text"].endswith("Source: Refunds")

    offered = await run_action("How do refunds work?", 1.01, 0.0)  # above a perfect match
    assert [c["article_id"] for c in offered["choices"]][0] == "refunds"
    assert 1 < len(offered["choices"]) <= MAX_CHOICES
    assert "1. Refunds" in offered["text"]

    declined = await run_action("How do refunds work?", 1.01, 1.01)
    assert declined["unsure"] is True
    assert declined["text"] == UNSURE_TEXT
    assert declined["score"] is not None


# -- picking an offered article ----------------------------------------------------------------


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client) -> TestClient:
    app = create_app(make_settings(tmp_path, rasa_server.port))
    app[keys.KB] = live_kb()  # [kb] enabled = false: this in-memory KB stands in
    client: TestClient = await aiohttp_client(app)
    await wait_for_rasa(client)
    return client


def offer(body: dict[str, Any]) -> list[dict[str, Any]]:
    custom = {
        "promptly": "answer",
        "text": offer_text(["Returns", "Refunds"]),
        "citations": [],
        "choices": [
            {"article_id": "returns", "title": "Returns"},
            {"article_id": "refunds", "title": "Refunds"},
        ],
        "score": 0.5,
    }
    return [{"recipient_id": body["sender"], "custom": custom}]


async def test_a_customer_picks_an_offered_article_by_number(
    client: TestClient, fake_rasa: FakeRasa
) -> None:
    async def offering(body: dict[str, Any]) -> list[dict[str, Any]]:
        return offer(body)

    fake_rasa.action = offering
    accepted = await (await post(client, "money back?")).json()
    conversation_id = accepted["conversation_id"]
    [offered] = await frames(client, conversation_id, until=1)
    assert [c["title"] for c in offered["choices"]] == ["Returns", "Refunds"]
    fake_rasa.action = None
    calls = len(fake_rasa.calls)

    await post(client, "2", mid="m2", conversation_id=conversation_id)
    replies = await frames(client, conversation_id, until=2)
    assert replies[-1]["text"].startswith("We refund returned items")
    assert replies[-1]["citations"] == [{"title": "Refunds", "url": "/kb/refunds"}]
    assert len(fake_rasa.calls) == calls  # answered by the gateway, not Rasa

    # The latest reply is no offer now: a bare number goes to the bot like anything else.
    await post(client, "2", mid="m3", conversation_id=conversation_id)
    replies = await frames(client, conversation_id, until=3)
    assert replies[-1]["text"] == "echo: 2"

    log = await client.app[keys.STORE].events(conversation_id)
    [marked] = [e for e in log if e.data.get("offered")]
    assert marked.data["offered"] == ["returns", "refunds"]
    assert marked.data["score"] == 0.5
