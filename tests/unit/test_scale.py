"""[scale]: settings, and limits shared by gateway processes through Redis (a real Redis at
127.0.0.1:6379, a fresh prefix per test; ``tests.services``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from bot.app import create_app
from bot.channels.web import SentFrames, WebChannel
from bot.errors import ConfigError
from bot.hub import Hub
from bot.hub_redis import RedisHub
from bot.keys import HUB
from bot.settings import REDIS_URL_ENV, load_settings
from bot.turns import SharedTurns
from tests.console_helpers import add_user
from tests.services import REDIS_URL, require_redis
from tests.unit.test_console_access import try_sign_in
from tests.unit.test_gateway import make_settings, post, wait_for_rasa

needs_redis = pytest.mark.usefixtures("redis_service")


@pytest.fixture
def redis_service() -> None:
    require_redis()


# -- settings ---------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "promptly.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_without_redis_url_nothing_is_shared(tmp_path):
    settings = load_settings(write(tmp_path, '[scale]\nredis_url = ""\n'), env={})
    assert settings.scale.redis() is None and settings.scale.redis_prefix == "promptly:"


def test_a_redis_url_with_a_password_comes_from_the_environment(tmp_path):
    path = write(tmp_path, '[scale]\nredis_url = "redis://127.0.0.1:6379/0"\n')
    url = "rediss://promptly:s3cret@redis.internal:6380/2"
    settings = load_settings(path, env={REDIS_URL_ENV: url})
    assert settings.scale.redis() == url
    assert "s3cret" not in repr(settings.scale)
    with pytest.raises(ConfigError, match=REDIS_URL_ENV):
        load_settings(write(tmp_path, f'[scale]\nredis_url = "{url}"\n'), env={})


def test_a_redis_url_must_be_one(tmp_path):
    with pytest.raises(ConfigError, match="redis://"):
        load_settings(write(tmp_path, '[scale]\nredis_url = "http://x"\n'), env={})


def test_the_claim_lease_is_30s_unless_set_and_at_least_a_second(tmp_path):
    assert load_settings(write(tmp_path, ""), env={}).scale.claim_lease == timedelta(seconds=30)
    settings = load_settings(write(tmp_path, '[scale]\nclaim_lease = "6s"\n'), env={})
    assert settings.scale.claim_lease == timedelta(seconds=6)
    with pytest.raises(ConfigError, match="claim_lease"):
        load_settings(write(tmp_path, '[scale]\nclaim_lease = "500ms"\n'), env={})


# -- the web channel's writer: several processes publish one conversation ----------------------


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    async def send_json(self, data: dict[str, Any]) -> None:
        self.sent.append(data)

    async def close(self) -> None:
        self.closed = True


class FakeStore:
    def __init__(self, seqs: list[int]) -> None:
        self.seqs = seqs

    async def messages(self, conversation_id: str, after: int) -> list[Any]:
        return [_Stored(conversation_id, seq) for seq in self.seqs if seq > after]


class _Stored:
    def __init__(self, conversation_id: str, seq: int) -> None:
        self.conversation_id, self.seq = conversation_id, seq


def live(seq: int, status: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"conversation_id": "c", "seq": seq, "type": "bot"}
    if status is not None:
        item["delivery"] = {"status": status}
    return item


async def written(items: list[dict[str, Any] | None], sent: SentFrames, store: Any = None):
    hub = Hub()
    subscription = hub.subscribe()
    subscription.follow("c")
    channel = WebChannel.__new__(WebChannel)  # only _write and the store are used
    channel._store = store
    ws = FakeSocket()
    for item in [*items, None]:
        subscription.queue.put_nowait(item)
    await asyncio.wait_for(channel._write(ws, subscription, sent), 5)  # type: ignore[arg-type]
    assert ws.closed
    return ws.sent


async def test_a_frame_arriving_after_a_higher_one_is_still_sent():
    sent = SentFrames()
    sent.replayed("c", 9)  # the replay sent 1..9
    out = await written([live(9), live(11), live(10), live(11), live(10)], sent)
    assert [f["seq"] for f in out] == [11, 10]  # 9 was replayed; the copies are skipped


async def test_a_delivery_update_of_a_frame_sent_live_is_news():
    out = await written([live(3), live(3, "failed"), live(3, "failed")], SentFrames())
    assert [(f["seq"], f.get("delivery")) for f in out] == [(3, None), (3, {"status": "failed"})]


async def test_accepted_replays_what_was_not_sent_live(monkeypatch):
    monkeypatch.setattr("bot.channels.web.frame", lambda m: live(m.seq))
    accepted = {"type": "accepted", "conversation_id": "c", "client_message_id": "m"}
    out = await written([live(2), accepted, live(1), live(4)], SentFrames(), FakeStore([1, 2, 3]))
    # 2 went live; the replay after "accepted" sends 1 and 3 only; 1 again live is a copy
    assert [f.get("seq", f["type"]) for f in out] == [2, "accepted", 1, 3, 4]


def test_live_frames_remembered_are_bounded():
    sent = SentFrames()
    for seq in range(1, SentFrames.LIVE + 50):
        assert sent.fresh(live(seq))
    assert sent.fresh(live(1))  # forgotten: the lowest go first
    assert not sent.fresh(live(SentFrames.LIVE + 10))


# -- two gateway processes sharing one Redis prefix --------------------------------------------


def scaled(tmp_path: Path, rasa_port: int, prefix: str, limits: str = "") -> Any:
    tmp_path.mkdir(exist_ok=True)
    extra = f'[scale]\nredis_url = "{REDIS_URL}"\nredis_prefix = "{prefix}"\n[limits]\n{limits}'
    return make_settings(tmp_path, rasa_port, extra=extra)


@pytest.fixture
async def prefix() -> Any:
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    client = Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@needs_redis
async def test_two_gateways_share_the_sender_limit(tmp_path, rasa_server, aiohttp_client, prefix):
    limit = "messages_per_sender = 3\n"
    one: TestClient = await aiohttp_client(
        create_app(scaled(tmp_path / "one", rasa_server.port, prefix, limit))
    )
    two: TestClient = await aiohttp_client(
        create_app(scaled(tmp_path / "two", rasa_server.port, prefix, limit))
    )
    assert isinstance(one.app[HUB], RedisHub) and one.app[HUB].subscribed
    assert (await post(one, "a", mid="m1", customer="ann")).status == 202
    assert (await post(two, "b", mid="m2", customer="ann")).status == 202
    assert (await post(one, "c", mid="m3", customer="ann")).status == 202
    refused = await post(two, "d", mid="m4", customer="ann")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert (await post(two, "e", mid="m5", customer="bob")).status == 202  # per customer


@needs_redis
async def test_another_prefix_is_another_deployment(tmp_path, rasa_server, aiohttp_client, prefix):
    limit = "messages_per_sender = 1\n"
    one = await aiohttp_client(create_app(scaled(tmp_path / "a", rasa_server.port, prefix, limit)))
    other = scaled(tmp_path / "b", rasa_server.port, prefix + "other:", limit)
    two = await aiohttp_client(create_app(other))
    assert (await post(one, "a", mid="m1", customer="ann")).status == 202
    assert (await post(two, "b", mid="m2", customer="ann")).status == 202


@needs_redis
async def test_two_gateways_share_the_sign_in_throttle(
    tmp_path, rasa_server, aiohttp_client, prefix
):
    settings = scaled(tmp_path / "one", rasa_server.port, prefix)
    console = settings.console.model_copy(update={"max_failures_per_account": 2})
    one = await aiohttp_client(create_app(settings.model_copy(update={"console": console})))
    other = scaled(tmp_path / "two", rasa_server.port, prefix)
    two = await aiohttp_client(create_app(other.model_copy(update={"console": console})))
    await add_user(two, "agent", "ann")
    assert (await try_sign_in(one, "ann", "wrong")).status == 401
    assert (await try_sign_in(two, "ann", "wrong")).status == 401
    assert (await try_sign_in(one, "ANN", "wrong")).status == 429
    assert (await try_sign_in(two, "ann", "wrong")).status == 429


@needs_redis
async def test_health_and_metrics_show_whether_redis_is_reachable(
    tmp_path, rasa_server, aiohttp_client, prefix
):
    shared = await aiohttp_client(create_app(scaled(tmp_path / "a", rasa_server.port, prefix)))
    await wait_for_rasa(shared)
    health = await (await shared.get("/health")).json()
    assert health["components"]["redis"] == "up"
    # A Redis nobody answers at: the gateway serves on, and says so.
    for folder in ("b", "c"):
        (tmp_path / folder).mkdir()
    settings = make_settings(
        tmp_path / "b",
        rasa_server.port,
        extra='[scale]\nredis_url = "redis://127.0.0.1:1/0"\nredis_timeout = "100ms"\n',
    )
    alone = await aiohttp_client(create_app(settings))
    await wait_for_rasa(alone)
    health = await (await alone.get("/health")).json()
    assert health["components"]["redis"] == "down" and health["status"] == "degraded"
    metrics = await (await alone.get("/metrics")).text()
    assert 'promptly_component_up{component="redis"} 0.0' in metrics
    assert (await post(alone, "still here", mid="m1", customer="ann")).status == 202
    # One process on its own shares nothing, and has no Redis to report.
    single = await aiohttp_client(create_app(make_settings(tmp_path / "c", rasa_server.port)))
    assert "redis" not in (await (await single.get("/health")).json())["components"]


# -- a conversation's turns across gateways ---------------------------------------------------


@needs_redis
async def test_two_gateways_take_a_conversations_turns_one_at_a_time(prefix):
    clients = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    a, b = (SharedTurns(c, prefix, hold=5, wait=5) for c in clients)
    order: list[str] = []

    async def turn(turns: SharedTurns, conversation: str, name: str, seconds: float) -> None:
        async with turns.hold(conversation):
            order.append(f"{name} in")
            await asyncio.sleep(seconds)
            order.append(f"{name} out")

    try:
        first = asyncio.create_task(turn(a, "c1", "a", 0.3))
        await asyncio.sleep(0.05)  # a holds c1
        await asyncio.gather(turn(b, "c1", "b", 0), turn(b, "c2", "other", 0), first)
        # b waited for a's turn of c1; another conversation did not wait at all.
        assert order.index("b in") > order.index("a out")
        assert order.index("other out") < order.index("a out")
    finally:
        for client in clients:
            await client.aclose()


async def test_without_redis_or_past_the_wait_a_turn_goes_on():
    gone = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    started = time.monotonic()
    async with SharedTurns(gone, "test:", hold=5, wait=5).hold("c1"):
        pass
    assert time.monotonic() - started < 2
    await gone.aclose()


@needs_redis
async def test_a_turn_waits_at_most_its_wait(prefix):
    client = Redis.from_url(REDIS_URL)
    turns = SharedTurns(client, prefix, hold=5, wait=0.2)
    try:
        async with turns.hold("c1"):
            started = time.monotonic()
            async with turns.hold("c1"):  # another gateway's turn, stuck: go on after 0.2 s
                waited = time.monotonic() - started
        assert 0.15 < waited < 2
    finally:
        await client.aclose()
