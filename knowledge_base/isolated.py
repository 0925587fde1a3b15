"""The embedding model in a child process, so it never competes with its host for the GIL.

In a thread, the model's Python work (tokenising, module calls) holds the GIL in slices of up
to the switch interval, and every await of the host's event loop can wait behind one: with
the web gateway acking 500 msg/s while the KB answered in its thread pool, ack p99 went from
20 ms to 31 ms. In a child process (niced, like Rasa) the loop keeps the GIL to itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from knowledge_base.embedder import SentenceTransformerEmbedder, Vectors

logger = logging.getLogger(__name__)

_model: SentenceTransformerEmbedder | None = None  # in the child


def _start(model_path: Path | None, threads: int | None, nice: int) -> None:
    global _model
    # The host stops this process (``close``) on Ctrl-C; a host killed outright leaves it
    # blocked on a pipe it holds both ends of, so it watches for that itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    if nice:
        os.nice(nice)
    _model = SentenceTransformerEmbedder(model_path, threads)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _describe() -> tuple[str, int]:
    assert _model is not None, "the child's initializer loads the model"
    return _model.name, _model.dim


def _encode(texts: list[str]) -> Vectors:
    assert _model is not None, "the child's initializer loads the model"
    return _model.encode(texts)


class IsolatedEmbedder:
    """A :class:`SentenceTransformerEmbedder` run in one child process.

    ``encode`` blocks its calling thread (callers already run it off the event loop). A child
    that dies (killed, out of memory) is replaced once per call; the call that saw it die is
    retried on the new one.
    """

    def __init__(
        self, model_path: Path | None = None, threads: int | None = 1, nice: int = 5
    ) -> None:
        self._args = (model_path, threads, nice)
        self._pool = self._new_pool()
        described: tuple[str, int] = self._call(_describe)
        self._name, self._dim = described

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the host has threads (store, executor) that fork would copy mid-state.
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=self._args,
        )

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return self._pool.submit(fn, *args).result()
        except BrokenProcessPool:
            logger.warning("the embedding process died; starting a new one")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(fn, *args).result()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        vectors: Vectors = self._call(_encode, list(texts))
        return vectors

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
