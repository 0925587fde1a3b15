from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import knowledge_base
from knowledge_base import (
    Answer,
    Article,
    HashingEmbedder,
    IndexLoadError,
    KnowledgeBase,
    KnowledgeBaseError,
    Passage,
    VectorIndex,
)
from knowledge_base.embedder import Vectors
from knowledge_base.index import INDEX_FILE, METADATA_FILE

ROOT = Path(knowledge_base.__file__).resolve().parents[1]


class CountingEmbedder:
    """HashingEmbedder that records the texts it embedded and on which threads; ``gate`` holds
    encodes of texts that contain ``slow_word`` until it is set (to catch a publish midway)."""

    def __init__(self, dim: int = 256, slow_word: str | None = None) -> None:
        self._inner = HashingEmbedder(dim)
        self.texts: list[str] = []
        self.threads: list[str] = []
        self.slow_word = slow_word
        self.started = threading.Event()
        self.gate = threading.Event()

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def texts_encoded(self) -> int:
        return len(self.texts)

    def encode(self, texts: Sequence[str]) -> Vectors:
        if self.slow_word and any(self.slow_word in text for text in texts):
            self.started.set()
            self.gate.wait(10)
        self.texts.extend(texts)
        self.threads.append(threading.current_thread().name)
        return self._inner.encode(texts)


def make_article(
    article_id: str,
    title: str,
    body: str,
    *,
    questions: tuple[str, ...] = (),
    url: str | None = None,
) -> Article:
    return Article(id=article_id, title=title, body=body, url=url, tags=(), questions=questions)


SHIPPING = make_article(
    "shipping-times",
    "Shipping times",
    "Orders leave our warehouse within two business days.\n\n"
    "## Domestic delivery\nDomestic parcels arrive in three to five business days.\n\n"
    "## International delivery\nInternational parcels arrive in seven to fourteen days; "
    "customs duties are paid by the recipient.",
    questions=("When will my order arrive?",),
)
RETURNS = make_article(
    "returns",
    "Returning an item",
    "You can return unworn items within thirty days for a full refund.\n\n"
    "## Damaged items\nIf an item arrived damaged or broken, send us a photo of the damaged "
    "box and we ship a replacement with a prepaid label.\n\n"
    "## Refund timing\nRefunds reach your card five days after we receive the parcel.",
    questions=("How do I send something back?",),
)
PAYMENT = make_article(
    "payment-methods",
    "Payment methods",
    "We accept Visa, Mastercard, PayPal and gift cards at checkout.",
    questions=("Can I pay with PayPal?",),
    url="https://shop.example/help/payment",
)
ACCOUNT = make_article(
    "password-reset",
    "Resetting your password",
    "Use the forgot password link on the sign in page; the reset email expires in an hour.",
    questions=("I forgot my password",),
)
ARTICLES = [SHIPPING, RETURNS, PAYMENT, ACCOUNT]


@pytest.fixture
def kb() -> KnowledgeBase:
    return KnowledgeBase.build(ARTICLES, HashingEmbedder())


def test_search_returns_one_hit_per_article_best_first(kb: KnowledgeBase) -> None:
    hits = kb.search("how many days until international parcels arrive", k=3)

    assert [hit.article_id for hit in hits][0] == "shipping-times"
    assert len({hit.article_id for hit in hits}) == len(hits) == 3
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_section_match_cites_its_anchor(kb: KnowledgeBase) -> None:
    hit = kb.search("international parcels customs duties", k=1)[0]

    assert hit.passage.startswith("International parcels arrive")
    assert hit.citation.url == "/kb/shipping-times#international-delivery"
    assert (hit.citation.article_id, hit.citation.title) == ("shipping-times", "Shipping times")


def test_question_match_returns_answer_text_not_the_question(kb: KnowledgeBase) -> None:
    hit = kb.search("When will my order arrive?", k=1)[0]

    assert hit.article_id == "shipping-times"
    assert hit.score == pytest.approx(1.0)  # matched the alternate question exactly
    assert hit.passage in SHIPPING.body and "When will" not in hit.passage


@pytest.mark.parametrize(
    ("margin", "expected_start", "expected_url"),
    [
        (1.0, "Orders leave our warehouse", "/kb/shipping-times"),
        (0.0, "International parcels", "/kb/shipping-times#international-delivery"),
    ],
)
def test_question_match_keeps_the_lead_unless_a_section_wins_by_the_margin(
    monkeypatch: pytest.MonkeyPatch, margin: float, expected_start: str, expected_url: str
) -> None:
    # "arrive" also occurs in the international section, which therefore outscores the lead.
    monkeypatch.setattr("knowledge_base.search._SECTION_OVER_LEAD_MARGIN", margin)
    kb = KnowledgeBase.build(ARTICLES, HashingEmbedder())

    hit = kb.search("When will my order arrive?", k=1)[0]

    assert hit.passage.startswith(expected_start)
    assert hit.citation.url == expected_url


