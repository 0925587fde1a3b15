"""Input no client should send, found by a hostile-input audit: each gets a clear 4xx (or, on a
WebSocket, an error frame with the socket kept), never a 500, and nothing is stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from bot.app import create_app
from bot.channels.base import Customer, InboundMessage, scrubbed
from tests.console_helpers import PASSWORD, add_user, call, signed_in
from tests.unit.test_console_access import try_sign_in
from tests.unit.test_gateway import TOKEN, make_settings, post

AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 12, 6, tzinfo=UTC)


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port)))


async def raw_status(client: TestClient, head: bytes) -> int:
    """Send a request whose head holds bytes an HTTP client library would refuse to send."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + b"\r\nHost: test\r\nConnection: close\r\n\r\n")
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    return int(status_line.split()[1])


async def test_headers_that_are_not_utf8_are_refused_not_crashed_on(client):
    # A mangled session cookie is no session: the sign-in form, as for a signed-out visitor.
    assert (
        await raw_status(client, b"GET /console/login HTTP/1.1\r\nCookie: promptly_session=\xe9")
        == 200
    )
    assert (
        await raw_status(client, b"GET /api/agent/tickets HTTP/1.1\r\nAuthorization: Bearer \xe9")
        == 401
    )
    assert (
        await raw_status(client, b"GET /api/kb/search?q=x HTTP/1.1\r\nAuthorization: Bearer \xe9")
        == 401
    )


async def test_a_csrf_header_that_is_not_utf8_is_a_403(client):
    csrf = await signed_in(client, "admin", "root")
    cookie = next(iter(client.session.cookie_jar))
    head = (
        b"POST /api/console/preview HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nX-CSRF-Token: \xe9"
        + f"\r\nCookie: {cookie.key}={cookie.value}".encode()
    )
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + b"\r\nHost: test\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
        assert int((await reader.readline()).split()[1]) == 403
    finally:
        writer.close()
    # The same session with its right token gets past the check (to the body's validation):
    # the refusal was the header's.
    right = await client.post("/api/console/preview", json={}, headers={"X-CSRF-Token": csrf})
    assert right.status == 422


async def test_sign_in_never_redirects_off_site_through_a_tab_or_a_space(client):
    await add_user(client, "agent", "alex")
    for target in ("/\t/evil.example", "/\n/evil.example", "/ /evil.example", "/\x00x"):
        client.session.cookie_jar.clear()
        response = await try_sign_in(client, "alex", PASSWORD, next=target)
        assert response.headers["Location"] == "/console", target
        response = await client.get(
            "/console/login", params={"next": target}, allow_redirects=False
        )
        assert response.headers["Location"] == "/console", target


async def test_a_bad_websocket_frame_gets_an_error_and_the_socket_stays(client):
    async with client.ws_connect("/ws", params={"customer_id": "c1"}) as ws:
        for bad, code in (
            ('{"client_message_id": "w1", "text": "a\\ud800", "customer": {"id": "c1"}}',
             "invalid_unicode"),
            ("[" * 5000 + "]" * 5000, "invalid_json"),
            ('{"n": ' + "9" * 5000 + "}", "invalid_json"),
        ):  # fmt: skip
            await ws.send_str(bad)
            error = await ws.receive_json(timeout=5)
            assert error["type"] == "error" and error["error"]["code"] == code
        await ws.send_json(
            {"client_message_id": "w2", "text": "still here", "customer": {"id": "c1"}}
        )
        accepted = await ws.receive_json(timeout=5)
        assert accepted["type"] == "accepted" and accepted["client_message_id"] == "w2"


async def test_after_is_ascii_digits_only(client):
    accepted = await (await post(client, "hi")).json()
    path = f"/api/web/conversations/{accepted['conversation_id']}/messages"
    for after in ("-1", "1_000", "\uff15", "\u0665", "1" * 31):
        response = await client.get(path, params={"customer_id": "c1", "after": after})
        assert response.status == 422, after
        assert (await response.json())["error"]["field"] == "after"
    ok = await client.get(path, params={"customer_id": "c1", "after": "9" * 30})
    assert ok.status == 200 and (await ok.json())["messages"] == []


async def test_a_405_says_which_methods_are_allowed(client):
    response = await client.delete("/api/web/messages")
    assert response.status == 405 and "POST" in response.headers["Allow"]
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_ticket_filters_and_customer_channels_are_checked(client):
    unknown = await client.get("/api/agent/tickets", params={"status": "AAA"}, headers=AUTH)
    assert unknown.status == 422 and (await unknown.json())["error"]["field"] == "status"
    waiting = await client.get(
        "/api/agent/tickets", params={"status": "waiting_on_customer"}, headers=AUTH
    )
    assert waiting.status == 200 and (await waiting.json())["tickets"] == []
    customer = {"channel": "nope", "external_id": "x", "tier": "business"}
    refused = await call(client, "POST", "/api/agent/customers", customer, status=422, headers=AUTH)
    assert refused["error"]["field"] == "channel"


# Any text, unpaired UTF-16 surrogates included (a platform's truncated emoji).
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
    )
)


@given(TEXT, TEXT)
def test_a_platform_message_is_stored_with_its_broken_characters_replaced(text, name) -> None:
    msg = InboundMessage("telegram", Customer("42", name=name), "m1", text, received_at=NOW)
    fixed = scrubbed(msg)
    fixed.text.encode("utf-8")  # storable: no unpaired surrogate left
    assert fixed.customer.name is not None
    fixed.customer.name.encode("utf-8")
    assert len(fixed.text) == len(text)
    assert all(a == b or b == "\ufffd" for a, b in zip(text, fixed.text, strict=True))
    if not any("\ud800" <= c <= "\udfff" for c in text):
        assert fixed == msg
