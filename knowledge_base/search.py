"""Semantic search over help-centre articles, returning one cited hit per article."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knowledge_base.articles import Article
from knowledge_base.batching import Query, QueryBatcher
from knowledge_base.chunking import DEFAULT_MAX_CHARS, Passage, chunk_article
from knowledge_base.embedder import Embedder, Vectors
from knowledge_base.errors import IndexLoadError, KnowledgeBaseError
from knowledge_base.fingerprint import content_fingerprint
from knowledge_base.index import METADATA_FILE, VectorIndex
from knowledge_base.ranking import (
    HEAD_MAX_ARTICLES,
    HEAD_MAX_PHRASINGS,
    HEAD_MIN_PHRASINGS,
    ArticleHead,
    blend,
    quoted_questions,
)

logger = logging.getLogger(__name__)

# Passages retrieved per requested article before deduplication; several passages of one
# article (its sections and question phrasings) usually crowd the top of the ranking.
_SEARCH_WIDTH = 10
_EMBED_BATCH = 256
# When an article is matched through its title or an alternate question, the lead is written as
# its summary answer, so it wins ties. A section replaces it only when it is clearly closer to
# the question: on 24 labelled shop questions against kb/articles (all-MiniLM-L6-v2), margins
# from 0.03 to 0.08 chose an acceptable passage 19-20 times, 0.12 only 18. 0.05 sits mid-plateau.
_SECTION_OVER_LEAD_MARGIN = 0.05


@dataclass(frozen=True)
class Citation:
    """Where the customer can read more: the article's own url, else ``/kb/{id}#{anchor}``."""

    article_id: str
    title: str
    url: str


@dataclass(frozen=True)
class Hit:
    """An article's best match; ``passage`` is always answer text, never a question.

    ``score`` is a confidence in [0, 1]: the mean of the article's best passage cosine and the
    probability the knowledge base's head gives it; just the cosine when there is no head
    (``head=False``, fewer than two articles, or fewer than ``HEAD_MIN_PHRASINGS`` phrasings
    per article on average).
    """

    article_id: str
    title: str
    score: float
    passage: str
    citation: Citation


@dataclass(frozen=True)
class Answer:
    """The best hit (even when not confident) and whether its score reached the floor."""

    hit: Hit | None
    confident: bool
    best_score: float


_NO_ANSWER = Answer(hit=None, confident=False, best_score=0.0)


