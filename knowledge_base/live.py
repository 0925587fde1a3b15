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
from collections.abc import Callable
from pathlib import Path

from knowledge_base.articles import Article
from knowledge_base.search import Answer, Hit, KnowledgeBase

logger = logging.getLogger(__name__)


class LiveKnowledgeBase:
    """Drop-in for :class:`KnowledgeBase` where the gateway serves it, plus ``publish`` and
    ``remove``. With ``save_to`` each new index is also saved there (the start-up cache)."""

    def __init__(self, initial: KnowledgeBase, *, save_to: Path | None = None) -> None:
        self._current = initial
        self._save_to = save_to
        self._lock = asyncio.Lock()

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

    async def asearch(
        self, question: str, k: int = 3, *, include_internal: bool = False
    ) -> list[Hit]:
        return await self._current.asearch(question, k, include_internal=include_internal)

    async def aanswer(
        self, question: str, floor: float, *, include_internal: bool = False
    ) -> Answer:
        return await self._current.aanswer(question, floor, include_internal=include_internal)

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
            if self._save_to is not None:
                await loop.run_in_executor(None, self._save, new, self._save_to)

    @staticmethod
    def _save(kb: KnowledgeBase, directory: Path) -> None:
        try:
            kb.save(directory)
        except OSError as exc:
            # The cache only saves start-up time; the swap already happened.
            logger.warning("could not save knowledge base index to %s: %s", directory, exc)
