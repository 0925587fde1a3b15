"""Agent REST API (bearer token): tickets and their actions, agents' presence, queues,
customer tiers. The console (a later page) is a client of the same API."""

from __future__ import annotations

import hmac
from typing import Any, ClassVar, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot.clock import Clock, utc_now
from bot.delivery import Dispatcher
from bot.errors import Conflict, NotFound, Unauthorized, Unprocessable
from bot.frames import frame
from bot.handoff.assignment import Presence
from bot.handoff.config import Priority, Tier
from bot.handoff.tickets import TicketService
from bot.http import NonBlankText, read_json, validate
from bot.store.base import AgentRecord, Conversation, Store, Ticket

MAX_BODY = 65536
Model = TypeVar("Model", bound=BaseModel)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentIn(_In):
    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=200)


class ReplyIn(_In):
    text: NonBlankText = Field(max_length=4000)
    agent: AgentIn
    # Default: where the customer last wrote. Another channel of theirs moves the ticket there.
    channel: str | None = Field(None, min_length=1, max_length=32)


class ByAgentIn(_In):
    agent: AgentIn | None = None


class PriorityIn(_In):
    priority: Priority
    agent: AgentIn


class TransferIn(_In):
    queue: str | None = Field(None, min_length=1)
    agent_id: str | None = Field(None, min_length=1)
    agent: AgentIn


class PresenceIn(_In):
    name: str = Field(min_length=1, max_length=200)
    presence: Presence
    capacity: int = Field(3, ge=0, le=100)
    skills: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()


class CustomerIn(_In):
    channel: str = Field(min_length=1, max_length=32)
    external_id: str = Field(min_length=1, max_length=128)
    tier: Tier
    name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)
    language: str | None = Field(None, min_length=2, max_length=16)


class MergeIn(_In):
    from_customer: str = Field(min_length=1, max_length=64, alias="from")
    agent: AgentIn


