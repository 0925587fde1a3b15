"""Hostile clients at the gateway's edge: rate limits (429 + Retry-After, nothing stored),
WebSocket budgets and idle sockets, slow bodies and slow headers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.channels.web import CLOSE_IDLE, CLOSE_TOO_MANY
from bot.errors import TooManyRequests
from bot.limits import ClientLimits
from bot.runner import app_runner
from bot.settings import LimitSettings, Settings
from bot.store.sqlite import SQLiteStore
from tests.unit.test_gateway import make_settings, post


def with_limits(settings: Settings, **limits: Any) -> Settings:
    return settings.model_copy(update={"limits": LimitSettings.model_validate(limits)})


@pytest.fixture
def limits(request: pytest.FixtureRequest) -> dict[str, Any]:
    """What a test sets in ``[limits]`` (parametrized indirectly)."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client, limits) -> TestClient:
    settings = with_limits(make_settings(tmp_path, rasa_server.port), **limits)
    return await aiohttp_client(create_app(settings))


async def stored_customer_messages(tmp_path: Path) -> int:
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    try:
        return sum(e.type == "received" for e in await store.events())
    finally:
        await store.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the edge object, with a fake clock ------------------------------------------------------


async def test_a_refused_sender_may_send_again_after_the_stated_wait():
    clock = FakeClock()
    limits = ClientLimits(LimitSettings.model_validate({"messages_per_sender": 2}), clock)
    await limits.sender("ann")
    clock.now += 4
    await limits.sender("ann")
    with pytest.raises(TooManyRequests) as refused:
        await limits.sender("ann")
    assert refused.value.retry_after == 6  # the first message leaves the 10 s window at +10
    assert "6 s" in refused.value.message
    await limits.sender("bob")  # another customer is not affected
    clock.now += 5.5
    with pytest.raises(TooManyRequests):
        await limits.sender("ann")
    clock.now += refused.value.retry_after - 5.5
    await limits.sender("ann")


async def test_a_zero_count_turns_a_limit_off():
    settings = LimitSettings.model_validate({"messages_per_sender": 0, "requests_per_address": 0})
    limits = ClientLimits(settings, FakeClock())
    for _ in range(1000):
        await limits.sender("ann")
        await limits.address("10.0.0.1")


def test_a_socket_that_ignores_its_refusals_is_exhausted():
    clock = FakeClock()
    budget = ClientLimits(LimitSettings.model_validate({"messages_per_socket": 2}), clock).socket()
    budget.frame()
    budget.frame()
    for _ in range(2):
        with pytest.raises(TooManyRequests):
            budget.frame()
        assert not budget.exhausted
    with pytest.raises(TooManyRequests):
        budget.frame()
    assert budget.exhausted


# -- REST -------------------------------------------------------------------------------------


@pytest.mark.parametrize("limits", [{"messages_per_sender": 3}], indirect=True)
async def test_past_the_sender_limit_a_message_gets_429_and_is_not_stored(client, tmp_path):
    for i in range(3):
        assert (await post(client, f"message {i}", mid=f"m{i}")).status == 202
    refused = await post(client, "one too many", mid="m3")
    assert refused.status == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 10
    error = (await refused.json())["error"]
    assert error["code"] == "rate_limited" and error["retry_after"] == retry_after
    assert "customer" in error["message"] and "nothing was stored" in error["message"]
    assert (await post(client, "hello", mid="x1", customer="someone-else")).status == 202
    assert await stored_customer_messages(tmp_path) == 4


@pytest.mark.parametrize("limits", [{"messages_per_sender": 1}], indirect=True)
async def test_ratings_share_the_customers_budget(client):
    accepted = await (await post(client, "hi")).json()
    response = await client.post(
        f"/api/conversations/{accepted['conversation_id']}/csat",
        json={"customer_id": "c1", "ticket_id": "t1", "rating": 5},
    )
    assert response.status == 429
    assert (await response.json())["error"]["code"] == "rate_limited"


@pytest.mark.parametrize("limits", [{"requests_per_address": 2}], indirect=True)
async def test_one_address_is_limited_whichever_customers_it_claims_to_be(client):
    assert (await post(client, customer="a")).status == 202
    assert (await post(client, customer="b")).status == 202
    refused = await post(client, customer="c")
    assert refused.status == 429
    assert "address" in (await refused.json())["error"]["message"]


@pytest.mark.parametrize("limits", [{"webhooks_per_address": 2}], indirect=True)
async def test_webhooks_are_limited_per_address_before_anything_is_read(client):
    statuses = [(await client.post("/webhooks/telegram", data=b"{}")).status for _ in range(3)]
    assert statuses == [404, 404, 429]  # no channel enabled: the limit comes first


@pytest.mark.parametrize("limits", [{"body_timeout": "200ms"}], indirect=True)
async def test_a_body_that_drips_in_gets_408(client, tmp_path):
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            b"POST /api/web/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 80\r\n\r\n{"client_message_id": '
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 408")
    assert await stored_customer_messages(tmp_path) == 0


async def test_a_body_in_several_pieces_within_the_time_is_read_whole(client):
    body = json.dumps(frame("m1")).encode()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            b"POST /api/web/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body[:10]
        )
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(body[10:])
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 202")


async def test_a_replay_position_past_every_seq_replays_nothing(client):
    accepted = await (await post(client, "hi")).json()
    response = await client.get(
        f"/api/web/conversations/{accepted['conversation_id']}/messages",
        params={"customer_id": "c1", "after": str(2**70)},  # was a 500 (the driver's overflow)
    )
    assert response.status == 200
    assert (await response.json())["messages"] == []


# -- WebSocket --------------------------------------------------------------------------------


