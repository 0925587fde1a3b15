"""Two gateways changing one ticket, or assigning at once, on one database (SQLite and
PostgreSQL): each gateway is a ``TicketService`` on its own store, so neither process's locks
help, and only the ticket's version and the store's assignment transaction keep every change."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.channels.base import Customer, InboundMessage
from bot.handoff.config import Priority
from bot.handoff.monitor import Timer
from bot.handoff.tickets import TicketService
from bot.hub import Hub
from bot.outbox import Outbox
from bot.store.base import AgentRecord, Store, Ticket, TicketStatus
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from tests.unit.test_store import pg_admin_url, store  # noqa: F401  (the parametrized fixture)
from tests.unit.test_tickets import FRIDAY_1755, FakeClock, settings_for


class Held:
    """A gateway's store whose next call of ``method`` waits, once its arguments are in,
    until ``release`` is set: the moment another gateway's change can get in between."""

    def __init__(self, backend: Store, method: str) -> None:
        self._store = backend
        self._method = method
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name != self._method or self.reached.is_set():
            return attribute

        async def held(*args: Any, **kwargs: Any) -> Any:
            self.reached.set()
            await self.release.wait()
            return await attribute(*args, **kwargs)

        return held


class Meeting:
    """A gateway's store whose first ``assigned_load`` returns only once every gateway read
    theirs: all of them choose from the same loads, as gateways assigning at once do."""

    def __init__(self, backend: Store, barrier: asyncio.Barrier) -> None:
        self._store = backend
        self._barrier = barrier
        self._met = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def assigned_load(self) -> dict[str, int]:
        load = await self._store.assigned_load()
        if not self._met:
            self._met = True
            await self._barrier.wait()
        return load


@dataclass
class Gateways:
    a: Store
    b: Store  # a second store on the same database: another gateway process's
    clock: FakeClock
    service: Callable[[Any], TicketService]

    async def conversation(self, customer: str, on: Store) -> str:
        received = await on.receive(
            InboundMessage(
                channel="web",
                customer=Customer(customer),
                platform_message_id=f"{customer}-1",
                text="hello",
                received_at=self.clock.now,
            )
        )
        return received.conversation.id

    async def ticket(self, customer: str = "ann") -> Ticket:
        conversation = await self.conversation(customer, self.a)
        return await self.service(self.a).escalate(conversation, "human_handoff", "hi")


async def _second_store(first: Store) -> Store:
    """Another connection to the database ``first`` is on, as a second gateway opens it."""
    if isinstance(first, SQLiteStore):

        def path(db: sqlite3.Connection) -> Path:
            return Path(db.execute("PRAGMA database_list").fetchone()[2])

        return await SQLiteStore.open(await first.run(path, write=False))
    assert isinstance(first, PostgresStore)

    async def name(conn: Any) -> str:
        return str(await conn.fetchval("SELECT current_database()"))

    url = pg_admin_url().rsplit("/", 1)[0] + "/" + await first.run(name, write=False)
    return await PostgresStore.open(url)


@pytest.fixture
async def gateways(store, tmp_path) -> AsyncIterator[Gateways]:  # noqa: F811
    other = await _second_store(store)
    clock = FakeClock(FRIDAY_1755)
    settings = settings_for(tmp_path)

    def service(backend: Any) -> TicketService:
        return TicketService(backend, Outbox(backend, Hub()), settings, clock)

    try:
        yield Gateways(store, other, clock, service)
    finally:
        await other.close()


async def _interleaved(
    held: Held, first: Awaitable[Any], meanwhile: Callable[[], Awaitable[Any]]
) -> tuple[Any, Any]:
    """Start ``first`` until it is about to write, run ``meanwhile`` whole, then let it go."""
    started = asyncio.create_task(first)  # type: ignore[arg-type]
    await held.reached.wait()
    done = await meanwhile()
    held.release.set()
    return await started, done


async def test_two_gateways_changing_one_ticket_both_land(gateways):
    ticket = await gateways.ticket()
    held = Held(gateways.b, "save_ticket")
    a, b = gateways.service(gateways.a), gateways.service(held)
    # Gateway B puts the ticket on hold from what it read; before it writes, gateway A
    # raises the priority. B's write is stale: it reads again and puts the raised ticket on
    # hold, instead of writing the old priority back.
    waiting, urgent = await _interleaved(
        held,
        b.set_waiting(ticket.id, "sam"),
        lambda: a.set_priority(ticket.id, Priority.URGENT, "lee"),
    )
    stored = await gateways.a.ticket(ticket.id)
    assert stored == waiting and stored.version == urgent.version + 1
    assert (stored.status, stored.priority) == (TicketStatus.WAITING, Priority.URGENT)
    assert stored.sla.policy["name"] == "urgent" and len(stored.sla.pauses) == 1
    types = [e.type for e in await gateways.a.events() if e.ticket_id == ticket.id]
    assert types[-2:] == ["priority_changed", "waiting_on_customer"]  # each exactly once


