"""The SLA engine on a real SQLite store with an injected clock: a week of SLA time runs in
milliseconds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from bot.channels.base import AckKind, Customer, InboundMessage
from bot.handoff.config import Priority
from bot.handoff.notify import Notifier, sign
from bot.handoff.tickets import TicketService
from bot.hub import Hub
from bot.outbox import Outbox
from bot.settings import Settings, load_settings
from bot.store.base import AgentRecord, TicketStatus
from bot.store.sqlite import SQLiteStore

CONFIG = """
[calendars.default]
timezone = "Europe/London"
hours = { "mon-fri" = "09:00-18:00" }
holidays = { country = "GB", subdivision = "ENG" }

[queues.support]
name = "Customer Support"
lead = "lead@example.com"

[queues.billing]
name = "Billing"

[queues.urgent]
name = "Urgent Response"
calendar = "24x7"

[routing]
default_queue = "support"
rules = [
  { when = { intent = "refund_request" }, queue = "billing" },
  { when = { intent = "urgent_outage" }, queue = "urgent" },
]

[sla]
warn_fraction = 0.25
warn_at_most = "15m"
assignment_timeout = "10m"
on_breach = ["notify_lead", "raise_priority", "reassign"]

[[sla.policies]]
name = "urgent"
when = { priority = "urgent" }
first_response = "30m"
next_response = "30m"
resolution = "8h"
business_hours = false

[[sla.policies]]
name = "enterprise"
when = { tier = "enterprise" }
first_response = "1h"
next_response = "2h"
resolution = "2d"