def test_the_articles_own_question_is_answered_by_its_lead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked exactly what the title asks, the customer gets the lead, written as the answer to
    it, even when a section that repeats the title's words scores higher ("What can't be
    returned" for "What is your returns policy?")."""
    monkeypatch.setattr("knowledge_base.search._SECTION_OVER_LEAD_MARGIN", 0.0)
    policy = make_article(
        "returns-policy",
        "What is your returns policy?",
        "Sixty days, free labels.\n\n## What is not returned by the returns policy\n"
        "Used items are not part of your returns policy.",
    )
    kb = KnowledgeBase.build([policy, PAYMENT], HashingEmbedder())

    assert kb.search("What is your returns policy?", k=1)[0].passage == "Sixty days, free labels."
    # Any other question still gets the section that matches it best.
    assert kb.search("which items are not part of the returns policy", k=1)[0].passage.startswith(
        "Used items"
    )


def test_question_match_returns_a_section_that_clearly_beats_the_lead(kb: KnowledgeBase) -> None:
    query = "How do I send something back? It arrived damaged, photo of the damaged box"

    hit = kb.search(query, k=1)[0]

    assert hit.article_id == "returns"
    assert hit.passage.startswith("If an item arrived damaged")
    assert hit.citation.url == "/kb/returns#damaged-items"


def test_article_url_overrides_the_kb_link(kb: KnowledgeBase) -> None:
    hit = kb.search("Can I pay with PayPal?", k=1)[0]

    assert hit.citation.url == "https://shop.example/help/payment"
    assert hit.passage.startswith("We accept Visa")


def test_search_widens_when_one_article_fills_the_first_window() -> None:
    many = "\n\n".join(f"## Part {n}\nshipping shipping detail {n}" for n in range(40))
    big = make_article("big", "Shipping encyclopedia", many)
    other = make_article("other", "Unrelated", "Gift wrapping is free.")
    kb = KnowledgeBase.build([big, other], HashingEmbedder())

    hits = kb.search("shipping", k=2)

    assert [hit.article_id for hit in hits] == ["big", "other"]


def test_answer_applies_the_floor(kb: KnowledgeBase) -> None:
    strict = kb.answer("When will my order arrive?", floor=1.5)
    lenient = kb.answer("When will my order arrive?", floor=0.5)

    assert strict.hit is not None and not strict.confident
    assert lenient.confident and lenient.hit == strict.hit
    assert lenient.best_score == pytest.approx(1.0)


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_blank_questions_have_no_answer(kb: KnowledgeBase, question: str) -> None:
    assert kb.search(question) == []
    assert kb.answer(question, floor=0.4) == Answer(hit=None, confident=False, best_score=0.0)


def test_k_must_be_positive(kb: KnowledgeBase) -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        kb.search("shipping", k=0)


def test_article_lookup_and_listing(kb: KnowledgeBase) -> None:
    assert kb.article("returns") == RETURNS
    assert kb.article("nope") is None
    assert [a.id for a in kb.articles] == sorted(a.id for a in ARTICLES)


def test_empty_knowledge_base_finds_nothing() -> None:
    kb = KnowledgeBase.build([], HashingEmbedder())

    assert kb.search("anything") == []
    assert kb.answer("anything", floor=0.1) == Answer(hit=None, confident=False, best_score=0.0)


def test_duplicate_article_ids_are_rejected() -> None:
    with pytest.raises(KnowledgeBaseError, match="unique"):
        KnowledgeBase.build([RETURNS, RETURNS], HashingEmbedder())


async def test_async_wrappers_run_off_the_event_loop_thread() -> None:
    embedder = CountingEmbedder()
    kb = KnowledgeBase.build(ARTICLES, embedder)
    embedder.threads.clear()

    hits = await kb.asearch("forgot my password", k=2)
    answer = await kb.aanswer("forgot my password", floor=0.3)

    assert hits[0].article_id == "password-reset" and answer.hit == hits[0]
    assert len(embedder.threads) == 2
    assert threading.current_thread().name not in embedder.threads


async def test_questions_asked_together_are_embedded_together_with_the_same_results() -> None:
    embedder = CountingEmbedder()
    kb = KnowledgeBase.build(ARTICLES, embedder)
    questions = ["forgot my password", "  ", "where is my refund", "forgot my password"] * 5
    expected = [kb.search(q, k=2) for q in questions]
    embedder.threads.clear()

    results = await asyncio.gather(*(kb.asearch(q, k=2) for q in questions))

    assert results == expected
    assert 1 <= len(embedder.threads) < len(questions)  # blank questions are not embedded