async def test_a_breach_fired_while_another_gateway_changes_the_ticket_escalates_it_once(
    gateways,
):
    """The breach and its escalation are one write: stale, neither lands, and the firing is
    computed again on the ticket as the other gateway left it."""
    await gateways.a.save_agent(AgentRecord("sam", "Sam", "away", 2, (), (), 0), FRIDAY_1755)
    ticket = await gateways.ticket()
    due = ticket.first_response_due
    gateways.clock.now = due
    held = Held(gateways.b, "fire_timer")
    a, b = gateways.service(gateways.a), gateways.service(held)
    breach = Timer(ticket.id, "first_response:breach", due)
    _, taken = await _interleaved(
        held, b.on_timer(breach, timedelta(0)), lambda: a.take(ticket.id, "sam")
    )
    assert taken.assignee == "sam"
    stored = await gateways.a.ticket(ticket.id)
    assert stored.priority == Priority.HIGH and stored.assignee is None  # escalated from Sam
    assert stored.version == taken.version + 1
    logged = [e for e in await gateways.a.events() if e.ticket_id == ticket.id]
    assert [e.type for e in logged][-4:] == [
        "taken", "sla_breach", "escalated", "returned_to_queue",
    ]  # fmt: skip
    assert logged[-1].data == {"agent": "sam", "why": "first_response_breach"}
    await b.on_timer(breach, timedelta(0))
    assert [e for e in await gateways.a.events() if e.ticket_id == ticket.id] == logged  # once


async def test_an_agent_reply_and_the_customers_message_on_two_gateways_both_land(gateways):
    """The reply computed while the ticket was on hold must not pause its clock again after
    the customer's message (on the other gateway) resumed it."""
    ticket = await gateways.ticket()
    a = gateways.service(gateways.a)
    await a.reply(ticket.id, "Can you send a photo?", "sam", "Sam")
    paused = await a.set_waiting(ticket.id, "sam")
    gateways.clock.now += timedelta(hours=1)
    held = Held(gateways.b, "record_agent_reply")
    b = gateways.service(held)
    stored, resumed = await _interleaved(
        held,
        b.reply(ticket.id, "One more thing", "sam", "Sam"),
        lambda: a.customer_wrote(paused, gateways.clock.now),
    )
    assert resumed.status is TicketStatus.OPEN and resumed.sla.pauses[-1][1] is not None
    final = await gateways.a.ticket(ticket.id)
    assert final.status is TicketStatus.OPEN  # not back on hold
    assert all(end is not None for _, end in final.sla.pauses)  # the clock runs
    assert final.sla.next_response_from is None  # answered by the reply
    assert final.version == resumed.version + 1
    agent_messages = [
        m.id for m in await gateways.a.messages(ticket.conversation_id) if m.type == "agent"
    ]
    assert len(agent_messages) == 2 and agent_messages[-1] == stored.id  # stored once


async def test_concurrent_changes_from_two_gateways_all_compose(gateways):
    """Several changes at once from both gateways, each adding one closed pause: none is
    lost, and each is logged once."""
    ticket = await gateways.ticket()
    a, b = gateways.service(gateways.a), gateways.service(gateways.b)

    def pause(i: int) -> Callable[[Ticket], Ticket]:
        start = FRIDAY_1755 - timedelta(hours=i + 1)

        def change(t: Ticket) -> Ticket:
            pauses = (*t.sla.pauses, (start, start + timedelta(minutes=1)))
            return replace(t, sla=replace(t.sla, pauses=tuple(sorted(pauses))))

        return change

    await asyncio.gather(
        *(
            service._change(ticket.id, pause(i), "test_paused", data={"i": i})
            for i, service in enumerate([a, b, a, b, a, b])
        )
    )
    stored = await gateways.a.ticket(ticket.id)
    assert len(stored.sla.pauses) == 6 and stored.version == ticket.version + 6
    logged = [e.data["i"] for e in await gateways.a.events() if e.type == "test_paused"]
    assert sorted(logged) == list(range(6))


async def test_two_gateways_assigning_at_once_never_exceed_capacity(gateways):
    for agent_id in ("amy", "bob"):
        await gateways.a.save_agent(
            AgentRecord(agent_id, agent_id.title(), "online", 1, (), (), 0), FRIDAY_1755
        )
    first = await gateways.conversation("c1", gateways.a)
    second = await gateways.conversation("c2", gateways.b)
    barrier = asyncio.Barrier(2)
    a = gateways.service(Meeting(gateways.a, barrier))
    b = gateways.service(Meeting(gateways.b, barrier))
    # Both gateways read the same loads and choose Amy (tied, smaller id); the second to
    # write finds her full and chooses again: Bob.
    one, two = await asyncio.gather(
        a.escalate(first, "human_handoff", "hi"),
        b.escalate(second, "human_handoff", "hi"),
    )
    assert sorted([one.assignee, two.assignee]) == ["amy", "bob"]
    assert await gateways.a.assigned_load() == {"amy": 1, "bob": 1}
    # Round-robin order holds: the two assignments stamped different counter values.
    stamps = sorted(agent.last_assigned for agent in await gateways.a.agents())
    assert stamps[0] > 0 and stamps[0] != stamps[1]


async def test_many_assignments_from_two_gateways_keep_every_capacity(gateways):
    a, b = gateways.service(gateways.a), gateways.service(gateways.b)
    tickets = [await gateways.ticket(f"c{i}") for i in range(8)]  # nobody online: all wait
    assert all(t.assignee is None for t in tickets)
    for agent_id, capacity in (("amy", 2), ("bob", 1), ("cy", 2)):
        await gateways.a.save_agent(
            AgentRecord(agent_id, agent_id.title(), "online", capacity, (), (), 0), FRIDAY_1755
        )
    await asyncio.gather(a.assign_waiting(), b.assign_waiting(), a.assign_waiting())
    assert await gateways.a.assigned_load() == {"amy": 2, "bob": 1, "cy": 2}
    assigned = [e for e in await gateways.a.events() if e.type == "assigned"]
    assert len(assigned) == 5  # each ticket given once
