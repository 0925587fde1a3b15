"""The agent console through the real app: session-authenticated agent API, notes, canned
replies, KB suggestions, the live feed, CSAT ratings, and the console page."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from bot import keys
from bot.agent_views import clock_states, next_deadline
from bot.app import create_app
from bot.console.access import AUDIT
from bot.console.canned import DEFAULTS, CannedReplies
from bot.console.feed import Feed
from bot.handoff import csat
from bot.handoff.monitor import Timer
from bot.store.base import EventCursor, Ticket, TicketSLA, TicketStatus
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from knowledge_base import Article, HashingEmbedder, KnowledgeBase, LiveKnowledgeBase
from tests.console_helpers import call, signed_in
from tests.unit.test_gateway import TOKEN, make_settings, open_ticket, post, wait_for_rasa
from tests.unit.test_store import pg_database

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOSTILE = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def articles() -> list[Article]:
    return [
        Article(
            "refunds",
            "Refunds",
            "We refund returned items within 14 days of receiving them.",
            None,
            (),
            ("How do refunds work?",),
        ),
        Article(
            "refund-overrides",
            "Refund overrides (agents)",
            "Team leads can approve a refund override for orders older than 90 days.",
            None,
            (),
            ("Can I override the refund window?",),
            audience="internal",
        ),
    ]


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client) -> TestClient:
    app = create_app(make_settings(tmp_path, rasa_server.port))
    # The settings say [kb] enabled = false, so the app loads no KB of its own: it builds the
    # agent API (and the rest) over this in-memory one instead.
    app[keys.KB] = LiveKnowledgeBase(KnowledgeBase.build(articles(), HashingEmbedder(256)))
    return await aiohttp_client(app)


async def handoff(client: TestClient, tmp_path, customer: str = "c1", mid: str = "m1") -> Ticket:
    """A customer writes, and the conversation is handed off (as the escalate action does)."""
    await wait_for_rasa(client)
    accepted = await (await post(client, "I want my money back", mid=mid, customer=customer)).json()
    return await open_ticket(tmp_path, accepted["conversation_id"], queue="support")


async def online(client: TestClient, csrf: str, agent_id: str, name: str) -> None:
    body = {"name": name, "presence": "online", "capacity": 50, "queues": ["billing"]}
    await call(client, "PUT", f"/api/agent/agents/{agent_id}", body, csrf=csrf)


# -- sessions on the agent API ----------------------------------------------------------------


async def test_a_signed_in_agent_works_tickets_as_themselves_with_the_csrf_header(client, tmp_path):
    ticket = await handoff(client, tmp_path)
    csrf = await signed_in(client, "agent", "sam")
    await online(client, csrf, "sam", "Sam Jones")
    [sam] = (await call(client, "GET", "/api/agent/agents"))["agents"]
    # An agent sets their presence, never their own capacity or queues.
    assert (sam["presence"], sam["capacity"], sam["queues"]) == ("online", 3, [])
    base = f"/api/agent/tickets/{ticket.id}"

    for forged in (None, "not-the-token"):
        refused = await call(client, "POST", f"{base}/waiting", {}, status=403, csrf=forged)
        assert refused["error"]["code"] == "csrf"
    spoof = {"agent": {"id": "eve", "name": "Eve"}}  # ignored: the session says who acts
    taken = await call(client, "POST", f"{base}/take", spoof, csrf=csrf)
    assert taken["assignee"] == "sam"
    reply = {"text": "Hi, Sam here: refund on its way.", "agent": {"id": "eve", "name": "Eve"}}
    await call(client, "POST", f"{base}/replies", reply, status=201, csrf=csrf)
    view = await call(client, "GET", base)
    [agent_frame] = [m for m in view["messages"] if m["type"] == "agent"]
    assert agent_frame["agent"] == {"name": "Sam Jones"}

    other = {"name": "Ann", "presence": "online"}
    await call(client, "PUT", "/api/agent/agents/ann", other, status=403, csrf=csrf)
    await call(client, "POST", f"{base}/priority", {"priority": "high"}, headers=AUTH, status=422)

    entries = await client.app[AUDIT].entries()
    done = [(e.actor, e.action, e.target) for e in reversed(entries) if e.action != "login"]
    assert done == [
        ("sam", "agent.put", "sam"),
        ("sam", "ticket.take", ticket.id),
        ("sam", "ticket.reply", ticket.id),
    ]


async def test_people_work_tickets_before_they_ever_set_a_presence(client, tmp_path):
    first, second = await handoff(client, tmp_path), await handoff(client, tmp_path, "c2", "m2")
    # A new agent is an agent at once: offline, the default capacity, on everyone's list.
    csrf = await signed_in(client, "agent", "bea")
    [bea] = (await call(client, "GET", "/api/agent/agents"))["agents"]
    assert (bea["id"], bea["presence"], bea["capacity"]) == ("bea", "offline", 3)
    taken = await call(client, "POST", f"/api/agent/tickets/{first.id}/take", {}, csrf=csrf)
    assert taken["assignee"] == "bea"
    # An admin has no agents row until they act: taking a ticket makes one.
    client.session.cookie_jar.clear()
    csrf = await signed_in(client, "admin", "root")
    taken = await call(client, "POST", f"/api/agent/tickets/{second.id}/take", {}, csrf=csrf)
    assert taken["assignee"] == "root"
    agents = {
        a["id"]: a["presence"] for a in (await call(client, "GET", "/api/agent/agents"))["agents"]
    }
    assert agents == {"bea": "offline", "root": "offline"}


async def test_the_token_still_works_and_other_roles_or_strangers_are_refused(client, tmp_path):
    ticket = await handoff(client, tmp_path)
    assert (await client.get("/api/agent/tickets")).status == 401
    listed = await call(client, "GET", "/api/agent/tickets", headers=AUTH)
    assert [t["id"] for t in listed["tickets"]] == [ticket.id] and listed["now"]
    body = {"priority": "high", "agent": {"id": "sam", "name": "Sam"}}
    await call(client, "POST", f"/api/agent/tickets/{ticket.id}/priority", body, headers=AUTH)
    [entry] = await client.app[AUDIT].entries()
    assert (entry.actor, entry.action) == ("api", "ticket.priority")
    assert entry.data == {"priority": "high"}

    await signed_in(client, "editor", "erin")
    refused = await call(client, "GET", "/api/agent/tickets", status=403)
    assert refused["error"]["code"] == "forbidden"


# -- notes ------------------------------------------------------------------------------------


async def test_internal_notes_show_in_the_ticket_and_never_reach_the_customer(client, tmp_path):
    ticket = await handoff(client, tmp_path)
    customer = await client.ws_connect(
        f"/ws?customer_id=c1&conversation_id={ticket.conversation_id}"
    )
    csrf = await signed_in(client, "agent", "sam")
    base = f"/api/agent/tickets/{ticket.id}"
    note = {"text": f"VIP, be careful {HOSTILE}"}
    added = await call(client, "POST", f"{base}/notes", note, status=201, csrf=csrf)
    assert (added["text"], added["by"], added["agent"]["id"]) == (note["text"], "sam", "sam")
    await call(client, "POST", f"{base}/replies", {"text": "On it."}, status=201, csrf=csrf)

    pushed = []
    while not any(f.get("type") == "agent" for f in pushed):
        pushed.append(await customer.receive_json(timeout=5))
    await customer.close()
    history = await (
        await client.get(
            f"/api/web/conversations/{ticket.conversation_id}/messages",
            params={"customer_id": "c1"},
        )
    ).text()
    assert "VIP" not in history and not any("VIP" in str(f) for f in pushed)
    view = await call(client, "GET", base)
    assert [n["text"] for n in view["notes"]] == [note["text"]]
    assert "note" in [e["type"] for e in view["events"]]
    assert "VIP" not in str(view["messages"])


# -- canned replies and knowledge ----------------------------------------------------------------


async def test_canned_replies_are_seeded_once_and_kept_by_admins(client):
    csrf = await signed_in(client, "agent", "sam")
    canned = (await call(client, "GET", "/api/agent/canned"))["canned"]
    assert sorted(c["title"] for c in canned) == sorted(title for title, _ in DEFAULTS)
    mine = {"title": "Mine", "text": "Agents cannot add these."}
    await call(client, "POST", "/api/agent/canned", mine, status=403, csrf=csrf)

    csrf = await signed_in(client, "admin", "root")
    added = await call(client, "POST", "/api/agent/canned", mine, status=201, csrf=csrf)
    for reply in canned:
        await call(client, "DELETE", f"/api/agent/canned/{reply['id']}", csrf=csrf)
    await call(client, "DELETE", f"/api/agent/canned/{canned[0]['id']}", status=404, csrf=csrf)
    assert (await call(client, "GET", "/api/agent/canned"))["canned"] == [added]
    await call(client, "DELETE", f"/api/agent/canned/{added['id']}", csrf=csrf)

    store = client.app[keys.STORE]
    assert isinstance(store, SQLiteStore)
    assert not await CannedReplies(store).seed()  # emptied on purpose: no defaults return
    assert (await call(client, "GET", "/api/agent/canned"))["canned"] == []
    actions = [e.action for e in await client.app[AUDIT].entries() if e.actor == "root"]
    assert actions.count("canned.delete") == len(canned) + 1 and "canned.add" in actions


async def test_kb_search_shows_agents_internal_articles_and_customers_none(client):
    await signed_in(client, "agent", "sam")
    question = "q=can I override the refund window"
    found = await call(client, "GET", f"/api/kb/search?audience=agent&{question}")
    assert len(found["hits"]) == 2 and found["band"] is None
    by_id = {hit["article_id"]: hit for hit in found["hits"]}
    assert by_id["refund-overrides"]["internal"] and not by_id["refunds"]["internal"]
    assert by_id["refunds"]["citation"]["url"].startswith("/kb/refunds")
    assert found["hits"][0]["article_id"] == "refund-overrides"
    # What a customer would get: no internal article, and what the bot would do with it.
    customer = await call(client, "GET", f"/api/kb/search?{question}")
    assert [hit["article_id"] for hit in customer["hits"]] == ["refunds"]
    assert customer["band"] in ("answer", "offer", "decline")
    blank = await call(client, "GET", "/api/kb/search?q=%20", status=422)
    assert blank["error"]["field"] == "q"
    wrong = await call(client, "GET", f"/api/kb/search?audience=public&{question}", status=422)
    assert wrong["error"]["field"] == "audience"


# -- live feed --------------------------------------------------------------------------------


async def test_the_live_feed_delivers_a_ticket_created_after_connecting(client, tmp_path):
    await signed_in(client, "agent", "sam")
    live = await client.ws_connect("/api/agent/live")
    hello = await live.receive_json(timeout=5)
    assert hello["type"] == "hello" and hello["now"]

    # Opened through another connection to the database, as a standalone action server does.
    ticket = await handoff(client, tmp_path)
    frame = await live.receive_json(timeout=5)
    assert (frame["type"], frame["event"], frame["ticket_id"]) == ("event", "handed_off", ticket.id)
    assert frame["seq"] > hello["seq"]
    assert frame["ticket"]["reference"] == ticket.reference
    assert frame["ticket"]["sla"]["next_deadline"]["clock"] == "first_response"
    await live.send_str("ignored")  # consoles only listen
    await live.send_str("x" * 100_000)  # not buffered: the socket closes, "message too big"
    closed = await live.receive(timeout=5)
    assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 1009


async def test_the_live_feed_refuses_other_sites_and_strangers(client):
    with pytest.raises(aiohttp.WSServerHandshakeError) as stranger:
        await client.ws_connect("/api/agent/live")
    assert stranger.value.status == 401
    await signed_in(client, "agent", "sam")
    with pytest.raises(aiohttp.WSServerHandshakeError) as elsewhere:
        await client.ws_connect("/api/agent/live", headers={"Origin": "https://evil.example"})
    assert elsewhere.value.status == 403


# -- CSAT -------------------------------------------------------------------------------------


async def rate(client: TestClient, conversation: str, customer: str, ticket: str, rating: Any):
    body = {"customer_id": customer, "ticket_id": ticket, "rating": rating}
    return await client.post(f"/api/conversations/{conversation}/csat", json=body)


async def test_csat_is_asked_on_resolve_stored_replaced_and_refused_for_others(client, tmp_path):
    ticket = await handoff(client, tmp_path)
    conversation = ticket.conversation_id
    early = await rate(client, conversation, "c1", ticket.id, 4)
    assert early.status == 409 and (await early.json())["error"]["code"] == "ticket_open"
    await call(client, "POST", f"/api/agent/tickets/{ticket.id}/resolve", headers=AUTH)
    store = client.app[keys.STORE]
    [resolved] = [m for m in await store.messages(conversation) if m.type == "system"]
    assert resolved.payload["csat"]["ticket_id"] == ticket.id
    assert resolved.payload["csat"]["scale"] == [1, 2, 3, 4, 5]
    assert csat.QUESTION in resolved.text  # what platforms show

    first = await rate(client, conversation, "c1", ticket.id, 2)
    assert first.status == 201 and not (await first.json())["replaced"]
    second = await rate(client, conversation, "c1", ticket.id, 5)
    assert second.status == 201 and (await second.json())["replaced"]
    ratings = [e for e in await store.events(conversation) if e.type == "csat"]
    assert [e.data["rating"] for e in ratings] == [2, 5]
    assert ratings[0].data["replaces"] is None
    assert ratings[1].data["replaces"]["rating"] == 2
    assert ratings[1].data["replaces"]["seq"] == ratings[0].seq

    other = await handoff(client, tmp_path, customer="c2", mid="x1")
    foreign = await rate(client, other.conversation_id, "c2", ticket.id, 1)
    assert foreign.status == 404 and (await foreign.json())["error"]["code"] == "unknown_ticket"
    unknown = await rate(client, conversation, "c1", "no-such-ticket", 1)
    assert unknown.status == 404
    borrowed = await rate(client, conversation, "c2", ticket.id, 1)
    assert (await borrowed.json())["error"]["code"] == "conversation_mismatch"
    for bad in (0, 6, "5", 4.5):
        assert (await rate(client, conversation, "c1", ticket.id, bad)).status == 422
    assert len([e for e in await store.events(conversation) if e.type == "csat"]) == 2


# -- the page -----------------------------------------------------------------------------------


async def test_the_console_page_needs_an_agent_and_carries_the_csrf_token(client):
    away = await client.get("/console", allow_redirects=False)
    assert away.status == 302 and away.headers["Location"].startswith("/console/login?next=")
    csrf = await signed_in(client, "agent", "sam")
    page = await client.get("/console")
    html = await page.text()
    assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
    assert f'<meta name="csrf-token" content="{csrf}">' in html
    for testid in ("queue", "ticket-view", "conversation", "reply-text", "kb-suggestions"):
        assert f'data-testid="{testid}"' in html
    assert "/console/static/console.js" in html
    await signed_in(client, "editor", "erin")
    assert (await client.get("/console", allow_redirects=False)).status == 403


# -- SLA clock states (pure) --------------------------------------------------------------------

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def a_ticket(**changes: Any) -> Ticket:
    fields: dict[str, Any] = {
        "id": "t1",
        "reference": "PR-22222",
        "conversation_id": "c",
        "customer_id": "u",
        "queue": "support",
        "priority": "normal",
        "tier": "consumer",
        "status": TicketStatus.NEW,
        "reason": "x",
        "created_at": T0,
        "first_response_due": T0 + timedelta(hours=1),
        "first_responded_at": None,
        "next_response_due": None,
        "resolved_at": None,
        "assignee": None,
        "resolution_due": T0 + timedelta(days=1),
        "assigned_at": None,
        "sla": TicketSLA(policy={}, calendar="24x7"),
    }
    return Ticket(**{**fields, **changes})


def test_clock_states_move_from_running_to_warning_to_breached():
    ticket = a_ticket()
    timers = [Timer("t1", "first_response:warning", T0 + timedelta(minutes=45))]
    states = [
        clock_states(ticket, timers, T0 + timedelta(minutes=m))["first_response"]["state"]
        for m in (10, 50, 61)
    ]
    assert states == ["running", "warning", "breached"]
    clocks = clock_states(ticket, timers, T0)
    assert clocks["next_response"]["state"] == "idle"
    assert next_deadline(clocks)["clock"] == "first_response"


def test_a_met_first_response_and_a_pause_stop_the_countdown():
    ticket = a_ticket(
        status=TicketStatus.WAITING,
        first_responded_at=T0 + timedelta(minutes=5),
        next_response_due=T0 + timedelta(hours=8),
        sla=TicketSLA(policy={}, calendar="24x7", pauses=((T0 + timedelta(hours=1), None),)),
    )
    clocks = clock_states(ticket, [], T0 + timedelta(days=3))
    assert {name: c["state"] for name, c in clocks.items()} == {
        "first_response": "met",
        "next_response": "paused",
        "resolution": "paused",
    }
    assert next_deadline(clocks) is None


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_feed_renders_nothing_while_no_console_is_open(tmp_path, backend):
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            store: SQLiteStore | PostgresStore = await SQLiteStore.open(tmp_path / "feed.db")
        else:
            store = await PostgresStore.open(await stack.enter_async_context(pg_database()))
        await _feed_renders_nothing_while_no_console_is_open(store)


async def _feed_renders_nothing_while_no_console_is_open(store: SQLiteStore | PostgresStore):
    rendered: list[str] = []

    async def render(ticket_id: str) -> dict[str, Any] | None:
        rendered.append(ticket_id)
        return {"id": ticket_id}

    try:
        feed = Feed(store, lambda: datetime.now(UTC))
        await feed.start()
        await store.log_event("assigned", ticket_id="t1", data={"agent": "sam"})
        assert await feed.poll(render) is False
        assert rendered == [] and feed.cursor > EventCursor(0, 0)  # skipped ahead, nothing rendered
        queue = feed.subscribe()
        await store.log_event("assigned", ticket_id="t2", data={"agent": "sam"})
        # On PostgreSQL a transaction open anywhere on the server (another test's) delays the
        # tail, and the skip ahead may then start before t1: what counts is that t2 comes.
        for _ in range(250):
            await feed.poll(render)
            if "t2" in rendered:
                break
            await asyncio.sleep(0.02)
        assert rendered[-1] == "t2" and set(rendered) <= {"t1", "t2"}
        frames = [queue.get_nowait() for _ in range(queue.qsize())]
        assert frames[-1] is not None and frames[-1]["ticket"] == {"id": "t2"}
    finally:
        await store.close()
