"""Choose a knowledge base's confidence floor from its own articles, never from live traffic.

Hold out part of every article's alternate questions, build a knowledge base from the rest and
score the held-out questions (which should be answered) and ``declined`` questions (which should
not); ``ranking.calibrate_floor`` then picks the floor.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from knowledge_base.articles import Article
from knowledge_base.batching import Query
from knowledge_base.embedder import Embedder
from knowledge_base.ranking import FloorCalibration, calibrate_floor
from knowledge_base.search import Hit, KnowledgeBase

_BATCH = 256


def held_out_floor(
    articles: Sequence[Article],
    embedder: Embedder,
    declined: Sequence[str],
    *,
    holdout: float = 0.2,
    target_recall: float = 0.75,
    head: bool = True,
    seed: int = 0,
) -> tuple[FloorCalibration, int]:
    """The floor for ``articles`` and how many in-scope questions it was checked on.

    Articles with fewer than two alternate questions keep them all. Raises ``ValueError`` when
    nothing could be held out.
    """
    rng = random.Random(seed)
    kept: list[Article] = []
    held: list[tuple[str, str]] = []
    for article in articles:
        questions = list(article.questions)
        rng.shuffle(questions)
        cut = int(len(questions) * holdout) if len(questions) >= 2 else 0
        held.extend((question, article.id) for question in questions[:cut])
        kept.append(dataclasses.replace(article, questions=tuple(questions[cut:])))
    if not held:
        raise ValueError("no alternate questions to hold out")
    kb = KnowledgeBase.build(kept, embedder, head=head)
    inside = [
        (hits[0].score if hits else 0.0, bool(hits) and hits[0].article_id == gold)
        for hits, (_, gold) in zip(_best(kb, [q for q, _ in held]), held, strict=True)
    ]
    outside = [hits[0].score if hits else 0.0 for hits in _best(kb, declined)]
    return calibrate_floor(inside, outside, target_recall=target_recall), len(inside)


def _best(kb: KnowledgeBase, questions: Sequence[str]) -> list[list[Hit]]:
    results: list[list[Hit]] = []
    for start in range(0, len(questions), _BATCH):
        batch = [Query(q, 1, False) for q in questions[start : start + _BATCH]]
        results.extend(kb.search_many(batch))
    return results
