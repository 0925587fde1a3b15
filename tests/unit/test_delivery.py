"""The dispatcher: replies on platform channels go out in order, retried, or marked failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.channels.base import Customer, InboundMessage, OutboundMessage, ReplyType
from bot.channels.platform import PlatformChannel, SendError, Sent, Window, split_text
from bot.delivery import Dispatcher, window_closed
from bot.hub import Hub
from bot.store.base import DeliveryStatus
from bot.store.sqlite import SQLiteStore

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


class Recorder(PlatformChannel):
    """A platform adapter whose API is a list: fails as told, records what it sent."""

    name = "chat"
    SECRETS: ClassVar[Mapping[str, str]] = {}
    MAX_CHARS: ClassVar[int] = 20
    WINDOW: ClassVar[Window] = Window(automated=timedelta(hours=24), agent=timedelta(days=7))

    def __init__(self, session: aiohttp.ClientSession) -> None:
        super().__init__({}, {}, session, "")
        self.sent: list[tuple[str, str, bool]] = []
        self.failures: list[SendError] = []
        self.attempt_times: list[float] = []

    def render(self, reply: OutboundMessage) -> list[str]:
        return split_text(reply.text, self.MAX_CHARS)

    async def send(self, reply_to: Mapping[str, Any], text: str, *, agent: bool) -> Sent:
        self.attempt_times.append(asyncio.get_running_loop().time())
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((str(reply_to["chat"]), text, agent))
        return Sent(f"p{len(self.sent)}")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def env(tmp_path) -> AsyncIterator[tuple[SQLiteStore, Recorder, Dispatcher, Clock, Hub]]:
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    async with aiohttp.ClientSession() as session:
        adapter = Recorder(session)
        clock = Clock()
        hub = Hub()
        dispatcher = Dispatcher(
            store, hub, {"chat": adapter}, clock, base_delay=0.01, max_delay=0.05, max_attempts=4
        )
        yield store, adapter, dispatcher, clock, hub
        await dispatcher.close()
    await store.close()


async def conversation(store: SQLiteStore, chat: str = "c1", channel: str = "chat") -> str:
    received = await store.receive(
        InboundMessage(
            channel=channel,
            customer=Customer(chat),
            platform_message_id=f"in-{chat}",
            text="hello",
            received_at=NOW,
            reply_to={"chat": chat},
        )
    )
    return received.conversation.id


async def reply(store: SQLiteStore, conversation_id: str, text: str, type=ReplyType.ANSWER):
    return await store.add_reply(
        conversation_id, OutboundMessage(type=type, text=text), event="answered", at=NOW
    )


async def test_replies_go_out_in_order_and_are_marked_sent(env):
    store, adapter, dispatcher, _, _ = env
    conversation_id = await conversation(store)
    first = await reply(store, conversation_id, "one")
    second = await reply(store, conversation_id, "two", ReplyType.AGENT)
    dispatcher.enqueue(first)
    dispatcher.enqueue(second)
    await dispatcher.idle()

    assert adapter.sent == [("c1", "one", False), ("c1", "two", True)]
    stored = await store.message(second.id)
    assert stored is not None and stored.delivery_status is DeliveryStatus.SENT
    assert stored.delivery["platform_ids"] == ["p2"]


async def test_a_429_is_retried_after_its_retry_after_and_later_replies_wait(env):
    store, adapter, dispatcher, _, _ = env
    conversation_id = await conversation(store)
    adapter.failures = [SendError("429", retryable=True, retry_after=0.3, status=429)]
    first = await reply(store, conversation_id, "one")
    second = await reply(store, conversation_id, "two")
    dispatcher.enqueue(first)
    dispatcher.enqueue(second)
    await dispatcher.idle()

    assert [text for _, text, _ in adapter.sent] == ["one", "two"]  # order kept
    assert adapter.attempt_times[1] - adapter.attempt_times[0] >= 0.3
    stored = await store.message(first.id)
    assert stored is not None and stored.delivery["attempts"] == 1


async def test_a_permanent_error_marks_the_reply_failed_and_tells_followers(env):
    store, adapter, dispatcher, _, hub = env
    conversation_id = await conversation(store)
    subscription = hub.subscribe()
    subscription.follow(conversation_id)
    adapter.failures = [SendError("HTTP 400: chat not found", retryable=False, status=400)]
    message = await reply(store, conversation_id, "one")
    dispatcher.enqueue(message)
    await dispatcher.idle()

    stored = await store.message(message.id)
    assert stored is not None and stored.delivery_status is DeliveryStatus.FAILED
    assert stored.delivery["error"] == "send_failed"
    frame = subscription.queue.get_nowait()
    assert frame is not None and frame["delivery"]["status"] == "failed"
    events = [e for e in await store.events(conversation_id) if e.type == "delivery_failed"]
    assert len(events) == 1 and events[0].message_id == message.id


async def test_retries_run_out(env):
    store, adapter, dispatcher, _, _ = env
    conversation_id = await conversation(store)
    adapter.failures = [SendError("503", retryable=True, status=503) for _ in range(10)]
    message = await reply(store, conversation_id, "one")
    dispatcher.enqueue(message)
    await dispatcher.idle()

    stored = await store.message(message.id)
    assert stored is not None and stored.delivery_status is DeliveryStatus.FAILED
    assert (stored.delivery["error"], stored.delivery["attempts"]) == ("retries_exhausted", 4)
    assert adapter.sent == []


async def test_nothing_goes_out_after_the_platform_window_closes(env):
    store, adapter, dispatcher, clock, _ = env
    conversation_id = await conversation(store)
    clock.now = NOW + timedelta(hours=25)
    answer = await reply(store, conversation_id, "late bot answer")
    agent = await reply(store, conversation_id, "agent reply", ReplyType.AGENT)
    dispatcher.enqueue(answer)
    dispatcher.enqueue(agent)
    await dispatcher.idle()

    assert adapter.sent == [("c1", "agent reply", True)]  # agents have 7 days here
    stored = await store.message(answer.id)
    assert stored is not None and stored.delivery["error"] == "outside_messaging_window"
    conv = await store.conversation(conversation_id)
    assert conv is not None
    code, reason = await dispatcher.refusal(conv, agent=False) or ("", "")
    assert code == "outside_messaging_window" and "24 hours" in reason
    assert await dispatcher.refusal(conv, agent=True) is None


async def test_pending_deliveries_resume_after_a_restart_without_resending_parts(env, tmp_path):
    store, adapter, dispatcher, clock, hub = env
    conversation_id = await conversation(store)
    long = await reply(store, conversation_id, "first part here. second part here.")
    # A crash after the first part went out: the record says one part was sent.
    await store.set_delivery(
        long.id, DeliveryStatus.PENDING, {"parts_sent": 1, "platform_ids": ["x"]}
    )
    disabled = await reply(store, await conversation(store, "c2", channel="gone"), "lost?")

    await dispatcher.start()
    await dispatcher.idle()

    assert adapter.sent == [("c1", "second part here.", False)]
    stored = await store.message(long.id)
    assert stored is not None and stored.delivery_status is DeliveryStatus.SENT
    assert stored.delivery["platform_ids"] == ["x", "p1"]
    kept = await store.message(disabled.id)
    assert kept is not None and kept.delivery["error"] == "channel_disabled"


@given(
    last=st.integers(min_value=0, max_value=10**6),
    later=st.integers(min_value=0, max_value=10**6),
    hours=st.integers(min_value=1, max_value=200),
)
def test_a_closed_window_stays_closed(last: int, later: int, hours: int) -> None:
    window = Window(automated=timedelta(hours=hours))
    last_at = NOW + timedelta(seconds=last)
    now = last_at + timedelta(seconds=later)
    closed = window_closed(window, last_at, now, agent=False)
    assert closed == (later > hours * 3600)
    if closed:
        assert window_closed(window, last_at, now + timedelta(seconds=1), agent=False)
    assert not window_closed(Window(), last_at, now, agent=True)  # no rule, no limit
