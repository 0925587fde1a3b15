"""Minimal agent REST API (bearer token): list tickets, read one, reply, resolve."""

from __future__ import annotations

import hmac
from typing import Any, ClassVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot.errors import NotFound, Unauthorized
from bot.frames import frame
from bot.handoff.tickets import TicketService
from bot.http import NonBlankText, read_json, validate
from bot.store.base import Store, Ticket


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=200)


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: NonBlankText = Field(max_length=4000)
    agent: AgentIn


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    agent: AgentIn | None = None


class AgentAPI:
    def __init__(self, store: Store, tickets: TicketService, token: str) -> None:
        self._store = store
        self._tickets = tickets
        self._token = token.encode()

    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/api/agent/tickets", "list_tickets"),
        ("GET", "/api/agent/tickets/{ticket_id}", "get_ticket"),
        ("POST", "/api/agent/tickets/{ticket_id}/replies", "reply"),
        ("POST", "/api/agent/tickets/{ticket_id}/resolve", "resolve"),
    ]

    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), self._token):
            raise Unauthorized("unauthorized", "a valid agent bearer token is required")

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
            "first_response_due": ticket.first_response_due.isoformat(),
            "first_responded_at": _iso(ticket.first_responded_at),
            "next_response_due": _iso(ticket.next_response_due),
            "resolved_at": _iso(ticket.resolved_at),
            "assignee": ticket.assignee,
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
        return web.json_response(body)

    async def reply(self, request: web.Request) -> web.Response:
        self._authorize(request)
        ticket = await self._require(request)
        body = validate(ReplyIn, await read_json(request, 65536))
        stored = await self._tickets.reply(ticket.id, body.text, body.agent.id, body.agent.name)
        return web.json_response({"message_id": stored.id, "seq": stored.seq}, status=201)

    async def resolve(self, request: web.Request) -> web.Response:
        self._authorize(request)
        ticket = await self._require(request)
        agent_id = None
        if request.can_read_body:
            body = validate(ResolveIn, await read_json(request, 65536))
            agent_id = body.agent.id if body.agent else None
        resolved = await self._tickets.resolve(ticket.id, agent_id)
        return web.json_response(await self._ticket_json(resolved))

    async def _require(self, request: web.Request) -> Ticket:
        ticket = await self._store.ticket(request.match_info["ticket_id"])
        if ticket is None:
            raise NotFound("not_found", "no ticket with that id")
        return ticket


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())
