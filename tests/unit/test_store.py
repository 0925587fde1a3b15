"""Storage contract: every backend must pass these (SQLite and PostgreSQL).

The PostgreSQL runs create a fresh database per test on the local server
(``PROMPTLY_TEST_POSTGRES_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``) and
drop it afterwards; they are skipped, with the reason, where no server answers there.
"""

import asyncio
import contextlib
import logging
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import bot.store
from bot.channels.base import AckKind, Customer, InboundMessage, OutboundMessage, ReplyType
from bot.errors import Conflict, Forbidden, NotFound, StorageError, StorageUnavailable
from bot.store.base import (
    AgentRecord,
    ConversationState,
    DeliveryStatus,
    Event,
    EventCursor,
    MessageStatus,
    NewTicket,
    Store,
    TicketChange,
    TicketSLA,
    TicketStatus,
)
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SCHEMA_VERSION, SQLiteStore
from tests.services import missing

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def pg_admin_url() -> str:
    return os.environ.get(
        "PROMPTLY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped afterwards (``missing`` without a server)."""
    admin_url = pg_admin_url()
    try:
        admin = await asyncpg.connect(admin_url, timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError) as e:
        missing(f"no PostgreSQL server at {admin_url} ({type(e).__name__}: {e})")
    name = f"promptly_test_{uuid.uuid4().hex}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        backend: SQLiteStore | PostgresStore = await SQLiteStore.open(tmp_path / "promptly.db")
        yield backend
        await backend.close()
        return
    async with pg_database() as url:
        backend = await PostgresStore.open(url)
        try:
            yield backend
        finally:
            await backend.close()


def inbound(text="hi", mid="m1", customer="c1", conversation_id=None) -> InboundMessage:
    return InboundMessage(
        channel="web",
        customer=Customer(customer, "Ann", "ann@example.com"),
        platform_message_id=mid,
        text=text,
        received_at=NOW,
        conversation_id=conversation_id,
    )


async def test_receive_is_idempotent_on_channel_customer_and_message_id(store):
    first = await store.receive(inbound())
    again = await store.receive(inbound(text="different text, same id"))
    assert not first.duplicate and again.duplicate
    assert again.message.id == first.message.id
    assert again.message.text == "hi"
    assert len(await store.messages(first.conversation.id)) == 1
    other_customer = await store.receive(inbound(customer="c2"))
    assert not other_customer.duplicate  # ids are scoped to the sender


async def test_messages_link_to_one_customer_and_open_conversation(store):
    a = await store.receive(inbound(mid="1"))
    b = await store.receive(inbound(mid="2"))
    assert a.conversation.id == b.conversation.id
    assert a.customer.id == b.customer.id
    assert await store.customer_id_for("web", "c1") == a.customer.id
    explicit = await store.receive(inbound(mid="3", conversation_id=a.conversation.id))
    assert explicit.conversation.id == a.conversation.id


async def test_unknown_and_foreign_conversations_are_refused_and_not_stored(store):
    owned = await store.receive(inbound(mid="1"))
    with pytest.raises(NotFound):
        await store.receive(inbound(mid="2", conversation_id="nope"))
    with pytest.raises(Forbidden):
        await store.receive(
            inbound(mid="3", customer="intruder", conversation_id=owned.conversation.id)
        )
    assert [m.client_message_id for m in await store.messages(owned.conversation.id)] == ["1"]


async def test_concurrent_writes_commit_or_fail_each_on_their_own(store):
    owned = await store.receive(inbound(mid="0"))
    results = await asyncio.gather(
        *(store.receive(inbound(mid=str(i), customer=f"c{i}")) for i in range(1, 20)),
        store.receive(inbound(mid="x", customer="intruder", conversation_id=owned.conversation.id)),
        *(store.receive(inbound(mid=str(i), customer=f"c{i}")) for i in range(20, 40)),
        return_exceptions=True,
    )
    assert isinstance(results[19], Forbidden)
    assert all(not isinstance(r, BaseException) for r in results[:19] + results[20:])
    # The refused message's new customer was rolled back with it, nothing else was.
    assert await store.customer_id_for("web", "intruder") is None
    assert len(await store.unanswered()) == 40


async def test_reply_marks_the_ack_and_logs_events_in_order(store):
    received = await store.receive(inbound())
    ack = OutboundMessage(type=ReplyType.ACK, kind=AckKind.RECEIPT, text="got it", in_reply_to="m1")
    stored = await store.add_reply(
        received.conversation.id,
        ack,
        event="acked",
        data={"latency_ms": 3.0},
        acks=received.message.id,
        at=NOW + timedelta(milliseconds=3),
    )
    assert stored.seq > received.message.seq
    message = await store.message(received.message.id)
    assert message is not None and message.acked_at == NOW + timedelta(milliseconds=3)
    events = await store.events(received.conversation.id)
    assert [e.type for e in events] == ["conversation_started", "received", "acked"]
    assert events[-1].data == {"latency_ms": 3.0}


async def test_a_receipt_can_mark_its_message_pending_in_the_same_write(store):
    received = await store.receive(inbound())
    receipt = OutboundMessage(type=ReplyType.ACK, kind=AckKind.RECEIPT, text="got it")
    await store.add_reply(
        received.conversation.id,
        receipt,
        event="acked",
        acks=received.message.id,
        at=NOW,
        pending="rasa_unavailable",
    )
    [waiting] = await store.unanswered()
    assert (waiting.id, waiting.status, waiting.acked_at) == (received.message.id, "pending", NOW)
    events = await store.events(received.conversation.id)
    assert [(e.type, e.data) for e in events[-2:]] == [
        ("acked", {}),
        ("pending", {"reason": "rasa_unavailable"}),
    ]


async def test_a_turns_last_reply_finishes_its_message_in_the_same_write(store):
    received = await store.receive(inbound())
    conversation_id = received.conversation.id
    answer = OutboundMessage(type=ReplyType.ANSWER, text="here you go")
    await store.add_reply(conversation_id, answer, event="answered", at=NOW)
    assert [m.id for m in await store.unanswered()] == [received.message.id]
    await store.add_reply(
        conversation_id, answer, event="answered", at=NOW, finishes=received.message.id
    )
    assert await store.unanswered() == []
    stored = await store.message(received.message.id)
    assert stored is not None and stored.status == MessageStatus.DONE


async def test_unanswered_holds_received_and_pending_only(store):
    a = await store.receive(inbound(mid="1"))
    b = await store.receive(inbound(mid="2"))
    c = await store.receive(inbound(mid="3"))
    await store.set_status(a.message.id, MessageStatus.DONE)
    await store.set_status(b.message.id, MessageStatus.PENDING)
    assert [m.id for m in await store.unanswered()] == [b.message.id, c.message.id]


def new_ticket(conversation_id: str) -> NewTicket:
    return NewTicket(
        conversation_id=conversation_id,
        queue="billing",
        priority="high",
        tier="consumer",
        reason="refund_request",
        created_at=NOW,
        first_response_due=NOW + timedelta(hours=2),
        resolution_due=NOW + timedelta(days=2),
        sla=TicketSLA(policy={"name": "high"}, calendar="default"),
    )


async def test_ticket_lifecycle(store):
    received = await store.receive(inbound())
    conversation_id = received.conversation.id
    new = new_ticket(conversation_id)
    ticket = await store.create_ticket(new)
    assert ticket.reference.startswith("PR-") and ticket.status is TicketStatus.NEW
    assert ticket.sla == new.sla and ticket.resolution_due == new.resolution_due
    assert (await store.create_ticket(new)).id == ticket.id  # one open ticket per conversation
    conversation = await store.conversation(conversation_id)
    assert conversation is not None and conversation.state is ConversationState.WAITING_AGENT

    reply = OutboundMessage(
        type=ReplyType.AGENT, text="Hello, Sam here", extra={"agent": {"name": "Sam"}}
    )
    at = NOW + timedelta(minutes=30)
    replied = replace(
        ticket,
        status=TicketStatus.OPEN,
        first_responded_at=at,
        assignee="sam",
        assigned_at=at,
        sla=replace(ticket.sla, last_agent_reply_at=at),
    )
    await store.record_agent_reply(replied, reply, "sam", at, {"within_sla": True})
    replied = replace(replied, version=ticket.version + 1)  # every write bumps the version
    assert await store.ticket(ticket.id) == replied
    conversation = await store.conversation(conversation_id)
    assert conversation is not None and conversation.state is ConversationState.WITH_AGENT

    paused = replace(
        replied,
        status=TicketStatus.WAITING,
        sla=replace(replied.sla, pauses=((at, None),)),
    )
    saved = await store.save_ticket(paused, event="waiting_on_customer", at=at)
    assert saved == replace(paused, version=paused.version + 1) == await store.ticket(ticket.id)
    paused = saved

    done = NOW + timedelta(hours=1)
    resolved = replace(paused, status=TicketStatus.RESOLVED, resolved_at=done)
    await store.save_ticket(
        resolved, event="resolved", at=done, conversation_state=ConversationState.BOT
    )
    assert await store.open_ticket(conversation_id) is None
    assert [t.id for t in await store.tickets("resolved")] == [ticket.id]
    conversation = await store.conversation(conversation_id)
    assert conversation is not None and conversation.state is ConversationState.BOT
    types = [e.type for e in await store.events(conversation_id)]
    assert types[-4:] == ["handed_off", "agent_replied", "waiting_on_customer", "resolved"]


async def test_a_timer_fires_once_with_its_event(store):
    received = await store.receive(inbound())
    ticket = await store.create_ticket(new_ticket(received.conversation.id))
    due = NOW + timedelta(hours=2)
    data = {"lateness_ms": 5}
    assert await store.fire_timer(ticket.id, "first_response:breach", due, due, "sla_breach", data)
    assert not await store.fire_timer(
        ticket.id, "first_response:breach", due, due, "sla_breach", data
    )
    later = due + timedelta(hours=1)  # the deadline moved: a new timer
    assert await store.fire_timer(
        ticket.id, "first_response:breach", later, later, "sla_breach", data
    )
    events = [e for e in await store.events() if e.type == "sla_breach"]
    assert [e.ticket_id for e in events] == [ticket.id, ticket.id]


async def test_a_timer_and_what_it_does_to_the_ticket_are_one_write(store):
    received = await store.receive(inbound())
    ticket = await store.create_ticket(new_ticket(received.conversation.id))
    due = NOW + timedelta(hours=2)
    escalated = TicketChange(
        replace(ticket, priority="urgent"),
        (("escalated", {"step": "raise_priority"}), ("returned_to_queue", {"why": "breach"})),
    )
    # Another gateway changed the ticket since it was read: neither the firing nor the
    # escalation is written, so firing again (on a fresh read) is still possible.
    await store.save_ticket(replace(ticket, priority="high"), event="edited", at=NOW)
    before = await store.events()
    with pytest.raises(Conflict):
        await store.fire_timer(
            ticket.id, "first_response:breach", due, due, "sla_breach", {}, escalated
        )
    assert await store.events() == before
    fresh = await store.ticket(ticket.id)
    assert fresh is not None and fresh.priority == "high"
    again = TicketChange(replace(fresh, priority="urgent"), escalated.events)
    assert await store.fire_timer(
        ticket.id, "first_response:breach", due, due, "sla_breach", {}, again
    )
    stored = await store.ticket(ticket.id)
    assert stored == replace(again.ticket, version=fresh.version + 1)
    types = [e.type for e in await store.events(received.conversation.id)]
    assert types[-3:] == ["sla_breach", "escalated", "returned_to_queue"]
    assert not await store.fire_timer(
        ticket.id, "first_response:breach", due, due, "sla_breach", {}, again
    )


async def test_a_stale_ticket_write_is_a_conflict_and_changes_nothing(store):
    """Optimistic concurrency: a ticket is written only over the version it was read at."""
    received = await store.receive(inbound())
    ticket = await store.create_ticket(new_ticket(received.conversation.id))
    assert ticket.version == 1 and (await store.ticket(ticket.id)).version == 1
    # Another gateway changes the ticket after this one read it …
    current = await store.save_ticket(
        replace(ticket, priority="urgent"), event="priority_changed", at=NOW
    )
    assert current.version == 2 and await store.ticket(ticket.id) == current
    before = (await store.events(), await store.messages(received.conversation.id))
    # … so this one's writes computed from the old read are refused whole.
    for stale in (
        store.save_ticket(
            replace(ticket, status=TicketStatus.WAITING),
            event="waiting_on_customer",
            at=NOW,
            conversation_state=ConversationState.BOT,
        ),
        store.record_agent_reply(
            replace(ticket, status=TicketStatus.OPEN, first_responded_at=NOW),
            OutboundMessage(type=ReplyType.AGENT, text="Sam here"),
            "sam",
            NOW,
            {},
        ),
    ):
        with pytest.raises(Conflict) as refused:
            await stale
        assert refused.value.code == "ticket_changed"
    assert await store.ticket(ticket.id) == current
    assert (await store.events(), await store.messages(received.conversation.id)) == before
    conversation = await store.conversation(received.conversation.id)
    assert conversation is not None and conversation.state is ConversationState.WAITING_AGENT
    with pytest.raises(NotFound):
        await store.save_ticket(replace(ticket, id="nope"), event="x", at=NOW)
    # Moving a ticket to another conversation is a write of its row too.
    bo = {"email": "bo@example.com"}
    telegram = await store.receive(platform_message("telegram", "7", "g0", **bo))
    second = await store.create_ticket(new_ticket(telegram.conversation.id))
    email = await store.receive(platform_message("email", "bo@example.com", "<e0>", **bo))
    followed = await store.ticket(second.id)
    assert followed.conversation_id == email.conversation.id
    assert followed.version == second.version + 1
    moved = await store.move_ticket(second.id, telegram.conversation.id, NOW)
    assert moved.version == followed.version + 1


async def test_assignment_checks_capacity_in_the_write(store):
    sam = AgentRecord("sam", "Sam", "online", 1, (), (), 0)
    await store.save_agent(sam, NOW)
    first, second = [
        await store.create_ticket(
            new_ticket((await store.receive(inbound(customer=c))).conversation.id)
        )
        for c in ("c1", "c2")
    ]
    given = await store.assign_ticket(
        replace(first, assignee="sam", assigned_at=NOW), event="assigned", at=NOW
    )
    assert given.version == 2 and await store.ticket(first.id) == given
    stamped = (await store.agents())[0].last_assigned
    assert stamped > 0
    await store.save_agent(sam, NOW)  # saved from a copy read before the assignment
    assert (await store.agents())[0].last_assigned == stamped
    before = await store.events()
    with pytest.raises(Conflict) as full:  # Sam holds one ticket of one
        await store.assign_ticket(
            replace(second, assignee="sam", assigned_at=NOW), event="assigned", at=NOW
        )
    assert full.value.code == "agent_full"
    assert await store.ticket(second.id) == second and await store.events() == before
    assert (await store.agents())[0].last_assigned == stamped
    # Re-assigning the ticket Sam holds counts the others only.
    again = await store.assign_ticket(given, event="assigned", at=NOW)
    assert again.version == 3
    await store.save_agent(replace(sam, capacity=5, presence="away"), NOW)
    with pytest.raises(Conflict) as away:
        await store.assign_ticket(
            replace(second, assignee="sam", assigned_at=NOW), event="assigned", at=NOW
        )
    assert away.value.code == "agent_away"
    # An agent taking a ticket by hand is not held to capacity or presence.
    taken = await store.assign_ticket(
        replace(second, assignee="sam", assigned_at=NOW),
        event="taken",
        at=NOW,
        within_capacity=False,
    )
    assert (await store.ticket(second.id)) == taken and taken.assignee == "sam"
    assert (await store.agents())[0].last_assigned > stamped
    with pytest.raises(NotFound):
        await store.assign_ticket(
            replace(second, assignee="nobody"), event="assigned", at=NOW, within_capacity=False
        )


async def test_agents_and_the_assignment_counter(store):
    sam = AgentRecord("sam", "Sam", "online", 3, ("de",), ("billing",), 0)
    await store.save_agent(sam, NOW)
    # The counter is the store's: a save (say, a presence change read before an assignment
    # landed) never writes it back.
    await store.save_agent(replace(sam, presence="away", last_assigned=7), NOW)
    assert await store.agents() == [replace(sam, presence="away")]
    assert [await store.next_assignment() for _ in range(3)] == [1, 2, 3]


async def test_link_customer_sets_the_tier_on_every_channel_account(store):
    received = await store.receive(inbound(customer="c9"))
    customer_id, created = await store.link_customer("web", "c9", tier="enterprise")
    assert (customer_id, created) == (received.customer.id, False)
    customer = await store.customer(customer_id)
    assert customer is not None and customer.tier == "enterprise"
    new_id, created = await store.link_customer(
        "telegram", "42", tier="business", name="Bo", language="de"
    )
    assert created
    customer = await store.customer(new_id)
    assert customer is not None and (customer.tier, customer.language) == ("business", "de")
    assert await store.customer_id_for("telegram", "42") == new_id


async def test_naive_timestamps_are_rejected(store):
    naive_time = datetime(2026, 1, 1)  # noqa: DTZ001
    naive = InboundMessage(
        channel="web",
        customer=Customer("c1"),
        platform_message_id="x",
        text="hi",
        received_at=naive_time,
    )
    with pytest.raises(ValueError, match="time-zone aware"):
        await store.receive(naive)
    assert await store.unanswered() == []


def platform_message(
    channel: str,
    external_id: str,
    mid: str,
    *,
    text: str = "hello",
    email: str | None = None,
    phone: str | None = None,
    verified: bool = True,
    at: datetime = NOW,
) -> InboundMessage:
    return InboundMessage(
        channel=channel,
        customer=Customer(external_id, "Ann", email, phone, verified),
        platform_message_id=mid,
        text=text,
        received_at=at,
        reply_to={"chat": external_id},
    )


async def test_a_verified_identity_links_channels_to_one_customer(store):
    whatsapp = await store.receive(
        platform_message("whatsapp", "447700900123", "w1", phone="+44 7700 900123")
    )
    sms = await store.receive(
        platform_message("twilio", "+447700900123", "t1", phone="+447700900123")
    )
    unverified = await store.receive(
        platform_message("telegram", "99", "g1", phone="+447700900123", verified=False)
    )
    assert sms.customer.id == whatsapp.customer.id
    assert sms.conversation.id != whatsapp.conversation.id  # one conversation per channel
    assert sms.conversation.reply_to == {"chat": "+447700900123"}
    assert unverified.customer.id != whatsapp.customer.id  # a claimed phone proves nothing


async def test_the_open_ticket_follows_the_customer_to_their_latest_channel(store):
    first = await store.receive(platform_message("telegram", "7", "g1", email="ann@example.com"))
    ticket = await store.create_ticket(new_ticket(first.conversation.id))
    by_mail = await store.receive(
        platform_message("email", "ann@example.com", "<m1@x>", email="ann@example.com")
    )

    assert by_mail.customer.id == first.customer.id
    assert by_mail.conversation.state is ConversationState.WAITING_AGENT
    moved = await store.ticket(ticket.id)
    assert moved is not None and moved.conversation_id == by_mail.conversation.id
    assert await store.open_ticket(first.conversation.id) is None
    back = await store.receive(platform_message("telegram", "7", "g2", email="ann@example.com"))
    assert back.conversation.id == first.conversation.id
    assert back.conversation.state is ConversationState.WAITING_AGENT
    assert [t.id for t in await store.tickets("open")] == [ticket.id]  # still one ticket
    types = [e.type for e in await store.events() if e.ticket_id == ticket.id]
    assert types.count("ticket_followed") == 2


async def test_platform_replies_wait_for_delivery_and_web_replies_do_not(store):
    web = await store.receive(inbound())
    telegram = await store.receive(platform_message("telegram", "7", "g1"))
    reply = OutboundMessage(type=ReplyType.ANSWER, text="hi")
    web_reply = await store.add_reply(web.conversation.id, reply, event="answered")
    pending = await store.add_reply(telegram.conversation.id, reply, event="answered")
    assert web_reply.delivery_status is None
    assert pending.delivery_status is DeliveryStatus.PENDING
    assert [m.id for m in await store.pending_deliveries()] == [pending.id]

    failed = await store.set_delivery(pending.id, DeliveryStatus.FAILED, {"error": "send_failed"})
    assert failed is not None and failed.delivery == {"error": "send_failed"}
    assert await store.pending_deliveries() == []
    assert (await store.route(telegram.conversation.id)).last_inbound_at == NOW
    reaction = replace(
        platform_message("telegram", "7", "r1", at=NOW + timedelta(hours=30)), kind="reaction"
    )
    await store.receive(reaction)
    assert (
        await store.route(telegram.conversation.id)
    ).last_inbound_at == NOW  # not the customer writing


async def test_merging_customers_moves_everything_to_one(store):
    a = await store.receive(platform_message("telegram", "7", "g1", verified=False))
    b = await store.receive(
        platform_message("email", "ann@example.com", "<m1@x>", email="ann@example.com")
    )
    await store.create_ticket(new_ticket(b.conversation.id))

    await store.link_customer("email", "ann@example.com", tier="enterprise")
    merged = await store.merge_customers(a.customer.id, b.customer.id, NOW)

    assert merged.id == a.customer.id and merged.email == "ann@example.com"
    assert merged.tier == "enterprise"  # never demoted by a merge
    assert await store.customer(b.customer.id) is None
    assert {c.channel for c in await store.conversations_of(a.customer.id)} == {"telegram", "email"}
    assert [t.customer_id for t in await store.tickets("open")] == [a.customer.id]
    again = await store.receive(
        platform_message("email", "ann@example.com", "<m2@x>", email="ann@example.com")
    )
    assert again.customer.id == a.customer.id
    with pytest.raises(NotFound):
        await store.merge_customers(a.customer.id, b.customer.id, NOW)


async def test_a_new_senders_messages_at_once_make_one_customer_and_conversation(store):
    results = await asyncio.gather(*(store.receive(inbound(mid=str(i))) for i in range(12)))
    assert len({r.customer.id for r in results}) == 1
    assert len({r.conversation.id for r in results}) == 1
    assert len(await store.messages(results[0].conversation.id)) == 12


async def test_one_message_received_many_times_at_once_is_stored_once(store):
    results = await asyncio.gather(*(store.receive(inbound()) for _ in range(8)))
    assert sorted(r.duplicate for r in results) == [False] + [True] * 7
    assert len({r.message.id for r in results}) == 1
    assert len(await store.unanswered()) == 1


async def test_a_conversations_messages_are_read_in_commit_order(store):
    """A client that reads ``messages(after=seq)`` while replies are written sees each one."""
    received = await store.receive(inbound())
    conversation_id = received.conversation.id
    reply = OutboundMessage(type=ReplyType.ANSWER, text="hi")
    writes = asyncio.gather(
        *(store.add_reply(conversation_id, reply, event="answered") for _ in range(40))
    )
    seen: list[str] = []
    last = 0
    while True:  # one client polling until every write is in
        done = writes.done()
        for message in await store.messages(conversation_id, after=last):
            seen.append(message.id)
            last = message.seq
        if done:
            break
        await asyncio.sleep(0)
    stored = [m.id for m in await writes]
    assert sorted(seen) == sorted([received.message.id, *stored])


async def test_a_customer_on_two_channels_while_an_agent_works_commits_everything(store):
    """The open ticket follows each message across channels while replies, an agent's among
    them, go to both conversations: every write commits (no deadlock, nothing lost)."""
    ann = {"email": "ann@example.com"}
    telegram = await store.receive(platform_message("telegram", "7", "g0", **ann))
    ticket = await store.create_ticket(new_ticket(telegram.conversation.id))
    email = await store.receive(platform_message("email", "ann@example.com", "<e0>", **ann))
    reply = OutboundMessage(type=ReplyType.ANSWER, text="hi")
    agent = OutboundMessage(type=ReplyType.AGENT, text="Sam here")

    async def agent_reply():
        # Over the ticket as it is now: each move (and reply) bumps its version, and a reply
        # over an older one is a Conflict that stores nothing, so read again and retry.
        for _ in range(100):
            current = await store.ticket(ticket.id)
            try:
                return await store.record_agent_reply(current, agent, "sam", NOW, {})
            except Conflict:
                continue
        raise AssertionError("the agent reply kept conflicting")

    writes = []
    for i in range(1, 13):
        writes += [
            store.receive(platform_message("telegram", "7", f"g{i}", **ann)),
            store.receive(platform_message("email", "ann@example.com", f"<e{i}>", **ann)),
            store.add_reply(telegram.conversation.id, reply, event="answered"),
            store.add_reply(email.conversation.id, reply, event="answered"),
            agent_reply(),
        ]
    await asyncio.gather(*writes)
    assert [t.id for t in await store.tickets("open")] == [ticket.id]
    stored = await store.messages(telegram.conversation.id) + await store.messages(
        email.conversation.id
    )
    assert len(stored) == 2 + 12 * 5
    followed = [e for e in await store.events() if e.type == "ticket_followed"]
    assert len(followed) >= 1


async def test_messages_arriving_during_a_merge_end_up_with_the_merged_customer(store):
    a = await store.receive(platform_message("telegram", "7", "g0", verified=False))
    b = await store.receive(platform_message("email", "ann@example.com", "<e0>"))
    arriving = [
        store.receive(platform_message("email", "ann@example.com", f"<e{i}>")) for i in range(1, 9)
    ]
    merge = store.merge_customers(a.customer.id, b.customer.id, NOW)
    results = await asyncio.gather(*arriving[:4], merge, *arriving[4:])
    assert await store.customer(b.customer.id) is None
    assert await store.customer_id_for("email", "ann@example.com") == a.customer.id
    conversations = await store.conversations_of(a.customer.id)
    assert {c.channel for c in conversations} == {"telegram", "email"}
    [mail] = [c for c in conversations if c.channel == "email"]
    assert len(await store.messages(mail.id)) == 9
    assert all(r.conversation.id == mail.id for r in results if hasattr(r, "conversation"))


async def test_a_tail_of_the_event_log_reads_each_event_once_in_pages(store):
    await store.log_event("before")
    cursor = await store.event_cursor()
    assert await store.events_after(cursor) == ([], cursor)
    for n in range(5):
        await store.log_event("logged", data={"n": n})
    first, cursor = await events_after(store, cursor, limit=3)
    rest, cursor = await events_after(store, cursor, limit=3)
    assert [e.data["n"] for e in first + rest] == [0, 1, 2, 3, 4]
    assert await store.events_after(cursor) == ([], cursor)


class TestSQLiteOnly:
    """What only a SQLite file has: its schema_version read and written with sqlite3."""

    async def test_a_version_1_database_is_migrated_in_place(self, tmp_path):
        path = tmp_path / "old.db"
        with sqlite3.connect(path) as db:
            db.executescript((Path(bot.store.__file__).parent / "schema_sqlite.sql").read_text())
            db.execute("INSERT INTO schema_version VALUES (1)")
            db.execute("INSERT INTO customers VALUES ('c', NULL, NULL, 'consumer', '2026-01-01')")
        store = await SQLiteStore.open(path)
        try:
            customer = await store.customer("c")
            assert customer is not None and customer.language is None
            assert await store.agents() == []
        finally:
            await store.close()
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT version FROM schema_version").fetchall() == [
                (SCHEMA_VERSION,)
            ]

    async def test_a_database_newer_than_the_code_is_refused(self, tmp_path):
        path = tmp_path / "new.db"
        await (await SQLiteStore.open(path)).close()
        with sqlite3.connect(path) as db:
            db.execute("UPDATE schema_version SET version = 99")
        with pytest.raises(StorageError, match="schema version 99 is newer"):
            await SQLiteStore.open(path)

    async def test_reopening_keeps_data(self, tmp_path):
        path = tmp_path / "promptly.db"
        first = await SQLiteStore.open(path)
        received = await first.receive(inbound())
        await first.close()
        second = await SQLiteStore.open(path)
        try:
            assert [m.id for m in await second.unanswered()] == [received.message.id]
        finally:
            await second.close()


