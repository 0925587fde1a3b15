"""Web channel: REST + WebSocket for the embeddable widget (wire format in docs/api.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import datetime
from typing import Any, ClassVar

from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field

from bot.channels.base import Customer, InboundMessage
from bot.clock import Clock, utc_now
from bot.errors import Forbidden, NotFound, RequestError, TooManyRequests, Unprocessable
from bot.frames import frame
from bot.handoff.csat import SCALE
from bot.http import (
    MAX_INTEGER,
    NonBlankText,
    error_body,
    error_of,
    parse_json,
    read_json,
    validate,
)
from bot.hub import Frame, Hub, Subscription
from bot.limits import ClientLimits, SocketBudget
from bot.pipeline import Journaled, Pipeline
from bot.settings import WebChannelSettings
from bot.store.base import Received, Store

logger = logging.getLogger(__name__)
NAME = "web"
# WebSocket close codes (4000-4999 are the application's; these echo the HTTP statuses).
CLOSE_IDLE = 4408  # followed no conversation and sent nothing for `limits.socket_idle`
CLOSE_TOO_MANY = 4429  # kept sending after as many `rate_limited` refusals as its budget
_INTERNAL = ("internal_error", "something went wrong on our side; send the message again")
_DIGITS = re.compile(r"[0-9]{1,30}")  # int() would also take "1_000" and "٥"


class CustomerIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=128)
    name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    client_message_id: str = Field(min_length=1, max_length=128)
    text: NonBlankText
    customer: CustomerIn
    conversation_id: str | None = Field(None, min_length=1, max_length=64)


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    customer_id: str = Field(min_length=1, max_length=128)
    ticket_id: str = Field(min_length=1, max_length=64)
    rating: int = Field(ge=SCALE[0], le=SCALE[-1], strict=True)  # "5" or 4.5 is a client bug
    comment: str | None = Field(None, max_length=1000)


class WebChannel:
    name = NAME

    def __init__(
        self,
        pipeline: Pipeline,
        store: Store,
        hub: Hub,
        settings: WebChannelSettings,
        limits: ClientLimits,
        clock: Clock = utc_now,
    ) -> None:
        self._clock = clock
        self._limits = limits
        self._body_timeout = limits.settings.body_timeout.total_seconds()
        self._pipeline = pipeline
        self._store = store
        self._hub = hub
        self._settings = settings
        # The pipeline's, so a tap and a written rating of one ticket share its lock.
        self._ratings = pipeline.ratings

    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("POST", "/api/web/messages", "post_message"),
        ("GET", "/api/web/conversations/{conversation_id}/messages", "history"),
        ("GET", "/ws", "websocket"),
        ("POST", "/api/conversations/{conversation_id}/csat", "rate"),
    ]

    def parse(self, data: Any) -> InboundMessage:
        """Validate a message object (the POST body or a WebSocket frame)."""
        return parse_message(data, self._settings.max_text_chars, self._clock())

    async def post_message(self, request: web.Request) -> web.Response:
        await self._limits.address(request.remote)
        inbound = self.parse(await self._read(request))
        await self._limits.sender(inbound.customer.external_id)
        received = await self._pipeline.accept(inbound)
        return web.json_response(accepted(received), status=202)

    async def history(self, request: web.Request) -> web.Response:
        conversation_id = request.match_info["conversation_id"]
        await self._authorize(conversation_id, request.query.get("customer_id"))
        messages = await self._store.messages(conversation_id, _after(request))
        return web.json_response(
            {"conversation_id": conversation_id, "messages": [frame(m) for m in messages]}
        )

    async def rate(self, request: web.Request) -> web.Response:
        """The customer's 1–5 rating of a resolved request (the question comes on resolve)."""
        await self._limits.address(request.remote)
        body = validate(RatingIn, await self._read(request))
        await self._limits.sender(body.customer_id)
        conversation_id = request.match_info["conversation_id"]
        await self._authorize(conversation_id, body.customer_id)
        conversation = await self._store.conversation(conversation_id)
        assert conversation is not None  # _authorize found it
        comment = (body.comment or "").strip() or None
        data = await self._ratings.rate(conversation, body.ticket_id, body.rating, comment)
        replaced = data["replaces"] is not None
        return web.json_response(
            {"ticket_id": body.ticket_id, "rating": body.rating, "replaced": replaced}, status=201
        )

    async def _read(self, request: web.Request) -> Any:
        return await read_json(request, self._settings.max_body_bytes, self._body_timeout)

    async def _authorize(self, conversation_id: str, customer_external_id: str | None) -> None:
        """The conversation id and the customer id together are the web client's credential."""
        if not customer_external_id:
            raise Unprocessable(
                "validation_error", "customer_id: query parameter is required", field="customer_id"
            )
        conversation = await self._store.conversation(conversation_id)
        if conversation is None or conversation.channel != NAME:
            raise NotFound(
                "unknown_conversation", "no conversation with that id", field="conversation_id"
            )
        owner = await self._store.customer_id_for(NAME, customer_external_id)
        if owner != conversation.customer_id:
            raise Forbidden(
                "conversation_mismatch",
                "that conversation belongs to another customer",
                field="conversation_id",
            )

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        conversation_id = request.query.get("conversation_id")
        customer_id = request.query.get("customer_id")
        after = _after(request)
        await self._limits.address(request.remote)  # refused with a 429 before the upgrade
        with self._limits.open_socket(request.remote):
            return await self._serve_socket(request, conversation_id, customer_id, after)

    async def _serve_socket(
        self,
        request: web.Request,
        conversation_id: str | None,
        customer_id: str | None,
        after: int,
    ) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=25, max_msg_size=self._settings.max_body_bytes)
        await ws.prepare(request)
        subscription = self._hub.subscribe()
        try:
            if conversation_id:
                try:
                    await self._authorize(conversation_id, customer_id)
                except RequestError as e:
                    await ws.send_json({"type": "error", **error_of(e)})
                    await ws.close()
                    return ws
                subscription.follow(conversation_id)
            sent = await self._replay(ws, conversation_id, after)
            writer = asyncio.create_task(self._write(ws, subscription, sent))
            try:
                await self._receive(ws, subscription, request.remote)
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
        finally:
            subscription.close()
        return ws

    async def _replay(
        self, ws: web.WebSocketResponse, conversation_id: str | None, after: int
    ) -> SentFrames:
        sent = SentFrames()
        if conversation_id:
            for message in await self._store.messages(conversation_id, after):
                await ws.send_json(frame(message))
                sent.replayed(conversation_id, message.seq)
        return sent

    async def _write(
        self, ws: web.WebSocketResponse, subscription: Subscription, sent: SentFrames
    ) -> None:
        while True:
            item = await subscription.queue.get()
            if item is None:  # dropped for falling behind; the client will replay
                await ws.close()
                return
            if item.get("type") == "accepted":
                # A journaled message is stored now: follow its conversation, then send what
                # it already holds (published before this socket followed it).
                conversation_id = item["conversation_id"]
                subscription.follow(conversation_id)
                await ws.send_json(item)
                after = sent.cursor(conversation_id)
                for message in await self._store.messages(conversation_id, after):
                    stored = frame(message)
                    if sent.fresh(stored):
                        await ws.send_json(stored)
                    sent.replayed(conversation_id, message.seq)
                continue
            if sent.fresh(item):
                await ws.send_json(item)

    async def _receive(
        self, ws: web.WebSocketResponse, subscription: Subscription, address: str | None
    ) -> None:
        budget = self._limits.socket()
        idle = self._limits.settings.socket_idle.total_seconds()
        while True:
            try:
                # A socket following a conversation may wait quietly for hours (an agent's
                # reply); the heartbeat finds dead ones. One that follows nothing is only
                # worth keeping while the client is about to send.
                msg = await ws.receive(timeout=None if subscription.conversations else idle)
            except TimeoutError:
                await ws.close(code=CLOSE_IDLE, message=b"idle: no message and no conversation")
                return
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                await self._on_frame(ws, subscription, msg.data, budget, address)
                if budget.exhausted:
                    await ws.close(code=CLOSE_TOO_MANY, message=b"too many messages")
                    return
            elif msg.type is WSMsgType.ERROR:
                logger.debug("websocket closed with %s", ws.exception())
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return

    async def _on_frame(
        self,
        ws: web.WebSocketResponse,
        subscription: Subscription,
        data: str | bytes,
        budget: SocketBudget,
        address: str | None,
    ) -> None:
        payload: Any = None
        try:
            budget.frame()  # every frame counts, JSON or not
            payload = parse_json(data)
            await self._limits.address(address)
            inbound = self.parse(payload)
            await self._limits.sender(inbound.customer.external_id)
            received = await self._pipeline.accept(inbound)
        except RequestError as e:
            if payload is None and isinstance(e, TooManyRequests):
                # Name the refused message: the client sends that one again after the wait.
                with contextlib.suppress(RequestError):
                    payload = parse_json(data)
            reply: dict[str, Any] = {"type": "error", **error_of(e)}
            client_message_id = (
                payload.get("client_message_id") if isinstance(payload, dict) else None
            )
            if isinstance(client_message_id, str):
                reply["client_message_id"] = client_message_id
            await ws.send_json(reply)
            return
        except Exception:
            # A bug must not cost the customer the socket (and an HTTP 500 written into the
            # upgraded stream): this frame gets an error, the next one is read as usual.
            logger.exception("websocket frame failed")
            await ws.send_json({"type": "error", **error_body(*_INTERNAL)})
            return
        # Follow before yielding to the loop: the turn's replies cannot be published earlier.
        if isinstance(received, Journaled):
            # Its conversation may not exist yet: the journal's replay announces it here.
            subscription.follow(received.conversation_id or received.topic)
        else:
            subscription.follow(received.conversation.id)
        await ws.send_json(
            {"type": "accepted", "client_message_id": inbound.platform_message_id}
            | accepted(received)
        )