async def test_a_failed_encode_fails_its_batch_and_the_next_questions_still_work() -> None:
    embedder = CountingEmbedder()
    kb = KnowledgeBase.build(ARTICLES, embedder)
    broken = RuntimeError("model crashed")

    def encode_once_broken(texts: Sequence[str]) -> Vectors:
        embedder.encode = embedder._inner.encode  # type: ignore[method-assign]
        raise broken

    embedder.encode = encode_once_broken  # type: ignore[method-assign]
    results = await asyncio.gather(
        kb.asearch("forgot my password"), kb.aanswer("refund", 0.3), return_exceptions=True
    )

    assert results == [broken, broken]
    assert (await kb.aanswer("forgot my password", floor=0.3)).hit is not None


# --- persistence ---


def test_save_then_load_reuses_the_index_without_re_embedding(tmp_path: Path) -> None:
    built = KnowledgeBase.build(ARTICLES, HashingEmbedder())
    built.save(tmp_path)
    embedder = CountingEmbedder()

    loaded = KnowledgeBase.load(tmp_path, embedder, ARTICLES)

    assert embedder.texts_encoded == 0
    for question in ["When will my order arrive?", "refund card", "gift cards"]:
        assert loaded.search(question) == built.search(question)


def test_load_builds_and_saves_when_nothing_is_cached(tmp_path: Path) -> None:
    directory = tmp_path / "cache" / "kb"
    first = CountingEmbedder()
    KnowledgeBase.load(directory, first, ARTICLES)
    second = CountingEmbedder()

    KnowledgeBase.load(directory, second, ARTICLES)

    assert first.texts_encoded > 0
    assert second.texts_encoded == 0
    assert (directory / INDEX_FILE).is_file() and (directory / METADATA_FILE).is_file()


def test_changed_article_content_rebuilds_the_index_embedding_only_what_changed(
    tmp_path: Path,
) -> None:
    """Articles changed while the gateway was stopped (an import): the saved index is stale,
    but its vectors serve every passage whose text is the same."""
    KnowledgeBase.load(tmp_path, HashingEmbedder(), ARTICLES)
    saved = {p.text for p in VectorIndex.load(tmp_path).passages}
    edited = dataclasses.replace(RETURNS, body=RETURNS.body + "\n\nExchanges are free.")
    embedder = CountingEmbedder()

    kb = KnowledgeBase.load(tmp_path, embedder, [SHIPPING, edited, PAYMENT, ACCOUNT])

    rebuilt = {p.text for p in VectorIndex.load(tmp_path).passages}  # saved for next time
    assert embedder.texts_encoded == len(rebuilt - saved) == 1
    fresh = KnowledgeBase.build([SHIPPING, edited, PAYMENT, ACCOUNT], HashingEmbedder())
    assert kb.search("are exchanges free", k=3) == fresh.search("are exchanges free", k=3)
    assert "Exchanges are free." in kb.search("are exchanges free", k=1)[0].passage
    reloaded = CountingEmbedder()
    KnowledgeBase.load(tmp_path, reloaded, [SHIPPING, edited, PAYMENT, ACCOUNT])
    assert reloaded.texts_encoded == 0


def test_url_and_tag_edits_reuse_the_index_but_use_current_metadata(tmp_path: Path) -> None:
    KnowledgeBase.load(tmp_path, HashingEmbedder(), ARTICLES)
    moved = dataclasses.replace(SHIPPING, url="https://shop.example/shipping", tags=("new",))
    embedder = CountingEmbedder()

    kb = KnowledgeBase.load(tmp_path, embedder, [moved, RETURNS, PAYMENT, ACCOUNT])

    assert embedder.texts_encoded == 0
    assert kb.search("When will my order arrive?", k=1)[0].citation.url == moved.url


def test_a_different_embedder_re_embeds_every_passage(tmp_path: Path) -> None:
    KnowledgeBase.load(tmp_path, HashingEmbedder(), ARTICLES)
    embedder = CountingEmbedder(128)

    kb = KnowledgeBase.load(tmp_path, embedder, ARTICLES)

    assert embedder.texts_encoded == len(VectorIndex.load(tmp_path).passages)
    assert kb.search("PayPal", k=1)[0].article_id == "payment-methods"


def test_other_chunking_rebuilds_the_index_reusing_the_vectors_of_the_same_text(
    tmp_path: Path,
) -> None:
    KnowledgeBase.load(tmp_path, HashingEmbedder(), ARTICLES)
    saved = VectorIndex.load(tmp_path)
    embedder = CountingEmbedder()

    # Another max_chars is another index (its fingerprint), though these short sections
    # chunk as before: every passage's vector is taken from the saved one.
    kb = KnowledgeBase.load(tmp_path, embedder, ARTICLES, max_chars=300)

    rebuilt = VectorIndex.load(tmp_path)
    assert rebuilt.fingerprint != saved.fingerprint
    assert rebuilt.passages == saved.passages and embedder.texts_encoded == 0
    assert kb.search("PayPal", k=1)[0].article_id == "payment-methods"


