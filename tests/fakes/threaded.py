"""Run fake platforms on an event loop of their own, in a thread, for tests that drive a
gateway process from synchronous code or from another event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tests.fakes.base import Call, FakePlatform

T = TypeVar("T")


class FakeThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the fakes' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @contextmanager
    def serving(self, *fakes: FakePlatform) -> Iterator[None]:
        self._thread.start()
        try:
            for fake in fakes:
                self.run(fake.start())
            yield
        finally:
            for fake in fakes:
                self.run(fake.stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


def wait_calls(fake: FakePlatform, count: int, timeout: float = 20.0) -> list[Call]:
    """Poll (from any thread) until the fake recorded ``count`` calls."""
    deadline = time.monotonic() + timeout
    while len(fake.calls) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} calls, got {len(fake.calls)}: {fake.calls}")
        time.sleep(0.05)
    return list(fake.calls)
