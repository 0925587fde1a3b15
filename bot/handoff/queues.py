"""The live queue model: agents' load, queue position, recent handling time, and the honest
expected reply time a plan ack states (policy in ``bot.handoff.eta``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.handoff import assignment, eta, sla
from bot.handoff.calendar import Calendar, business_time_between, open_intervals
from bot.handoff.config import Priority, Tier
from bot.settings import Settings
from bot.store.base import Store, Ticket

RECENT = 20  # first responses that make the handling-time estimate


@dataclass(frozen=True)
class Promise:
    queue_name: str
    estimate: eta.Estimate
    sentence: str  # what the customer reads, e.g. "usually within 10 minutes, at the latest ..."


class QueueModel:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        calendars: dict[str, Calendar],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._settings = settings
        self._calendars = calendars
        self._clock = clock

    def calendar(self, queue: str) -> Calendar:
        return self._calendars[self._settings.queues[queue].calendar]

    async def agent_loads(self) -> list[assignment.AgentLoad]:
        load = await self._store.assigned_load()
        return [
            assignment.AgentLoad(
                id=a.id,
                presence=assignment.Presence(a.presence),
                capacity=a.capacity,
                open_tickets=load.get(a.id, 0),
                skills=frozenset(a.skills),
                queues=frozenset(a.queues),
                last_assigned=a.last_assigned,
            )
            for a in await self._store.agents()
        ]

    async def promise(self, ticket: Ticket) -> Promise:
        """What to tell the customer of ``ticket``: the SLA deadline, and the queue's estimate
        when it is sooner, or later (a predicted breach, told honestly)."""
        now = self._clock()
        position = 0
        if ticket.assignee is None:
            position = await self._store.queue_position(ticket.queue, ticket.created_at)
        snapshot = await self._snapshot(ticket.queue, position)
        due = ticket.next_response_due or ticket.first_response_due
        if ticket.first_responded_at is not None and ticket.next_response_due is None:
            due = ticket.resolution_due or due
        calendar = self.calendar(ticket.queue)
        estimate = eta.estimate(now, snapshot, due, calendar)
        sentence = eta.describe(estimate, calendar.timezone, now)
        return Promise(self._name(ticket.queue), estimate, sentence)

    async def overview(self) -> list[dict[str, Any]]:
        """Per queue: length, oldest wait, agents online and the ETA for a new ticket."""
        now = self._clock()
        open_tickets = await self._store.tickets("open")
        rows = []
        for key in self._settings.queues:
            waiting = [t for t in open_tickets if t.queue == key and t.assignee is None]
            snapshot = await self._snapshot(key, len(waiting))
            expected, _ = eta.expected_reply(now, snapshot, self.calendar(key))
            oldest = min((t.created_at for t in waiting), default=None)
            rows.append(
                {
                    "queue": key,
                    "name": self._name(key),
                    "open": sum(t.queue == key for t in open_tickets),
                    "unassigned": len(waiting),
                    "oldest_wait_s": None if oldest is None else (now - oldest).total_seconds(),
                    "agents_online": snapshot.agents_online,
                    "free_slots": snapshot.free_slots,
                    "handling_time_s": snapshot.handling_time.total_seconds(),
                    "expected_reply_by": None if expected is None else expected.isoformat(),
                    "open_now": next(open_intervals(self.calendar(key), now), (None,))[0] == now,
                }
            )
        return rows

    async def pressure(self) -> float | None:
        """The worst queue's ``eta.pressure`` for a normal-priority consumer ticket handed off
        now (the overload signal ``eta``); None when no queue has an estimate."""
        now = self._clock()
        worst: float | None = None
        for key in self._settings.queues:
            snapshot = await self._snapshot(key, await self._store.queue_position(key, now))
            facts: dict[str, str | None] = {
                "priority": Priority.NORMAL,
                "tier": Tier.CONSUMER,
                "channel": None,
                "queue": key,
            }
            policy = sla.choose_policy(self._settings.sla.policies, facts)
            measure = self.calendar(key) if policy.business_hours else Calendar.always_open()
            due = sla.deadlines(policy, measure, sla.Clocks(created_at=now)).first_response
            if due is None:
                continue
            value = eta.pressure(now, snapshot, due, self.calendar(key), measure)
            if value is not None and (worst is None or value > worst):
                worst = value
        return worst

    async def _snapshot(self, queue: str, position: int) -> eta.QueueSnapshot:
        loads = await self.agent_loads()
        online = assignment.agents_online(loads, queue)
        return eta.QueueSnapshot(
            position=position,
            agents_online=online,
            free_slots=assignment.free_slots(loads, queue) if online else 0,
            handling_time=await self.handling_time(queue),
        )

    async def handling_time(self, queue: str) -> timedelta:
        """Median business time to first response over the queue's recent tickets."""
        calendar = self.calendar(queue)
        spans = [
            business_time_between(created, answered, calendar)
            for created, answered in await self._store.first_responses(queue, RECENT)
        ]
        spans = sorted(s for s in spans if s > timedelta(0))
        if not spans:
            return self._settings.sla.handling_time
        return spans[len(spans) // 2]  # the median, or the upper one of two

    def _name(self, queue: str) -> str:
        settings = self._settings.queues.get(queue)
        return settings.name if settings else queue
