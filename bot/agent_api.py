"""Agent REST API: tickets and their actions, internal notes, canned replies, agents'
presence, queues, customer tiers, and the console's live feed.

Integrations call it with the bearer token; the agent console calls it with a signed-in
session (``bot.console.actor``). Every write is recorded in the audit log.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel

from bot.agent_models import (
    AgentIn,
    ByAgentIn,
    CannedIn,
    CustomerIn,
    MergeIn,
    NoteIn,
    PresenceIn,
    PriorityIn,
    ReplyIn,
    TransferIn,
)
from bot.agent_views import TicketViews, note_json
from bot.clock import Clock, utc_now
from bot.console import feed as live_feed
from bot.console.actor import Actor, TokenOrSession, record
from bot.console.canned import CannedReplies
from bot.delivery import Dispatcher
from bot.errors import Conflict, Forbidden, NotFound, Unprocessable
from bot.frames import frame
from bot.handoff.assignment import DEFAULT_CAPACITY
from bot.handoff.tickets import TicketService
from bot.http import read_json, validate
from bot.store.base import AgentRecord, Conversation, Store, Ticket

MAX_BODY = 65536
Model = TypeVar("Model", bound=BaseModel)
# ``open``: every ticket not resolved; ``all``: every ticket; else exactly that status.
_TICKET_FILTERS = ("open", "new", "waiting_on_customer", "resolved", "all")


class AgentAPI:
    def __init__(
        self,
        store: Store,
        tickets: TicketService,
        token: str,
        dispatcher: Dispatcher,
        clock: Clock = utc_now,
        *,
        canned: CannedReplies | None = None,
        feed: live_feed.Feed | None = None,
    ) -> None:
        self._store = store
        self._tickets = tickets
        self._auth = TokenOrSession(token)
        self._dispatcher = dispatcher
        self._clock = clock
        self._canned = canned
        self._feed = feed
        self.views = TicketViews(store, tickets, clock)

    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/api/agent/tickets", "list_tickets"),
        ("GET", "/api/agent/tickets/{ticket_id}", "get_ticket"),
        ("POST", "/api/agent/tickets/{ticket_id}/replies", "reply"),
        ("POST", "/api/agent/tickets/{ticket_id}/notes", "add_note"),
        ("POST", "/api/agent/tickets/{ticket_id}/take", "take"),
        ("POST", "/api/agent/tickets/{ticket_id}/waiting", "waiting"),
        ("POST", "/api/agent/tickets/{ticket_id}/priority", "priority"),
        ("POST", "/api/agent/tickets/{ticket_id}/transfer", "transfer"),
        ("POST", "/api/agent/tickets/{ticket_id}/resolve", "resolve"),
        ("GET", "/api/agent/canned", "list_canned"),
        ("POST", "/api/agent/canned", "add_canned"),
        ("DELETE", "/api/agent/canned/{canned_id}", "delete_canned"),
        ("GET", "/api/agent/live", "live"),
        ("GET", "/api/agent/agents", "list_agents"),
        ("PUT", "/api/agent/agents/{agent_id}", "put_agent"),
        ("POST", "/api/agent/customers", "put_customer"),
        ("GET", "/api/agent/customers/{customer_id}", "get_customer"),
        ("POST", "/api/agent/customers/{customer_id}/merge", "merge_customer"),
        ("GET", "/api/queues", "queues"),
    ]

    # -- who acts ----------------------------------------------------------------------------

    async def _body(
        self, request: web.Request, model: type[Model], *roles: str
    ) -> tuple[Actor, Model]:
        actor = await self._auth.actor(request, *roles)  # before reading what a stranger sent
        return actor, validate(model, await read_json(request, MAX_BODY))

    async def _agent(self, actor: Actor, named: AgentIn | None) -> AgentIn:
        """Who acts: the session's own agent, else the agent the token's caller names."""
        if actor.user is None:
            if named is None:
                raise Unprocessable("validation_error", "agent: Field required", field="agent")
            return named
        agent_id = actor.agent_id or actor.user.username  # agent_id is set for a session
        row = next((a for a in await self._store.agents() if a.id == agent_id), None)
        if row is None:  # an admin, or a user older than their agents row: one now, offline
            row = AgentRecord(agent_id, actor.user.username, "offline", DEFAULT_CAPACITY, (), (), 0)
            await self._store.save_agent(row, self._clock())
        return AgentIn(id=agent_id, name=row.name)

    async def _by(self, actor: Actor, named: AgentIn | None) -> str | None:
        """The agent an optional ``agent`` names, or the session's own."""
        if actor.user is None and named is None:
            return None
        return (await self._agent(actor, named)).id

    # -- tickets -----------------------------------------------------------------------------

    async def list_tickets(self, request: web.Request) -> web.Response:
        await self._auth.actor(request)
        status = request.query.get("status", "open")
        if status not in _TICKET_FILTERS:
            raise Unprocessable(
                "validation_error",
                f"status: one of {', '.join(_TICKET_FILTERS)}",
                field="status",
            )
        tickets = await self._store.tickets(None if status == "all" else status)
        return web.json_response(
            {
                "now": self._clock().isoformat(),  # the gateway's clock, for countdowns
                "tickets": [await self.views.ticket(t) for t in tickets],
            }
        )

    async def get_ticket(self, request: web.Request) -> web.Response:
        await self._auth.actor(request)
        ticket = await self._require(request)
        body = await self.views.ticket(ticket)
        log = await self._store.events(ticket.conversation_id)
        events = [e for e in log if e.ticket_id == ticket.id]
        body["now"] = self._clock().isoformat()
        body["messages"] = [frame(m) for m in await self._store.messages(ticket.conversation_id)]
        body["events"] = [{"at": e.at.isoformat(), "type": e.type, "data": e.data} for e in events]
        body["notes"] = [note_json(e) for e in events if e.type == "note"]
        return web.json_response(body)

    async def reply(self, request: web.Request) -> web.Response:
        actor, body = await self._body(request, ReplyIn)
        agent = await self._agent(actor, body.agent)
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
        stored = await self._tickets.reply(ticket.id, body.text, agent.id, agent.name)
        channel = target.channel if target else None
        await record(request, actor, "ticket.reply", ticket.id, message=stored.id, channel=channel)
        return web.json_response({"message_id": stored.id, "seq": stored.seq}, status=201)

    async def add_note(self, request: web.Request) -> web.Response:
        """An internal note: an event in the ticket's log, never a message to the customer."""
        actor, body = await self._body(request, NoteIn)
        agent = await self._agent(actor, body.agent)
        ticket = await self._require(request)
        at = self._clock()
        data = {"text": body.text, "agent": {"id": agent.id, "name": agent.name}, "by": actor.name}
        await self._store.log_event(
            "note", conversation_id=ticket.conversation_id, ticket_id=ticket.id, data=data, at=at
        )
        await record(request, actor, "ticket.note", ticket.id, chars=len(body.text))
        return web.json_response({"at": at.isoformat(), **data}, status=201)

    async def take(self, request: web.Request) -> web.Response:
        actor, body = await self._body(request, ByAgentIn)
        agent = await self._agent(actor, body.agent)
        ticket = await self._tickets.take(request.match_info["ticket_id"], agent.id)
        await record(request, actor, "ticket.take", ticket.id, agent=agent.id)
        return web.json_response(await self.views.ticket(ticket))

    async def waiting(self, request: web.Request) -> web.Response:
        actor, body = await self._body(request, ByAgentIn)
        by = await self._by(actor, body.agent) or "api"
        ticket = await self._tickets.set_waiting(request.match_info["ticket_id"], by)
        await record(request, actor, "ticket.waiting", ticket.id, agent=by)
        return web.json_response(await self.views.ticket(ticket))

    async def priority(self, request: web.Request) -> web.Response:
        actor, body = await self._body(request, PriorityIn)
        agent = await self._agent(actor, body.agent)
        ticket_id = request.match_info["ticket_id"]
        ticket = await self._tickets.set_priority(ticket_id, body.priority, agent.id)
        await record(request, actor, "ticket.priority", ticket.id, priority=body.priority)
        return web.json_response(await self.views.ticket(ticket))

    async def transfer(self, request: web.Request) -> web.Response:
        actor, body = await self._body(request, TransferIn)
        agent = await self._agent(actor, body.agent)
        ticket = await self._tickets.transfer(
            request.match_info["ticket_id"], queue=body.queue, agent_id=body.agent_id, by=agent.id
        )
        await record(
            request, actor, "ticket.transfer", ticket.id, queue=body.queue, agent=body.agent_id
        )
        return web.json_response(await self.views.ticket(ticket))

    async def resolve(self, request: web.Request) -> web.Response:
        actor = await self._auth.actor(request)
        ticket = await self._require(request)
        named = None
        if request.can_read_body:
            named = validate(ByAgentIn, await read_json(request, MAX_BODY)).agent
        agent_id = await self._by(actor, named)
        resolved = await self._tickets.resolve(ticket.id, agent_id)
        await record(request, actor, "ticket.resolve", ticket.id, agent=agent_id)
        return web.json_response(await self.views.ticket(resolved))

    async def _require(self, request: web.Request) -> Ticket:
        ticket = await self._store.ticket(request.match_info["ticket_id"])
        if ticket is None:
            raise NotFound("not_found", "no ticket with that id")
        return ticket

    async def _conversation_on(self, ticket: Ticket, channel: str) -> Conversation:
        for conversation in await self._store.conversations_of(ticket.customer_id):
            if conversation.channel == channel:
                return conversation  # the latest one there
        raise Unprocessable(
            "no_conversation_on_channel",
            f"the customer has never written on {channel}",
            field="channel",
        )

    # -- canned replies, knowledge, live feed ---------------------------------------------------

    async def list_canned(self, request: web.Request) -> web.Response:
        await self._auth.actor(request)
        replies = await self._canned.all() if self._canned else []
        return web.json_response({"canned": [vars(r) for r in replies]})

    async def add_canned(self, request: web.Request) -> web.Response:
        actor, body = await self._body(request, CannedIn, "admin")
        added = await self._canned_replies().add(body.title, body.text)
        await record(request, actor, "canned.add", added.id, title=added.title)
        return web.json_response(vars(added), status=201)

    async def delete_canned(self, request: web.Request) -> web.Response:
        actor = await self._auth.actor(request, "admin")
        canned_id = request.match_info["canned_id"]
        if not await self._canned_replies().delete(canned_id):
            raise NotFound("not_found", "no canned reply with that id")
        await record(request, actor, "canned.delete", canned_id)
        return web.json_response({"deleted": canned_id})

    def _canned_replies(self) -> CannedReplies:
        if self._canned is None:
            raise NotFound("not_found", "canned replies are not set up on this gateway")
        return self._canned

    async def live(self, request: web.Request) -> web.WebSocketResponse:
        """The console's WebSocket: every ticket change (see ``bot.console.feed``)."""
        actor = await self._auth.actor(request)
        origin = request.headers.get("Origin")
        if actor.user is not None and origin and urlsplit(origin).netloc != request.host:
            # Browsers attach the cookie to sockets any site opens; only ours may read this.
            raise Forbidden("forbidden", "the live feed is for this site's console only")
        if self._feed is None:
            raise NotFound("not_found", "the live feed is not running on this gateway")
        return await live_feed.serve(self._feed, request, self._clock)

    # -- agents, customers, queues ------------------------------------------------------------

    async def list_agents(self, request: web.Request) -> web.Response:
        await self._auth.actor(request)
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
        actor, body = await self._body(request, PresenceIn)
        wanted = AgentRecord(
            id=request.match_info["agent_id"],
            name=body.name,
            presence=body.presence,
            capacity=body.capacity,
            skills=body.skills,
            queues=body.queues,
            last_assigned=0,
        )
        if not actor.is_admin:
            wanted = await self._own_presence(actor, wanted)
        saved = await self._tickets.set_presence(wanted)
        await record(request, actor, "agent.put", saved.id, presence=saved.presence)
        return web.json_response({"id": saved.id, "presence": saved.presence})

    async def _own_presence(self, actor: Actor, wanted: AgentRecord) -> AgentRecord:
        """An agent sets their own presence and display name only: capacity, skills and queues
        are an admin's."""
        if wanted.id != actor.agent_id:
            raise Forbidden("forbidden", "agents set their own presence only")
        known = next((a for a in await self._store.agents() if a.id == wanted.id), None)
        if known is not None:
            return replace(known, presence=wanted.presence, name=wanted.name)
        return replace(wanted, capacity=DEFAULT_CAPACITY, skills=(), queues=())

    async def put_customer(self, request: web.Request) -> web.Response:
        actor, body = await self._body(request, CustomerIn)
        customer_id, created = await self._store.link_customer(
            body.channel,
            body.external_id,
            tier=body.tier,
            name=body.name,
            email=body.email,
            language=body.language,
        )
        await record(request, actor, "customer.put", customer_id, tier=body.tier)
        return web.json_response(
            {"customer_id": customer_id, "tier": body.tier}, status=201 if created else 200
        )

    async def get_customer(self, request: web.Request) -> web.Response:
        """The customer with their history on every channel and their tickets."""
        await self._auth.actor(request)
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
                "tickets": [await self.views.ticket(t) for t in tickets],
            }
        )

    async def merge_customer(self, request: web.Request) -> web.Response:
        actor, body = await self._body(request, MergeIn)
        agent = await self._agent(actor, body.agent)
        into = request.match_info["customer_id"]
        merged = await self._store.merge_customers(
            into, body.from_customer, self._clock(), by=agent.id
        )
        await record(request, actor, "customer.merge", into, merged=body.from_customer)
        return web.json_response({"id": merged.id, "merged": body.from_customer})

    async def queues(self, request: web.Request) -> web.Response:
        await self._auth.actor(request)
        return web.json_response({"queues": await self._tickets.queues.overview()})
