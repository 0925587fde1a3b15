"""The SLA engine in the real gateway, with a real Rasa server deciding the handoffs.

The gateway's clock starts on Friday 27 November 2026 at 17:55 London time
(``debug.clock_start``) and runs at real speed; consumers get calendar-time targets of a few
seconds, so warnings and breaches fire during the test, from the gateway's own monitor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.conftest import Stack, running_stack
from tests.integration.test_flows import Customer

pytestmark = pytest.mark.integration
FRIDAY_1755 = datetime(2026, 11, 27, 17, 55, tzinfo=UTC)
SLA_CONFIG = """
[debug]
clock_start = "{start}"
clock_start_at = "{real}"

[calendars.default]
timezone = "Europe/London"
hours = {{ "mon-fri" = "09:00-18:00" }}
holidays = {{ country = "GB", subdivision = "ENG" }}

[sla]
warn_fraction = 0.5
assignment_timeout = "0s"
on_breach = ["notify_lead", "raise_priority"]

[[sla.policies]]
name = "enterprise"
when = {{ tier = "enterprise" }}
first_response = "1h"
next_response = "2h"
resolution = "2d"

[[sla.policies]]
name = "quick"
first_response = "10s"
next_response = "10s"
resolution = "1h"
business_hours = false
"""


@pytest.fixture(scope="module")
def sla_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Friday 17:55 now; a restarted gateway carries on from the same shifted clock.
    config = SLA_CONFIG.format(start=FRIDAY_1755.isoformat(), real=datetime.now(UTC).isoformat())
    with running_stack(tmp_path_factory.mktemp("sla"), config) as stack:
        yield stack


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class Agent:
    def __init__(self, session: aiohttp.ClientSession, stack: Stack) -> None:
        self.session = session
        self.url = stack.url
        self.headers = {"Authorization": f"Bearer {stack.agent_token}"}

    async def get(self, path: str) -> Any:
        async with self.session.get(self.url + path, headers=self.headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def post(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        async with self.session.post(self.url + path, json=body, headers=self.headers) as r:
            assert r.status == status, await r.text()
            return await r.json()

    async def ticket_of(self, conversation_id: str) -> dict[str, Any]:
        tickets = (await self.get("/api/agent/tickets?status=all"))["tickets"]
        found = [t for t in tickets if t["conversation_id"] == conversation_id]
        assert len(found) == 1, tickets
        return await self.get(f"/api/agent/tickets/{found[0]['id']}")


async def handoff(session: aiohttp.ClientSession, stack: Stack, tier: str | None = None):
    customer = Customer(session, stack)
    if tier is not None:
        body = {"channel": "web", "external_id": customer.id, "tier": tier}
        await Agent(session, stack).post("/api/agent/customers", body, status=201)
    await customer.connect()
    mid = await customer.say("I want to talk to a person")
    plan = await customer.wait_reply(mid, lambda f: f.get("kind") == "plan", timeout=60)
    return customer, plan


def events(ticket: dict[str, Any], *types: str) -> list[dict[str, Any]]:
    return [e for e in ticket["events"] if e["type"] in types]


async def wait_events(
    agent: Agent, conversation_id: str, types: tuple[str, ...], count: int, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        ticket = await agent.ticket_of(conversation_id)
        if len(events(ticket, *types)) >= count or time.monotonic() > deadline:
            return ticket
        await asyncio.sleep(0.2)


async def test_enterprise_customer_on_friday_evening_is_promised_monday(session, sla_stack):
    customer, plan = await handoff(session, sla_stack, tier="enterprise")
    try:
        ticket = await Agent(session, sla_stack).ticket_of(customer.conversation_id or "")
    finally:
        await customer.close()
    created = datetime.fromisoformat(ticket["created_at"])
    assert FRIDAY_1755 <= created < FRIDAY_1755 + timedelta(minutes=4)
    assert ticket["sla"]["policy"]["name"] == "enterprise"
    # One business hour: what is left of Friday until 18:00, the rest from Monday 09:00.
    friday_left = datetime(2026, 11, 27, 18, 0, tzinfo=UTC) - created
    monday = datetime(2026, 11, 30, 9, 0, tzinfo=UTC) + (timedelta(hours=1) - friday_left)
    due = datetime.fromisoformat(ticket["deadlines"]["first_response"])
    assert abs(due - monday) < timedelta(milliseconds=1)
    assert datetime.fromisoformat(plan["deadline"]) == due
    # Nobody is online, so the queue supports no estimate: the plan states the deadline.
    assert plan["reference"] == ticket["reference"] and "Mon 30 Nov" in plan["text"]
    assert datetime.fromisoformat(plan["expected_reply_by"]) == due


async def test_warning_then_breach_fire_in_order_from_the_gateway_monitor(session, sla_stack):
    customer, _ = await handoff(session, sla_stack)
    await customer.close()
    agent = Agent(session, sla_stack)
    ticket = await wait_events(agent, customer.conversation_id or "", ("sla_breach",), 1)
    fired = events(ticket, "sla_warning", "sla_breach")
    assert [(e["type"], e["data"]["timer"]) for e in fired] == [
        ("sla_warning", "first_response:warning"),
        ("sla_breach", "first_response:breach"),
    ]
    assert all(e["data"]["lateness_ms"] < 1000 for e in fired)
    due = datetime.fromisoformat(ticket["deadlines"]["first_response"])
    assert datetime.fromisoformat(fired[1]["at"]) >= due
    assert ticket["priority"] == "high"  # the breach raised it from normal


async def test_pause_and_resume_move_the_deadlines(session, sla_stack):
    customer, _ = await handoff(session, sla_stack)
    agent = Agent(session, sla_stack)
    try:
        ticket = await agent.ticket_of(customer.conversation_id or "")
        sam = {"id": "sam", "name": "Sam"}
        await agent.post(
            f"/api/agent/tickets/{ticket['id']}/replies", {"text": "Hi!", "agent": sam}, 201
        )
        before = datetime.fromisoformat(
            (await agent.ticket_of(customer.conversation_id or ""))["deadlines"]["resolution"]
        )
        paused = await agent.post(f"/api/agent/tickets/{ticket['id']}/waiting", {"agent": sam})
        assert paused["status"] == "waiting_on_customer" and paused["sla"]["paused"]
        assert paused["deadlines"]["resolution"] is None
        await asyncio.sleep(1.5)
        mid = await customer.say("Here is my order number: 12345")
        await customer.wait_reply(mid, lambda f: f.get("kind") == "plan")
        resumed = await agent.ticket_of(customer.conversation_id or "")
    finally:
        await customer.close()
    assert resumed["status"] == "open" and not resumed["sla"]["paused"]
    moved = datetime.fromisoformat(resumed["deadlines"]["resolution"]) - before
    assert timedelta(seconds=1.4) < moved < timedelta(seconds=10)
    # The customer's message after the agent reply starts a next-response clock.
    assert resumed["deadlines"]["next_response"] is not None
    # The reply time the plan ack stated is recorded with the reply that kept it.
    replied = events(resumed, "agent_replied")[0]["data"]
    assert replied["stated_by"] is not None and replied["stated_met"] is True


async def test_a_restart_between_warning_and_breach_fires_the_breach_once(session, sla_stack):
    customer, _ = await handoff(session, sla_stack)
    await customer.close()
    agent = Agent(session, sla_stack)
    conversation = customer.conversation_id or ""
    ticket = await wait_events(agent, conversation, ("sla_warning",), 1)
    assert not events(ticket, "sla_breach")
    sla_stack.restart_gateway()  # killed before the breach; back after it fell due
    ticket = await wait_events(agent, conversation, ("sla_breach",), 1)
    await asyncio.sleep(1.0)
    ticket = await agent.ticket_of(conversation)
    breaches = events(ticket, "sla_breach")
    assert len(breaches) == 1 and len(events(ticket, "sla_warning")) == 1
    assert breaches[0]["data"]["lateness_ms"] > 0
