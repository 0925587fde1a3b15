"""One turn of a conversation at a time across gateway processes.

Within a process the pipeline holds a lock per conversation around each bot turn, so Rasa
never gets two messages of one conversation at once. With several gateways (``[scale]``), two
messages of one conversation can arrive at two of them together; Rasa's Redis lock store does
not keep two Rasa servers from running them at once (rasa#9213; two servers sharing one lost
one of ten such turns here), and a turn is what writes Rasa's tracker. So gateways that share
Redis also hold a Redis lock per conversation around the turn: redis-py's ``Lock`` (``SET NX
PX`` with a token; only the holder releases it, and it expires if that holder dies).

Redis slow or away: the turn goes on under the process's lock alone (logged), as the rate
limits fall back to the process; a gateway that waited past ``wait`` for another's turn goes
on too, rather than hold the customer.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError

logger = logging.getLogger(__name__)
_WARN_EVERY = 10.0  # seconds: one log line per outage, not one per message


class Turns(Protocol):
    def hold(self, conversation_id: str) -> AbstractAsyncContextManager[None]: ...


class LocalTurns:
    """One process: the pipeline's own lock is all it takes."""

    @asynccontextmanager
    async def hold(self, conversation_id: str) -> AsyncIterator[None]:
        yield


class SharedTurns:
    def __init__(self, client: Redis, prefix: str, *, hold: float, wait: float) -> None:
        self._client = client
        self._prefix = prefix
        self._hold = hold  # the lock expires after this (a turn is bounded by Rasa's timeout)
        self._wait = wait
        self._warned_at = float("-inf")

    @asynccontextmanager
    async def hold(self, conversation_id: str) -> AsyncIterator[None]:
        lock = self._client.lock(
            f"{self._prefix}turn:{conversation_id}",
            timeout=self._hold,
            sleep=0.02,
            blocking_timeout=self._wait,
        )
        try:
            held = await lock.acquire()
        except RedisError as e:
            self._warn("could not take a conversation's turn lock in Redis (%s)", e)
            held = False
        else:
            if not held:
                self._warn("waited %.0f s for another gateway's turn of a conversation", self._wait)
        try:
            yield
        finally:
            if held:
                # Expired meanwhile (a very slow turn), or Redis went away: nothing to release.
                with contextlib.suppress(LockError, RedisError):
                    await lock.release()

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            logger.warning(message + "; the turn goes on under this process's lock", *args)
