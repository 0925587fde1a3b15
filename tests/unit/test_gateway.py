"""The gateway through its real app factory, real SQLite and real HTTP/WebSocket.

Rasa is replaced here by a small HTTP server speaking its REST webhook format, so the timing
rules (fast, slow, down, back) can be driven precisely; tests/integration runs the real Rasa.
"""

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot import keys
from bot.agent_api import AgentAPI
from bot.app import create_app
from bot.channels.web import WebChannel
from bot.channels.webhooks import WebhookEndpoint
from bot.console.access import Access
from bot.console.agent import Console
from bot.console.dashboard import Dashboard
from bot.console.editor import Editor
from bot.console.emergency import EmergencyAPI
from bot.handoff.config import SLASettings
from bot.kb_api import KnowledgeAPI
from bot.metrics import MetricsEndpoint
from bot.pages import Pages
from bot.pipeline import FILLER_TEXT
from bot.settings import Settings, load_settings
from bot.store.base import NewTicket, Ticket, TicketSLA
from bot.store.sqlite import SQLiteStore
from tests.unit.conftest import FakeRasa

TOKEN = "agent-test-token"


def make_settings(tmp_path: Path, rasa_port: int, extra: str = "", **web: str) -> Settings:
    channel = "\n".join(
        f'{k} = "{v}"' for k, v in {"promise": "600ms", "margin": "100ms", **web}.items()
    )
    path = tmp_path / "promptly.toml"
    path.write_text(
        f"""
[storage]
database = "promptly.db"
[rasa]
url = "http://127.0.0.1:{rasa_port}"
manage = false
timeout = "3s"
probe_interval = "50ms"
[kb]
enabled = false
[channels.web]
{channel}
{extra}""",
        encoding="utf-8",
    )
    return load_settings(path, env={"PROMPTLY_AGENT_TOKEN": TOKEN})


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port)))


async def post(
    client: TestClient, text: str = "hi", mid: str = "m1", customer: str = "c1", **extra: Any
) -> aiohttp.ClientResponse:
    body = {"client_message_id": mid, "text": text, "customer": {"id": customer}, **extra}
    return await client.post("/api/web/messages", json=body)