class SentFrames:
    """Which stored-message frames one WebSocket has sent, so none goes out twice.

    Per conversation: every seq up to the replay ``cursor`` (sent from the store), and past
    it the frames sent live. Live frames are not assumed to come in seq order: with several
    gateway processes publishing one conversation (``[scale]``), seq 11 may arrive before 10,
    and 10 must still go out. A live frame is known by its seq and its delivery status (a
    message whose delivery failed is published again with the same seq: that is news). At
    most ``LIVE`` live frames are remembered per conversation (the lowest seq forgotten
    first).
    """

    LIVE = 256

    def __init__(self) -> None:
        self._cursor: dict[str, int] = {}
        self._live: dict[str, dict[tuple[int, str | None], None]] = {}

    def cursor(self, conversation_id: str) -> int:
        return self._cursor.get(conversation_id, 0)

    def replayed(self, conversation_id: str, seq: int) -> None:
        """Everything up to ``seq`` was sent from the store."""
        if seq > self.cursor(conversation_id):
            self._cursor[conversation_id] = seq
            live = self._live.get(conversation_id)
            if live:
                for key in [key for key in live if key[0] <= seq]:
                    del live[key]

    def fresh(self, item: Frame) -> bool:
        """Whether ``item`` was not sent yet (it counts as sent from now on). A provisional
        frame (a receipt sent from memory, not stored: no seq) is always news."""
        if item.get("provisional"):
            return True
        conversation_id, seq = item["conversation_id"], item["seq"]
        if seq <= self.cursor(conversation_id):
            return False
        delivery = item.get("delivery")
        key = (seq, delivery.get("status") if isinstance(delivery, dict) else None)
        live = self._live.setdefault(conversation_id, {})
        if key in live:
            return False
        live[key] = None
        if len(live) > self.LIVE:
            del live[min(live)]
        return True


