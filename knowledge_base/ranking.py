"""Ranking: which texts stand for an article, the per-knowledge-base head, and the floor.

An article's score for a question is the mean of two confidences in [0, 1]:

* the best cosine similarity between the question and any passage of the article (its title,
  alternate questions, example questions quoted in its body, and its sections), and
* the probability a logistic-regression head, trained on the frozen embeddings of every
  article's phrasings (title, alternate and quoted questions), gives the article.

The head learns which directions of the embedding space tell articles apart; the cosine keeps
scores honest for questions unlike any phrasing. See docs/kb-quality.md for the measurements.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from knowledge_base.articles import Article
from knowledge_base.embedder import Vectors

# Example questions quoted in a body ("My card hasn't arrived?") are phrasings in their own
# right. Only quotes of a few words count, so "Submit" or a quoted file name does not.
_QUOTED = re.compile(r"[\"“]([^\"”\n]{12,300})[\"”]")
_MIN_QUOTED_WORDS = 3
# Inverse regularisation of the head; C=10 beat 1 and 100 on Banking77, Banking77-lite and
# StackFAQ val (docs/kb-quality.md).
HEAD_C = 10.0
_HEAD_MAX_ITER = 300
# The head is trained only when articles average at least this many phrasings (title
# included): Banking77-lite's title + two quoted examples gained 3 points of top-1, while a
# title and a single question per article gave the head too little to learn from.
HEAD_MIN_PHRASINGS = 3
# Past these sizes the head is not trained (cosine ranking only): its fit grows with
# phrasings x articles and its weights with dim x articles (5,000 articles: 7.7 MB), and a
# help centre that large is better served by the approximate index alone.
HEAD_MAX_ARTICLES = 5_000
HEAD_MAX_PHRASINGS = 200_000


def quoted_questions(body: str) -> list[str]:
    """Questions quoted in an article body, in order."""
    found = (match.strip() for match in _QUOTED.findall(body))
    return [text for text in found if len(text.split()) >= _MIN_QUOTED_WORDS]


def article_phrasings(article: Article) -> list[str]:
    """Title, alternate questions and quoted questions, deduplicated ignoring case/spacing."""
    seen: set[str] = set()
    unique: list[str] = []
    for phrasing in (article.title, *article.questions, *quoted_questions(article.body)):
        key = " ".join(phrasing.lower().split())
        if key and key not in seen:
            seen.add(key)
            unique.append(phrasing.strip())
    return unique


@dataclass(frozen=True)
class ArticleHead:
    """Multinomial logistic regression from a question vector to article probabilities."""

    article_ids: tuple[str, ...]
    weights: npt.NDArray[np.float32]  # (dim, articles)
    bias: npt.NDArray[np.float32]  # (articles,)

    @classmethod
    def fit(
        cls, vectors: Vectors, labels: Sequence[str], *, c: float = HEAD_C
    ) -> ArticleHead | None:
        """Train on phrasing ``vectors`` labelled by article id; None with under two articles."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        article_ids = tuple(sorted(set(labels)))
        if len(article_ids) < 2:
            return None
        model = LogisticRegression(C=c, max_iter=_HEAD_MAX_ITER)
        with warnings.catch_warnings():
            # An unconverged head still ranks well; the fit is capped to keep builds quick.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(vectors, list(labels))
        classes = tuple(str(label) for label in model.classes_)
        coef = np.asarray(model.coef_, dtype=np.float32)
        intercept = np.asarray(model.intercept_, dtype=np.float32)
        if len(classes) == 2:
            # sklearn keeps one row for two classes; expand to the symmetric two-row form.
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2], dtype=np.float32)
        return cls(classes, np.ascontiguousarray(coef.T), intercept)

    def probabilities(self, queries: Vectors) -> npt.NDArray[np.float32]:
        """Softmax over articles, one row per query, columns in ``article_ids`` order."""
        logits = np.atleast_2d(queries) @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        result: npt.NDArray[np.float32] = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        return result


def blend(cosine: float, probability: float | None) -> float:
    """An article's score: the mean of its best cosine and its head probability."""
    return cosine if probability is None else (cosine + probability) / 2


@dataclass(frozen=True)
class FloorCalibration:
    """The chosen floor and the held-out figures it was chosen on."""

    floor: float
    in_scope_accuracy: float
    decline_recall: float
    method: str


def calibrate_floor(
    in_scope: Sequence[tuple[float, bool]],
    declined: Sequence[float],
    *,
    target_recall: float = 0.75,
) -> FloorCalibration:
    """Pick the floor from held-out scores, never from the queries being reported.

    ``in_scope`` holds (score, right article ranked first) for held-out phrasings of known
    articles; ``declined`` the scores of questions the bot should decline. The floor is the
    lowest one that declines at least ``target_recall`` of ``declined`` (which keeps the most
    in-scope answers); with no such questions it is 0: nothing tells a floor where to sit, so
    every best hit is answered.
    """
    if not in_scope:
        raise ValueError("calibration needs held-out in-scope scores")
    scores = np.array([score for score, _ in in_scope], dtype=np.float64)
    right = np.array([ok for _, ok in in_scope], dtype=bool)
    negatives = np.sort(np.asarray(declined, dtype=np.float64))
    if negatives.size == 0:
        return FloorCalibration(0.0, float(right.mean()), 0.0, "no questions to decline: 0")
    # Declining the lowest ceil(target * n) negatives needs a floor just above the last of them.
    needed = min(int(np.ceil(target_recall * negatives.size)), negatives.size)
    floor = float(np.nextafter(negatives[needed - 1], np.inf)) if needed else 0.0
    return FloorCalibration(
        floor=floor,
        in_scope_accuracy=float((right & (scores >= floor)).mean()),
        decline_recall=float((negatives < floor).mean()),
        method=f"lowest floor declining >= {target_recall:.0%} of held-out out-of-scope questions",
    )
