"""Rate limits shared between gateway processes through Redis (bot.ratelimit_redis).

Two Redis clients stand for two gateway processes; the Redis is the one at 127.0.0.1:6379,
each test under its own key prefix (deleted afterwards).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from bot.errors import TooManyRequests
from bot.ratelimit import AsyncWindow, Limit, LocalWindow, SlidingWindow
from bot.ratelimit import take_all as take_all_local
from bot.ratelimit_redis import RedisSlidingWindow, take_all
from tests.services import REDIS_URL, require_redis

MakeWindow = Callable[..., RedisSlidingWindow]


@pytest.fixture
async def clients() -> AsyncIterator[tuple[Redis, Redis]]:
    """One client per gateway process."""
    require_redis()
    a, b = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    yield a, b
    await a.aclose()
    await b.aclose()


@pytest.fixture
async def prefix(clients: tuple[Redis, Redis]) -> AsyncIterator[str]:
    prefix = f"test:{uuid.uuid4().hex}:rl:"
    yield prefix
    keys = [key async for key in clients[0].scan_iter(match=prefix + "*")]
    if keys:
        await clients[0].delete(*keys)


@pytest.fixture
def make_window(prefix: str) -> MakeWindow:
    def make(client: Redis, limit: Limit, name: str = "sender") -> RedisSlidingWindow:
        return RedisSlidingWindow(client, limit, name, prefix=prefix)

    return make


async def test_the_limit_holds_across_processes(
    clients: tuple[Redis, Redis], make_window: MakeWindow
) -> None:
    limit = Limit(3, 10.0)
    on_a, on_b = make_window(clients[0], limit), make_window(clients[1], limit)
    assert await on_a.take("alice", 100.0) == 0
    assert await on_b.take("alice", 101.0) == 0
    assert await on_a.take("alice", 102.0) == 0
    # The fourth, on either process, waits until the first (at 100) leaves the window.
    assert await on_b.take("alice", 103.0) == pytest.approx(7.0)
    assert await on_a.take("alice", 103.5) == pytest.approx(6.5)
    assert TooManyRequests("messages", await on_b.take("alice", 103.0)).retry_after == 7
    assert await on_b.take("bob", 103.0) == 0  # another key has its own budget
    assert await on_a.take("alice", 110.0) == 0  # refusals cost nothing: the first left
    assert await on_b.take("alice", 110.0) == pytest.approx(1.0)  # now 101 is the oldest


async def test_redis_clock_gives_the_right_retry_after(
    clients: tuple[Redis, Redis], make_window: MakeWindow
) -> None:
    limit = Limit(2, 30.0)
    on_a, on_b = make_window(clients[0], limit), make_window(clients[1], limit)
    assert await on_a.take("1.2.3.4") == 0
    assert await on_b.take("1.2.3.4") == 0
    wait = await on_a.take("1.2.3.4")
    assert 29.0 < wait <= 30.0
    assert TooManyRequests("requests from your address", wait).retry_after == 30
    assert 29.0 < await on_b.wait("1.2.3.4") <= 30.0
    ttl = await clients[0].pttl(on_a.redis_key("1.2.3.4"))
    assert 29_000 < ttl <= 30_000  # the key goes a window after its last event


async def test_concurrent_takes_from_two_processes_admit_exactly_the_limit(
    clients: tuple[Redis, Redis], make_window: MakeWindow
) -> None:
    limit = Limit(10, 60.0)
    windows = [make_window(clients[0], limit), make_window(clients[1], limit)]
    waits = await asyncio.gather(*(windows[i % 2].take("burst") for i in range(60)))
    assert sum(1 for w in waits if w == 0) == 10


async def test_same_answers_as_the_in_memory_window(
    clients: tuple[Redis, Redis], make_window: MakeWindow
) -> None:
    rng = random.Random(7)
    limit = Limit(4, 5.0)
    shared = [make_window(clients[0], limit), make_window(clients[1], limit)]
    local = SlidingWindow(limit)
    now = 1000.0
    for _ in range(300):
        now += rng.choice([0.0, 0.25, 0.5, 1.0, 2.5])
        key = rng.choice("abc")
        window = rng.choice(shared)
        assert await window.take(key, now) == pytest.approx(local.take(key, now), abs=1e-6)


async def test_take_all_refused_costs_no_key_its_budget(
    clients: tuple[Redis, Redis], make_window: MakeWindow
) -> None:
    sender = make_window(clients[0], Limit(5, 10.0), "sender")
    address = make_window(clients[0], Limit(2, 10.0), "address")
    assert await take_all([(sender, "alice"), (address, "1.2.3.4")], 0.0) == 0
    assert await take_all([(sender, "alice"), (address, "1.2.3.4")], 1.0) == 0
    assert await take_all([(sender, "alice"), (address, "1.2.3.4")], 2.0) == pytest.approx(8.0)
    # alice's refused message was not counted: three more fit, from other addresses.
    assert await take_all([(sender, "alice"), (address, "5.6.7.8")], 3.0) == 0
    assert await take_all([(sender, "alice"), (address, "5.6.7.8")], 4.0) == 0
    assert await take_all([(sender, "alice"), (address, "9.9.9.9")], 5.0) == 0
    # The sixth waits for alice's first (at 0) to leave; the fresh address was not charged.
    assert await take_all([(sender, "alice"), (address, "10.0.0.1")], 6.0) == pytest.approx(4.0)
    assert not await clients[0].exists(address.redis_key("10.0.0.1"))
    assert await address.wait("1.2.3.4", 6.0) == pytest.approx(4.0)


@pytest.mark.parametrize("backend", ["redis", "local"])
async def test_wait_record_forget_as_the_sign_in_throttle_uses_them(
    clients: tuple[Redis, Redis], make_window: MakeWindow, backend: str
) -> None:
    limit = Limit(2, 60.0)
    on_a: AsyncWindow
    on_b: AsyncWindow
    if backend == "redis":
        on_a, on_b = (
            make_window(clients[0], limit, "login"),
            make_window(clients[1], limit, "login"),
        )
    else:  # the in-process default behind the same awaited interface
        on_a = on_b = LocalWindow(limit)
    await on_a.record("ann", 0.0)
    assert await on_b.wait("ann", 1.0) == 0
    await on_b.record("ann", 1.0)
    assert await on_a.wait("ann", 2.0) == pytest.approx(58.0)
    await on_b.forget("ann")  # a success clears the account's failures
    assert await on_a.wait("ann", 2.0) == 0


async def test_unreachable_redis_limits_per_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        window = RedisSlidingWindow(client, Limit(2, 10.0), "sender")
        assert await window.take("alice") == 0
        assert await window.take("alice") == 0
        assert 9.0 < await window.take("alice") <= 10.0
        assert await take_all([(window, "bob")]) == 0
        await window.forget("alice")
        assert await window.take("alice") == 0
        assert caplog.text.count("Redis unreachable") == 1  # once per ten seconds
        assert take_all_local([(window.fallback, "alice")], 0.0) == 0
    finally:
        await client.aclose()


async def test_windows_checked_together_share_a_client(
    clients: tuple[Redis, Redis], make_window: MakeWindow
) -> None:
    a = make_window(clients[0], Limit(1, 1.0), "x")
    b = make_window(clients[1], Limit(1, 1.0), "y")
    with pytest.raises(ValueError, match="share one Redis client"):
        await take_all([(a, "k"), (b, "k")])