@pytest.mark.parametrize("damage", ["truncate-index", "garbage-metadata", "delete-index"])
def test_damaged_cache_is_rebuilt_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    KnowledgeBase.load(tmp_path, HashingEmbedder(), ARTICLES)
    if damage == "truncate-index":
        data = (tmp_path / INDEX_FILE).read_bytes()
        (tmp_path / INDEX_FILE).write_bytes(data[: len(data) // 2])
    elif damage == "garbage-metadata":
        (tmp_path / METADATA_FILE).write_text("{not json", encoding="utf-8")
    else:
        (tmp_path / INDEX_FILE).unlink()
    embedder = CountingEmbedder()

    with caplog.at_level(logging.WARNING, logger="knowledge_base.search"):
        kb = KnowledgeBase.load(tmp_path, embedder, ARTICLES)

    assert embedder.texts_encoded > 0
    assert "building knowledge base index" in caplog.text
    assert kb.search("PayPal", k=1)[0].article_id == "payment-methods"
    VectorIndex.load(tmp_path)  # the rebuilt cache was written back and is valid


def test_unwritable_cache_still_serves(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="knowledge_base.search"):
        kb = KnowledgeBase.load(blocker / "kb", HashingEmbedder(), ARTICLES)

    assert kb.search("PayPal", k=1)[0].article_id == "payment-methods"
    assert "could not save knowledge base index" in caplog.text


# --- index and embedder units ---


def passage(text: str, article_id: str = "a") -> Passage:
    return Passage(article_id, "Title", None, None, text, "section")


def test_vector_index_round_trips_passages_vectors_and_labels(tmp_path: Path) -> None:
    embedder = HashingEmbedder(dim=32)
    passages = [passage("alpha beta"), passage("gamma", "b")]
    index = VectorIndex(32, "hashing-32", "f" * 64)
    index.add(passages, embedder.encode([p.text for p in passages]))
    index.save(tmp_path)

    loaded = VectorIndex.load(tmp_path)

    assert (len(loaded), loaded.dim, loaded.embedder_name, loaded.fingerprint) == (
        2,
        32,
        "hashing-32",
        "f" * 64,
    )
    assert list(loaded.passages) == passages
    np.testing.assert_array_equal(loaded.vectors([0, 1]), index.vectors([0, 1]))
    query = embedder.encode(["gamma"])[0]
    assert loaded.search(query, k=5) == index.search(query, k=5)
    assert loaded.search(query, k=5)[0] == (passages[1], pytest.approx(1.0))


def test_vector_index_rejects_wrong_shapes() -> None:
    index = VectorIndex(4, "e", "f")

    with pytest.raises(ValueError, match=r"shape \(1, 4\)"):
        index.add([passage("x")], np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="4 values"):
        index.search(np.zeros(3, dtype=np.float32), k=1)
    assert index.search(np.zeros(4, dtype=np.float32), k=3) == []


def test_vector_index_load_of_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(IndexLoadError, match="cannot read index"):
        VectorIndex.load(tmp_path / "missing")


def test_index_bytes_must_match_metadata(tmp_path: Path) -> None:
    index = VectorIndex(4, "e", "f")
    index.add([passage("x")], np.ones((1, 4), dtype=np.float32) / 2)
    index.save(tmp_path)
    other = VectorIndex(4, "e", "f")
    other.add([passage("y")], np.full((1, 4), 0.5, dtype=np.float32) * -1)
    other_dir = tmp_path / "other"
    other.save(other_dir)
    (tmp_path / INDEX_FILE).write_bytes((other_dir / INDEX_FILE).read_bytes())

    with pytest.raises(IndexLoadError, match="does not match its metadata"):
        VectorIndex.load(tmp_path)


def test_hashing_embedder_rows_are_unit_length_and_shaped() -> None:
    vectors = HashingEmbedder(dim=64).encode(["Where is my parcel?", "refund", "!!!"])

    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, rtol=1e-6)
    assert not vectors[2].any()  # no words, nothing to normalise
    assert HashingEmbedder().encode([]).shape == (0, 256)


def test_hashing_embedder_is_identical_across_processes() -> None:
    code = (
        "from knowledge_base import HashingEmbedder;"
        "print(HashingEmbedder(16).encode(['where is my parcel']).round(6).tolist())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
        ).stdout
        for seed in ("1", "2")
    }

    assert len(outputs) == 1
    expected = HashingEmbedder(16).encode(["where is my parcel"]).round(6).tolist()
    assert outputs.pop().strip() == str(expected)
