"""Content gaps: customers' unanswered and low-confidence questions, grouped by meaning.

What editors should write next is the largest group of questions the KB could not answer.
Questions are grouped by average-linkage agglomerative clustering on cosine distance (so no
number of groups is guessed up front), after merging identical texts, which real traffic
repeats a lot. Clustering is quadratic in memory, so at most ``max_texts`` distinct texts (the
most asked first) are clustered; the report says how many were left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from knowledge_base.embedder import Vectors

# Questions at least this similar (cosine, on average between two groups) are one gap. On the
# fixture in tests/unit/test_kb_gaps.py, with all-MiniLM-L6-v2, paraphrases of one need score
# 0.5-0.8 and different needs on the same topic 0.3-0.5.
DEFAULT_SIMILARITY = 0.55
DEFAULT_MAX_TEXTS = 2000
EXAMPLES = 3

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Asked:
    """One customer question the bot declined (``unanswered``) or only offered choices for."""

    text: str
    at: datetime
    unanswered: bool
    score: float | None  # the best article's score when it was asked


@dataclass(frozen=True)
class Gap:
    count: int
    unanswered: int  # of ``count``; the rest got an offer of articles to choose from
    examples: tuple[str, ...]  # up to three, the most typical first
    last_asked: datetime
    centroid: Vectors


@dataclass(frozen=True)
class Grouping:
    gaps: tuple[Gap, ...]  # largest first
    questions: int  # all questions in the period
    left_out: int  # questions whose text was past ``max_texts`` (too rare to cluster)


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text).strip().casefold()


def group(
    asked: Sequence[Asked],
    embed: Callable[[Sequence[str]], Vectors],
    *,
    similarity: float = DEFAULT_SIMILARITY,
    max_texts: int = DEFAULT_MAX_TEXTS,
) -> Grouping:
    """Group ``asked`` by meaning; ``embed`` gives unit vectors (the KB's embedder)."""
    if not 0 < similarity <= 1:
        raise ValueError(f"similarity must be in (0, 1], got {similarity}")
    by_text: dict[str, list[Asked]] = {}
    for question in asked:
        key = normalise(question.text)
        if key:
            by_text.setdefault(key, []).append(question)
    ranked = sorted(by_text.values(), key=lambda same: (-len(same), same[0].text))
    kept = ranked[:max_texts]
    left_out = sum(len(same) for same in ranked[max_texts:])
    if not kept:
        return Grouping((), len(asked), left_out)
    texts = [same[-1].text.strip() for same in kept]  # the latest wording of each
    vectors = np.asarray(embed(texts), dtype=np.float32)
    labels = _labels(vectors, similarity)
    gaps = [
        _gap([kept[i] for i in members], vectors[members])
        for members in (np.flatnonzero(labels == label) for label in np.unique(labels))
    ]
    gaps.sort(key=lambda gap: (-gap.count, -gap.last_asked.timestamp(), gap.examples))
    return Grouping(tuple(gaps), len(asked), left_out)


def _labels(vectors: Vectors, similarity: float) -> np.ndarray:
    if len(vectors) == 1:
        return np.zeros(1, dtype=np.int64)
    clustering = AgglomerativeClustering(
        n_clusters=None,
        metric="cosine",
        linkage="average",
        distance_threshold=1 - similarity,
    )
    return np.asarray(clustering.fit_predict(vectors))


def _gap(members: list[list[Asked]], vectors: Vectors) -> Gap:
    weights = np.asarray([len(same) for same in members], dtype=np.float32)
    centroid = (vectors * weights[:, None]).sum(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
    typical = np.argsort(-(vectors @ centroid), kind="stable")[:EXAMPLES]
    every = [question for same in members for question in same]
    return Gap(
        count=len(every),
        unanswered=sum(question.unanswered for question in every),
        examples=tuple(members[i][-1].text.strip() for i in typical),
        last_asked=max(question.at for question in every),
        centroid=centroid.astype(np.float32),
    )
