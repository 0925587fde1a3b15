"""Several gateways on one PostgreSQL database: what one stores is its own to finish while it
lives (claimed, renewed); when it dies, another takes the work over, once (bot/claims.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from bot.channels.base import OutboundMessage, ReplyType
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from tests.unit.test_store import inbound, pg_database

LEASE = timedelta(seconds=1)


async def test_a_live_gateways_work_is_left_alone_and_a_dead_ones_is_taken_over_once():
    async with pg_database() as url:
        a = await PostgresStore.open(url, owner="gateway-a", lease=LEASE)
        b = await PostgresStore.open(url, owner="gateway-b", lease=LEASE)
        c = await PostgresStore.open(url, owner="gateway-c", lease=LEASE)
        try:
            received = await a.receive(inbound(mid="1"))
            telegram = await a.receive(replace(inbound(mid="2", customer="tg"), channel="telegram"))
            reply = await a.add_reply(
                telegram.conversation.id,
                OutboundMessage(type=ReplyType.ANSWER, text="on its way"),
                event="answered",
            )
            assert reply.delivery_status == "pending"
            # A lives: its claims are renewed, nobody else gets its work.
            for _ in range(3):
                await asyncio.sleep(0.4)
                assert await a.renew_claims() == 3
                assert await b.take_over() == ([], [])
            assert await b.claim_unanswered() == []
            assert await b.claim_deliveries() == []
            assert {m.id for m in await a.claim_unanswered()} == {
                received.message.id,
                telegram.message.id,
            }
            # A dies (no more renewals): once the lease lapses, B and C race; each piece of
            # work goes to exactly one of them.
            await asyncio.sleep(LEASE.total_seconds() + 0.2)
            (b_in, b_out), (c_in, c_out) = await asyncio.gather(b.take_over(), c.take_over())
            taken_in = [m.id for m in b_in + c_in]
            taken_out = [m.id for m in b_out + c_out]
            assert sorted(taken_in) == sorted([received.message.id, telegram.message.id])
            assert taken_out == [reply.id]
            # What B took is B's now: C cannot take it again while B renews.
            await asyncio.sleep(0.5)
            await b.renew_claims()
            await c.renew_claims()
            assert await a.take_over() == ([], [])
        finally:
            for store in (a, b, c):
                await store.close()


async def test_a_gateway_restarted_under_the_same_name_gets_its_work_back_at_once():
    async with pg_database() as url:
        first = await PostgresStore.open(url, owner="host:8080:0", lease=timedelta(minutes=5))
        received = await first.receive(inbound(mid="1"))
        await first.close()  # killed: its claims still hold for minutes
        again = await PostgresStore.open(url, owner="host:8080:0", lease=timedelta(minutes=5))
        other = await PostgresStore.open(url, owner="host:8080:1", lease=timedelta(minutes=5))
        try:
            assert await other.claim_unanswered() == []
            assert [m.id for m in await again.claim_unanswered()] == [received.message.id]
        finally:
            await again.close()
            await other.close()


async def test_one_gateway_on_sqlite_owns_everything(tmp_path):
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    try:
        received = await store.receive(inbound())
        assert [m.id for m in await store.claim_unanswered()] == [received.message.id]
        assert await store.renew_claims() == 0
        assert await store.take_over() == ([], [])
    finally:
        await store.close()