class AgentAPI:
    def __init__(
        self,
        store: Store,
        tickets: TicketService,
        token: str,
        dispatcher: Dispatcher,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._tickets = tickets
        self._token = token.encode()
        self._dispatcher = dispatcher
        self._clock = clock

    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/api/agent/tickets", "list_tickets"),
        ("GET", "/api/agent/tickets/{ticket_id}", "get_ticket"),
        ("POST", "/api/agent/tickets/{ticket_id}/replies", "reply"),
        ("POST", "/api/agent/tickets/{ticket_id}/take", "take"),
        ("POST", "/api/agent/tickets/{ticket_id}/waiting", "waiting"),
        ("POST", "/api/agent/tickets/{ticket_id}/priority", "priority"),
        ("POST", "/api/agent/tickets/{ticket_id}/transfer", "transfer"),
        ("POST", "/api/agent/tickets/{ticket_id}/resolve", "resolve"),
        ("GET", "/api/agent/agents", "list_agents"),
        ("PUT", "/api/agent/agents/{agent_id}", "put_agent"),
        ("POST", "/api/agent/customers", "put_customer"),
        ("GET", "/api/agent/customers/{customer_id}", "get_customer"),
        ("POST", "/api/agent/customers/{customer_id}/merge", "merge_customer"),
        ("GET", "/api/queues", "queues"),
    ]

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self._token):
            raise Unauthorized("unauthorized", "a valid agent bearer token is required")

    async def _body(self, request: web.Request, model: type[Model]) -> Model:
        self._authorize(request)
        return validate(model, await read_json(request, MAX_BODY))

    async def _ticket_json(self, ticket: Ticket) -> dict[str, Any]:
        conversation = await self._store.conversation(ticket.conversation_id)
        customer = await self._store.customer(ticket.customer_id)
        messages = await self._store.messages(ticket.conversation_id)
        last = next((m.text for m in reversed(messages) if m.direction == "in"), None)
        return {
            "id": ticket.id,
            "reference": ticket.reference,
            "conversation_id": ticket.conversation_id,
            "channel": conversation.channel if conversation else None,
            "queue": ticket.queue,
            "priority": ticket.priority,
            "tier": ticket.tier,
            "status": ticket.status,
            "reason": ticket.reason,
            "created_at": ticket.created_at.isoformat(),
            "assignee": ticket.assignee,
            "assigned_at": _iso(ticket.assigned_at),
            "first_responded_at": _iso(ticket.first_responded_at),
            "resolved_at": _iso(ticket.resolved_at),
            "deadlines": {
                "first_response": ticket.first_response_due.isoformat(),
                "next_response": _iso(ticket.next_response_due),
                "resolution": _iso(ticket.resolution_due),
            },
            # Kept for clients of the first API version.
            "first_response_due": ticket.first_response_due.isoformat(),
            "next_response_due": _iso(ticket.next_response_due),
            "sla": {
                "policy": ticket.sla.policy,
                "calendar": ticket.sla.calendar,
                "paused": bool(ticket.sla.pauses) and ticket.sla.pauses[-1][1] is None,
                "pauses": [[_iso(a), _iso(b)] for a, b in ticket.sla.pauses],
            },
            "customer": {
                "id": ticket.customer_id,
                "name": customer.name if customer else None,
                "email": customer.email if customer else None,
            },
            "last_message": last,
        }

    async def list_tickets(self, request: web.Request) -> web.Response:
        self._authorize(request)
        status = request.query.get("status", "open")
        tickets = await self._store.tickets(None if status == "all" else status)
        return web.json_response({"tickets": [await self._ticket_json(t) for t in tickets]})

    async def get_ticket(self, request: web.Request) -> web.Response:
        self._authorize(request)
        ticket = await self._require(request)
        body = await self._ticket_json(ticket)
        body["messages"] = [frame(m) for m in await self._store.messages(ticket.conversation_id)]
        body["events"] = [
            {"at": e.at.isoformat(), "type": e.type, "data": e.data}
            for e in await self._store.events(ticket.conversation_id)
            if e.ticket_id == ticket.id
        ]
        return web.json_response(body)

    async def reply(self, request: web.Request) -> web.Response:
        body = await self._body(request, ReplyIn)
        ticket = await self._require(request)
        current = await self._store.conversation(ticket.conversation_id)
        target = current
        if current is not None and body.channel not in (None, current.channel):
            target = await self._conversation_on(ticket, str(body.channel))
        if target is not None:
            refusal = await self._dispatcher.refusal(target, agent=True)
            if refusal is not None:
                raise Conflict(*refusal)
            if target is not current:
                await self._store.move_ticket(ticket.id, target.id, self._clock())
        stored = await self._tickets.reply(ticket.id, body.text, body.agent.id, body.agent.name)
        return web.json_response({"message_id": stored.id, "seq": stored.seq}, status=201)

    async def take(self, request: web.Request) -> web.Response:
        body = await self._body(request, ByAgentIn)
        if body.agent is None:
            raise Unprocessable("validation_error", "agent: who takes the ticket", field="agent")
        ticket = await self._tickets.take(request.match_info["ticket_id"], body.agent.id)
        return web.json_response(await self._ticket_json(ticket))

    async def waiting(self, request: web.Request) -> web.Response:
        body = await self._body(request, ByAgentIn)
        by = body.agent.id if body.agent else "api"
        ticket = await self._tickets.set_waiting(request.match_info["ticket_id"], by)
        return web.json_response(await self._ticket_json(ticket))

    async def priority(self, request: web.Request) -> web.Response:
        body = await self._body(request, PriorityIn)
        ticket_id = request.match_info["ticket_id"]
        ticket = await self._tickets.set_priority(ticket_id, body.priority, body.agent.id)
        return web.json_response(await self._ticket_json(ticket))

    async def transfer(self, request: web.Request) -> web.Response:
        body = await self._body(request, TransferIn)
        ticket = await self._tickets.transfer(
            request.match_info["ticket_id"],
            queue=body.queue,
            agent_id=body.agent_id,
            by=body.agent.id,
        )
        return web.json_response(await self._ticket_json(ticket))

    async def resolve(self, request: web.Request) -> web.Response:
        self._authorize(request)
        ticket = await self._require(request)
        agent_id = None
        if request.can_read_body:
            body = validate(ByAgentIn, await read_json(request, MAX_BODY))
            agent_id = body.agent.id if body.agent else None
        resolved = await self._tickets.resolve(ticket.id, agent_id)
        return web.json_response(await self._ticket_json(resolved))

    async def list_agents(self, request: web.Request) -> web.Response:
        self._authorize(request)
        loads = {a.id: a.open_tickets for a in await self._tickets.queues.agent_loads()}
        agents = [
            {
                "id": a.id,
                "name": a.name,
                "presence": a.presence,
                "capacity": a.capacity,
                "open_tickets": loads.get(a.id, 0),
                "skills": list(a.skills),
                "queues": list(a.queues),
            }
            for a in await self._store.agents()
        ]
        return web.json_response({"agents": agents})

    async def put_agent(self, request: web.Request) -> web.Response:
        body = await self._body(request, PresenceIn)
        record = AgentRecord(
            id=request.match_info["agent_id"],
            name=body.name,
            presence=body.presence,
            capacity=body.capacity,
            skills=body.skills,
            queues=body.queues,
            last_assigned=0,
        )
        saved = await self._tickets.set_presence(record)
        return web.json_response({"id": saved.id, "presence": saved.presence})

    async def put_customer(self, request: web.Request) -> web.Response:
        body = await self._body(request, CustomerIn)
        customer_id, created = await self._store.link_customer(
            body.channel,
            body.external_id,
            tier=body.tier,
            name=body.name,
            email=body.email,
            language=body.language,
        )
        return web.json_response(
            {"customer_id": customer_id, "tier": body.tier}, status=201 if created else 200
        )

    async def _conversation_on(self, ticket: Ticket, channel: str) -> Conversation:
        for conversation in await self._store.conversations_of(ticket.customer_id):
            if conversation.channel == channel:
                return conversation  # the latest one there
        raise Unprocessable(
            "no_conversation_on_channel",
            f"the customer has never written on {channel}",
            field="channel",
        )

    async def get_customer(self, request: web.Request) -> web.Response:
        """The customer with their history on every channel and their tickets."""
        self._authorize(request)
        customer_id = request.match_info["customer_id"]
        customer = await self._store.customer(customer_id)
        if customer is None:
            raise NotFound("unknown_customer", "no customer with that id")
        conversations = []
        for conversation in await self._store.conversations_of(customer_id):
            conversations.append(
                {
                    "id": conversation.id,
                    "channel": conversation.channel,
                    "state": conversation.state,
                    "messages": [frame(m) for m in await self._store.messages(conversation.id)],
                }
            )
        tickets = [t for t in await self._store.tickets() if t.customer_id == customer_id]
        return web.json_response(
            {
                "id": customer.id,
                "name": customer.name,
                "email": customer.email,
                "tier": customer.tier,
                "conversations": conversations,
                "tickets": [await self._ticket_json(t) for t in tickets],
            }
        )

    async def merge_customer(self, request: web.Request) -> web.Response:
        body = await self._body(request, MergeIn)
        merged = await self._store.merge_customers(
            request.match_info["customer_id"], body.from_customer, self._clock(), by=body.agent.id
        )
        return web.json_response({"id": merged.id, "merged": body.from_customer})

    async def queues(self, request: web.Request) -> web.Response:
        self._authorize(request)
        return web.json_response({"queues": await self._tickets.queues.overview()})

    async def _require(self, request: web.Request) -> Ticket:
        ticket = await self._store.ticket(request.match_info["ticket_id"])
        if ticket is None:
            raise NotFound("not_found", "no ticket with that id")
        return ticket


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())