class KnowledgeBase:
    """Articles plus a vector index of their passages. Immutable once built; thread-safe
    as long as the embedder is.
    """

    def __init__(
        self,
        articles: Sequence[Article],
        embedder: Embedder,
        index: VectorIndex,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        head: bool = True,
        trained: ArticleHead | None = None,
        train: bool = True,
        check: bool = True,
    ) -> None:
        """``head``: rank with a trained head (``knowledge_base/ranking.py``). Without
        ``train``, ``trained`` (the previous head, maybe None) serves as it is, marked stale:
        ``with_changes`` serves an edit at once, and ``with_fresh_head`` retrains later."""
        by_id = {article.id: article for article in articles}
        if len(by_id) != len(articles):
            raise KnowledgeBaseError("article ids must be unique")
        if index.dim != embedder.dim:
            raise KnowledgeBaseError(f"index has dim {index.dim}, embedder {embedder.dim}")
        self._articles = {key: by_id[key] for key in sorted(by_id)}
        self._internal = frozenset(a.id for a in articles if a.audience == "internal")
        self._embedder = embedder
        self._max_chars = max_chars
        self._index = index
        self._passages = index.passages
        if check:  # an index from outside; one derived from a checked one needs no O(size) walk
            for passage in self._passages:
                if passage.article_id not in self._articles:
                    raise KnowledgeBaseError(
                        f"index refers to unknown article {passage.article_id!r}"
                    )
        self._use_head = head
        self._head_stale = head and not train
        self._head = None if not head else self._train_head() if train else trained
        self._head_columns = (
            {}
            if self._head is None
            else {a: c for c, a in enumerate(self._head.article_ids) if a in self._articles}
        )
        self._batcher = QueryBatcher(self.search_many)

    @classmethod
    def build(
        cls,
        articles: Sequence[Article],
        embedder: Embedder,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        head: bool = True,
        reuse: VectorIndex | None = None,
    ) -> KnowledgeBase:
        """Chunk and embed ``articles`` into a fresh in-memory index. ``reuse``: an index
        built with this embedder (the one saved before the articles changed), whose vector is
        taken for every passage whose embedding text it holds: only new text is embedded."""
        if len({article.id for article in articles}) != len(articles):
            raise KnowledgeBaseError("article ids must be unique")
        fingerprint = content_fingerprint(articles, embedder.name, embedder.dim, max_chars)
        index = VectorIndex(embedder.dim, embedder.name, fingerprint)
        passages = [p for article in articles for p in _article_passages(article, max_chars)]
        known: dict[str, int] = {}
        if reuse is not None:
            known = {_embedding_text(p): i for i, p in enumerate(reuse.passages)}
        embedded = 0
        for start in range(0, len(passages), _EMBED_BATCH):
            texts = [_embedding_text(p) for p in passages[start : start + _EMBED_BATCH]]
            rows = [known.get(text) for text in texts]
            matrix = np.empty((len(texts), embedder.dim), dtype=np.float32)
            have = [n for n, row in enumerate(rows) if row is not None]
            if reuse is not None and have:
                matrix[have] = reuse.vectors([row for row in rows if row is not None])
            missing = [n for n, row in enumerate(rows) if row is None]
            if missing:
                matrix[missing] = embedder.encode([texts[n] for n in missing])
                embedded += len(missing)
            index.add(passages[start : start + _EMBED_BATCH], matrix)
        logger.info(
            "indexed %d passages from %d articles (%d embedded, the rest reused)",
            len(passages),
            len(articles),
            embedded,
        )
        return cls(articles, embedder, index, max_chars=max_chars, head=head)

    @classmethod
    def load(
        cls,
        directory: Path,
        embedder: Embedder,
        articles: Sequence[Article],
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        head: bool = True,
    ) -> KnowledgeBase:
        """Reuse the index saved in ``directory`` if it was built from the same article content
        with the same embedder; otherwise build one and try to save it there for next time.
        """
        expected = content_fingerprint(articles, embedder.name, embedder.dim, max_chars)
        reuse = None
        try:
            index = VectorIndex.load(directory)
        except IndexLoadError as exc:
            # A missing cache is the normal first start; a present but unreadable one is not.
            level = logging.WARNING if (directory / METADATA_FILE).exists() else logging.INFO
            logger.log(level, "building knowledge base index: %s", exc)
        else:
            same_model = index.embedder_name == embedder.name and index.dim == embedder.dim
            if same_model and index.fingerprint == expected:
                logger.info("reusing knowledge base index in %s", directory)
                return cls(articles, embedder, index, max_chars=max_chars, head=head)
            # Articles changed since it was saved (an import while the gateway was stopped):
            # its vectors still serve every passage whose text did not change.
            reuse = index if same_model else None
            logger.info("knowledge base index in %s is stale; rebuilding", directory)
        knowledge_base = cls.build(articles, embedder, max_chars=max_chars, head=head, reuse=reuse)
        try:
            knowledge_base.save(directory)
        except OSError as exc:
            # The cache only saves start-up time; serving without it beats not serving.
            logger.warning("could not save knowledge base index to %s: %s", directory, exc)
        return knowledge_base

    def save(self, directory: Path) -> None:
        """Persist the index so ``load`` can skip embedding on the next start."""
        if not self._index.fingerprint:  # left for now by ``with_changes``
            self._index.fingerprint = content_fingerprint(
                self._articles.values(), self._embedder.name, self._embedder.dim, self._max_chars
            )
        self._index.save(directory)

    def with_changes(
        self, upsert: Sequence[Article] = (), remove: Collection[str] = ()
    ) -> KnowledgeBase:
        """A new knowledge base with ``upsert`` added or replaced and ``remove`` dropped.

        Every passage whose embedding text this index already holds for the same article keeps
        its stored vector; only new text is embedded. This knowledge base is left unchanged.
        """
        if len({article.id for article in upsert}) != len(upsert):
            raise KnowledgeBaseError("article ids must be unique")
        changed = {article.id for article in upsert} | set(remove)
        articles = [a for a in self._articles.values() if a.id not in changed] + list(upsert)
        fresh = [p for article in upsert for p in _article_passages(article, self._max_chars)]
        # O(changed passages), not O(size): the new index shares this one's base (see
        # VectorIndex.with_changes); this knowledge base and its readers are left untouched.
        # The content fingerprint hashes every article: ``save`` computes it, off the edit.
        index = self._index.with_changes(
            changed, fresh, self._vectors_for(fresh, changed), fingerprint=""
        )
        # The head is kept as it was: retraining it takes seconds to minutes on a big KB, and
        # an edit must be served within a second. Until ``with_fresh_head`` replaces it, a new
        # article is scored by its cosine alone and a removed one is never offered.
        return KnowledgeBase(
            articles,
            self._embedder,
            index,
            max_chars=self._max_chars,
            head=self._use_head,
            trained=self._head,
            train=False,
            check=False,
        )

    @property
    def compaction_due(self) -> bool:
        """Edits have piled up in the index: ``compacted`` (off the request path) is due."""
        return self._index.compaction_due

    def compacted(self) -> KnowledgeBase:
        """The same knowledge base over a compacted index. Slow at scale (minutes at a million
        passages): run it off the request path and swap the result in."""
        compacted = KnowledgeBase(
            self.articles,
            self._embedder,
            self._index.compacted(),
            max_chars=self._max_chars,
            head=self._use_head,
            trained=self._head,
            train=False,
            check=False,
        )
        compacted._head_stale = self._head_stale  # same articles: the head is as good as it was
        return compacted

    @property
    def head_stale(self) -> bool:
        """True when the head predates the latest ``with_changes``."""
        return self._head_stale

    def with_fresh_head(self) -> KnowledgeBase:
        """This knowledge base with its head trained on its current articles."""
        return KnowledgeBase(
            self.articles,
            self._embedder,
            self._index,
            max_chars=self._max_chars,
            head=self._use_head,
            check=False,
        )

    def _vectors_for(self, passages: Sequence[Passage], changed: Collection[str]) -> Vectors:
        known = {
            (article_id, _embedding_text(self._passages[i])): i
            for article_id in changed
            for i in self._index.positions_of(article_id)
        }
        stored = [known.get((p.article_id, _embedding_text(p))) for p in passages]
        matrix = np.zeros((len(passages), self._embedder.dim), dtype=np.float32)
        reused = [row for row, i in enumerate(stored) if i is not None]
        matrix[reused] = self._index.vectors([i for i in stored if i is not None])
        missing = [row for row, i in enumerate(stored) if i is None]
        if missing:
            matrix[missing] = self._embedder.encode([_embedding_text(passages[r]) for r in missing])
        logger.debug("re-embedded %d of %d passages", len(missing), len(passages))
        return matrix

    @property
    def embedder(self) -> Embedder:
        """The model this index was built with (questions must be embedded with it)."""
        return self._embedder

    @property
    def articles(self) -> tuple[Article, ...]:
        """All articles, internal ones included, sorted by id."""
        return tuple(self._articles.values())

    def article(self, article_id: str, *, include_internal: bool = False) -> Article | None:
        """The article with that id; an internal one only when ``include_internal``."""
        article = self._articles.get(article_id)
        if article is None or (article.id in self._internal and not include_internal):
            return None
        return article

    def search(self, question: str, k: int = 3, *, include_internal: bool = False) -> list[Hit]:
        """Up to ``k`` hits, one per article, best score first. Blank questions give ``[]``.

        Internal articles are searched only when ``include_internal`` (agents, never customers).
        """
        return self.search_many([Query(question, k, include_internal)])[0]

    def search_many(self, queries: Sequence[Query]) -> list[list[Hit]]:
        """``search`` for several queries at once, embedding the questions together."""
        for query in queries:
            if query.k < 1:
                raise ValueError(f"k must be at least 1, got {query.k}")
        asked = [query.question for query in queries if query.question.strip()]
        rows: list[Vectors] = list(self._embedder.encode(asked)) if asked else []
        vectors = iter(rows)
        return [
            self._hits(next(vectors), query.k, query.include_internal)
            if query.question.strip()
            else []
            for query in queries
        ]

    def _hits(self, query: Vectors, k: int, include_internal: bool) -> list[Hit]:
        return [
            self._hit(passage, score, query)
            for passage, score in self._best_per_article(query, k, include_internal)
        ]

    def answer(self, question: str, floor: float, *, include_internal: bool = False) -> Answer:
        """The single best hit, ``confident`` when its score is at least ``floor``."""
        return _answer(self.search(question, k=1, include_internal=include_internal), floor)

    def answer_for(self, query: Vectors, floor: float, *, include_internal: bool = False) -> Answer:
        """``answer`` for a question already embedded with this knowledge base's model (one
        row of ``embedder.encode``): the answer fast path embeds each question once."""
        return _answer(self._hits(query, 1, include_internal), floor)

    async def asearch(
        self, question: str, k: int = 3, *, include_internal: bool = False
    ) -> list[Hit]:
        """``search`` off the event loop; questions asked meanwhile are embedded together."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return await self._batcher.submit(Query(question, k, include_internal))

    async def aanswer(
        self, question: str, floor: float, *, include_internal: bool = False
    ) -> Answer:
        """``answer`` off the event loop, batched like ``asearch``."""
        hits = await self.asearch(question, k=1, include_internal=include_internal)
        return _answer(hits, floor)

    def _train_head(self) -> ArticleHead | None:
        # Every phrasing (title, alternate or quoted question) is a labelled example. With a
        # title and one question per article the head only learns noise, so it waits for more.
        positions = [i for i, p in enumerate(self._passages) if p.kind == "question"]
        articles = len({self._passages[i].article_id for i in positions})
        if articles < 2 or len(positions) < HEAD_MIN_PHRASINGS * articles:
            return None
        if articles > HEAD_MAX_ARTICLES or len(positions) > HEAD_MAX_PHRASINGS:
            logger.info("%d articles, %d phrasings: cosine ranking", articles, len(positions))
            return None
        labels = [self._passages[i].article_id for i in positions]
        return ArticleHead.fit(self._index.vectors(positions), labels)

    def _best_per_article(
        self, query: Vectors, k: int, include_internal: bool
    ) -> list[tuple[Passage, float]]:
        hidden = frozenset() if include_internal else self._internal
        nearest = self._nearest(query, k, hidden)
        if self._head is None:
            return list(nearest.values())
        probabilities = self._head.probabilities(query)[0]
        # Candidates: the k articles nearest by cosine plus the k the head likes best.
        liked = (self._head.article_ids[int(c)] for c in np.argsort(-probabilities))
        served = (a for a in liked if a in self._head_columns and a not in hidden)
        for article_id in itertools.islice(served, k):
            if article_id not in nearest:
                nearest[article_id] = self._best_passage(article_id, query)
        scored = [
            (passage, blend(cosine, self._probability(probabilities, passage.article_id)))
            for passage, cosine in nearest.values()
        ]
        scored.sort(key=lambda item: -item[1])
        return scored[:k]

    def _probability(self, probabilities: Vectors, article_id: str) -> float | None:
        # None (cosine alone) for an article published since the head was trained.
        column = self._head_columns.get(article_id)
        return None if column is None else float(probabilities[column])

    def _nearest(
        self, query: Vectors, k: int, hidden: frozenset[str]
    ) -> dict[str, tuple[Passage, float]]:
        width = k * _SEARCH_WIDTH
        while True:
            best: dict[str, tuple[Passage, float]] = {}
            for passage, score in self._index.search(query, width):
                if passage.article_id in hidden:
                    continue
                # Results arrive best first, so the first passage seen is the article's best.
                best.setdefault(passage.article_id, (passage, score))
                if len(best) == k:
                    return best
            if width >= len(self._index):
                return best
            width *= 4

    def _best_passage(self, article_id: str, query: Vectors) -> tuple[Passage, float]:
        positions = self._index.positions_of(article_id)
        scores = self._index.vectors(positions) @ query
        best = int(np.argmax(scores))
        return self._passages[positions[best]], float(scores[best])

    def _hit(self, passage: Passage, score: float, query: Vectors) -> Hit:
        shown = passage if passage.kind == "section" else self._answer_section(passage, query)
        article = self._articles[passage.article_id]
        url = article.url or f"/kb/{article.id}" + (f"#{shown.anchor}" if shown.anchor else "")
        return Hit(
            article_id=article.id,
            title=article.title,
            score=score,
            passage=shown.text,
            citation=Citation(article_id=article.id, title=article.title, url=url),
        )

    def _answer_section(self, matched: Passage, query: Vectors) -> Passage:
        positions = [
            p
            for p in self._index.positions_of(matched.article_id)
            if self._passages[p].kind == "section"
        ]
        if not positions:
            # Unreachable for loaded articles (an empty body is rejected), kept for safety.
            return matched
        scores = self._index.vectors(positions) @ query
        scored = [(float(s), self._passages[p]) for s, p in zip(scores, positions, strict=True)]
        leads = [item for item in scored if item[1].anchor is None]
        headed = [item for item in scored if item[1].anchor is not None]
        if not leads or not headed:
            return max(leads or headed, key=lambda item: item[0])[1]
        lead_score, lead = max(leads, key=lambda item: item[0])
        if matched.kind == "question" and matched.text == matched.title:
            # Asked the article's own question: the lead is written as its answer, and a
            # section repeating the title's words ("What can't be returned" under "What is
            # your returns policy?") would answer a narrower one.
            return lead
        section_score, section = max(headed, key=lambda item: item[0])
        return section if section_score >= lead_score + _SECTION_OVER_LEAD_MARGIN else lead


def _answer(hits: list[Hit], floor: float) -> Answer:
    if not hits:
        return _NO_ANSWER
    best = hits[0]
    return Answer(hit=best, confident=best.score >= floor, best_score=best.score)


def _article_passages(article: Article, max_chars: int) -> list[Passage]:
    """The article's chunks plus its quoted example questions as extra question passages."""
    passages = chunk_article(article, max_chars)
    seen = {" ".join(p.text.lower().split()) for p in passages if p.kind == "question"}
    for question in quoted_questions(article.body):
        key = " ".join(question.lower().split())
        if key not in seen:
            seen.add(key)
            passages.append(
                Passage(article.id, article.title, None, None, question, kind="question")
            )
    return passages


def _embedding_text(passage: Passage) -> str:
    # Sections carry their article title and heading so a short section ("Usually 3-5 days.")
    # still embeds near questions that name the topic. Change => bump PIPELINE_VERSION.
    if passage.kind == "question":
        return passage.text
    context = passage.title if passage.heading is None else f"{passage.title}: {passage.heading}"
    return f"{context}\n\n{passage.text}"