async def frames(
    client: TestClient,
    conversation_id: str,
    customer: str = "c1",
    until: int = 1,
    timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """Poll the history until ``until`` replies (non-customer frames) exist."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(
            f"/api/web/conversations/{conversation_id}/messages", params={"customer_id": customer}
        )
        assert response.status == 200
        replies = [f for f in (await response.json())["messages"] if f["type"] != "customer"]
        if len(replies) >= until or time.monotonic() > deadline:
            return replies
        await asyncio.sleep(0.02)


async def wait_for_rasa(client: TestClient, up: bool = True) -> None:
    for _ in range(200):
        health = await (await client.get("/health")).json()
        if (health["components"]["rasa"] == "up") == up:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("Rasa status did not change")


async def test_fast_answer_is_the_only_reply(client, fake_rasa):
    await wait_for_rasa(client)
    response = await post(client, "where is my order")
    assert response.status == 202
    accepted = await response.json()
    replies = await frames(client, accepted["conversation_id"])
    await asyncio.sleep(0.2)  # nothing else may follow
    replies = await frames(client, accepted["conversation_id"])
    assert [(r["type"], r.get("kind")) for r in replies] == [("ack", "solution")]
    assert replies[0]["text"] == "echo: where is my order"
    assert replies[0]["in_reply_to"] == "m1"
    assert fake_rasa.calls[0]["sender"] == accepted["conversation_id"]


async def test_filler_gets_a_request_to_rephrase_and_never_reaches_rasa(client, fake_rasa):
    await wait_for_rasa(client)
    accepted = await (await post(client, "word " * 790)).json()
    [reply] = await frames(client, accepted["conversation_id"])
    assert (reply["type"], reply["text"]) == ("ack", FILLER_TEXT)
    assert fake_rasa.calls == []


async def test_a_turn_logs_its_bot_stages_with_its_first_reply(client, fake_rasa):
    await wait_for_rasa(client)

    async def kb_answer(body: dict[str, Any]) -> list[dict[str, Any]]:
        await asyncio.sleep(0.05)  # the whole Rasa turn, of which the KB action took 30 ms
        custom = {"promptly": "answer", "text": "Ships in 3 days.", "citations": [], "kb_ms": 30.0}
        return [{"recipient_id": body["sender"], "custom": custom}]

    fake_rasa.action = kb_answer
    accepted = await (await post(client, "how long is shipping")).json()
    assert await frames(client, accepted["conversation_id"])
    await client.server.app[keys.PIPELINE].drain()
    [acked] = [e for e in await client.server.app[keys.STORE].events() if e.type == "acked"]
    stages = acked.data["stages_ms"]
    assert stages["kb"] == 30.0
    assert 15 <= stages["nlu"] < 2000  # the turn less the KB's share
    assert 0 <= stages["wait"] < 50  # nothing ahead of it in this conversation


async def test_slow_bot_gets_a_receipt_inside_the_window_then_the_answer(client, fake_rasa):
    await wait_for_rasa(client)
    fake_rasa.delay = 1.2
    started = time.monotonic()
    accepted = await (await post(client, "slow question")).json()
    first = await frames(client, accepted["conversation_id"], until=1)
    acked_after = time.monotonic() - started
    assert [(r["type"], r.get("kind")) for r in first] == [("ack", "receipt")]
    assert acked_after < 0.6
    replies = await frames(client, accepted["conversation_id"], until=2)
    assert [(r["type"], r.get("kind")) for r in replies] == [("ack", "receipt"), ("answer", None)]
    assert replies[1]["text"] == "echo: slow question"


async def test_rasa_down_acks_in_time_keeps_the_message_and_answers_when_back(
    tmp_path, aiohttp_client, unused_tcp_port_factory
):
    port = unused_tcp_port_factory()
    client = await aiohttp_client(create_app(make_settings(tmp_path, port)))
    await wait_for_rasa(client, up=False)
    started = time.monotonic()
    accepted = await (await post(client, "hello while down")).json()
    replies = await frames(client, accepted["conversation_id"])
    assert time.monotonic() - started < 0.6
    assert [(r["type"], r.get("kind")) for r in replies] == [("ack", "receipt")]
    assert "limited mode" in replies[0]["text"]
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    try:
        unanswered = await store.unanswered()
        assert [(m.text, m.status) for m in unanswered] == [("hello while down", "pending")]
    finally:
        await store.close()

    fake = FakeRasa()
    server = TestServer(fake.app(), port=port)
    await server.start_server()
    try:
        replies = await frames(client, accepted["conversation_id"], until=2)
        assert [(r["type"], r.get("kind")) for r in replies] == [
            ("ack", "receipt"),
            ("answer", None),
        ]
        assert replies[1]["text"] == "echo: hello while down"
        assert len(fake.calls) == 1
    finally:
        await server.close()


async def test_same_client_message_id_twice_is_stored_and_answered_once(client, fake_rasa):
    await wait_for_rasa(client)
    first = await (await post(client, "hi", mid="dup")).json()
    second_response = await post(client, "hi", mid="dup")
    assert second_response.status == 202
    second = await second_response.json()
    assert second["duplicate"] is True and first["duplicate"] is False
    assert second["message_id"] == first["message_id"]
    await frames(client, first["conversation_id"])
    await asyncio.sleep(0.2)
    history = await (
        await client.get(
            f"/api/web/conversations/{first['conversation_id']}/messages",
            params={"customer_id": "c1"},
        )
    ).json()
    assert [m["type"] for m in history["messages"]] == ["customer", "ack"]
    assert len(fake_rasa.calls) == 1


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400, "invalid_json"),
        (b'{"text": "\xff\xfe"}', {"Content-Type": "application/json"}, 400, "not_utf8"),
        (b"hello", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b"[1, 2]", {"Content-Type": "application/json"}, 422, "validation_error"),
        # Valid JSON that Python cannot hold, or that is no text: refused, not a 500.
        (b"[" * 5000 + b"]" * 5000, {"Content-Type": "application/json"}, 400, "invalid_json"),
        (b'{"n": ' + b"9" * 5000 + b"}", {"Content-Type": "application/json"}, 400, "invalid_json"),
        (
            b'{"client_message_id": "m", "text": "hi \\ud800", "customer": {"id": "c"}}',
            {"Content-Type": "application/json"},
            400,
            "invalid_unicode",
        ),
        (
            b'{"client_message_id": "m", "text": "\\u0000\\u200b\\ufeff", "customer": {"id": "c"}}',
            {"Content-Type": "application/json"},
            422,
            "validation_error",
        ),
        (
            b'{"client_message_id": "m", "text": "   ", "customer": {"id": "c"}}',
            {"Content-Type": "application/json"},
            422,
            "validation_error",
        ),
        (
            b'{"client_message_id": "m", "text": "hi"}',
            {"Content-Type": "application/json"},
            422,
            "validation_error",
        ),
        (
            b'{"client_message_id": "m", "text": "' + b"x" * 5000 + b'", "customer": {"id": "c"}}',
            {"Content-Type": "application/json"},
            422,
            "validation_error",
        ),
        (
            b'{"client_message_id": "m", "text": "'
            + b"x" * 100_000
            + b'", "customer": {"id": "c"}}',
            {"Content-Type": "application/json"},
            413,
            "payload_too_large",
        ),
        (
            b'{"client_message_id": "m", "text": "hi", "customer": {"id": "c"}, '
            b'"conversation_id": "no-such-conversation"}',
            {"Content-Type": "application/json"},
            404,
            "unknown_conversation",
        ),
    ],
)
async def test_bad_input_gets_a_clear_json_error_and_stores_nothing(
    client, tmp_path, body, headers, status, code
):
    response = await client.post("/api/web/messages", data=body, headers=headers)
    assert response.status == status
    error = (await response.json())["error"]
    assert error["code"] == code and error["message"]
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    try:
        assert await store.unanswered() == []
        assert await store.events() == []
    finally:
        await store.close()


async def test_validation_errors_name_the_field(client):
    response = await post(client, "x" * 4001)
    error = (await response.json())["error"]
    assert error["field"] == "text" and "4000" in error["message"]


async def test_foreign_conversation_is_forbidden(client):
    accepted = await (await post(client, "hi", mid="a")).json()
    response = await post(
        client, "hi", mid="b", customer="mallory", conversation_id=accepted["conversation_id"]
    )
    assert response.status == 403
    history = await client.get(
        f"/api/web/conversations/{accepted['conversation_id']}/messages",
        params={"customer_id": "mallory"},
    )
    assert history.status == 403


async def test_websocket_send_accept_reply_and_reconnect_replay(client, fake_rasa):
    await wait_for_rasa(client)
    async with client.ws_connect("/ws", params={"customer_id": "c1"}) as ws:
        await ws.send_json(
            {"client_message_id": "w1", "text": "over the socket", "customer": {"id": "c1"}}
        )
        accepted = await ws.receive_json(timeout=5)
        assert accepted["type"] == "accepted" and accepted["client_message_id"] == "w1"
        reply = await ws.receive_json(timeout=5)
        assert (reply["type"], reply["kind"], reply["in_reply_to"]) == ("ack", "solution", "w1")
        await ws.send_str("{broken")
        error = await ws.receive_json(timeout=5)
        assert error["type"] == "error" and error["error"]["code"] == "invalid_json"
    conversation_id = accepted["conversation_id"]
    # Offline now: the next reply is only in the store.
    await (
        await post(client, "while you were away", mid="w2", conversation_id=conversation_id)
    ).json()
    await frames(client, conversation_id, until=2)
    params = {"customer_id": "c1", "conversation_id": conversation_id, "after": str(reply["seq"])}
    async with client.ws_connect("/ws", params=params) as ws:
        missed = [await ws.receive_json(timeout=5) for _ in range(2)]
    assert [m["type"] for m in missed] == ["customer", "ack"]
    assert missed[1]["text"] == "echo: while you were away"


async def test_websocket_with_foreign_conversation_is_refused(client):
    accepted = await (await post(client, "hi")).json()
    params = {"customer_id": "mallory", "conversation_id": accepted["conversation_id"]}
    async with client.ws_connect("/ws", params=params) as ws:
        error = await ws.receive_json(timeout=5)
    assert error["error"]["code"] == "conversation_mismatch"


async def open_ticket(
    tmp_path: Path, conversation_id: str, queue: str = "billing", reason: str = "refund_request"
) -> Ticket:
    """Open a ticket the way the escalate action does: through the store."""
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    try:
        now = datetime.now(UTC)
        return await store.create_ticket(
            NewTicket(
                conversation_id=conversation_id,
                queue=queue,
                priority="normal",
                tier="consumer",
                reason=reason,
                created_at=now,
                first_response_due=now + timedelta(hours=8),
                resolution_due=None,
                sla=TicketSLA(
                    policy=SLASettings().policies[-1].model_dump(mode="json"), calendar="24x7"
                ),
            )
        )
    finally:
        await store.close()


async def test_handed_off_conversation_gets_plan_acks_and_agent_replies(
    client, fake_rasa, tmp_path
):
    await wait_for_rasa(client)
    accepted = await (await post(client, "first")).json()
    conversation_id = accepted["conversation_id"]
    await frames(client, conversation_id)
    await open_ticket(tmp_path, conversation_id)
    calls_before = len(fake_rasa.calls)

    await post(client, "any news?", mid="m2", conversation_id=conversation_id)
    replies = await frames(client, conversation_id, until=2)
    plan = replies[1]
    assert (plan["type"], plan["kind"], plan["queue"]) == ("ack", "plan", "billing")
    assert plan["reference"].startswith("PR-") and plan["reference"] in plan["text"]
    assert datetime.fromisoformat(plan["expected_reply_by"]).tzinfo is not None
    assert len(fake_rasa.calls) == calls_before  # the bot stays quiet

    assert (await client.get("/api/agent/tickets")).status == 401
    bad = await client.get("/api/agent/tickets", headers={"Authorization": "Bearer wrong"})
    assert bad.status == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    tickets = (await (await client.get("/api/agent/tickets", headers=auth)).json())["tickets"]
    assert [t["conversation_id"] for t in tickets] == [conversation_id]
    assert tickets[0]["last_message"] == "any news?"
    ticket_id = tickets[0]["id"]
    params = {"customer_id": "c1", "conversation_id": conversation_id, "after": "999999"}
    async with client.ws_connect("/ws", params=params) as ws:
        response = await client.post(
            f"/api/agent/tickets/{ticket_id}/replies",
            headers=auth,
            json={"text": "Refund sent!", "agent": {"id": "a1", "name": "Sam"}},
        )
        assert response.status == 201
        pushed = await ws.receive_json(timeout=5)
    assert (pushed["type"], pushed["text"], pushed["agent"]) == (
        "agent",
        "Refund sent!",
        {"name": "Sam"},
    )
    empty = await client.post(
        f"/api/agent/tickets/{ticket_id}/replies",
        headers=auth,
        json={"text": " ", "agent": {"id": "a1", "name": "Sam"}},
    )
    assert empty.status == 422
    resolved = await client.post(f"/api/agent/tickets/{ticket_id}/resolve", headers=auth)
    assert (await resolved.json())["status"] == "resolved"
    again = await client.post(
        f"/api/agent/tickets/{ticket_id}/replies",
        headers=auth,
        json={"text": "late", "agent": {"id": "a1", "name": "Sam"}},
    )
    assert again.status == 409
    await post(client, "thanks", mid="m3", conversation_id=conversation_id)
    await asyncio.sleep(0.3)
    assert fake_rasa.calls[-1]["message"] == "thanks"  # back with the bot


async def test_health_and_pages(client):
    await wait_for_rasa(client)
    health = await (await client.get("/health")).json()
    assert health["components"] == {"rasa": "up", "kb": "down", "database": "up"}
    assert (await client.get("/widget.js")).status == 200
    spec = await (await client.get("/api/openapi.json")).json()
    served = {
        (method.lower(), path)
        for handler in (
            AgentAPI,
            WebChannel,
            WebhookEndpoint,
            Pages,
            MetricsEndpoint,
            Access,
            Console,
            Editor,
            Dashboard,
            KnowledgeAPI,
            EmergencyAPI,
        )
        for method, path, _ in handler.ROUTES
    }
    documented = {(m, path) for path, item in spec["paths"].items() for m in item}
    assert served - documented == set()  # every public route is in the spec
    missing = await client.get("/api/nothing-here")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"


def escalating_on(text: str, tmp_path: Path) -> Callable[..., Any]:
    """A FakeRasa action that hands ``text`` off, as Rasa's escalate action does."""

    async def escalate(body: dict[str, Any]) -> list[dict[str, Any]] | None:
        if body["message"] != text:
            return None
        ticket = await open_ticket(tmp_path, body["sender"], "support", "human_handoff")
        return [
            {
                "recipient_id": body["sender"],
                "custom": {"promptly": "handoff", "ticket_id": ticket.id},
            }
        ]

    return escalate


async def test_message_queued_behind_a_handoff_gets_a_plan_not_the_bot(client, fake_rasa, tmp_path):
    await wait_for_rasa(client)
    fake_rasa.action = escalating_on("agent please", tmp_path)
    fake_rasa.delay = 0.3
    first = await (await post(client, "agent please", mid="h1")).json()
    conversation_id = first["conversation_id"]
    await post(client, "hello?", mid="h2", conversation_id=conversation_id)
    # Under load either message may get a receipt first; each must end with a plan.
    deadline = time.monotonic() + 10
    while True:
        replies = await frames(client, conversation_id, until=2)
        plans = {r["in_reply_to"]: r for r in replies if r.get("kind") == "plan"}
        if len(plans) == 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert set(plans) == {"h1", "h2"}, replies
    assert "added this message" in plans["h2"]["text"]
    assert not [r for r in replies if r["type"] == "answer"]  # the bot stays out of it
    assert [c["message"] for c in fake_rasa.calls] == ["agent please"]


async def test_agent_actions_presence_queues_and_customer_tiers(client, fake_rasa, tmp_path):
    await wait_for_rasa(client)
    accepted = await (await post(client, "first")).json()
    ticket = await open_ticket(tmp_path, accepted["conversation_id"], queue="support")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    base = f"/api/agent/tickets/{ticket.id}"
    sam = {"id": "sam", "name": "Sam"}

    async def call(method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = await client.request(method, path, json=body, headers=auth)
        assert response.status == status, await response.text()
        return await response.json()

    presence = {"name": "Sam", "presence": "online", "capacity": 2, "queues": ["support"]}
    await call("PUT", "/api/agent/agents/sam", presence)
    agents = (await call("GET", "/api/agent/agents"))["agents"]
    assert [(a["id"], a["presence"], a["open_tickets"]) for a in agents] == [("sam", "online", 1)]
    assert (await call("GET", base))["assignee"] == "sam"  # the waiting ticket went to Sam

    queues = {q["queue"]: q for q in (await call("GET", "/api/queues"))["queues"]}
    assert queues["support"]["open"] == 1 and queues["support"]["agents_online"] == 1

    urgent = await call("POST", f"{base}/priority", {"priority": "urgent", "agent": sam})
    assert urgent["priority"] == "urgent" and urgent["sla"]["policy"]["name"] == "urgent"
    moved = await call("POST", f"{base}/transfer", {"queue": "billing", "agent": sam})
    assert (moved["queue"], moved["assignee"]) == ("billing", None)  # Sam works support only
    waiting = await call("POST", f"{base}/waiting", {"agent": sam})
    assert waiting["status"] == "waiting_on_customer" and waiting["sla"]["paused"]
    taken = await call("POST", f"{base}/take", {"agent": sam})
    assert taken["assignee"] == "sam"
    events = [e["type"] for e in (await call("GET", base))["events"]]
    for expected in ("assigned", "priority_changed", "transferred", "waiting_on_customer", "taken"):
        assert expected in events

    await call("POST", f"{base}/priority", {"priority": "vital", "agent": sam}, status=422)
    await call("POST", f"{base}/transfer", {"queue": "nowhere", "agent": sam}, status=422)
    await call("POST", f"{base}/take", {"agent": {"id": "ghost", "name": "G"}}, status=404)
    await call("POST", f"{base}/take", {"agnt": sam}, status=422)
    await call("POST", "/api/agent/tickets/nope/take", {"agent": sam}, status=404)
    bad_presence = {"name": "Sam", "presence": "asleep"}
    await call("PUT", "/api/agent/agents/sam", bad_presence, status=422)

    customer = {"channel": "web", "external_id": "c1", "tier": "enterprise"}
    assert (await call("POST", "/api/agent/customers", customer))["tier"] == "enterprise"
    await call("POST", "/api/agent/customers", {**customer, "tier": "gold"}, status=422)
    unauthorized = await client.get("/api/queues")
    assert unauthorized.status == 401
