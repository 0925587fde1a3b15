"""Inbox -> ack -> understanding -> reply, for every channel.

``accept`` stores the message (durable before anything else) and starts the turn in a tracked
task; the HTTP request returns at once. When the database cannot take it in time, the message
goes to the local journal (``bot.journal``) with a receipt sent from memory, and is stored and
answered when the database is back. The turn races the bot's answer against the channel's
promised window (policy in ``bot.ack``) and records every reply with its latency.

A customer's written answer to the rating question asked on resolve is recorded as the
rating, thanked, and never reaches the bot (``_rated``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bot import ack, fastpath
from bot.channels.base import (
    EVENT_KINDS,
    MEDIA_KINDS,
    AckKind,
    Citation,
    InboundMessage,
    OutboundMessage,
    ReplyType,
    scrubbed,
)
from bot.clock import speed_of
from bot.emergency import PAUSED, Mode, Switch
from bot.errors import Conflict, Forbidden, NLUUnavailable, NotFound, StorageUnavailable
from bot.fastpath import FastPath
from bot.handoff import csat, eta, routing
from bot.handoff.tickets import TicketService
from bot.journal import Entry, Journal, Key, key_of, topic
from bot.latency import LatencyGauge, LoopLag
from bot.locks import KeyedLocks
from bot.metrics import Metrics
from bot.nlu import RasaClient
from bot.outbox import Outbox
from bot.settings import Settings
from bot.store.base import (
    Conversation,
    ConversationState,
    MessageStatus,
    Received,
    Store,
    StoredMessage,
    Ticket,
)
from bot.turns import LocalTurns, Turns
from knowledge_base import bands

logger = logging.getLogger(__name__)

RECEIPT_TEXT = "Thanks, got it. I'm looking into this now."
RECEIPT_BY_TEXT = "Thanks, we've received your message. You'll have our answer {when}."
RECEIPT_BUSY_TEXT = (
    "Thanks, we've received your message. We're busier than usual: you'll have our answer {when}."
)
RECEIPT_DOWN_TEXT = (
    "Thanks, we've received your message. Our assistant is running in a limited mode right "
    "now; we'll reply here as soon as we can."
)
FILLER_TEXT = (
    "Sorry, I couldn't make sense of that message. Could you ask your question in a sentence "
    "or two? Say 'agent' to reach a person."
)
MEDIA_TEXT = (
    "Thanks. I can only read text, so I couldn't open that {kind}. Could you tell me in words? "
    "If a person should look at it, say 'agent' and they will see it."
)
RASA_UNAVAILABLE = "rasa_unavailable"  # why a message waits (its ``pending`` event)
PAUSED_TEXT = (
    "Thanks, we've received your message. Replies on this channel are paused for a short "
    "while; we'll answer here as soon as they resume."
)
JOURNALED_TEXT = (
    "Thanks, we've received your message. We're catching up on a short technical problem; "
    "we'll reply here as soon as it's fixed."
)
ALL_TO_HUMANS = "emergency_all_to_humans"  # the intent recorded on tickets the switch opens
STORAGE_RETRY_SECONDS = 5.0  # how often to try the inbox again after a storage failure
FAST_SOURCE = "fast_path"  # replies the gateway gave instead of Rasa (bot/fastpath.py)
NO_ANSWER_TEXT = (
    "Sorry, I couldn't work that out. Could you rephrase, or say 'agent' to reach a person?"
)


class KnowledgeSource(Protocol):
    async def aanswer(self, question: str, floor: float) -> Any: ...

    async def asearch(self, question: str, k: int = 3) -> list[Any]: ...


@dataclass
class Outcome:
    replies: list[OutboundMessage] = field(default_factory=list)
    ticket: Ticket | None = None
    source: str = "rasa"
    pending: bool = False
    waiting: bool = False  # the conversation was already with a human queue
    # What the event log records of a reply's confidence, by reply index (``actions/kb.py``):
    # ``unsure`` (declined: the question counts as unanswered) or ``offered`` (the article
    # ids offered to pick from), with the best ``score``. The content-gap report reads them.
    marks: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Milliseconds of this turn per bot stage, logged with its first reply: ``wait`` (behind
    # the conversation's earlier messages), ``nlu`` (Rasa's turn, queue included, less the
    # KB's share), ``kb`` (knowledge-base search, in an action or straight from the gateway).
    stages: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Journaled:
    """``accept``'s result for a message the database could not take in time: it is in the
    journal and its receipt went out from memory; it has no stored id yet."""

    message: InboundMessage
    receipt: OutboundMessage
    duplicate: bool = False

    @property
    def conversation_id(self) -> str | None:
        return self.message.conversation_id

    @property
    def topic(self) -> str:
        """Where the hub announces the stored message (its conversation may be new)."""
        return topic(key_of(self.message))


class Pipeline:
    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        nlu: RasaClient,
        kb: KnowledgeSource | None,
        tickets: TicketService,
        settings: Settings,
        clock: Callable[[], datetime],
        metrics: Metrics | None = None,
        answer_limit: Callable[[Conversation], int | None] = lambda _: None,
        switch: Callable[[], Switch] = Switch,
        overloaded: Callable[[], bool] = lambda: False,
        fast: FastPath | None = None,
        journal: Journal | None = None,
        turns: Turns | None = None,
        loop_lag: LoopLag | None = None,
    ) -> None:
        self._journal = journal  # messages the database could not take in time
        self._journal_after = settings.storage.journal_after.total_seconds()
        self._journaled: dict[Key, Journaled] = {}  # waiting for the database
        self._pushing: dict[Key, asyncio.Task[None]] = {}  # receipts from memory
        self._fast = fast  # the gateway answers plain KB questions itself (bot/fastpath.py)
        self._lag = loop_lag  # the fast path sheds while the loop lags (acks first)
        self._turns = turns or LocalTurns()  # a conversation's turns, one at a time across gateways
        self._store = store
        self._switch = switch  # the leads' emergency switch (bot/emergency.py)
        self._overloaded = overloaded  # bot/overload_watch.py: receipts then say when
        self._answer_limit = answer_limit  # one message's length on the conversation's channel
        self._outbox = outbox
        self._metrics = metrics
        self._nlu = nlu
        self._kb = kb
        self._tickets = tickets
        self._settings = settings
        self._clock = clock
        self._speed = speed_of(clock)  # clock seconds per real second (debug.clock_speed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[str] = set()
        self._acked: set[str] = set()  # messages whose turn (running) stored an ack
        # Platform ids of messages ``accept`` is storing: stored, they are not in flight yet
        # for a moment, and a resume running then must not start a second turn for them.
        self._accepting: Counter[str] = Counter()
        self.accepted = 0  # new messages accepted since start: the overload watch's rate
        self._locks = KeyedLocks()
        self.ratings = csat.Ratings(store, clock)  # shared with the web channel's rating route
        self._rating_locks = KeyedLocks()  # "5" sent twice must not rate twice
        self._resume_lock = asyncio.Lock()
        self._storage_retry = False  # a resume waits for the database to take writes again
        self._storage_again = False  # more waits since that resume began: it must run again
        self._kb_latency = LatencyGauge(initial=0.05, parallelism=2)
        self._kb_budget = self._settings.channels.web.promise.total_seconds() / 2
        self._shed_lag = self._settings.kb.fast_shed_lag.total_seconds()
        self._shedding = False
        queue = settings.queues.get(settings.routing.default_queue)
        calendar = settings.calendars.get(queue.calendar if queue else "default")
        self._tz = ZoneInfo(calendar.timezone if calendar else "UTC")  # receipts' clock times

    # -- entry points ----------------------------------------------------------------------

    async def accept(self, msg: InboundMessage) -> Received | Journaled:
        """Store the message durably and start its turn; returns before any reply is sent.

        A message the database cannot take within ``storage.journal_after`` is journaled and
        acknowledged from memory instead (``Journaled``); without a journal (or for an event,
        which needs no reply) that is a ``StorageUnavailable``.
        """
        started = time.monotonic()
        msg = scrubbed(msg)
        self._accepting[msg.platform_message_id] += 1
        try:
            return await self._accept(msg, started)
        finally:
            self._accepting[msg.platform_message_id] -= 1
            if not self._accepting[msg.platform_message_id]:
                del self._accepting[msg.platform_message_id]

    async def _accept(self, msg: InboundMessage, started: float) -> Received | Journaled:
        try:
            received = await self._receive(msg)
        except StorageUnavailable as e:
            if self._journal is None or msg.kind in EVENT_KINDS:
                raise
            journaled = await self._journal_message(msg, started, e)
            if not journaled.duplicate:
                self.accepted += 1
                if self._metrics is not None:
                    self._metrics.message_received(msg.channel)
            return journaled
        if self._metrics is not None and not received.duplicate:
            self._metrics.message_received(msg.channel)
        if msg.kind in EVENT_KINDS:  # a reaction, an edit, a join: kept, never replied to
            if not received.duplicate:
                await self._store.set_status(received.message.id, MessageStatus.DONE)
            return received
        if not received.duplicate:
            self.accepted += 1
            self._inflight.add(received.message.id)
            self._spawn(self._turn(received.message, received.conversation, started, msg))
        return received

    async def _receive(self, msg: InboundMessage) -> Received:
        if self._journal is None:
            return await self._store.receive(msg)
        if key_of(msg) in self._journaled:  # a resend of a message still journaled
            raise StorageUnavailable("the message waits in the journal")
        stored = asyncio.ensure_future(self._store.receive(msg))
        try:
            return await asyncio.wait_for(asyncio.shield(stored), self._journal_after)
        except TimeoutError:
            # It may still land; the replay then finds it stored and only adds the receipt.
            stored.add_done_callback(_consume)
            raise StorageUnavailable(f"no write within {self._journal_after:g} s") from None

    async def _journal_message(
        self, msg: InboundMessage, started: float, error: StorageUnavailable
    ) -> Journaled:
        assert self._journal is not None
        key = key_of(msg)
        known = self._journaled.get(key)
        if known is not None:
            return replace(known, duplicate=True)
        receipt = OutboundMessage(
            type=ReplyType.ACK,
            kind=AckKind.RECEIPT,
            text=JOURNALED_TEXT,
            in_reply_to=msg.platform_message_id,
        )
        entry = Entry(msg, receipt, self._clock(), _ms_since(started))
        try:
            await self._journal.append(entry)
        except OSError:
            logger.exception("the journal takes no writes either: the message is refused")
            raise error from None
        accepted = Journaled(msg, receipt)
        self._journaled[key] = accepted
        task = self._spawn(self._push_receipt(entry))
        self._pushing[key] = task
        task.add_done_callback(lambda _: self._pushing.pop(key, None))
        self._resume_when_storage_returns()
        return accepted

    async def _push_receipt(self, entry: Entry) -> None:
        """A platform channel's receipt, sent without the database (web gets it inline)."""
        assert self._journal is not None
        msg = entry.message
        try:
            info = await self._outbox.push(msg.channel, msg.reply_to, entry.receipt)
        except Exception:
            logger.exception("the receipt of journaled message %s was not sent", entry.key)
            return
        if info is not None:
            await self._journal.delivered(entry.key, info)

    async def _restore(self, entry: Entry) -> None:
        """Store a journaled message and the receipt it got; ``resume`` then answers it."""
        pushing = self._pushing.get(entry.key)
        if pushing is not None:  # its outcome decides whether the stored receipt is sent again
            await asyncio.wait({pushing}, timeout=30)
        delivery = entry.delivery or (self._journal.delivery(entry.key) if self._journal else None)
        msg = entry.message
        try:
            received = await self._store.receive(msg)
        except (NotFound, Forbidden) as e:
            # Not checked while the database was away; the message is not lost for it.
            logger.warning(
                "journaled message %s: %s; kept in the customer's own conversation", entry.key, e
            )
            received = await self._store.receive(replace(msg, conversation_id=None))
        if received.message.acked_at is None:
            await self._outbox.restore(
                received.conversation.id,
                entry.receipt,
                event="acked",
                data={
                    "latency_ms": entry.latency_ms,
                    "source": "journal",
                    "type": str(ReplyType.ACK),
                    "kind": str(AckKind.RECEIPT),
                },
                acks=received.message.id,
                at=entry.acked_at,
                delivered=delivery,
            )
        self._journaled.pop(entry.key, None)
        # A web client that sent it without a conversation learns which one it joined.
        self._outbox.announce(
            topic(entry.key),
            {
                "type": "accepted",
                "client_message_id": msg.platform_message_id,
                "conversation_id": received.conversation.id,
                "message_id": received.message.id,
                "duplicate": False,
            },
        )

    async def accept_all(self, messages: list[InboundMessage]) -> None:
        """``accept`` each (a listener's batch); raises if any could not be stored."""
        for msg in messages:
            await self.accept(msg)

    async def resume(self) -> None:
        """Answer what is still unanswered (after Rasa returns, or after a restart): first
        what the journal kept while the database was away, then the inbox."""
        try:
            await self._resume()
        except StorageUnavailable as e:
            logger.warning("resume stopped: %s; trying again shortly", e)
            self._resume_when_storage_returns()

    async def _resume(self) -> None:
        async with self._resume_lock:
            if self._journal is not None:
                try:
                    await self._journal.replay(self._restore)
                except StorageUnavailable:
                    raise
                except Exception:  # the inbox is still answered; the journal is tried again
                    logger.exception("journal replay failed; it is kept and tried again")
            self.answer_waiting(await self._store.claim_unanswered())

    def answer_waiting(self, messages: list[StoredMessage]) -> None:
        """Start the turns of stored, unanswered messages (after a restart, Rasa's return, or
        taken over from a gateway that died), in order per conversation."""
        # Not what a turn, ``accept`` or the journal already holds: that would be a second turn.
        held = {key[2] for key in self._journaled} | set(self._accepting)
        waiting = [
            m for m in messages if m.id not in self._inflight and m.client_message_id not in held
        ]
        by_conversation: defaultdict[str, list[StoredMessage]] = defaultdict(list)
        for message in waiting:
            self._inflight.add(message.id)
            by_conversation[message.conversation_id].append(message)
        if waiting:
            logger.info("resuming %d unanswered messages", len(waiting))
        for conversation in by_conversation.values():
            self._spawn(self._resume_conversation(conversation))

    @property
    def backlog(self) -> int:
        """Turns accepted and not finished (waiting for Rasa, the bot's lock or, journaled,
        for the database)."""
        return len(self._inflight) + len(self._journaled)

    def kb_latency(self) -> float | None:
        """The knowledge base's expected search latency (overload), None without one."""
        return None if self._kb is None else self._kb_latency.expected()

    @property
    def journaled(self) -> int:
        """Messages waiting in the journal for the database (``/health``)."""
        return 0 if self._journal is None else self._journal.waiting

    async def drain(self) -> None:
        """Wait for running turns (used at shutdown and by tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _resume_conversation(self, messages: list[StoredMessage]) -> None:
        for message in messages:
            conversation = await self._store.conversation(message.conversation_id)
            if conversation is None:
                continue
            # Clock seconds, which pass faster than real ones under debug.clock_speed.
            elapsed = (self._clock() - message.created_at).total_seconds() / self._speed
            await self._turn(message, conversation, time.monotonic() - max(elapsed, 0.0))

    # -- one turn --------------------------------------------------------------------------

    async def _turn(
        self,
        message: StoredMessage,
        conversation: Conversation,
        started: float,
        inbound: InboundMessage | None = None,
    ) -> None:
        watchdog = None
        if inbound is not None and self._journal is not None:
            watchdog = asyncio.create_task(
                self._watch_ack(message.id, conversation.id, inbound, started)
            )
        try:
            if conversation.state is not ConversationState.BOT:
                ticket = await self._store.open_ticket(conversation.id)
                if ticket is not None:
                    await self._plan_for_waiting(message, ticket, started)
                    return
            switch = self._switch()
            if switch.is_paused(conversation.channel):
                await self._hold(message, started)
                return
            if switch.mode is Mode.ALL_TO_HUMANS:
                await self._to_humans(message, conversation, started)
                return
            if await self._chosen(message, conversation, started):
                return
            if await self._rated(message, conversation, started):
                return
            await self._bot_turn(message, conversation, started)
        except StorageUnavailable as e:
            # The message is in the inbox, unanswered: marking it would need the database that
            # just failed. It is answered when the database takes writes again.
            logger.warning("turn for message %s stopped: %s", message.id, e.__cause__)
            if inbound is not None and message.id not in self._acked:
                # Stored just before the database went, not acked yet: the receipt goes out
                # from memory now, journaled, so it is not sent again when the turn resumes.
                await self._receipt_from_memory(inbound, conversation.id, started, e)
            self._resume_when_storage_returns()
        except Exception:
            logger.exception("turn failed for message %s; it stays in the inbox", message.id)
            try:
                await self._store.set_status(message.id, MessageStatus.PENDING)
            except StorageUnavailable:
                logger.warning("could not mark message %s pending", message.id)
                self._resume_when_storage_returns()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            self._inflight.discard(message.id)
            self._acked.discard(message.id)

    async def _watch_ack(
        self, message_id: str, conversation_id: str, inbound: InboundMessage, started: float
    ) -> None:
        """Whatever a turn waits on (a database stalled in a lock, a slow read before the
        ack), its receipt goes out inside the window: from memory, journaled, if the turn has
        stored no ack by then. A stored ack that lands later makes the replay store nothing
        more."""
        promise = self._promise(inbound.channel)
        # Half the margin after the turn's own receipt was due (``ack.first_step``).
        deadline = (promise.window - promise.margin / 2).total_seconds()
        await asyncio.sleep(max(deadline - (time.monotonic() - started), 0.0))
        if message_id not in self._acked:
            slow = StorageUnavailable("no ack stored within the window")
            await self._receipt_from_memory(inbound, conversation_id, started, slow)

    async def _receipt_from_memory(
        self,
        inbound: InboundMessage,
        conversation_id: str,
        started: float,
        error: StorageUnavailable,
    ) -> None:
        if self._journal is None:
            return
        try:
            journaled = await self._journal_message(inbound, started, error)
        except StorageUnavailable:
            return  # the journal failed too (logged): the receipt comes with the answer
        if not journaled.duplicate:
            # A web client that already has its 202 follows the conversation: the receipt
            # goes to it as a frame not stored yet (no seq).
            self._outbox.announce(conversation_id, provisional(journaled, conversation_id))

    def _resume_when_storage_returns(self) -> None:
        self._storage_again = True
        if not self._storage_retry:
            self._storage_retry = True
            self._spawn(self._retry_resume())

    async def _retry_resume(self) -> None:
        """Every few seconds, until the database takes writes again: answer what waits."""
        try:
            while True:
                await asyncio.sleep(STORAGE_RETRY_SECONDS)
                self._storage_again = False
                try:
                    await self._resume()
                except StorageUnavailable:
                    continue
                # A turn stopped, or a message was journaled, while that resume ran (after it
                # had read the inbox or rotated the journal): it needs another round.
                if not self._storage_again and self.journaled == 0:
                    return
        finally:
            self._storage_retry = False

    async def _plan_for_waiting(
        self, message: StoredMessage, ticket: Ticket, started: float
    ) -> None:
        ticket = await self._tickets.customer_wrote(ticket, message.created_at)
        plan = await self._tickets.plan(ticket, message.client_message_id, waiting=True)
        first = message.acked_at is None
        await self._reply(message, plan, started, first=first, source="handoff", last=True)

    async def _hold(self, message: StoredMessage, started: float) -> None:
        """A paused channel: receipt (once) and wait; ``resume`` answers it when unpaused."""
        if message.acked_at is not None:
            await self._mark_pending(message, PAUSED)
            return
        receipt = OutboundMessage(
            type=ReplyType.ACK,
            kind=AckKind.RECEIPT,
            text=PAUSED_TEXT,
            in_reply_to=message.client_message_id,
        )
        await self._reply(message, receipt, started, first=True, source="gateway", pending=PAUSED)

    async def _to_humans(
        self, message: StoredMessage, conversation: Conversation, started: float
    ) -> None:
        """The switch's "all to humans": a ticket at once, no Rasa, no KB."""
        ticket = await self._tickets.escalate(conversation.id, ALL_TO_HUMANS, message.text)
        outcome = Outcome(ticket=ticket, source="handoff")
        promise = self._promise(conversation.channel)
        await self._deliver(message, outcome, promise, started, message.acked_at is not None)

    async def _rated(
        self, message: StoredMessage, conversation: Conversation, started: float
    ) -> bool:
        """Record the message as the customer's rating if it is one; True when it was.

        Only a message that reads as a rating (``csat.parse``) costs a store read, so the ack
        of every other message is untouched. It counts when the conversation's rating question
        is outstanding (``Ratings.outstanding``: asked less than a week ago, not yet rated, no
        newer request since); otherwise it goes to the bot like any other message.
        """
        written = None if message.kind in MEDIA_KINDS else csat.parse(message.text)
        if written is None:
            return False
        async with self._rating_locks.hold(conversation.id):
            ticket_id = await self.ratings.outstanding(conversation.id, self._clock())
            if ticket_id is None:
                return False
            try:
                await self.ratings.rate(
                    conversation, ticket_id, written.rating, written.comment, message_id=message.id
                )
            except (NotFound, Conflict):  # another customer's ticket (a merge), or reopened
                return False
        first = message.acked_at is None
        thanks = OutboundMessage(
            type=ReplyType.ACK if first else ReplyType.ANSWER,
            kind=AckKind.SOLUTION if first else None,
            text=csat.thanks(written.rating),
            in_reply_to=message.client_message_id,
            extra={"rated": {"ticket_id": ticket_id, "rating": written.rating}},
        )
        await self._reply(message, thanks, started, first=first, source="csat", last=True)
        return True

    async def _chosen(
        self, message: StoredMessage, conversation: Conversation, started: float
    ) -> bool:
        """Answer with the article the customer picked from the bot's last offer; True if so.

        Like ratings, only a message that reads as a choice ("2") costs a store read, and it
        counts only when the conversation's latest reply is an offer that has that many
        choices; otherwise it goes on (to the rating check, then the bot).
        """
        if self._kb is None or message.kind in MEDIA_KINDS:
            return False
        picked = bands.parse_choice(message.text, bands.MAX_CHOICES)
        if picked is None:
            return False
        replies = [m for m in await self._store.messages(conversation.id) if m.direction == "out"]
        choices = replies[-1].payload.get("choices") if replies else None
        if not isinstance(choices, list) or picked >= len(choices):
            return False
        choice = choices[picked]
        started_kb = time.monotonic()
        # The title finds its own article first (it is indexed as one of its questions).
        hits = await self._kb.asearch(str(choice.get("title", "")), k=bands.MAX_CHOICES)
        hit = next((h for h in hits if h.article_id == choice.get("article_id")), None)
        if hit is None:  # unpublished since the offer
            return False
        reply = self._kb_answer(hit, conversation)
        outcome = Outcome(replies=[reply], source="kb_choice", stages={"kb": _ms_since(started_kb)})
        promise = self._promise(conversation.channel)
        await self._deliver(message, outcome, promise, started, message.acked_at is not None)
        return True

    async def _bot_turn(
        self, message: StoredMessage, conversation: Conversation, started: float
    ) -> None:
        promise = self._promise(conversation.channel)
        receipt_sent = message.acked_at is not None
        if message.kind in MEDIA_KINDS and not message.text.strip():
            text = MEDIA_TEXT.format(kind=_noun(message.kind))
            media = Outcome(replies=[_answer(text, [])], source="gateway")
            await self._deliver(message, media, promise, started, receipt_sent)
            return
        if routing.is_filler(message.text):  # never to Rasa: it would guess an intent
            filler = Outcome(replies=[_answer(FILLER_TEXT, [])], source="gateway")
            await self._deliver(message, filler, promise, started, receipt_sent)
            return
        expected = self._nlu.expected_latency()
        # Without Rasa: a receipt at once; a confident KB answer may follow it.
        mode = ack.Mode.DEGRADED if expected is None else ack.Mode.BOT
        if expected is not None and self._locks.busy(conversation.id):
            expected *= 2  # an earlier message of this conversation is still with the bot
        elapsed = time.monotonic() - started
        step = ack.first_step(
            mode,
            promise,
            None if expected is None else timedelta(seconds=elapsed + expected),
        )
        if mode is ack.Mode.DEGRADED and not self._kb_open():
            # Nothing can answer before Rasa is back: one write acks the message and marks it
            # pending, and the turn ends here (it runs again when Rasa returns).
            if receipt_sent:
                await self._mark_pending(message)
            else:
                await self._receipt(message, started, promise, pending=RASA_UNAVAILABLE)
            return
        if step.ack_now is AckKind.RECEIPT and not receipt_sent:
            await self._receipt(message, started, promise)
            receipt_sent = True
        work = asyncio.create_task(self._understand(message, conversation))
        remaining = step.wait.total_seconds() - (time.monotonic() - started)
        if not receipt_sent:
            done, _ = await asyncio.wait({work}, timeout=max(remaining, 0.0))
            if not done:
                await self._receipt(message, started, promise)
                receipt_sent = True
        outcome = await work
        if outcome.pending and not receipt_sent:
            await self._receipt(message, started, promise)
            receipt_sent = True
        await self._deliver(message, outcome, promise, started, receipt_sent)

    async def _receipt(
        self,
        message: StoredMessage,
        started: float,
        promise: ack.Promise,
        pending: str | None = None,
    ) -> None:
        text = RECEIPT_TEXT if self._nlu.up else RECEIPT_DOWN_TEXT
        extra: dict[str, Any] = {}
        expected = self._nlu.expected_latency()
        busy = self._overloaded()
        if expected is not None and (busy or not promise.answer_as_ack):
            # Receipt-first channels (email) say when the answer will come; in overload every
            # receipt does, from Rasa's latency under its current queue.
            now = self._clock()
            by = now + timedelta(seconds=expected * self._speed)
            template = RECEIPT_BUSY_TEXT if busy else RECEIPT_BY_TEXT
            text = template.format(when=eta.soon(by, self._tz, now))
            extra = {"expected_reply_by": by.isoformat()}
        receipt = OutboundMessage(
            type=ReplyType.ACK,
            kind=AckKind.RECEIPT,
            text=text,
            in_reply_to=message.client_message_id,
            extra=extra,
        )
        await self._reply(message, receipt, started, first=True, source="gateway", pending=pending)

    async def _mark_pending(self, message: StoredMessage, reason: str = RASA_UNAVAILABLE) -> None:
        await self._store.set_status(
            message.id, MessageStatus.PENDING, event="pending", data={"reason": reason}
        )

    async def _deliver(
        self,
        message: StoredMessage,
        outcome: Outcome,
        promise: ack.Promise,
        started: float,
        receipt_sent: bool,
    ) -> None:
        if outcome.pending:
            await self._mark_pending(message)
            return
        replies = list(outcome.replies)
        if outcome.ticket is not None:
            replies.append(
                await self._tickets.plan(
                    outcome.ticket, message.client_message_id, waiting=outcome.waiting
                )
            )
        if not replies:
            replies.append(OutboundMessage(type=ReplyType.ANSWER, text=NO_ANSWER_TEXT))
        if self._fast is not None:
            self._fast.replied(message.conversation_id, offered=bool(outcome.marks))
        elapsed = timedelta(seconds=time.monotonic() - started)
        first = ack.answer_is_ack(elapsed, promise, receipt_sent)
        for index, reply in enumerate(replies):
            if first and reply.kind is None:
                reply = replace(reply, type=ReplyType.ACK, kind=AckKind.SOLUTION)
            if reply.in_reply_to is None:
                reply = replace(reply, in_reply_to=message.client_message_id)
            await self._reply(
                message,
                reply,
                started,
                first=first,
                source=outcome.source,
                mark=outcome.marks.get(index),
                stages=outcome.stages if index == 0 else None,
                last=index == len(replies) - 1,
            )
            first = False

    async def _reply(
        self,
        message: StoredMessage,
        reply: OutboundMessage,
        started: float,
        *,
        first: bool,
        source: str,
        pending: str | None = None,
        mark: dict[str, Any] | None = None,
        stages: dict[str, float] | None = None,
        last: bool = False,
    ) -> None:
        """Store and send one reply; the ``last`` of a turn marks the message done in the
        same write, so a crash never leaves an answered message in the inbox."""
        latency_ms = _ms_since(started)
        data: dict[str, Any] = {"latency_ms": latency_ms, "source": source, "type": str(reply.type)}
        if stages:
            data["stages_ms"] = stages
        if reply.kind is not None:
            data["kind"] = str(reply.kind)
        if mark:
            # An ``answered`` event's message is the reply; ``question`` links it to the
            # customer's message (an ``acked`` event's message already is that).
            data.update(mark, question=message.id)
        await self._outbox.send(
            message.conversation_id,
            reply,
            event="acked" if first else "answered",
            data=data,
            acks=message.id if first else None,
            at=self._clock(),
            pending=pending,
            finishes=message.id if last else None,
        )
        if first:
            self._acked.add(message.id)

    # -- understanding ---------------------------------------------------------------------

    async def _understand(self, message: StoredMessage, conversation: Conversation) -> Outcome:
        started = time.monotonic()
        async with self._locks.hold(conversation.id), self._turns.hold(conversation.id):
            wait_ms = _ms_since(started)
            # An earlier message of this conversation may have been handed off meanwhile.
            current = await self._store.conversation(conversation.id)
            if current is not None and current.state is not ConversationState.BOT:
                ticket = await self._store.open_ticket(conversation.id)
                if ticket is not None:
                    ticket = await self._tickets.customer_wrote(ticket, message.created_at)
                    return Outcome(ticket=ticket, source="handoff", waiting=True)
            fast = await self._fast_answer(message, conversation)
            if fast is not None:
                fast.stages["wait"] = wait_ms
                return fast
            metadata = {
                "conversation_id": conversation.id,
                "message_id": message.id,
                "channel": conversation.channel,
                "customer_id": conversation.customer_id,
            }
            rasa_started = time.monotonic()
            try:
                bot_messages = await self._nlu.send(conversation.id, message.text, metadata)
            except NLUUnavailable as e:
                # Per message, so debug: the client logs when Rasa goes down and comes back.
                logger.debug("degraded turn for %s: %s", message.id, e)
                outcome = await self._without_rasa(message, conversation)
            else:
                rasa_ms = _ms_since(rasa_started)
                outcome = await self._from_rasa(bot_messages, self._answer_limit(conversation))
                kb_ms = outcome.stages.get("kb", 0.0)
                outcome.stages["nlu"] = round(max(rasa_ms - kb_ms, 0.0), 3)
            outcome.stages["wait"] = wait_ms
            return outcome

    async def _from_rasa(self, bot_messages: list[dict[str, Any]], limit: int | None) -> Outcome:
        outcome = Outcome()
        for bot_message in bot_messages:
            custom = bot_message.get("custom")
            if isinstance(custom, dict) and custom.get("promptly") == "handoff":
                outcome.ticket = await self._store.ticket(str(custom.get("ticket_id")))
                if outcome.ticket is not None:
                    self._tickets.watch(outcome.ticket)  # created by a standalone action server
            elif isinstance(custom, dict) and custom.get("promptly") == "answer":
                outcome.replies.append(_custom_answer(custom, limit))
                mark = _mark(custom)
                if mark:
                    outcome.marks[len(outcome.replies) - 1] = mark
                kb_ms = custom.get("kb_ms")
                if isinstance(kb_ms, int | float):
                    outcome.stages["kb"] = outcome.stages.get("kb", 0.0) + float(kb_ms)
            elif bot_message.get("text"):
                outcome.replies.append(_answer(str(bot_message["text"]), []))
        return outcome

    async def _without_rasa(self, message: StoredMessage, conversation: Conversation) -> Outcome:
        """Rasa is unavailable: answer straight from the KB when confident, else wait for Rasa."""
        if self._kb is not None and self._kb_open():
            started = time.monotonic()
            try:
                with self._kb_latency.measure():
                    result = await self._kb.aanswer(message.text, self._settings.kb.direct_floor)
            except Exception:
                logger.exception("KB failed during degraded turn")
            else:
                if result.confident and result.hit is not None:
                    return Outcome(
                        replies=[self._kb_answer(result.hit, conversation)],
                        source="kb_direct",
                        stages={"kb": _ms_since(started)},
                    )
        return Outcome(pending=True, source="none")

    async def _fast_answer(
        self, message: StoredMessage, conversation: Conversation
    ) -> Outcome | None:
        """What Rasa's one-step rule would do, done here (bot/fastpath.py); None: ask Rasa."""
        fast, kb = self._fast, self._kb
        if fast is None or kb is None or message.kind in MEDIA_KINDS or not self._kb_open():
            return None
        if self._nlu.expected_latency() is None:
            return None  # Rasa down: the degraded path's rules apply, not Rasa's own
        if self._saturated():
            return None  # the fast path's own work would slow every ack: Rasa's turn
        started = time.monotonic()
        try:
            with self._kb_latency.measure():  # the gate embeds with the KB's model
                route = await fast.route(conversation.id, message.text)
                answer = None
                if route is not None and route.form is None and not route.escalates:
                    floor = self._settings.kb.direct_floor  # settle() reads the score below
                    # The gate's embedding of the question is the one the KB searches with.
                    answer_for = getattr(kb, "answer_for", None)
                    if route.vector is not None and answer_for is not None:
                        answer = await asyncio.get_running_loop().run_in_executor(
                            None, answer_for, route.vector, floor
                        )
                    else:
                        answer = await kb.aanswer(message.text, floor)
            said = (
                await fast.complete_form(route, conversation.id, message.text)
                if route is not None and route.form is not None
                else None
            )
        except Exception:
            logger.exception("the fast path failed; Rasa takes the turn")
            return None
        if route is None:
            return None
        if route.form is not None:
            if said is None:
                return None  # the form would ask or re-ask: Rasa's dialogue
            return Outcome(replies=[_answer(text, []) for text in said], source=FAST_SOURCE)
        if route.escalates:
            ticket = await self._tickets.escalate(conversation.id, route.intent, message.text)
            return Outcome(ticket=ticket, source=FAST_SOURCE)
        hit = answer.hit if answer is not None else None
        floors = self._settings.kb
        score = None if hit is None else hit.score
        ending = fastpath.settle(route, score, direct=floors.direct_floor, offer=floors.offer_floor)
        if ending == "canned":
            return Outcome(replies=[_answer(route.text, [])], source=FAST_SOURCE)
        if ending == "kb" and hit is not None:
            return Outcome(
                replies=[self._kb_answer(hit, conversation)],
                source=FAST_SOURCE,
                stages={"kb": _ms_since(started)},
            )
        return None

    def _saturated(self) -> bool:
        """Does the event loop run late (``kb.fast_shed_lag``)? Logged when that changes."""
        lag = 0.0 if self._lag is None else self._lag.lag
        shedding = lag > self._shed_lag
        if shedding != self._shedding:
            self._shedding = shedding
            if shedding:
                logger.warning(
                    "event loop %.0f ms late: the fast path yields to the acks", lag * 1e3
                )
            else:
                logger.info("event loop back to %.0f ms late: the fast path resumes", lag * 1e3)
        return shedding

    def _kb_answer(self, hit: Any, conversation: Conversation) -> OutboundMessage:
        limit = self._answer_limit(conversation)
        citation = {"title": hit.citation.title, "url": hit.citation.url}
        return _answer(bands.compose(hit.passage, hit.title, limit), [citation])

    def _kb_open(self) -> bool:
        """May a turn without Rasa ask the KB? Not when it is backed up: that would only add
        CPU load that slows every ack, for answers that come late anyway."""
        return self._kb is not None and self._kb_latency.expected() <= self._kb_budget

    def _promise(self, channel: str) -> ack.Promise:
        settings = getattr(self._settings.channels, channel, self._settings.channels.web)
        return ack.Promise(
            settings.promise, settings.margin, getattr(settings, "answer_as_ack", True)
        )


