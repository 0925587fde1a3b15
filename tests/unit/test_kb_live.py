"""The live knowledge base: publish and remove by swapping in a new index, audience filtering."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knowledge_base import (
    Article,
    HashingEmbedder,
    KnowledgeBase,
    LiveKnowledgeBase,
    SentenceTransformerEmbedder,
    load_markdown_dir,
)
from tests.unit.test_kb_search import CountingEmbedder

ROOT = Path(__file__).resolve().parents[2]


def article(article_id: str, title: str, body: str, **extra: object) -> Article:
    fields: dict[str, object] = {"url": None, "tags": (), "questions": (), **extra}
    return Article(id=article_id, title=title, body=body, **fields)  # type: ignore[arg-type]


SHIPPING = article(
    "shipping",
    "How long does delivery take?",
    "Parcels arrive in three to five days.\n\n## Express\nExpress parcels arrive next day.",
    questions=("When will my parcel arrive?",),
)
RETURNS = article("returns", "Can I return an item?", "Return any item within thirty days.")
PLAYBOOK = article(
    "refund-playbook",
    "Refund playbook for agents",
    "Agents may refund up to fifty dollars without approval from a lead.",
    questions=("Can I get a refund?",),
    audience="internal",
)


def live_kb(*articles: Article, embedder: CountingEmbedder | None = None) -> LiveKnowledgeBase:
    return LiveKnowledgeBase(KnowledgeBase.build(articles, embedder or CountingEmbedder()))


def ids(hits: Sequence[object]) -> list[str]:
    return [hit.article_id for hit in hits]  # type: ignore[attr-defined]


# -- publish and remove ----------------------------------------------------------------------


async def test_publish_makes_new_text_match_and_old_text_stop_matching() -> None:
    live = live_kb(SHIPPING, RETURNS)
    before = {h.article_id: h.score for h in await live.asearch("zebra striped packaging", k=2)}

    rewritten = dataclasses.replace(SHIPPING, body="Every parcel ships in zebra striped packaging.")
    await live.publish(rewritten)

    hits = await live.asearch("zebra striped packaging", k=2)
    assert hits[0].article_id == "shipping" and "zebra" in hits[0].passage
    assert hits[0].score > before["shipping"] + 0.2
    for hit in await live.asearch("Express parcels arrive next day", k=2):
        assert "Express" not in hit.passage
    assert live.article("shipping") == rewritten


async def test_publish_adds_a_new_article() -> None:
    live = live_kb(SHIPPING)
    await live.publish(RETURNS)
    assert ids(await live.asearch("return an item within thirty days", k=1)) == ["returns"]
    assert [a.id for a in live.articles] == ["returns", "shipping"]


async def test_remove_drops_every_passage_of_the_article() -> None:
    live = live_kb(SHIPPING, RETURNS)
    await live.remove("shipping")

    assert live.article("shipping") is None
    assert all(p.article_id != "shipping" for p in live.current._index.passages)
    assert ids(await live.asearch("Express parcels arrive next day", k=5)) == ["returns"]
    before = live.current
    await live.remove("shipping")  # already gone: nothing to do
    assert live.current is before


async def test_unchanged_passages_are_not_embedded_again() -> None:
    embedder = CountingEmbedder()
    live = live_kb(SHIPPING, RETURNS, embedder=embedder)
    embedder.texts.clear()

    await live.publish(dataclasses.replace(SHIPPING, body=SHIPPING.body.replace("next", "the")))
    assert embedder.texts == [
        "How long does delivery take?: Express\n\nExpress parcels arrive the day."
    ]  # only the edited section; the lead, the title and the question keep their vectors

    embedder.texts.clear()
    await live.publish(PLAYBOOK)
    await live.remove("returns")
    assert len(embedder.texts) == 3  # the new article's lead, title and question; none to remove


async def test_an_incremental_index_scores_like_a_fresh_build() -> None:
    live = live_kb(SHIPPING, RETURNS)
    edited = dataclasses.replace(RETURNS, questions=("How do I send something back?",))
    await live.publish(edited)
    fresh = KnowledgeBase.build([SHIPPING, edited], CountingEmbedder())

    for question in ("send something back", "express delivery", "thirty days"):
        got = [(h.article_id, round(h.score, 5), h.passage) for h in live.search(question, k=2)]
        want = [(h.article_id, round(h.score, 5), h.passage) for h in fresh.search(question, k=2)]
        assert got == want


async def test_publishing_the_same_article_again_keeps_the_index() -> None:
    live = live_kb(SHIPPING)
    before = live.current
    await live.publish(SHIPPING)
    assert live.current is before


async def test_readers_are_served_by_the_old_index_while_a_publish_embeds() -> None:
    embedder = CountingEmbedder(slow_word="aardvark")
    live = live_kb(SHIPPING, embedder=embedder)
    slow = dataclasses.replace(RETURNS, body="Return an aardvark within thirty days.")
    publishing = asyncio.create_task(live.publish(slow))
    await asyncio.to_thread(embedder.started.wait, 10)

    started = time.perf_counter()
    hits = await live.asearch("When will my parcel arrive?", k=2)
    waited = time.perf_counter() - started

    assert ids(hits) == ["shipping"] and not publishing.done()
    assert waited < 0.5
    embedder.gate.set()
    await publishing
    assert ids(await live.asearch("aardvark", k=1)) == ["returns"]


async def test_concurrent_publishes_are_serialised_and_none_is_lost() -> None:
    live = live_kb(SHIPPING)
    extra = [article(f"a{i}", f"Topic {i}", f"Body about topic {i}.") for i in range(6)]
    await asyncio.gather(*(live.publish(a) for a in extra), live.remove("shipping"))
    assert [a.id for a in live.articles] == [a.id for a in extra]


async def test_each_new_index_is_saved_for_the_next_start(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    live = LiveKnowledgeBase(KnowledgeBase.build([SHIPPING], embedder), save_to=tmp_path)
    await live.publish(RETURNS)
    embedder.texts.clear()

    loaded = KnowledgeBase.load(tmp_path, embedder, [SHIPPING, RETURNS])

    assert embedder.texts == []  # reused, not rebuilt
    assert ids(loaded.search("return an item", k=1)) == ["returns"]


# -- audience --------------------------------------------------------------------------------


async def test_internal_articles_are_for_agents_only() -> None:
    live = live_kb(SHIPPING, RETURNS)
    await live.publish(PLAYBOOK)
    question = "Can I get a refund?"  # word for word one of the playbook's questions

    assert "refund-playbook" not in ids(await live.asearch(question, k=5))
    assert "refund-playbook" not in ids(live.search(question, k=5))
    assert (await live.aanswer(question, 0.0)).hit.article_id != "refund-playbook"  # type: ignore[union-attr]
    assert live.answer(question, 0.0).hit.article_id != "refund-playbook"  # type: ignore[union-attr]
    assert live.article("refund-playbook") is None

    agent = await live.asearch(question, k=5, include_internal=True)
    assert agent[0].article_id == "refund-playbook" and agent[0].score > 0.99
    assert live.answer(question, 0.5, include_internal=True).confident
    assert live.article("refund-playbook", include_internal=True) == PLAYBOOK


async def test_only_internal_articles_means_customers_find_nothing() -> None:
    live = live_kb(PLAYBOOK)
    assert await live.asearch("refund playbook", k=3) == []
    assert (await live.aanswer("refund playbook", 0.1)).hit is None


async def test_moving_an_article_to_internal_hides_it_at_once() -> None:
    live = live_kb(SHIPPING, RETURNS)
    await live.publish(dataclasses.replace(RETURNS, audience="internal"))
    assert "returns" not in ids(await live.asearch("return an item", k=5))


@pytest.fixture(scope="module")
def mixed_kb() -> KnowledgeBase:
    return KnowledgeBase.build([SHIPPING, RETURNS, PLAYBOOK], HashingEmbedder(256))


_WORDS = [
    "refund",
    "agents",
    "approval",
    "lead",
    "fifty",
    "dollars",
    "parcel",
    "return",
    "days",
    "express",
    "can",
    "i",
    "get",
    "a",
]


@given(words=st.lists(st.sampled_from(_WORDS), min_size=1, max_size=8), k=st.integers(1, 4))
def test_customer_searches_never_return_internal_articles(
    mixed_kb: KnowledgeBase, words: list[str], k: int
) -> None:
    assert "refund-playbook" not in ids(mixed_kb.search(" ".join(words), k=k))


# -- the demo knowledge base with the real model ----------------------------------------------


@pytest.fixture(scope="module")
def demo_kb() -> Iterator[KnowledgeBase]:
    articles = load_markdown_dir(ROOT / "kb" / "articles")
    yield KnowledgeBase.build(articles, SentenceTransformerEmbedder())


GIFT_CARDS = article(
    "gift-cards",
    "Do gift cards expire?",
    "Acme gift cards never expire and can be spent online or in any store.\n\n"
    "## Balance\nCheck your balance on the gift card page with the 16-digit number.",
    questions=("How long is my gift card valid?", "How do I check my gift card balance?"),
)


async def test_a_published_article_is_searchable_within_a_second_on_the_demo_kb(
    demo_kb: KnowledgeBase,
) -> None:
    live = LiveKnowledgeBase(demo_kb)
    question = "Does my gift card have an expiry date?"
    assert "gift-cards" not in ids(await live.asearch(question, k=3))

    started = time.perf_counter()
    await live.publish(GIFT_CARDS)
    hits = await live.asearch(question, k=3)
    elapsed = time.perf_counter() - started

    assert hits[0].article_id == "gift-cards"
    assert elapsed < 1.0, f"publish to visible took {elapsed:.3f}s"

    started = time.perf_counter()
    await live.remove("gift-cards")
    gone = await live.asearch(question, k=3)
    assert time.perf_counter() - started < 1.0
    assert "gift-cards" not in ids(gone)
