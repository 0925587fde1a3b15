"""Embed the questions that arrive while the model is busy together, in one ``encode``.

One call per question is what limits the knowledge base under load: all-MiniLM-L6-v2 on one
thread of these CPUs embeds 56 short questions/s one at a time but ~200/s sixteen at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, NamedTuple, TypeVar

R = TypeVar("R")


class Query(NamedTuple):
    question: str
    k: int
    include_internal: bool = False  # agents' searches also see internal articles


class QueryBatcher(Generic[R]):
    """Queue questions; one task at a time runs ``run_batch`` on the pending ones in the
    default executor (off the loop) and hands each caller its own result."""

    def __init__(self, run_batch: Callable[[Sequence[Query]], list[R]], max_batch: int = 16):
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[Query, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, query: Query) -> R:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): nothing carries over
            self._loop, self._pending, self._task = loop, [], None
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((query, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = [item for item in self._pending[: self._max_batch] if not item[1].done()]
            del self._pending[: self._max_batch]
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(
                    None, self._run_batch, [query for query, _ in batch]
                )
            except Exception as e:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