def frame(mid: str, customer: str = "c1") -> dict[str, Any]:
    return {"client_message_id": mid, "text": "hi", "customer": {"id": customer}}


async def transport_frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next ``accepted`` or ``error`` frame (replies to accepted messages are skipped)."""
    while True:
        data: dict[str, Any] = await ws.receive_json(timeout=5)
        if data["type"] in ("accepted", "error"):
            return data


@pytest.mark.parametrize("limits", [{"messages_per_socket": 2}], indirect=True)
async def test_a_socket_past_its_budget_gets_error_frames_then_is_closed(client, tmp_path):
    async with client.ws_connect("/ws", params={"customer_id": "c1"}) as ws:
        for i in range(2):
            await ws.send_json(frame(f"w{i}"))
            assert (await transport_frame(ws))["type"] == "accepted"
        for i in range(2, 4):
            await ws.send_json(frame(f"w{i}"))
            refused = await transport_frame(ws)
            assert refused["client_message_id"] == f"w{i}"
            assert refused["error"]["code"] == "rate_limited"
            assert refused["error"]["retry_after"] >= 1
        await ws.send_str("{not even json")
        assert (await transport_frame(ws))["error"]["code"] == "rate_limited"
        closing = await ws.receive(timeout=5)
        while closing.type is aiohttp.WSMsgType.TEXT:  # the accepted messages' replies
            closing = await ws.receive(timeout=5)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == CLOSE_TOO_MANY
    assert await stored_customer_messages(tmp_path) == 2


@pytest.mark.parametrize("limits", [{"messages_per_sender": 1}], indirect=True)
async def test_the_sender_limit_holds_across_rest_and_the_socket(client):
    assert (await post(client, mid="r1")).status == 202
    async with client.ws_connect("/ws", params={"customer_id": "c1"}) as ws:
        await ws.send_json(frame("w1"))
        refused = await transport_frame(ws)
    assert refused["error"]["code"] == "rate_limited" and refused["client_message_id"] == "w1"


@pytest.mark.parametrize("limits", [{"requests_per_address": 1}], indirect=True)
async def test_connecting_counts_against_the_address(client):
    async with client.ws_connect("/ws", params={"customer_id": "c1"}):
        pass
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", params={"customer_id": "c1"})
    assert refused.value.status == 429


@pytest.mark.parametrize("limits", [{"sockets_per_address": 2}], indirect=True)
async def test_an_address_holds_at_most_its_open_sockets(client):
    params = {"customer_id": "c1"}
    first = await client.ws_connect("/ws", params=params)
    second = await client.ws_connect("/ws", params={"customer_id": "c2"})
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", params={"customer_id": "c3"})
    assert refused.value.status == 429
    assert refused.value.headers is not None and refused.value.headers["Retry-After"] == "10"
    await first.close()
    for _ in range(100):  # the server sees the close a moment later
        try:
            third = await client.ws_connect("/ws", params={"customer_id": "c3"})
            break
        except aiohttp.WSServerHandshakeError:
            await asyncio.sleep(0.02)
    else:
        raise AssertionError("a closed socket never freed its place")
    await third.close()
    await second.close()


@pytest.mark.parametrize("limits", [{"socket_idle": "300ms"}], indirect=True)
async def test_a_socket_that_follows_nothing_and_sends_nothing_is_closed(client):
    async with client.ws_connect("/ws", params={"customer_id": "c1"}) as ws:
        closing = await ws.receive(timeout=5)
    assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == CLOSE_IDLE


@pytest.mark.parametrize("limits", [{"socket_idle": "300ms"}], indirect=True)
async def test_a_socket_following_a_conversation_may_wait_quietly(client):
    accepted = await (await post(client, "hi")).json()
    params = {"customer_id": "c1", "conversation_id": accepted["conversation_id"]}
    async with client.ws_connect("/ws", params=params) as ws:
        with pytest.raises(TimeoutError):
            while True:  # the replay and the reply, then nothing (and no close) for 1 s
                message = await ws.receive(timeout=1)
                assert message.type is aiohttp.WSMsgType.TEXT
        assert not ws.closed


# -- the HTTP server itself -------------------------------------------------------------------


async def test_headers_sent_too_slowly_are_cut_off(tmp_path, unused_tcp_port):
    settings = with_limits(make_settings(tmp_path, 1), idle_timeout="300ms")
    runner = app_runner(web.Application(), settings)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            await writer.drain()
            started = time.monotonic()
            closed = await asyncio.wait_for(reader.read(), timeout=5)
            assert time.monotonic() - started > 0.2
        finally:
            writer.close()
            await writer.wait_closed()
        assert closed == b""  # the server hung up
    finally:
        await runner.cleanup()


async def test_behind_a_trusted_proxy_the_forwarded_address_is_the_clients(
    tmp_path, aiohttp_client, rasa_server
) -> None:
    proxied = '[server]\ntrusted_proxies = ["127.0.0.1/32"]\n[limits]\nrequests_per_address = 2\n'
    client = await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port, proxied)))

    async def send(address: str | None, n: int) -> tuple[int, dict[str, Any]]:
        headers = {} if address is None else {"X-Forwarded-For": address}
        body = {"client_message_id": f"m{n}", "text": "hi", "customer": {"id": f"c{n}"}}
        response = await client.post("/api/web/messages", json=body, headers=headers)
        return response.status, await response.json()

    assert [(await send("203.0.113.9", n))[0] for n in range(3)] == [202, 202, 429]
    assert (await send("198.51.100.7", 3))[0] == 202  # another client behind the same proxy
    status, refused = await send(None, 4)  # not through the proxy
    assert (status, refused["error"]["code"]) == (400, "not_via_proxy")
    assert (await client.get("/health")).status == 200  # probes may come straight
