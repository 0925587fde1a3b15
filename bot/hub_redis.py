"""Conversation frames shared between gateway processes through Redis pub/sub.

``RedisHub`` is a ``Hub`` (same ``subscribe``/``publish``/``listeners``) whose ``publish``
also sends the frame to Redis, on the channel ``<prefix>hub:<conversation_id>``. Every
process holds one pattern subscription, ``<prefix>hub:*``, and hands what other processes
published to its own subscriptions. A process's own frames are delivered to its own
subscriptions directly, at once (and so still while Redis is away), and skipped when Redis
echoes them back: each is delivered once.

Why one pattern subscription rather than one SUBSCRIBE per followed conversation:
``Subscription.follow`` is synchronous and the web channel replays from the store right after
it. With a channel per conversation, a frame published between that replay and the moment
Redis confirmed the SUBSCRIBE (a round trip later) would reach nobody, and the client would
not know to replay. The pattern is in place before the process serves anyone, follow costs
nothing, and a WebSocket's connect and close send Redis nothing. The price is that every
process receives every frame; the conversation id is in the channel name and the message
starts with a short header, so a frame nobody here follows is dropped without decoding its
JSON. Measured here (Redis 7.0 on loopback, two hubs in one Python process): a SUBSCRIBE is
confirmed in 84 us at the median and 3.2 ms at p99, the window a channel per conversation
would leave open at every follow; through the pattern a frame goes from A's publish to B's
subscription in 0.3 ms (p50) and 0.9 ms (p99) at 1,000 frames/s, about 10,000 frames/s at
most, and a frame that nobody on B follows costs B about 1 us (3-9 us for a followed one).

What is lost while Redis is away is never lost for good, since frames are stored before
they are published:

- this process's frames wait, in order, in a bounded buffer and are sent when Redis is
  back (oldest dropped first past ``buffer``);
- when the subscription comes back after being lost, every local subscription is dropped
  (the client is told to go, exactly as when its queue overflows): it reconnects with
  ``after=<seq>`` and replays from the store whatever other processes published meanwhile;
- each message carries its origin's counter, so a receiver notices a frame of another
  process that never came (its buffer overflowed) and drops its subscriptions the same way,
  and ignores one that came twice (a PUBLISH retried after its reply was lost).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
import time
import uuid
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from bot.hub import Frame, Hub

logger = logging.getLogger(__name__)

_BATCH = 256  # PUBLISHes sent in one pipeline round trip
_ORIGINS = 1024  # other processes remembered (a restart is a new origin)


class _Outgoing(NamedTuple):
    n: int
    channel: str
    payload: bytes


class RedisHub(Hub):
    """A ``Hub`` whose frames reach the subscriptions of every process sharing ``url``.

    ``start()`` before serving, ``close()`` at shutdown (an aiohttp cleanup context fits).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "promptly:",
        queue_size: int = 1000,
        buffer: int = 10_000,
        backoff: tuple[float, float] = (0.1, 5.0),
        ping_interval: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__(queue_size)
        self.origin = uuid.uuid4().hex  # this process, as others see it in each message
        self._url = url
        self._channel_prefix = f"{prefix}hub:"
        self._pattern = _glob_escape(self._channel_prefix) + "*"
        self._backoff = backoff
        self._ping_interval = ping_interval
        self._connect_timeout = connect_timeout
        self._sent = 0  # this origin's counter: the n of the last frame published
        self._pending: collections.deque[_Outgoing] = collections.deque(maxlen=buffer)
        self._wake = asyncio.Event()
        self._seen: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._subscribed = asyncio.Event()
        self._overflowed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher: Redis | None = None
        self._subscriber: Redis | None = None
        self.resyncs = 0  # times local subscriptions were dropped for a possible gap

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and subscribe; waits up to ``connect_timeout`` for the subscription, then
        goes on without it (logged; retried in the background, local delivery unaffected)."""
        # Reconnection is this class's job (it must know when the subscription had a gap),
        # so redis-py is told not to reconnect and resubscribe behind its back.
        options: dict[str, Any] = {
            "retry": Retry(NoBackoff(), 0),
            "socket_connect_timeout": self._connect_timeout,
            # Bounds the handshake and commands; the subscription's reads have their own
            # timeout (the ping interval), so a quiet channel is not an error.
            "socket_timeout": self._connect_timeout,
            "socket_keepalive": True,
        }
        # Named, so CLIENT LIST shows which process holds which connection.
        self._publisher = Redis.from_url(
            self._url, client_name=f"promptly-hub-pub-{self.origin}", **options
        )
        self._subscriber = Redis.from_url(
            self._url, client_name=f"promptly-hub-sub-{self.origin}", **options
        )
        self._tasks = [
            asyncio.create_task(self._listen(self._subscriber), name="redis-hub-listen"),
            asyncio.create_task(self._publish(self._publisher), name="redis-hub-publish"),
        ]
        try:
            await asyncio.wait_for(self._subscribed.wait(), self._connect_timeout)
        except TimeoutError:
            logger.warning(
                "redis hub: not subscribed after %.1f s; frames reach this process's own "
                "clients only until it is (retrying)",
                self._connect_timeout,
            )

    async def close(self, flush_timeout: float = 1.0) -> None:
        """Send what is still buffered (for at most ``flush_timeout``), then disconnect."""
        if self._pending and self._tasks and not self._tasks[1].done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), flush_timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for client in (self._publisher, self._subscriber):
            if client is not None:
                await client.aclose()
        self._publisher = self._subscriber = None
        self._subscribed.clear()

    @property
    def subscribed(self) -> bool:
        """Whether frames of other processes reach this one now."""
        return self._subscribed.is_set()

    async def wait_subscribed(self) -> None:
        await self._subscribed.wait()

    # -- the Hub interface --------------------------------------------------------------

    def publish(self, conversation_id: str, frame: Frame) -> None:
        super().publish(conversation_id, frame)  # this process's clients: at once, once
        try:
            body = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError):
            logger.exception("redis hub: frame for %s is not JSON; not shared", conversation_id)
            return
        self._sent += 1
        header = f"{self.origin} {self._sent} "
        if len(self._pending) == self._pending.maxlen and not self._overflowed:
            self._overflowed = True  # receivers see the gap in the counter and resync
            logger.warning(
                "redis hub: %d frames waiting for Redis; dropping the oldest", len(self._pending)
            )
        self._pending.append(
            _Outgoing(
                self._sent,
                self._channel_prefix + conversation_id,
                (header + body).encode(),
            )
        )
        self._wake.set()

    # -- sending ------------------------------------------------------------------------

    async def _drained(self) -> None:
        while self._pending:
            await asyncio.sleep(0.01)

    async def _publish(self, client: Redis) -> None:
        failures = 0
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._pending[i] for i in range(min(_BATCH, len(self._pending)))]
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for item in batch:
                        pipe.publish(item.channel, item.payload)
                    await pipe.execute()
            except (RedisError, OSError) as e:
                # Kept, in order, and sent again: a receiver ignores a copy it already had.
                await asyncio.sleep(self._failed("publishing", e, failures))
                failures += 1
                continue
            if failures:
                logger.warning("redis hub: publishing again after %d failed attempts", failures)
                failures = 0
            last = batch[-1].n  # the buffer may have dropped some of the batch meanwhile
            while self._pending and self._pending[0].n <= last:
                self._pending.popleft()
            if not self._pending:
                self._overflowed = False

    # -- receiving ----------------------------------------------------------------------

    async def _listen(self, client: Redis) -> None:
        failures = 0
        while True:
            pubsub = client.pubsub()
            try:
                await self._subscribe(pubsub)
                if failures:
                    logger.warning("redis hub: subscribed again after %d failures", failures)
                failures = 0
                await self._receive(pubsub)
            except (RedisError, OSError) as e:
                self._subscribed.clear()
                delay = self._failed("subscription", e, failures)
                await pubsub.aclose()
                await asyncio.sleep(delay)
                failures += 1
            except BaseException:
                self._subscribed.clear()
                await pubsub.aclose()
                raise

    async def _subscribe(self, pubsub: PubSub) -> None:
        await pubsub.psubscribe(self._pattern)
        while True:
            message = await pubsub.get_message(timeout=self._connect_timeout)
            if message is None:
                raise TimeoutError("no psubscribe confirmation from Redis")
            if message["type"] == "psubscribe":
                break
        # Whatever other processes published while this process was not subscribed reached
        # none of its clients: they replay it from the store. (None at the first start.)
        self._seen.clear()
        self._resync("subscribed to Redis")
        self._subscribed.set()

    async def _receive(self, pubsub: PubSub) -> None:
        quiet_since = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self._ping_interval)
            now = time.monotonic()
            if message is not None:
                quiet_since, pinged = now, False
                if message["type"] == "pmessage":
                    self._deliver(message["channel"], message["data"])
                continue
            if now - quiet_since < self._ping_interval:
                continue
            if pinged:  # no answer to a ping in a whole interval: the link is gone
                raise TimeoutError("Redis did not answer a ping")
            await pubsub.ping()
            pinged = True

    def _deliver(self, channel: bytes, data: bytes) -> None:
        try:
            origin_b, n_b, body = data.split(b" ", 2)
            origin, n = origin_b.decode(), int(n_b)
            conversation_id = channel.decode()[len(self._channel_prefix) :]
        except ValueError:
            logger.warning("redis hub: ignoring a malformed message on %r", channel)
            return
        if origin == self.origin:
            return  # delivered locally when it was published
        last = self._seen.get(origin)
        if last is not None and n <= last:
            return  # a copy (a PUBLISH retried after its reply was lost)
        self._seen[origin] = n
        self._seen.move_to_end(origin)
        if len(self._seen) > _ORIGINS:
            self._seen.popitem(last=False)
        if last is not None and n > last + 1:
            self._resync(f"{n - last - 1} frames of process {origin} never came")
        if not self.listeners(conversation_id):
            return  # nobody here follows it: not even decoded
        try:
            frame = json.loads(body)
        except ValueError:
            logger.warning("redis hub: ignoring a frame that is not JSON on %r", channel)
            return
        super().publish(conversation_id, frame)

    def _resync(self, why: str) -> None:
        dropped = self.drop_all()
        if dropped:
            self.resyncs += 1
            logger.warning("redis hub: %s; %d clients told to replay from the store", why, dropped)

    def _failed(self, what: str, error: BaseException, failures: int) -> float:
        """Log a failure (the first of a run as a warning); the seconds to wait before the
        next attempt: exponential from ``backoff[0]`` to ``backoff[1]``, with jitter."""
        low, high = self._backoff
        delay = min(high, low * 2.0 ** min(failures, 32)) * random.uniform(0.5, 1.0)
        log = logger.warning if failures == 0 else logger.debug
        log(
            "redis hub: %s failed (%s: %s); retrying in %.2f s",
            what,
            type(error).__name__,
            error,
            delay,
        )
        return delay


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
