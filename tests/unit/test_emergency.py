"""The leads' emergency switch: stored, logged, shared with the CLI, and obeyed by the bot."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from actions import services
from bot import cli, keys
from bot.app import create_app
from bot.emergency import EmergencySwitch, Mode, Switch
from bot.errors import Unprocessable
from bot.pipeline import PAUSED_TEXT
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from tests.console_helpers import call, signed_in
from tests.unit.test_gateway import frames, make_settings, post, wait_for_rasa
from tests.unit.test_store import pg_database

CHANNELS = {"web", "telegram"}


@pytest.fixture
async def lead(tmp_path, aiohttp_client, rasa_server) -> tuple[Any, str]:
    """A gateway with Rasa up and a signed-in lead: (client, CSRF token)."""
    client = await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port)))
    await wait_for_rasa(client)
    return client, await signed_in(client, "lead")


def clock() -> datetime:
    return datetime.now(UTC)


async def audit_of(store: SQLiteStore | PostgresStore) -> list[tuple[str, str]]:
    """(actor, action) of the audit trail, newest first."""
    query = "SELECT actor, action FROM audit ORDER BY seq DESC"
    if isinstance(store, PostgresStore):
        rows = await store.run(lambda conn: conn.fetch(query), write=False)
    else:
        rows = await store.run(lambda db: db.execute(query).fetchall(), write=False)
    return [(actor, action) for actor, action in rows]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_changes_are_stored_logged_and_seen_by_another_process(
    tmp_path: Path, backend: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            store: SQLiteStore | PostgresStore = await SQLiteStore.open(tmp_path / "p.db")
            other_store: SQLiteStore | PostgresStore = await SQLiteStore.open(tmp_path / "p.db")
        else:
            url = await stack.enter_async_context(pg_database())
            store = await PostgresStore.open(url)
            other_store = await PostgresStore.open(url)
        await switch_is_shared(store, other_store)


async def switch_is_shared(
    store: SQLiteStore | PostgresStore, other_store: SQLiteStore | PostgresStore
) -> None:
    try:
        mine = EmergencySwitch(store, clock, CHANNELS)
        theirs = EmergencySwitch(other_store, clock, CHANNELS)
        seen: list[tuple[Switch, Switch]] = []

        async def listener(before: Switch, after: Switch) -> None:
            seen.append((before, after))

        theirs.on_change(listener)
        assert (await mine.load()).normal
        await mine.set_mode(Mode.ALL_TO_HUMANS, "lee", "  Rasa is broken  ")
        await mine.pause("telegram", "lee", "spam flood")
        after = await theirs.load()
        assert after.mode is Mode.ALL_TO_HUMANS and after.paused == {"telegram"}
        assert (after.by, after.reason) == ("lee", "spam flood")
        assert [(b.paused, a.paused) for b, a in seen] == [(frozenset(), {"telegram"})]
        assert await theirs.load() == after  # unchanged: no second notification
        assert len(seen) == 1

        await theirs.resume("telegram", "kim")
        assert (await mine.load()).paused == frozenset()
        logged = [e.data for e in await store.events() if e.type == "emergency"]
        assert [(d["mode"], d["paused_channels"], d["by"]) for d in logged] == [
            ("all_to_humans", [], "lee"),
            ("all_to_humans", ["telegram"], "lee"),
            ("all_to_humans", [], "kim"),
        ]
        assert logged[0]["reason"] == "Rasa is broken"
        assert await audit_of(store) == [("kim", "emergency.set")] + [("lee", "emergency.set")] * 2
        with pytest.raises(Unprocessable, match="unknown 'sms'"):
            await mine.pause("sms", "lee")
    finally:
        await store.close()
        await other_store.close()


async def test_a_paused_channel_acks_keeps_and_answers_on_resume(lead, fake_rasa) -> None:
    client, csrf = lead
    paused = {"channel": "web", "paused": True, "reason": "bad deploy"}
    state = await call(client, "PUT", "/api/console/emergency/channel", paused, csrf=csrf)
    # Offered in the console: the channels this gateway serves (here the web only).
    assert state["paused_channels"] == ["web"] and state["channels"] == ["web"]
    health = await (await client.get("/health")).json()
    assert health["channels"]["web"] == "paused"

    started = time.monotonic()
    accepted = await (await post(client, "where is my order")).json()
    [receipt] = await frames(client, accepted["conversation_id"])
    assert time.monotonic() - started < 0.6
    assert (receipt["kind"], receipt["text"]) == ("receipt", PAUSED_TEXT)
    await client.server.app[keys.PIPELINE].drain()
    assert fake_rasa.calls == []  # the bot waits too
    [waiting] = await client.server.app[keys.STORE].unanswered()
    assert waiting.status == "pending"

    resumed = {"channel": "web", "paused": False}
    await call(client, "PUT", "/api/console/emergency/channel", resumed, csrf=csrf)
    replies = await frames(client, accepted["conversation_id"], until=2)
    assert [(r["type"], r.get("kind")) for r in replies] == [("ack", "receipt"), ("answer", None)]
    assert replies[1]["text"] == "echo: where is my order"
    assert len(fake_rasa.calls) == 1


async def test_all_to_humans_opens_a_ticket_without_asking_the_bot(lead, fake_rasa) -> None:
    client, csrf = lead
    body = {"mode": "all-to-humans", "reason": "bot gives wrong refunds info"}
    await call(client, "PUT", "/api/console/emergency/mode", body, csrf=csrf)
    accepted = await (await post(client, "how long does delivery take")).json()
    [plan] = await frames(client, accepted["conversation_id"])
    assert plan["kind"] == "plan" and plan["reference"] in plan["text"]
    [ticket] = await client.server.app[keys.STORE].tickets()
    assert ticket.reason.startswith("emergency_all_to_humans")
    assert fake_rasa.calls == []


async def test_bot_only_plans_promise_the_deadline_on_the_followup_queue(
    tmp_path, aiohttp_client, rasa_server, fake_rasa
) -> None:
    settings = make_settings(tmp_path, rasa_server.port)
    settings = settings.model_copy(
        update={"emergency": settings.emergency.model_copy(update={"followup_queue": "billing"})}
    )
    client = await aiohttp_client(create_app(settings))
    await wait_for_rasa(client)

    async def escalate(body: dict[str, Any]) -> list[dict[str, Any]]:
        # What actions/escalate.py does inside Rasa's turn.
        ticket = await (await services.get()).tickets.escalate(body["sender"], "human", "hi")
        return [
            {
                "recipient_id": body["sender"],
                "custom": {"promptly": "handoff", "ticket_id": ticket.id},
            }
        ]

    fake_rasa.action = escalate
    csrf = await signed_in(client, "lead")
    mode = {"mode": "bot_only", "reason": "all-hands"}
    await call(client, "PUT", "/api/console/emergency/mode", mode, csrf=csrf)
    accepted = await (await post(client, "I want a person")).json()
    [plan] = await frames(client, accepted["conversation_id"])
    assert plan["kind"] == "plan"
    assert plan["text"].startswith("Our team isn't taking live conversations right now.")
    assert plan["expected_reply_by"] == plan["deadline"]  # no live estimate is claimed
    [ticket] = await client.server.app[keys.STORE].tickets()
    assert ticket.queue == "billing"


async def test_only_leads_set_the_switch_and_bad_values_are_refused(
    tmp_path, aiohttp_client, rasa_server
) -> None:
    client = await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port)))
    agent = await signed_in(client, "agent")
    shown = await call(client, "GET", "/api/console/emergency")
    assert shown["mode"] == "normal"
    mode = {"mode": "bot_only"}
    await call(client, "PUT", "/api/console/emergency/mode", mode, csrf=agent, status=403)
    lead = await signed_in(client, "lead")
    await call(client, "PUT", "/api/console/emergency/mode", mode, status=403)  # no CSRF token
    refused = await call(
        client, "PUT", "/api/console/emergency/mode", {"mode": "panic"}, csrf=lead, status=422
    )
    assert "must be one of normal, all_to_humans, bot_only" in refused["error"]["message"]
    unknown = {"channel": "fax", "paused": True, "reason": "spam"}
    await call(client, "PUT", "/api/console/emergency/channel", unknown, csrf=lead, status=422)
    assert (await call(client, "GET", "/api/console/emergency"))["mode"] == "normal"


async def test_switching_off_or_pausing_needs_a_reason_and_lists_only_served_channels(
    tmp_path, aiohttp_client, rasa_server
) -> None:
    client = await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port)))
    csrf = await signed_in(client, "lead")
    mode, channel = "/api/console/emergency/mode", "/api/console/emergency/channel"
    for body in ({"mode": "bot_only"}, {"mode": "all_to_humans", "reason": "   "}):
        refused = await call(client, "PUT", mode, body, csrf=csrf, status=422)
        assert (refused["error"]["code"], refused["error"]["field"]) == (
            "reason_required",
            "reason",
        )
    refused = await call(
        client, "PUT", channel, {"channel": "web", "paused": True}, csrf=csrf, status=422
    )
    assert refused["error"]["code"] == "reason_required"
    shown = await call(client, "GET", "/api/console/emergency")
    assert (shown["mode"], shown["paused_channels"], shown["channels"]) == ("normal", [], ["web"])
    # A channel this gateway does not serve can still be paused (by the CLI, or the API), and
    # is then offered so that it can be resumed; back to normal and resuming need no reason.
    paused = await call(
        client, "PUT", channel, {"channel": "telegram", "paused": True, "reason": "spam"}, csrf=csrf
    )
    assert paused["channels"] == ["telegram", "web"]
    resumed = await call(
        client, "PUT", channel, {"channel": "telegram", "paused": False}, csrf=csrf
    )
    assert resumed["channels"] == ["web"]
    await call(client, "PUT", mode, {"mode": "bot_only", "reason": "all-hands"}, csrf=csrf)
    assert (await call(client, "PUT", mode, {"mode": "normal"}, csrf=csrf))["mode"] == "normal"


async def test_the_cli_switch_reaches_a_running_gateway(
    tmp_path, aiohttp_client, rasa_server, capsys
) -> None:
    client = await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port)))
    argv = ["--config", str(tmp_path / "promptly.toml"), "emergency", "pause", "web"]
    assert await asyncio.to_thread(cli.main, [*argv, "--reason", "load test"]) == 0
    assert "paused channels: web" in capsys.readouterr().out
    deadline = time.monotonic() + 5
    while (await (await client.get("/health")).json())["channels"].get("web") != "paused":
        assert time.monotonic() < deadline, "the gateway never saw the CLI's change"
        await asyncio.sleep(0.1)
    assert await asyncio.to_thread(cli.main, argv[:3] + ["pause"]) == 2
    assert "pause and resume need a CHANNEL" in capsys.readouterr().err