def accepted(received: Received | Journaled) -> dict[str, Any]:
    """What the client learns of a message it sent (docs/api.md). A journaled message (the
    database is away) has no id yet and carries the receipt it was sent from memory."""
    if isinstance(received, Journaled):
        return {
            "conversation_id": received.conversation_id,
            "message_id": None,
            "duplicate": received.duplicate,
            "journaled": True,
            "receipt": {
                "type": str(received.receipt.type),
                "kind": str(received.receipt.kind),
                "text": received.receipt.text,
                "in_reply_to": received.receipt.in_reply_to,
            },
        }
    return {
        "conversation_id": received.conversation.id,
        "message_id": received.message.id,
        "duplicate": received.duplicate,
    }


def parse_message(data: Any, max_text_chars: int, received_at: datetime) -> InboundMessage:
    """A web chat message from any JSON value, or a ``RequestError`` naming the problem."""
    body = validate(MessageIn, data)
    if len(body.text) > max_text_chars:
        raise Unprocessable(
            "validation_error", f"text: is longer than {max_text_chars} characters", field="text"
        )
    return InboundMessage(
        channel=NAME,
        customer=Customer(body.customer.id, body.customer.name, body.customer.email),
        platform_message_id=body.client_message_id,
        text=body.text,
        received_at=received_at,
        conversation_id=body.conversation_id,
    )


def _after(request: web.Request) -> int:
    raw = request.query.get("after", "0") or "0"
    if not _DIGITS.fullmatch(raw):
        raise Unprocessable(
            "validation_error", "after: a whole number, 0 or more (ASCII digits)", field="after"
        )
    return min(int(raw), MAX_INTEGER)  # past every seq: nothing to replay