def provisional(journaled: Journaled, conversation_id: str | None) -> dict[str, Any]:
    """The wire frame of a receipt sent from memory (docs/api.md): no ``seq`` until stored."""
    receipt = journaled.receipt
    return {
        "type": str(receipt.type),
        "kind": str(receipt.kind),
        "text": receipt.text,
        "in_reply_to": receipt.in_reply_to,
        "conversation_id": conversation_id,
        "provisional": True,
    }


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned store call's error, so it is not reported as never retrieved."""
    if not task.cancelled():
        task.exception()


def _noun(kind: str | None) -> str:
    return {"other": "message", "file": "file", "contact": "contact card"}.get(
        kind or "", kind or "message"
    )


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


def _custom_answer(custom: dict[str, Any], limit: int | None) -> OutboundMessage:
    """An action's answer payload as a reply, fitted to the channel's ``limit``."""
    passage, title = custom.get("passage"), custom.get("title")
    if isinstance(passage, str) and isinstance(title, str):
        text = bands.compose(passage, title, limit)
    else:
        text = str(custom.get("text", ""))
    reply = _answer(text, custom.get("citations", []))
    choices = custom.get("choices")
    if isinstance(choices, list) and choices:
        # Stored with the reply: a later "2" picks from it, and the widget shows buttons.
        reply = replace(reply, extra={"choices": choices})
    return reply


def _mark(custom: dict[str, Any]) -> dict[str, Any]:
    mark: dict[str, Any] = {}
    if custom.get("unsure") is True:
        mark["unsure"] = True
    choices = custom.get("choices")
    if isinstance(choices, list) and choices:
        mark["offered"] = [c.get("article_id") for c in choices if isinstance(c, dict)]
    if mark and isinstance(custom.get("score"), int | float):
        mark["score"] = custom["score"]
    return mark


def _answer(text: str, citations: list[dict[str, Any]]) -> OutboundMessage:
    return OutboundMessage(
        type=ReplyType.ANSWER,
        text=text,
        citations=tuple(
            Citation(str(c.get("title", "")), str(c.get("url", "")))
            for c in citations
            if isinstance(c, dict)
        ),
    )