[[sla.policies]]
name = "default"
first_response = "4h"
next_response = "8h"
resolution = "5d"
"""
# Friday 27 November 2026, 17:55 in London (GMT, so UTC too).
FRIDAY_1755 = datetime(2026, 11, 27, 17, 55, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Engine:
    store: SQLiteStore
    tickets: TicketService
    clock: FakeClock
    settings: Settings

    async def conversation(self, customer: str = "ann", tier: str = "consumer") -> str:
        received = await self.store.receive(
            InboundMessage(
                channel="web",
                customer=Customer(customer),
                platform_message_id=f"{customer}-1",
                text="hello",
                received_at=self.clock.now,
            )
        )
        await self.store.link_customer("web", customer, tier=tier)
        return received.conversation.id

    async def advance_to(self, moment: datetime) -> int:
        self.clock.now = moment
        return await self.tickets.monitor.fire_due()

    async def events(self, *types: str) -> list[tuple[str, dict[str, Any]]]:
        return [(e.type, e.data) for e in await self.store.events() if e.type in types]

    async def agent(self, agent_id: str, presence: str = "online", capacity: int = 2) -> None:
        await self.tickets.set_presence(
            AgentRecord(agent_id, agent_id.title(), presence, capacity, (), (), 0)
        )


def settings_for(tmp_path: Path, extra: str = "") -> Settings:
    path = tmp_path / "promptly.toml"
    path.write_text(CONFIG + extra, encoding="utf-8")
    return load_settings(path, env={})


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    clock = FakeClock(FRIDAY_1755)
    settings = settings_for(tmp_path)
    tickets = TicketService(store, Outbox(store, Hub()), settings, clock)
    yield Engine(store, tickets, clock, settings)
    await store.close()


async def test_enterprise_handoff_on_friday_evening_is_due_on_monday(engine):
    conversation = await engine.conversation(tier="enterprise")
    ticket = await engine.tickets.escalate(conversation, "human_handoff", "can I talk to someone")
    assert ticket.sla.policy["name"] == "enterprise" and ticket.priority == Priority.HIGH
    # 5 open minutes on Friday, the other 55 on Monday from 09:00.
    assert ticket.first_response_due == datetime(2026, 11, 30, 9, 55, tzinfo=UTC)
    # "2d": the same local time on the second open day after Friday.
    assert ticket.resolution_due == datetime(2026, 12, 1, 17, 55, tzinfo=UTC)
    assert ticket.next_response_due is None


async def test_urgent_tickets_count_calendar_time(engine):
    conversation = await engine.conversation()
    ticket = await engine.tickets.escalate(conversation, "urgent_outage", "checkout is down")
    assert (ticket.queue, ticket.priority, ticket.sla.calendar) == ("urgent", "urgent", "24x7")
    assert ticket.first_response_due == FRIDAY_1755 + timedelta(minutes=30)


async def test_warning_then_breach_fire_once_in_order_and_escalate(engine):
    await engine.agent("sam")
    conversation = await engine.conversation()
    ticket = await engine.tickets.escalate(conversation, "human_handoff", "hi")
    assert ticket.assignee == "sam"
    due = ticket.first_response_due
    assert due == datetime(2026, 11, 30, 12, 55, tzinfo=UTC)  # 4 business hours
    # The assignee does not answer: after 10 minutes the ticket returns to the queue; nobody
    # else is online, so it waits there.
    await engine.advance_to(FRIDAY_1755 + timedelta(minutes=10, seconds=1))
    returned = await engine.events("sla_timeout", "returned_to_queue")
    assert [t for t, _ in returned] == ["sla_timeout", "returned_to_queue"]
    assert (await engine.store.ticket(ticket.id)).assignee is None

    assert await engine.advance_to(due - timedelta(minutes=16)) == 0
    assert await engine.advance_to(due - timedelta(minutes=15) + timedelta(seconds=2)) == 1
    assert await engine.advance_to(due + timedelta(seconds=3)) == 1
    fired = await engine.events("sla_warning", "sla_breach")
    assert [t for t, _ in fired] == ["sla_warning", "sla_breach"]
    assert fired[0][1]["timer"] == "first_response:warning"
    assert fired[0][1]["lateness_ms"] == 2000 and fired[1][1]["lateness_ms"] == 3000
    escalated = await engine.store.ticket(ticket.id)
    assert escalated.priority == Priority.HIGH  # raised one level; the deadline stands
    assert escalated.first_response_due == due
    assert await engine.advance_to(due + timedelta(days=1)) == 0  # nothing fires twice


async def test_a_restart_between_warning_and_breach_fires_the_breach_once(engine, tmp_path):
    conversation = await engine.conversation()
    ticket = await engine.tickets.escalate(conversation, "human_handoff", "hi")
    due = ticket.first_response_due
    await engine.advance_to(due - timedelta(minutes=10))
    assert [t for t, _ in await engine.events("sla_warning")] == ["sla_warning"]

    # A new process over the same database, started after the deadline passed.
    clock = FakeClock(due + timedelta(minutes=5))
    restarted = TicketService(engine.store, Outbox(engine.store, Hub()), engine.settings, clock)
    await restarted.rebuild()
    await restarted.monitor.fire_due()
    again = TicketService(engine.store, Outbox(engine.store, Hub()), engine.settings, clock)
    await again.rebuild()
    await again.monitor.fire_due()
    breaches = await engine.events("sla_breach")
    assert len(breaches) == 1 and breaches[0][1]["lateness_ms"] == 5 * 60 * 1000
    assert len(await engine.events("sla_warning")) == 1


async def test_a_restart_gives_a_waiting_ticket_to_an_online_agent(engine):
    conversation = await engine.conversation()
    ticket = await engine.tickets.escalate(conversation, "human_handoff", "hi")
    assert ticket.assignee is None  # nobody online
    # Sam came online on a process that died before it assigned anything.
    sam = AgentRecord("sam", "Sam", "online", 2, (), (), 0)
    await engine.store.save_agent(sam, engine.clock.now)
    restarted = TicketService(
        engine.store, Outbox(engine.store, Hub()), engine.settings, engine.clock
    )
    await restarted.rebuild()
    assigned = await engine.store.ticket(ticket.id)
    assert assigned is not None and assigned.assignee == "sam"


async def test_waiting_on_customer_pauses_and_a_customer_message_resumes(engine):
    conversation = await engine.conversation()
    ticket = await engine.tickets.escalate(conversation, "human_handoff", "hi")
    monday_10 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    engine.clock.now = monday_10
    await engine.tickets.reply(ticket.id, "Can you send a photo?", "sam", "Sam")
    resolution_before = (await engine.store.ticket(ticket.id)).resolution_due
    waiting = await engine.tickets.set_waiting(ticket.id, "sam")
    assert waiting.status is TicketStatus.WAITING and waiting.resolution_due is None

    # Two business hours later the customer answers: resolution moves by those two hours,
    # and a next-response clock starts (8 business hours).
    engine.clock.now = monday_10 + timedelta(hours=2)
    resumed = await engine.tickets.customer_wrote(waiting, engine.clock.now)
    assert resumed.status is TicketStatus.OPEN
    # Due Friday 17:55; two paused open hours push it past closing, into Monday.
    assert resolution_before == datetime(2026, 12, 4, 17, 55, tzinfo=UTC)
    assert resumed.resolution_due == datetime(2026, 12, 7, 10, 55, tzinfo=UTC)
    assert resumed.next_response_due == datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    # An agent reply stops the next-response clock.
    engine.clock.now += timedelta(minutes=5)
    await engine.tickets.reply(ticket.id, "Thanks, sorted.", "sam", "Sam")
    replied = await engine.store.ticket(ticket.id)
    assert replied.next_response_due is None
    events = [t for t, _ in await engine.events("agent_replied")]
    assert events == ["agent_replied", "agent_replied"]


async def test_changing_priority_moves_the_deadlines(engine):
    conversation = await engine.conversation()
    ticket = await engine.tickets.escalate(conversation, "human_handoff", "hi")
    urgent = await engine.tickets.set_priority(ticket.id, Priority.URGENT, "sam")
    assert urgent.sla.policy["name"] == "urgent"
    assert urgent.first_response_due == FRIDAY_1755 + timedelta(minutes=30)
    changed = await engine.events("priority_changed")
    assert changed == [("priority_changed", {"by": "sam", "priority": "urgent"})]


async def test_assignment_is_least_loaded_and_offline_agents_lose_their_tickets(engine):
    await engine.agent("amy", capacity=2)
    await engine.agent("bob", capacity=2)
    ids = []
    for name in ("c1", "c2", "c3"):
        conversation = await engine.conversation(customer=name)
        ids.append((await engine.tickets.escalate(conversation, "human_handoff", "hi")).id)
    owners = [(await engine.store.ticket(i)).assignee for i in ids]
    assert sorted(owners[:2]) == ["amy", "bob"] and owners[2] in {"amy", "bob"}

    await engine.agent("bob", presence="offline")
    owners = [(await engine.store.ticket(i)).assignee for i in ids]
    # Amy's capacity is 2: one of Bob's tickets moves to her, the other waits in the queue.
    assert owners.count("amy") == 2 and owners.count(None) == 1
    await engine.agent("cid")
    owners = [(await engine.store.ticket(i)).assignee for i in ids]
    assert sorted(owners, key=str) == ["amy", "amy", "cid"]


async def test_plan_ack_states_the_honest_estimate(engine):
    engine.clock.now = FRIDAY_1755 + timedelta(minutes=35)  # after closing
    conversation = await engine.conversation()
    ticket = await engine.tickets.escalate(conversation, "human_handoff", "hi")
    plan = await engine.tickets.plan(ticket, "m1", waiting=False)
    # Friday 18:30, nobody online: the team is back on Monday at 09:00.
    assert "back at 09:00" in plan.text and ticket.reference in plan.text
    assert plan.extra["deadline"] == ticket.first_response_due.isoformat()
    expected = datetime.fromisoformat(plan.extra["expected_reply_by"])
    assert datetime(2026, 11, 30, 9, 0, tzinfo=UTC) < expected <= ticket.first_response_due


async def test_a_predicted_breach_is_told_honestly_and_alerted_once(engine, tmp_path):
    engine.clock.now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    await engine.agent("sam", capacity=1)
    tickets = []
    for i in range(40):  # far more than one agent can answer inside four hours
        engine.clock.now += timedelta(seconds=1)
        conversation = await engine.conversation(customer=f"c{i}")
        tickets.append(await engine.tickets.escalate(conversation, "human_handoff", "hi"))
    last = tickets[-1]
    plan = await engine.tickets.plan(last, "m1", waiting=False)
    stated = datetime.fromisoformat(plan.extra["expected_reply_by"])
    assert stated > last.first_response_due and "busier than usual" in plan.text
    await engine.tickets.plan(last, "m2", waiting=True)
    assert len(await engine.events("sla_predicted_breach")) == 1


async def test_queue_overview(engine):
    engine.clock.now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    await engine.agent("sam", capacity=1)
    for name in ("c1", "c2"):
        conversation = await engine.conversation(customer=name)
        await engine.tickets.escalate(conversation, "human_handoff", "hi")
    rows = {row["queue"]: row for row in await engine.tickets.queues.overview()}
    support = rows["support"]
    assert (support["open"], support["unassigned"], support["agents_online"]) == (2, 1, 1)
    assert support["open_now"] is True and support["expected_reply_by"] is not None
    assert rows["billing"]["open"] == 0


async def test_breach_alerts_are_signed_webhooks(tmp_path, engine, aiohttp_server):
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/alerts", hook)
    server = await aiohttp_server(app)
    async with ClientSession() as session:
        notifier = Notifier(session, str(server.make_url("/alerts")), b"s3cret")
        tickets = TicketService(
            engine.store, Outbox(engine.store, Hub()), engine.settings, engine.clock, notifier
        )
        conversation = await engine.conversation()
        ticket = await tickets.escalate(conversation, "human_handoff", "hi")
        engine.clock.now = ticket.first_response_due + timedelta(seconds=1)
        await tickets.monitor.fire_due()
        for _ in range(100):
            if len(received) == 2:
                break
            await asyncio.sleep(0.02)
        await notifier.close()
    kinds = []
    for headers, body in received:
        stamp = headers["X-Promptly-Timestamp"]
        assert headers["X-Promptly-Signature"] == sign(b"s3cret", stamp, body)
        assert headers["X-Promptly-Signature"] != sign(b"wrong", stamp, body)
        kinds.append(json.loads(body))
    assert [k["type"] for k in kinds] == ["sla_warning", "sla_breach"]
    assert kinds[1]["recipients"] == {
        "assignee": None,
        "queue": "support",
        "lead": "lead@example.com",
    }


async def test_resolving_after_the_customers_goodbye_stops_the_next_response_clock(engine):
    conversation = await engine.conversation()
    ticket = await engine.tickets.escalate(conversation, "human_handoff", "hi")
    engine.clock.now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    await engine.tickets.reply(ticket.id, "Done, your refund is on its way.", "sam", "Sam")
    bye = await engine.tickets.customer_wrote(
        await engine.store.ticket(ticket.id), engine.clock.now
    )
    assert bye.next_response_due is not None  # "thanks, bye!" starts a next-response clock
    resolved = await engine.tickets.resolve(ticket.id, "sam")
    assert resolved.next_response_due is None and resolved.resolution_due is None
    assert await engine.advance_to(bye.next_response_due + timedelta(days=7)) == 0
    assert await engine.events("sla_warning", "sla_breach") == []


async def test_overload_sends_normal_handoffs_to_the_overflow_queue_and_keeps_high_ones(
    tmp_path: Path,
) -> None:
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    try:
        clock = FakeClock(FRIDAY_1755)
        settings = settings_for(tmp_path, '\n[overload]\noverflow_queue = "billing"\n')
        overloaded = True
        tickets = TicketService(
            store, Outbox(store, Hub()), settings, clock, overloaded=lambda: overloaded
        )
        engine = Engine(store, tickets, clock, settings)
        normal = await tickets.escalate(await engine.conversation("ann"), "human_handoff", "hi")
        high = await tickets.escalate(await engine.conversation("bob"), "complaint", "hi")
        overloaded = False
        calm = await tickets.escalate(await engine.conversation("cy"), "human_handoff", "hi")
        assert (normal.queue, normal.priority) == ("billing", Priority.NORMAL)
        assert high.priority == Priority.HIGH and high.queue != "billing"
        assert calm.queue != "billing"
    finally:
        await store.close()


async def test_a_customer_writing_to_an_agent_who_replied_is_told_the_agent_has_it(engine):
    await engine.agent("sam")
    conversation = await engine.conversation()
    ticket = await engine.tickets.escalate(conversation, "human_handoff", "hi")
    waiting = await engine.tickets.plan(ticket, "m2", waiting=True)
    assert "is with our Customer Support team" in waiting.text and "agent" not in waiting.extra
    await engine.tickets.reply(ticket.id, "Hi, Sam here.", "sam", "Sam")
    replied = await engine.store.ticket(ticket.id)
    assert replied is not None
    plan = await engine.tickets.plan(replied, "m3", waiting=True)
    assert plan.text.startswith(f"Thanks, Sam has your message (request {ticket.reference})")
    assert plan.extra["agent"] == {"name": "Sam"} and plan.kind is AckKind.PLAN


async def test_a_missed_reply_time_is_owned_up_to_with_a_new_estimate(engine):
    await engine.agent("sam")
    ticket = await engine.tickets.escalate(await engine.conversation(), "human_handoff", "hi")
    due = ticket.first_response_due
    await engine.advance_to(due - timedelta(minutes=1))
    assert [
        m for m in await engine.store.messages(ticket.conversation_id) if m.type == "system"
    ] == []
    await engine.advance_to(due + timedelta(seconds=1))
    [late] = [m for m in await engine.store.messages(ticket.conversation_id) if m.type == "system"]
    assert late.text.startswith(f"Sorry, your request {ticket.reference} is taking longer")
    assert late.payload["reference"] == ticket.reference
    assert datetime.fromisoformat(late.payload["expected_reply_by"]) > due
    await engine.advance_to(due + timedelta(days=1))  # the breach fired once: one apology
    assert (
        len([m for m in await engine.store.messages(ticket.conversation_id) if m.type == "system"])
        == 1
    )
