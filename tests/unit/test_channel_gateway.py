"""Platform channels in the real app: webhooks in, sends out through a fake platform, and the
agent API's messaging-window rule. Rasa is the small fake from test_gateway."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import bot.pipeline
from bot.app import create_app
from bot.channels.telegram import escape_markdown_v2
from bot.settings import Settings, load_settings
from tests.fakes.meta import FakeGraph
from tests.fakes.secrets import GATEWAY_ENV
from tests.fakes.telegram import FakeTelegram
from tests.unit.test_channel_telegram import unescape
from tests.unit.test_gateway import TOKEN, open_ticket, wait_for_rasa
from tests.unit.test_journal import locked, with_storage

AUTH = {"Authorization": f"Bearer {TOKEN}"}
AGENT = {"id": "a1", "name": "Sam"}
# Telegram and WhatsApp only: the others stay off for want of secrets.
SECRETS = {
    k: v for k, v in GATEWAY_ENV.items() if k.startswith(("PROMPTLY_TELEGRAM", "PROMPTLY_WHATSAPP"))
}


def settings(tmp_path: Path, rasa_port: int, telegram_url: str, graph_url: str) -> Settings:
    path = tmp_path / "promptly.toml"
    path.write_text(
        f"""
[storage]
database = "promptly.db"
[rasa]
url = "http://127.0.0.1:{rasa_port}"
manage = false
probe_interval = "50ms"
[kb]
enabled = false
[channels.telegram]
api_base = "{telegram_url}"
[channels.whatsapp]
api_base = "{graph_url}"
[channels.slack]
enabled = false
""",
        encoding="utf-8",
    )
    return load_settings(path, env={"PROMPTLY_AGENT_TOKEN": TOKEN})


@pytest.fixture
async def platforms() -> AsyncIterator[tuple[FakeTelegram, FakeGraph]]:
    async with FakeTelegram() as tg, FakeGraph() as graph:
        yield tg, graph  # type: ignore[misc]


@pytest.fixture
async def client(tmp_path, rasa_server, platforms, aiohttp_client, monkeypatch) -> TestClient:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    tg, graph = platforms
    app = create_app(settings(tmp_path, rasa_server.port, tg.url, graph.url))
    client: TestClient = await aiohttp_client(app)
    await wait_for_rasa(client)
    return client


async def webhook(client: TestClient, channel: str, signed: tuple[dict[str, str], bytes]) -> int:
    headers, body = signed
    response = await client.post(f"/webhooks/{channel}", data=body, headers=headers)
    return response.status


def conversation_of(tmp_path: Path, channel: str) -> str:
    with sqlite3.connect(tmp_path / "promptly.db") as db:
        row = db.execute(
            "SELECT id FROM conversations WHERE channel = ? ORDER BY created_at DESC", (channel,)
        ).fetchone()
    return str(row[0])


def age_inbound(tmp_path: Path, conversation_id: str, hours: int) -> None:
    """As if the customer last wrote ``hours`` ago."""
    with sqlite3.connect(tmp_path / "promptly.db") as db:
        db.execute(
            "UPDATE messages SET created_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', created_at, ?) "
            "WHERE conversation_id = ? AND direction = 'in'",
            (f"-{hours} hours", conversation_id),
        )


async def test_disabled_and_unknown_channels_have_no_webhook(client, platforms):
    tg, _ = platforms
    assert await webhook(client, "slack", tg.signed_update("hi")) == 404
    assert await webhook(client, "nope", tg.signed_update("hi")) == 404
    health = await (await client.get("/health")).json()
    assert health["channels"] == {
        "telegram": "enabled",
        "whatsapp": "enabled",
        "slack": "disabled",  # off in the configuration
        "messenger": "disabled",  # no secrets
        "twilio": "disabled",
        "email": "disabled",  # off by default
    }


async def test_an_agent_reply_outside_the_whatsapp_window_is_refused_with_the_reason(
    client, platforms, fake_rasa, tmp_path
):
    _, graph = platforms
    assert await webhook(client, "whatsapp", graph.whatsapp.signed_update("hello")) == 200
    await graph.wait_for_calls(1)  # the bot's answer went out
    conversation_id = conversation_of(tmp_path, "whatsapp")
    ticket = await open_ticket(tmp_path, conversation_id)
    age_inbound(tmp_path, conversation_id, hours=25)

    response = await client.post(
        f"/api/agent/tickets/{ticket.id}/replies",
        headers=AUTH,
        json={"text": "Hi!", "agent": AGENT},
    )
    body = await response.json()
    assert response.status == 409
    assert body["error"]["code"] == "outside_messaging_window"
    assert "24 hours" in body["error"]["message"]
    await asyncio.sleep(0.2)
    assert len(graph.calls) == 1  # nothing was sent


async def test_the_agent_can_answer_on_another_channel_of_the_customer(client, platforms, tmp_path):
    tg, graph = platforms
    assert await webhook(client, "telegram", tg.signed_update("hello", user_id=42)) == 200
    await tg.wait_for_calls(1)
    assert await webhook(client, "whatsapp", graph.whatsapp.signed_update("hello")) == 200
    await graph.wait_for_calls(1)
    on_telegram = conversation_of(tmp_path, "telegram")
    ticket = await open_ticket(tmp_path, on_telegram)
    whatsapp_customer = await customer_id(client, tmp_path, "whatsapp")
    merged = await client.post(
        f"/api/agent/customers/{ticket.customer_id}/merge",
        headers=AUTH,
        json={"from": whatsapp_customer, "agent": AGENT},
    )
    assert merged.status == 200

    response = await client.post(
        f"/api/agent/tickets/{ticket.id}/replies",
        headers=AUTH,
        json={"text": "Over to WhatsApp", "agent": AGENT, "channel": "whatsapp"},
    )
    assert response.status == 201
    calls = await graph.wait_for_calls(2)
    assert calls[-1].json["text"]["body"] == "Over to WhatsApp"
    detail: dict[str, Any] = await (
        await client.get(f"/api/agent/tickets/{ticket.id}", headers=AUTH)
    ).json()
    assert detail["channel"] == "whatsapp"
    nowhere = await client.post(
        f"/api/agent/tickets/{ticket.id}/replies",
        headers=AUTH,
        json={"text": "x", "agent": AGENT, "channel": "messenger"},
    )
    assert nowhere.status == 422


async def customer_id(client: TestClient, tmp_path: Path, channel: str) -> str:
    with sqlite3.connect(tmp_path / "promptly.db") as db:
        row = db.execute(
            "SELECT customer_id FROM conversations WHERE channel = ?", (channel,)
        ).fetchone()
    return str(row[0])


async def test_a_telegram_message_while_the_database_is_locked_gets_its_receipt_once(
    tmp_path, rasa_server, platforms, aiohttp_client, monkeypatch
):
    """The receipt goes out from memory; stored later, it is not sent again; the answer is."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(bot.pipeline, "STORAGE_RETRY_SECONDS", 0.2)
    tg, graph = platforms
    base = settings(tmp_path, rasa_server.port, tg.url, graph.url)
    client = await aiohttp_client(
        create_app(with_storage(base, journal_after=timedelta(milliseconds=200)))
    )
    await wait_for_rasa(client)
    assert await webhook(client, "telegram", tg.signed_update("warm up")) == 200
    await tg.wait_for_calls(1)
    with locked(tmp_path / "promptly.db"):
        assert await webhook(client, "telegram", tg.signed_update("where is it")) == 200
        [_, receipt] = await tg.wait_for_calls(2)
        assert receipt.json["text"] == escape_markdown_v2(bot.pipeline.JOURNALED_TEXT)
    calls = await tg.wait_for_calls(3, timeout=30)
    assert unescape(calls[2].json["text"]) == "echo: where is it"
    await asyncio.sleep(0.5)
    assert len(tg.calls) == 3  # the stored receipt was not sent a second time
    with sqlite3.connect(tmp_path / "promptly.db") as db:
        statuses = db.execute(
            "SELECT kind, delivery_status FROM messages WHERE direction = 'out' ORDER BY seq"
        ).fetchall()
    assert statuses[-2:] == [("receipt", "sent"), (None, "sent")]
