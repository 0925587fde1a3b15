"""RedisHub: conversation frames shared between gateway processes through Redis.

Two ``RedisHub`` instances stand for two gateway processes. They run against the Redis at
127.0.0.1:6379 (each test under its own channel prefix), and the restart test against a
private ``redis-server`` it starts and stops itself.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.hub import Frame, Hub, Subscription
from bot.hub_redis import RedisHub
from tests.services import REDIS_URL, missing, reachable, require_redis

TIMEOUT = 5.0

MakeHub = Callable[..., Awaitable[RedisHub]]


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    require_redis()
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def make_hub(redis_client: Redis) -> AsyncIterator[MakeHub]:
    """Hubs sharing one fresh prefix, as the gateway processes of one deployment would."""
    prefix = f"test:{uuid.uuid4().hex}:"
    hubs: list[RedisHub] = []

    async def make(url: str = REDIS_URL, **options: Any) -> RedisHub:
        hub = RedisHub(url, prefix=prefix, **{"backoff": (0.02, 0.2), **options})
        hubs.append(hub)
        await hub.start()
        return hub

    yield make
    for hub in hubs:
        await hub.close()


async def kill(client: Redis, name: str) -> None:
    """CLIENT KILL the connection named ``name`` (by id: other clients of this Redis stay)."""
    ids = [c["id"] for c in await client.client_list() if c["name"] == name]
    assert ids, f"no connection named {name}"
    for client_id in ids:
        await client.client_kill_filter(_id=client_id)


def frame(conversation_id: str, seq: int, text: str = "") -> Frame:
    return {"seq": seq, "conversation_id": conversation_id, "type": "text", "text": text}


async def get(subscription: Subscription) -> Frame | None:
    return await asyncio.wait_for(subscription.queue.get(), TIMEOUT)


def follow(hub: Hub, *conversations: str) -> Subscription:
    subscription = hub.subscribe()
    for conversation_id in conversations:
        subscription.follow(conversation_id)
    return subscription


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_a_client_dropped_for_falling_behind_gets_nothing_past_a_gap() -> None:
    hub = Hub(queue_size=3)
    behind = follow(hub, "c1")
    for seq in range(1, 5):
        hub.publish("c1", frame("c1", seq))
    # Not 2, 3 then the end: the client would resume after 3, and 1 was never sent.
    assert behind.queue.get_nowait() is None
    assert behind.queue.empty() and hub.listeners("c1") == 0


async def test_frame_reaches_each_process_once(make_hub: MakeHub) -> None:
    a, b = await make_hub(), await make_hub()
    on_a, on_b = follow(a, "c1"), follow(b, "c1")
    elsewhere = follow(b, "c2")

    a.publish("c1", frame("c1", 1, "from A"))
    assert on_a.queue.get_nowait() == frame("c1", 1, "from A")  # locally: at once
    assert await get(on_b) == frame("c1", 1, "from A")

    # B answers only after it got A's frame, and Redis sends A its own echo of that frame
    # before B's: once A has B's frame, it has seen (and skipped) the echo.
    b.publish("c1", frame("c1", 2, "from B"))
    assert on_b.queue.get_nowait() == frame("c1", 2, "from B")
    assert await get(on_a) == frame("c1", 2, "from B")

    a.publish("c1", frame("c1", 3))
    assert on_a.queue.get_nowait() == frame("c1", 3)
    assert await get(on_b) == frame("c1", 3)
    await asyncio.sleep(0.1)  # room for any copy to arrive
    assert on_a.queue.empty() and on_b.queue.empty() and elsewhere.queue.empty()
    assert a.resyncs == b.resyncs == 0


async def test_order_is_kept_per_conversation(make_hub: MakeHub) -> None:
    a, b = await make_hub(), await make_hub()
    one, two = follow(b, "c1"), follow(b, "c2")
    for seq in range(1, 601):
        conversation_id = "c1" if seq % 3 else "c2"
        a.publish(conversation_id, frame(conversation_id, seq))

    async def drain(subscription: Subscription, count: int) -> list[int]:
        return [(await get(subscription) or {})["seq"] for _ in range(count)]

    assert await drain(one, 400) == [s for s in range(1, 601) if s % 3]
    assert await drain(two, 200) == [s for s in range(1, 601) if not s % 3]


async def test_a_frame_nobody_follows_is_not_delivered(make_hub: MakeHub) -> None:
    a, b = await make_hub(), await make_hub()
    watching = follow(b, "c1")
    a.publish("nobody", frame("nobody", 1))
    a.publish("c1", frame("c1", 2))
    assert await get(watching) == frame("c1", 2)
    assert b.listeners("nobody") == 0


async def test_killed_subscription_recovers_and_its_clients_replay(
    make_hub: MakeHub, redis_client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await make_hub(), await make_hub()
    before = follow(b, "c1")
    local = follow(b, "c2")

    await kill(redis_client, f"promptly-hub-sub-{b.origin}")
    b.publish("c2", frame("c2", 1))  # while B is not subscribed, its own clients still get it
    assert local.queue.get_nowait() == frame("c2", 1)

    # Subscribed again, B tells the clients that were following to replay from the store:
    # what A published meanwhile reached none of them.
    assert await get(before) is None
    assert await get(local) is None
    assert b.listeners("c1") == 0
    await until(lambda: b.subscribed, "B to subscribe again")
    assert a.resyncs == 0  # A's subscription was not touched
    assert "redis hub: subscription failed" in caplog.text
    assert "1 clients told to replay" not in caplog.text  # 2: both of B's

    after = follow(b, "c1")  # the reconnected client
    a.publish("c1", frame("c1", 2))
    assert await get(after) == frame("c1", 2)


async def test_killed_publisher_connection_is_replaced_without_loss_or_copies(
    make_hub: MakeHub, redis_client: Redis
) -> None:
    a, b = await make_hub(), await make_hub()
    on_b = follow(b, "c1")
    a.publish("c1", frame("c1", 1))
    assert await get(on_b) == frame("c1", 1)

    await kill(redis_client, f"promptly-hub-pub-{a.origin}")
    for seq in range(2, 12):
        a.publish("c1", frame("c1", seq))
    for seq in range(2, 12):
        assert await get(on_b) == frame("c1", seq)
    await asyncio.sleep(0.1)
    assert on_b.queue.empty()
    assert b.resyncs == 0  # nothing was missed: B's clients stay connected


async def test_a_gap_in_another_process_frames_makes_clients_replay(
    make_hub: MakeHub, redis_client: Redis
) -> None:
    b = await make_hub()
    channel = f"{b._channel_prefix}c1"
    first = follow(b, "c1")

    async def send(n: int) -> None:
        body = f'{{"seq":{n},"conversation_id":"c1"}}'
        await redis_client.publish(channel, f"other {n} {body}")

    await send(1)
    assert await get(first) == {"seq": 1, "conversation_id": "c1"}
    await send(1)  # a copy: ignored
    await send(2)
    assert await get(first) == {"seq": 2, "conversation_id": "c1"}
    await send(4)  # 3 never came: the client is told to replay it from the store
    assert await get(first) is None
    assert b.resyncs == 1


async def test_publish_before_start_and_after_close_only_reach_local_clients() -> None:
    hub = RedisHub("redis://127.0.0.1:1/0", connect_timeout=0.2, backoff=(0.05, 0.1))
    local = follow(hub, "c1")
    await hub.start()  # nothing listens on port 1: logged, retried, local delivery works
    assert not hub.subscribed
    hub.publish("c1", frame("c1", 1))
    assert local.queue.get_nowait() == frame("c1", 1)
    await hub.close(flush_timeout=0.05)
    hub.publish("c1", frame("c1", 2))
    assert local.queue.get_nowait() == frame("c1", 2)


# -- a Redis that restarts -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server of this test's own, stopped and started again on the same port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + TIMEOUT
        while not reachable("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise AssertionError("private redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(TIMEOUT)
            self.process = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        missing("no redis-server binary to start a private Redis with")
    server = PrivateRedis(binary)
    server.start()
    yield server
    server.stop()


async def test_redis_restart_recovers(make_hub: MakeHub, private_redis: PrivateRedis) -> None:
    a = await make_hub(private_redis.url, ping_interval=0.2, connect_timeout=1.0)
    b = await make_hub(private_redis.url, ping_interval=0.2, connect_timeout=1.0)
    on_a, on_b = follow(a, "c1"), follow(b, "c1")
    a.publish("c1", frame("c1", 1))
    assert await get(on_b) == frame("c1", 1)
    assert on_a.queue.get_nowait() == frame("c1", 1)

    private_redis.stop()
    await until(lambda: not a.subscribed and not b.subscribed, "both hubs to notice")
    a.publish("c1", frame("c1", 2))  # Redis is down: A's own client still gets it
    assert on_a.queue.get_nowait() == frame("c1", 2)

    private_redis.start()
    await until(lambda: a.subscribed and b.subscribed, "both hubs to subscribe again")
    # Frames may have been missed while Redis was away: every following client is told to
    # reconnect and replay from the store.
    assert await get(on_a) is None
    assert await get(on_b) is None

    again = follow(b, "c1")
    a.publish("c1", frame("c1", 3))
    # A's frame 2 was kept and sent once Redis was back; B's client may or may not have been
    # following by then (it replays it from the store either way), but never out of order.
    received = await get(again)
    if received == frame("c1", 2):
        received = await get(again)
    assert received == frame("c1", 3)


async def test_frames_published_while_redis_is_down_are_sent_when_it_is_back(
    make_hub: MakeHub, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    # A waits 0.5-1 s after a failed PUBLISH: long enough for B to be subscribed again.
    a = await make_hub(private_redis.url, backoff=(1.0, 1.0), connect_timeout=1.0)
    b = await make_hub(private_redis.url, ping_interval=0.2, connect_timeout=1.0)

    private_redis.stop()
    await until(lambda: not b.subscribed, "B to notice")
    a.publish("c1", frame("c1", 1))  # refused: kept
    await until(lambda: "redis hub: publishing failed" in caplog.text, "A to try")
    private_redis.start()
    await until(lambda: b.subscribed, "B to subscribe again")
    on_b = follow(b, "c1")
    for seq in range(2, 11):
        a.publish("c1", frame("c1", seq))

    assert [(await get(on_b) or {}).get("seq") for _ in range(10)] == list(range(1, 11))
    await asyncio.sleep(0.1)
    assert on_b.queue.empty()
    assert "redis hub: publishing again after 1 failed attempts" in caplog.text


async def test_a_silent_redis_is_noticed_by_the_ping(
    make_hub: MakeHub, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    b = await make_hub(private_redis.url, ping_interval=0.1, connect_timeout=0.3)
    on_b = follow(b, "c1")
    admin = Redis.from_url(private_redis.url)
    try:
        await admin.client_pause(800, all=True)  # the link stays up; nothing is answered
        await until(lambda: not b.subscribed, "B to notice the silence")
        assert "did not answer a ping" in caplog.text
        await until(lambda: b.subscribed, "B to subscribe again once Redis answers")
        assert await get(on_b) is None  # its client replays what it may have missed
    finally:
        await admin.aclose()
