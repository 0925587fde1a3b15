from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import kb_quality
from knowledge_base import Article, HashingEmbedder, KnowledgeBase, LiveKnowledgeBase
from knowledge_base.ranking import (
    ArticleHead,
    article_phrasings,
    blend,
    calibrate_floor,
    quoted_questions,
)


def make_article(
    article_id: str, title: str, body: str, questions: tuple[str, ...] = ()
) -> Article:
    return Article(id=article_id, title=title, body=body, url=None, tags=(), questions=questions)


CARD = make_article(
    "card-arrival",
    "Card arrival",
    "Cards arrive within five working days of the order.",
    ("where is my new card", "my card has not arrived yet", "how long until my card comes"),
)
TOP_UP = make_article(
    "top-up",
    "Topping up",
    "Top up by bank transfer or with a debit card in the app.",
    ("how do i add money", "can i top up by transfer", "top up failed what now"),
)
PIN = make_article(
    "pin",
    "Changing your PIN",
    "Change the PIN at any cash machine of the network.",
    ("how do i change my pin", "i forgot my pin", "where can i reset the pin"),
)
ARTICLES = [CARD, TOP_UP, PIN]


def test_quoted_questions_are_phrasings_of_their_article() -> None:
    body = (
        'Covers lost cards. Examples: "I lost my card yesterday?" "Where is my card" and "Submit".'
    )
    article = make_article("lost", "Lost card", body, ("I LOST my  card yesterday?",))

    assert quoted_questions(body) == ["I lost my card yesterday?", "Where is my card"]
    assert article_phrasings(article) == [
        "Lost card",
        "I LOST my  card yesterday?",
        "Where is my card",
    ]


def test_a_quoted_example_is_searchable_but_the_hit_shows_answer_text() -> None:
    quoted = make_article(
        "arrival",
        "Card arrival",
        'Cards come in a week. Customers ask: "Has my plastic been posted yet?"',
    )
    kb = KnowledgeBase.build([quoted, TOP_UP], HashingEmbedder(), head=False)

    hit = kb.search("Has my plastic been posted yet?", k=1)[0]

    assert hit.article_id == "arrival" and hit.score == pytest.approx(1.0)
    assert hit.passage.startswith("Cards come in a week.")


def test_head_probabilities_rank_the_trained_article_first() -> None:
    embedder = HashingEmbedder()
    texts = [p for a in ARTICLES for p in article_phrasings(a)]
    labels = [a.id for a in ARTICLES for _ in article_phrasings(a)]
    head = ArticleHead.fit(embedder.encode(texts), labels)
    assert head is not None

    probabilities = head.probabilities(embedder.encode(["i forgot my pin number"]))

    assert probabilities.shape == (1, 3)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert head.article_ids[int(np.argmax(probabilities))] == "pin"


def test_head_handles_two_articles_and_refuses_one() -> None:
    embedder = HashingEmbedder()
    vectors = embedder.encode(["add money", "top up", "change pin", "new pin"])
    head = ArticleHead.fit(vectors, ["top-up", "top-up", "pin", "pin"])
    assert head is not None
    probabilities = head.probabilities(embedder.encode(["change my pin"]))[0]
    assert probabilities[head.article_ids.index("pin")] > 0.5
    assert ArticleHead.fit(vectors, ["pin"] * 4) is None


def test_search_blends_cosine_and_head_into_a_confidence() -> None:
    kb = KnowledgeBase.build(ARTICLES, HashingEmbedder())
    plain = KnowledgeBase.build(ARTICLES, HashingEmbedder(), head=False)

    hits = kb.search("my card has not arrived yet", k=3)
    cosine = plain.search("my card has not arrived yet", k=3)

    assert [h.article_id for h in hits][0] == "card-arrival"
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Exact phrasing: cosine 1, so the blend is (1 + p) / 2 with p the head's probability.
    assert cosine[0].score == pytest.approx(1.0)
    assert 0.5 < hits[0].score < 1.0
    assert hits[0].passage == CARD.body


def test_without_enough_phrasings_there_is_no_head_and_scores_stay_cosines() -> None:
    thin = [make_article(a.id, a.title, a.body, a.questions[:1]) for a in ARTICLES]
    kb = KnowledgeBase.build(thin, HashingEmbedder())

    assert kb.search("where is my new card", k=1)[0].score == pytest.approx(1.0)


def test_an_edit_keeps_the_old_head_until_it_is_retrained() -> None:
    kb = KnowledgeBase.build(ARTICLES[:2], HashingEmbedder())
    changed = kb.with_changes(upsert=[PIN], remove=["top-up"])

    # Served at once on the stale head: the new article by its cosine alone, the removed one
    # never offered even though the head still has a column for it.
    assert changed.head_stale and not kb.head_stale
    [hit] = changed.search("where can i reset the pin", k=1)
    assert (hit.article_id, hit.score) == ("pin", pytest.approx(1.0))
    assert "top-up" not in [h.article_id for h in changed.search("how do i add money", k=3)]
    assert kb.search("where can i reset the pin", k=1)[0].article_id != "pin"

    fresh = changed.with_fresh_head()
    assert not fresh.head_stale
    [hit] = fresh.search("where can i reset the pin", k=1)
    assert hit.article_id == "pin" and 0.5 < hit.score < 1.0  # blended again