class TestPostgresOnly:
    """Schema management and work shared by several gateway processes on one database."""

    async def test_migrations_mirror_the_sqlite_versions(self):
        from bot.store import postgres, sqlite

        assert [v for v, _ in postgres.migrations()] == [v for v, _ in sqlite._migrations()]
        assert postgres.migrations()[-1][0] == SCHEMA_VERSION

    async def test_a_version_1_database_is_migrated_in_place(self):
        schema = (Path(bot.store.__file__).parent / "pg" / "schema.sql").read_text()
        async with pg_database() as url:
            db = await asyncpg.connect(url)
            try:
                await db.execute(schema)
                await db.execute("INSERT INTO schema_version VALUES (1)")
                await db.execute(
                    "INSERT INTO customers VALUES ('c', NULL, NULL, 'consumer', now())"
                )
            finally:
                await db.close()
            store = await PostgresStore.open(url)
            try:
                customer = await store.customer("c")
                assert customer is not None and customer.language is None
                assert await store.agents() == []
            finally:
                await store.close()
            assert await _schema_versions(url) == [SCHEMA_VERSION]

    async def test_a_database_newer_than_the_code_is_refused(self):
        async with pg_database() as url:
            await (await PostgresStore.open(url)).close()
            db = await asyncpg.connect(url)
            try:
                await db.execute("UPDATE schema_version SET version = 99")
            finally:
                await db.close()
            with pytest.raises(StorageError, match="schema version 99 is newer"):
                await PostgresStore.open(url)

    async def test_processes_opening_at_once_migrate_once(self, caplog):
        caplog.set_level(logging.INFO, logger="bot.store.postgres")
        async with pg_database() as url:
            stores = await asyncio.gather(*(PostgresStore.open(url) for _ in range(4)))
            try:
                received = await stores[0].receive(inbound())
                assert (await stores[3].message(received.message.id)) is not None
            finally:
                await asyncio.gather(*(s.close() for s in stores))
            assert await _schema_versions(url) == [SCHEMA_VERSION]
        migrated = [r.getMessage() for r in caplog.records if "migrating" in r.getMessage()]
        assert len(migrated) == SCHEMA_VERSION - 1  # 2 … N, each once
        assert len(set(migrated)) == len(migrated)

    async def test_reopening_keeps_data(self):
        async with pg_database() as url:
            first = await PostgresStore.open(url)
            received = await first.receive(inbound())
            await first.close()
            second = await PostgresStore.open(url)
            try:
                assert [m.id for m in await second.unanswered()] == [received.message.id]
            finally:
                await second.close()

    async def test_two_gateways_never_claim_the_same_message(self):
        async with pg_database() as url:
            a, b = await asyncio.gather(
                PostgresStore.open(url, max_size=4), PostgresStore.open(url, max_size=4)
            )
            try:
                for n in range(60):
                    await a.receive(inbound(mid=str(n), customer=f"c{n % 9}"))
                claimed: dict[str, list[str]] = {"a": [], "b": []}

                async def claimer(store: PostgresStore, gateway: str, owner: str) -> None:
                    while batch := await store.claim_unanswered(
                        owner, lease=timedelta(minutes=5), limit=3
                    ):
                        for message in batch:
                            claimed[gateway].append(message.id)
                            await store.set_status(message.id, MessageStatus.DONE)

                # Three workers in each gateway, each claiming under its own name.
                await asyncio.gather(
                    *(claimer(a, "a", f"a{i}") for i in range(3)),
                    *(claimer(b, "b", f"b{i}") for i in range(3)),
                )
            finally:
                await asyncio.gather(a.close(), b.close())
        every = claimed["a"] + claimed["b"]
        assert len(every) == len(set(every)) == 60  # each message once, none lost
        assert claimed["a"] and claimed["b"]  # both gateways took work

    async def test_a_claim_is_held_until_its_lease_ends(self):
        async with pg_database() as url:
            store = await PostgresStore.open(url)
            try:
                received = await store.receive(inbound())
                held = await store.claim_unanswered("a", lease=timedelta(minutes=5))
                assert [m.id for m in held] == [received.message.id]
                assert await store.claim_unanswered("b", lease=timedelta(minutes=5)) == []
                renewed = await store.claim_unanswered("a", lease=timedelta(0))
                assert [m.id for m in renewed] == [received.message.id]
                # Gateway a died: its lease ended, so b takes the message over.
                taken = await store.claim_unanswered("b", lease=timedelta(minutes=5))
                assert [m.id for m in taken] == [received.message.id]
                reply = OutboundMessage(type=ReplyType.ANSWER, text="hi")
                telegram = await store.receive(platform_message("telegram", "7", "g1"))
                pending = await store.add_reply(telegram.conversation.id, reply, event="answered")
                sent = await store.claim_deliveries("a", lease=timedelta(minutes=5))
                assert [m.id for m in sent] == [pending.id]
                assert await store.claim_deliveries("b", lease=timedelta(minutes=5)) == []
            finally:
                await store.close()

    async def test_tailing_the_event_log_skips_nothing_written_concurrently(self):
        async with pg_database() as url:
            store = await PostgresStore.open(url, max_size=8)
            try:
                await store.log_event("before")  # not read: the tail starts after it
                cursor = await store.event_cursor()
                writes = asyncio.gather(
                    *(store.log_event("logged", data={"n": n}) for n in range(120))
                )
                seen: list[int] = []
                async with asyncio.timeout(20):  # another session's long transaction stalls it
                    while True:
                        done = writes.done()
                        events, cursor = await store.events_after(cursor, limit=7)
                        seen += [e.data["n"] for e in events]
                        if done and not events and len(seen) >= 120:
                            break
                        await asyncio.sleep(0.001)
                await writes
            finally:
                await store.close()
        assert sorted(seen) == list(range(120))

    async def test_an_event_that_commits_after_a_later_one_is_still_tailed(self):
        async with pg_database() as url:
            store = await PostgresStore.open(url)
            slow = await asyncpg.connect(url)
            try:
                cursor = await store.event_cursor()
                slow_tx = slow.transaction()
                await slow_tx.start()
                await slow.execute("INSERT INTO events (at, type) VALUES (now(), 'slow')")
                await store.log_event("fast")  # a higher seq, committed first
                [fast] = [e for e in await store.events() if e.type == "fast"]
                events, cursor = await store.events_after(cursor)
                assert events == []  # not past 'slow', which may still commit
                await slow_tx.commit()
                events, cursor = await events_after(store, cursor)
                assert [e.type for e in events] == ["slow", "fast"]
                assert fast.seq > events[0].seq
                assert await store.events_after(cursor) == ([], cursor)
            finally:
                await slow.close()
                await store.close()

    async def test_nul_characters_which_postgres_text_refuses_are_dropped(self):
        async with pg_database() as url:
            store = await PostgresStore.open(url)
            try:
                received = await store.receive(
                    replace(inbound(text="a\x00b"), customer=Customer("c1", "A\x00nn"))
                )
                assert received.message.text == "ab" and received.customer.name == "Ann"
                [stored] = await store.messages(received.conversation.id)
                assert stored.text == "ab"
            finally:
                await store.close()

    async def test_status_and_upgrade_of_a_database(self):
        from bot.store import pg_maintenance

        async with pg_database() as url:
            with pytest.raises(StorageError, match="not a Promptly database"):
                await pg_maintenance.status(url)
            before, after = await pg_maintenance.upgrade(url)
            assert before is None and after.schema_version == SCHEMA_VERSION
            store = await PostgresStore.open(url)
            try:
                await store.receive(inbound())
            finally:
                await store.close()
            status = await pg_maintenance.status(url)
            assert (status.rows["messages"], status.rows["users"]) == (1, 0)
            assert "(current; this code: " in status.describe()
            before, after = await pg_maintenance.upgrade(url)
            assert (before, after.schema_version, after.rows) == (
                SCHEMA_VERSION,
                SCHEMA_VERSION,
                status.rows,
            )

    async def test_a_transaction_chosen_to_break_a_deadlock_runs_again(self):
        async with pg_database() as url:
            store = await PostgresStore.open(url)
            other = await asyncpg.connect(url)
            try:
                received = await store.receive(inbound())
                ticket = await store.create_ticket(new_ticket(received.conversation.id))
                async with other.transaction():
                    await other.execute("SET LOCAL deadlock_timeout = '10s'")  # we wait longer
                    await other.execute("SELECT 1 FROM tickets WHERE id = $1 FOR UPDATE", ticket.id)
                    # The reply locks the conversation, then waits for the ticket …
                    reply = OutboundMessage(type=ReplyType.AGENT, text="Sam here")
                    replying = asyncio.create_task(
                        store.record_agent_reply(ticket, reply, "sam", NOW, {})
                    )
                    await _until_waiting_for_a_lock(other)
                    # … which we hold while we wait for the conversation: a deadlock, and
                    # PostgreSQL rolls the reply's transaction back to break it.
                    await other.execute(
                        "SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE",
                        received.conversation.id,
                    )
                stored = await replying
                messages = await store.messages(received.conversation.id)
                assert [m.id for m in messages if m.type == "agent"] == [stored.id]
                events = await store.events(received.conversation.id)
                assert [e.type for e in events].count("agent_replied") == 1
            finally:
                await other.close()
                await store.close()

    async def test_an_unreachable_server_is_storage_unavailable(self):
        with pytest.raises(StorageUnavailable):
            await PostgresStore.open("postgresql://postgres@127.0.0.1:1/promptly")

    async def test_a_database_that_is_not_there_is_a_storage_error(self):
        async with pg_database() as url:
            missing = url.rsplit("/", 1)[0] + "/promptly_no_such_database"
        with pytest.raises(StorageError, match="promptly_no_such_database"):
            await PostgresStore.open(missing)

    def test_passwords_stay_out_of_messages(self):
        from bot.store.postgres import redacted

        assert redacted("postgresql://bot:s3cret@db:5432/p") == "postgresql://bot:***@db:5432/p"
        assert redacted("postgresql://bot@db/p") == "postgresql://bot@db/p"

    async def test_a_connection_lost_mid_operation_is_storage_unavailable(self):
        async with pg_database() as url:
            store = await PostgresStore.open(url)
            admin = await asyncpg.connect(url)
            try:
                received = await store.receive(inbound())
                async with admin.transaction():  # holds the conversation: the reply waits
                    await admin.execute(
                        "SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE",
                        received.conversation.id,
                    )
                    reply = OutboundMessage(type=ReplyType.ANSWER, text="hi")
                    writing = asyncio.create_task(
                        store.add_reply(received.conversation.id, reply, event="answered")
                    )
                    await _until_waiting_for_a_lock(admin)
                    await admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                    with pytest.raises(StorageUnavailable):
                        await writing
                await store.ping()  # the pool connects again
                assert len(await store.messages(received.conversation.id)) == 1
            finally:
                await admin.close()
                await store.close()


async def _schema_versions(url: str) -> list[int]:
    db = await asyncpg.connect(url)
    try:
        return [row[0] for row in await db.fetch("SELECT version FROM schema_version")]
    finally:
        await db.close()


async def _until_waiting_for_a_lock(db: asyncpg.Connection) -> None:
    """Until a session of ``db``'s database waits for a row lock."""
    async with asyncio.timeout(10):
        while not await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ):
            await asyncio.sleep(0.01)


async def events_after(
    store: SQLiteStore | PostgresStore, cursor: EventCursor, limit: int = 200
) -> tuple[list[Event], EventCursor]:
    """``store.events_after`` once it has something: on PostgreSQL a transaction running
    anywhere on the server (another test run's) holds the tail back for a moment."""
    async with asyncio.timeout(10):
        while not (found := await store.events_after(cursor, limit))[0]:
            await asyncio.sleep(0.02)
    return found
