"""A knowledge base editors change while it serves.

Each change builds a new immutable :class:`KnowledgeBase` next to the current one, reusing the
stored vector of every passage whose text is unchanged, and then swaps the reference. Readers
take whichever knowledge base is current when they start and never wait for a writer; writers
queue on one lock, so two publishes cannot build from the same base and lose one of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from knowledge_base.articles import Article
from knowledge_base.embedder import Vectors
from knowledge_base.search import Answer, Hit, KnowledgeBase

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LiveKnowledgeBase:
    """Drop-in for :class:`KnowledgeBase` where the gateway serves it, plus ``publish`` and
    ``remove``. With ``save_to`` each new index is also saved there (the start-up cache)."""

    def __init__(self, initial: KnowledgeBase, *, save_to: Path | None = None) -> None:
        self._current = initial
        self._save_to = save_to
        # The last search's failure, if it failed (the embedding process gone for good, say):
        # the host reports the KB down until a search succeeds again.
        self.failure: str | None = None
        self._lock = asyncio.Lock()
        self._settling: asyncio.Task[None] | None = None

    @property
    def current(self) -> KnowledgeBase:
        """The knowledge base serving now; it never changes, a newer one replaces it."""
        return self._current

    @property
    def articles(self) -> tuple[Article, ...]:
        return self._current.articles

    def article(self, article_id: str, *, include_internal: bool = False) -> Article | None:
        return self._current.article(article_id, include_internal=include_internal)

    def search(self, question: str, k: int = 3, *, include_internal: bool = False) -> list[Hit]:
        return self._current.search(question, k, include_internal=include_internal)

    def answer(self, question: str, floor: float, *, include_internal: bool = False) -> Answer:
        return self._current.answer(question, floor, include_internal=include_internal)

    def answer_for(self, query: Vectors, floor: float, *, include_internal: bool = False) -> Answer:
        """``answer`` for a question already embedded with ``embed`` (the serving model)."""
        return self._current.answer_for(query, floor, include_internal=include_internal)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors of ``texts`` from the serving model (for grouping questions)."""
        return self._current.embedder.encode(texts)

    @property
    def up(self) -> bool:
        return self.failure is None

    async def asearch(
        self, question: str, k: int = 3, *, include_internal: bool = False
    ) -> list[Hit]:
        return await self._watched(
            self._current.asearch(question, k, include_internal=include_internal)
        )

    async def aanswer(
        self, question: str, floor: float, *, include_internal: bool = False
    ) -> Answer:
        return await self._watched(
            self._current.aanswer(question, floor, include_internal=include_internal)
        )

    async def _watched(self, search: Awaitable[T]) -> T:
        try:
            result = await search
        except Exception as exc:
            if self.failure is None:
                logger.error("knowledge-base search failed; reporting the KB down: %r", exc)
            self.failure = repr(exc)
            raise
        if self.failure is not None:
            logger.info("knowledge-base search works again")
            self.failure = None
        return result

    async def publish(self, article: Article) -> None:
        """Make ``article`` (new or changed) searchable; returns once searches see it."""
        await self._change(
            f"published {article.id}",
            lambda kb: (
                None
                if kb.article(article.id, include_internal=True) == article
                else kb.with_changes(upsert=[article])
            ),
        )

    async def remove(self, article_id: str) -> None:
        """Stop serving ``article_id``; a no-op when it is not served."""
        await self._change(
            f"removed {article_id}",
            lambda kb: (
                None
                if kb.article(article_id, include_internal=True) is None
                else kb.with_changes(remove=[article_id])
            ),
        )

    async def sync(self, published: Sequence[Article]) -> tuple[int, int]:
        """Serve exactly ``published``: changed and new articles in, missing ones out, in one
        swap. Returns (upserted, removed). For changes made elsewhere (a CLI import)."""
        counts = (0, 0)

        def build(kb: KnowledgeBase) -> KnowledgeBase | None:
            nonlocal counts
            served = {article.id: article for article in kb.articles}
            upsert = [a for a in published if served.get(a.id) != a]
            remove = set(served) - {article.id for article in published}
            counts = (len(upsert), len(remove))
            return kb.with_changes(upsert=upsert, remove=remove) if upsert or remove else None

        await self._change("synced", build)
        return counts

    async def _change(
        self, what: str, build: Callable[[KnowledgeBase], KnowledgeBase | None]
    ) -> None:
        loop = asyncio.get_running_loop()
        async with self._lock:
            started = time.perf_counter()
            # Chunking and embedding are CPU work: off the event loop.
            new = await loop.run_in_executor(None, build, self._current)
            if new is None:
                return
            self._current = new
            logger.info("%s in %.0f ms", what, (time.perf_counter() - started) * 1000)
            if new.head_stale or new.compaction_due:
                self._settle_later()
            if self._save_to is not None:
                await loop.run_in_executor(None, self._save, new, self._save_to)

    def _settle_later(self) -> None:
        """Improve the latest knowledge base behind the scenes: one task at a time."""
        if self._settling is None or self._settling.done():
            self._settling = asyncio.get_running_loop().create_task(self._settle())

    async def _settle(self) -> None:
        """Retrain the ranking head and compact the index of the serving knowledge base, then
        swap the result in, unless a newer change came first (then settle that one). Edits are
        served before this (on the old head, with the index's exact delta): it only restores
        ranking quality and search speed, and may take minutes on a large KB."""
        loop = asyncio.get_running_loop()
        while True:
            snapshot = self._current
            if not (snapshot.head_stale or snapshot.compaction_due):
                return
            started = time.perf_counter()
            try:
                better = await loop.run_in_executor(None, _settled, snapshot)
            except Exception:
                logger.exception("improving the knowledge base failed; the current one serves")
                return
            async with self._lock:
                if self._current is snapshot:
                    self._current = better
                    elapsed = (time.perf_counter() - started) * 1000
                    done = ["index compacted"] if snapshot.compaction_due else []
                    done += ["ranking head retrained"] if snapshot.head_stale else []
                    logger.info("%s in %.0f ms", " and ".join(done), elapsed)
                    if self._save_to is not None and snapshot.compaction_due:
                        await loop.run_in_executor(None, self._save, better, self._save_to)
                    return

    async def settled(self) -> None:
        """Wait until the serving knowledge base is settled (tests, benchmarks)."""
        while self._settling is not None and not self._settling.done():
            await asyncio.shield(self._settling)

    @staticmethod
    def _save(kb: KnowledgeBase, directory: Path) -> None:
        try:
            kb.save(directory)
        except OSError as exc:
            # The cache only saves start-up time; the swap already happened.
            logger.warning("could not save knowledge base index to %s: %s", directory, exc)


def _settled(kb: KnowledgeBase) -> KnowledgeBase:
    kb = kb.compacted() if kb.compaction_due else kb
    return kb.with_fresh_head() if kb.head_stale else kb