async def test_a_live_publish_is_served_at_once_and_the_head_catches_up() -> None:
    live = LiveKnowledgeBase(KnowledgeBase.build(ARTICLES[:2], HashingEmbedder()))
    await live.publish(PIN)
    assert live.search("i forgot my pin", k=1)[0].article_id == "pin"
    await live.settled()
    assert not live.current.head_stale
    assert live.search("i forgot my pin", k=1)[0].article_id == "pin"


def test_internal_articles_stay_hidden_from_the_head_candidates() -> None:
    internal = Article(
        id="pin",
        title=PIN.title,
        body=PIN.body,
        url=None,
        tags=(),
        questions=PIN.questions,
        audience="internal",
    )
    kb = KnowledgeBase.build([CARD, TOP_UP, internal], HashingEmbedder())

    assert "pin" not in [h.article_id for h in kb.search("i forgot my pin", k=3)]
    agent = kb.search("i forgot my pin", k=1, include_internal=True)
    assert agent[0].article_id == "pin"


def test_blend_is_the_mean_or_the_cosine_alone() -> None:
    assert blend(0.8, 0.4) == pytest.approx(0.6)
    assert blend(0.8, None) == 0.8


def test_floor_declines_the_target_share_of_negatives() -> None:
    inside = [(0.9, True), (0.8, True), (0.5, False), (0.7, True)]
    declined = [0.1, 0.2, 0.3, 0.6]

    result = calibrate_floor(inside, declined, target_recall=0.75)

    assert 0.3 < result.floor <= 0.31
    assert result.decline_recall == 0.75
    assert result.in_scope_accuracy == 0.75


def test_floor_without_negatives_answers_everything() -> None:
    result = calibrate_floor([(0.4, True), (0.2, False)], [])
    assert result.floor == 0.0 and result.in_scope_accuracy == 0.5
    with pytest.raises(ValueError):
        calibrate_floor([], [0.1])


def _intent_rows(path: Path) -> None:
    rows = [{"text": f"card {i}", "label": "card_arrival", "split": "train"} for i in range(5)]
    rows += [{"text": f"pin {i}", "label": "change_pin", "split": "train"} for i in range(5)]
    rows += [{"text": "weather today", "label": "oos", "split": "train"}]
    rows += [{"text": "card 9", "label": "card_arrival", "split": "val"}]
    rows += [{"text": "tell a joke", "label": "oos", "split": "val"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_bench_turns_train_labels_into_articles_and_oos_into_declines(tmp_path: Path) -> None:
    _intent_rows(tmp_path / "intent.jsonl")

    (split,) = kb_quality.load_splits(tmp_path, "val", folds=1, seed=0)

    assert [(a.id, a.title, len(a.questions)) for a in split.articles] == [
        ("card_arrival", "Card arrival", 5),
        ("change_pin", "Change pin", 5),
    ]
    assert split.declined == ["weather today"]
    assert split.queries == [("card 9", "card_arrival"), ("tell a joke", None)]


def test_bench_folds_are_stratified_and_cover_the_train_split(tmp_path: Path) -> None:
    _intent_rows(tmp_path / "intent.jsonl")

    splits = kb_quality.load_splits(tmp_path, "train", folds=5, seed=0)

    tested = sorted(q for s in splits for q, _ in s.queries)
    assert len(tested) == 11 and len(set(tested)) == 11
    assert all(len(s.articles) == 2 for s in splits)


def test_bench_replaces_only_its_own_section(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text(
        "# Benchmarks\n\n## Other\nkeep\n\n<!-- kb_quality: begin -->\n"
        + kb_quality.SECTION
        + "\nstale figures\n<!-- kb_quality: end -->\n\n## Later\nkeep too\n"
    )
    report = {
        "dataset": "set",
        "split": "val",
        "n": 3,
        "top1": 1.0,
        "top5": 1.0,
        "mrr": 1.0,
        "floor": 0.0,
        "answered": 1.0,
        "plain": {"top1": 0.5},
        "bm25": {"top1": 0.25},
    }

    kb_quality.write_section(out, [report], seconds=1.0)

    text = out.read_text()
    assert "stale figures" not in text and "keep\n" in text and "## Later\nkeep too" in text
    assert text.count(kb_quality.SECTION) == 1 and "| set val | 3 | 1.000" in text


def test_held_out_floor_calibrates_on_the_articles_own_questions() -> None:
    from knowledge_base.calibration import held_out_floor

    many = [
        make_article(a.id, a.title, a.body, a.questions + tuple(f"{q} please" for q in a.questions))
        for a in ARTICLES
    ]
    declined = ["what is the weather in paris", "tell me a joke", "who won the match"]

    result, held = held_out_floor(many, HashingEmbedder(), declined, target_recall=1.0)

    assert held == 3  # one of six questions per article
    assert result.decline_recall == 1.0 and result.floor > 0.0
    with pytest.raises(ValueError):
        held_out_floor([make_article("a", "A", "Body.")], HashingEmbedder(), declined)
