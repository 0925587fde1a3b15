"""Two gateway processes on one PostgreSQL database and one Redis (docs/deploy.md, "Scaling
out") with one real Rasa (trained model, its lock and tracker stores in the same Redis):

* web messages posted alternately to gateway A and gateway B (FAQ, small talk, orders,
  handoffs, several customers whose conversations span both) are each acked and answered
  exactly once: the customers' histories and the database's messages and event log;
* an agent reply through A's agent API reaches a customer whose WebSocket is on B (Redis);
* an SLA warning fires once per ticket and timer though both gateways time every ticket;
* A (kill -9) dies holding claimed, unanswered messages (its Rasa, behind a proxy, went away):
  B leaves them alone while A renews its claims, then takes them over once the lease lapses
  and answers each once; A's tickets' timers are fired by B.

A fresh database (``promptly_test_<hex>``, dropped after) and a fresh Redis prefix (its keys
deleted after); a 6 s ``[scale] claim_lease`` so the take-over happens within the test.
Answers get generous waits (a shared 2-core machine): correctness is asserted, not speed.
The tests run in order on one deployment; the last kills A.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from bot.settings import WORKER_ENV
from tests.conftest import free_port
from tests.integration.test_flows import Customer
from tests.services import REDIS_URL, require_redis
from tests.unit.test_store import pg_database

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
logger = logging.getLogger(__name__)
BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))  # the bench modules import each other as scripts
faults: Any = importlib.import_module("faults")
ack_latency: Any = importlib.import_module("ack_latency")

AGENT_TOKEN = "scale-out-agent-token"
LEASE = 6.0  # [scale] claim_lease: renewed, and lapsed claims taken over, every 2 s
SLA_TARGET = 24.0  # first response; the warning at half of it, after B's 10 s ticket re-read
RATE = 3.0  # messages a second, both gateways together
SECONDS = 10.0
CUSTOMERS = 6  # regular customers, each writing to both gateways; handoffs have their own
ANSWER_WAIT = 150.0  # seconds, generous: a loaded 2-core machine
SCALE_CONFIG = """
[scale]
redis_url = "{redis_url}"
redis_prefix = "{prefix}"
claim_lease = "{lease:g}s"
"""


@dataclass
class Deployment:
    suite: Any  # faults.Suite: Rasa, whose action endpoint is B
    a: Any  # ack_latency.Gateway, slot 0; its Rasa is behind ``proxy``
    b: Any  # ack_latency.Gateway, slot 1
    proxy: Any  # faults.SlowProxy (no delay) in front of Rasa, for A only
    database_url: str
    a_name: str  # the names their work is claimed under (bot.app.gateway_id)
    b_name: str

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()


async def _health(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/health", timeout=aiohttp.ClientTimeout(total=5)) as response:
        return dict(await response.json())


async def _wait_rasa(url: str, up: bool, timeout: float = 180) -> None:
    """Until the gateway at ``url`` sees Rasa ``up`` (or down)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                if ((await _health(session, url))["components"]["rasa"] == "up") == up:
                    return
            await asyncio.sleep(0.3)
    raise AssertionError(f"{url} never saw Rasa {'up' if up else 'down'}")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def deployment(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    require_redis()
    tmp = tmp_path_factory.mktemp("scale-out")
    prefix = f"scaletest{uuid.uuid4().hex[:12]}:"
    async with pg_database() as database_url:
        suite = faults.Suite(tmp, redis_url=REDIS_URL, redis_prefix=prefix)
        proxy = faults.SlowProxy(suite.rasa_url, 0.0)
        config = SCALE_CONFIG.format(
            redis_url=REDIS_URL, prefix=prefix, lease=LEASE
        ) + faults.SLA_CONFIG.format(target=f"{SLA_TARGET:g}")
        env = {"PROMPTLY_DATABASE_URL": database_url, "PROMPTLY_AGENT_TOKEN": AGENT_TOKEN}
        a_port = free_port()
        with contextlib.ExitStack() as gateways:
            try:
                await proxy.start()
                suite.rasa.start()
                # B first: it builds the KB index the two share, A then loads it.
                b = await asyncio.to_thread(
                    gateways.enter_context,
                    suite.gateway("b", config, env={**env, WORKER_ENV: "1"}),
                )
                a = await asyncio.to_thread(
                    gateways.enter_context,
                    suite.gateway(
                        "a",
                        config,
                        rasa_port=proxy.port,
                        env={**env, WORKER_ENV: "0"},
                        port=a_port,
                    ),
                )
                await asyncio.to_thread(suite.rasa.wait_ready, 300)
                await asyncio.gather(_wait_rasa(a.url, up=True), _wait_rasa(b.url, up=True))
                host = socket.gethostname()
                yield Deployment(
                    suite,
                    a,
                    b,
                    proxy,
                    database_url,
                    f"{host}:{a.port}:0",
                    f"{host}:{b.port}:1",
                )
            finally:
                await asyncio.to_thread(gateways.close)
                await proxy.close()
                suite.close()
                redis = Redis.from_url(REDIS_URL)
                try:
                    async for key in redis.scan_iter(match=f"{prefix.rstrip(':')}*"):
                        await redis.delete(key)
                finally:
                    await redis.aclose()


# --- helpers ------------------------------------------------------------------------------------


def _assert_kept(row: Any, customers: Any, count: int) -> None:
    assert len(customers.sent) == count and row.accepted == row.sent == count, row
    assert row.lost == 0, row
    assert row.duplicated == 0, row
    assert not row.failures, row


async def _store_checks(d: Deployment, tag: str, count: int) -> list[asyncpg.Record]:
    """The database: each of ``count`` messages of ``tag`` stored once, acked (one ``acked``
    event), done; no reply stored twice. Returns the inbound rows."""
    inbound = await d.sql(
        "SELECT m.client_message_id, m.status, m.acked_at, m.claimed_by, "
        "(SELECT count(*) FROM events e WHERE e.type = 'acked' AND e.message_id = m.id) AS acks "
        "FROM messages m WHERE m.direction = 'in' AND m.client_message_id LIKE $1",
        f"{tag}-%",
    )
    assert len(inbound) == count == len({r["client_message_id"] for r in inbound}), inbound
    assert [r for r in inbound if r["acks"] != 1 or r["acked_at"] is None] == []
    assert [r for r in inbound if r["status"] != "done"] == []
    acks_twice = await d.sql(
        "SELECT in_reply_to, kind, count(*) FROM messages WHERE direction = 'out' "
        "AND type = 'ack' AND in_reply_to LIKE $1 GROUP BY 1, 2 HAVING count(*) > 1",
        f"{tag}-%",
    )
    assert acks_twice == []
    replies_twice = await d.sql(
        "SELECT in_reply_to, type, kind, text, count(*) FROM messages WHERE direction = 'out' "
        "AND in_reply_to LIKE $1 GROUP BY 1, 2, 3, 4 HAVING count(*) > 1",
        f"{tag}-%",
    )
    assert replies_twice == []
    return inbound


async def _sla_checks(d: Deployment, slack: float = 3.0) -> tuple[int, int]:
    """Every SLA timer fired at most once per ticket; each first-response warning and breach
    due ``slack`` seconds ago (on a ticket no agent answered first) exactly once. Returns
    (timers due, tickets)."""
    fired = await d.sql(
        "SELECT ticket_id, data->>'timer' AS timer, count(*) AS n FROM events "
        "WHERE type IN ('sla_warning', 'sla_breach') GROUP BY 1, 2"
    )
    assert [r for r in fired if r["n"] != 1] == [], "an SLA timer fired twice"
    counts = {(r["ticket_id"], r["timer"]): r["n"] for r in fired}
    tickets = await d.sql(
        "SELECT id, created_at, first_response_due, first_responded_at FROM tickets"
    )
    now = datetime.now(UTC).timestamp()
    due = 0
    for t in tickets:
        start, breach = t["created_at"].timestamp(), t["first_response_due"].timestamp()
        answered = t["first_responded_at"]
        for timer, at in (
            ("first_response:warning", start + 0.5 * (breach - start)),
            ("first_response:breach", breach),
        ):
            if at > now - slack or (answered is not None and answered.timestamp() <= at + 1):
                continue
            due += 1
            assert counts.get((t["id"], timer)) == 1, (t, timer, counts)
    return due, len(tickets)


# --- the tests, in order --------------------------------------------------------------------


async def test_messages_spread_over_both_gateways_are_acked_and_answered_once(
    deployment: Deployment,
) -> None:
    d = deployment
    tag = f"so{uuid.uuid4().hex[:6]}"
    messages = faults.messages_for(RATE, SECONDS, tag, 11)
    for i, m in enumerate(messages):
        if m.category != ack_latency.HANDOFF:  # a handoff's customer is its own
            m.customer = f"{tag}-c{i % CUSTOMERS}"
    assert {m.category for m in messages} >= {ack_latency.FAQ, ack_latency.HANDOFF}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        on_a = faults.WebCustomers(session, d.a.url, messages[0::2])
        on_b = faults.WebCustomers(session, d.b.url, messages[1::2])
        stop = asyncio.Event()

        async def b_later() -> None:  # alternate: A, B, A, B, ...
            await asyncio.sleep(1 / RATE)
            await on_b.send(RATE / 2, stop)

        await asyncio.gather(on_a.send(RATE / 2, stop), b_later())
        resend_until = time.monotonic() + 60
        await asyncio.gather(on_a.resend(resend_until), on_b.resend(resend_until))
        frames_a, frames_b = await asyncio.gather(
            on_a.wait_answered(ANSWER_WAIT), on_b.wait_answered(ANSWER_WAIT)
        )
    for name, customers, frames in (("A", on_a, frames_a), ("B", on_b, frames_b)):
        row = faults.Row(f"scale-out {name}")
        faults.judge(row, customers, frames, 2.0, window_required=False)
        _assert_kept(row, customers, len(customers.messages))
    inbound = await _store_checks(d, tag, len(messages))
    # Each gateway claimed (and answered) the messages posted to it.
    by_owner = {r["client_message_id"]: r["claimed_by"] for r in inbound}
    assert {by_owner[m.cmid] for m in messages[0::2]} == {d.a_name}, by_owner
    assert {by_owner[m.cmid] for m in messages[1::2]} == {d.b_name}, by_owner


async def test_an_agent_reply_on_one_gateway_reaches_a_socket_on_the_other(
    deployment: Deployment,
) -> None:
    d = deployment
    async with aiohttp.ClientSession() as session:
        customer = Customer(session, d.b)  # the widget's socket is on B
        await customer.connect()
        try:
            mid = await customer.say("I want to talk to a person")
            plan = await customer.wait_reply(mid, lambda f: f.get("kind") == "plan", timeout=60)
            auth = {"Authorization": f"Bearer {AGENT_TOKEN}"}
            async with session.get(f"{d.a.url}/api/agent/tickets", headers=auth) as response:
                assert response.status == 200
                tickets = (await response.json())["tickets"]
            ticket = next(t for t in tickets if t["conversation_id"] == customer.conversation_id)
            assert ticket["reference"] == plan["reference"]
            text = f"Hi, this is Sam on gateway A ({uuid.uuid4().hex[:6]})."
            async with session.post(
                f"{d.a.url}/api/agent/tickets/{ticket['id']}/replies",
                headers=auth,
                json={"text": text, "agent": {"id": "sam", "name": "Sam"}},
            ) as response:
                assert response.status == 201, await response.text()
            give_up = time.monotonic() + 30
            while not [f for _, f in customer.frames if f.get("type") == "agent"]:
                assert time.monotonic() < give_up, customer.frames
                await asyncio.sleep(0.05)
            agent = [f for _, f in customer.frames if f.get("type") == "agent"]
            assert [f["text"] for f in agent] == [text]  # once, over B's socket
        finally:
            await customer.close()


async def test_an_sla_warning_fires_once_though_both_gateways_time_it(
    deployment: Deployment,
) -> None:
    d = deployment
    tag = f"sw{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as session:
        customers = faults.WebCustomers(
            session,
            d.a.url,
            [faults.Message(f"{tag}-0", f"{tag}-h0", "I want to talk to a person", 0)],
        )
        await customers.post(customers.messages[0])
        customers.sent = list(customers.messages)
        await customers.resend(time.monotonic() + 30)
        frames = await customers.wait_answered(ANSWER_WAIT)
    assert faults.unanswered(customers.accepted, frames) == []
    rows = await d.sql(
        "SELECT id, created_at, first_response_due FROM tickets WHERE conversation_id = $1",
        customers.accepted[0].conversation,
    )
    assert len(rows) == 1, rows
    ticket = rows[0]
    start, breach = ticket["created_at"].timestamp(), ticket["first_response_due"].timestamp()
    warn_at = start + 0.5 * (breach - start)
    # Both gateways time it: A made it, B re-reads the open tickets every 10 s.
    await asyncio.sleep(max(warn_at - time.time(), 0) + 3)
    deadline = time.monotonic() + 30
    while not await d.sql(
        "SELECT 1 FROM events WHERE type = 'sla_warning' AND ticket_id = $1", ticket["id"]
    ):
        assert time.monotonic() < deadline, "the SLA warning never fired"
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # a second firing, if any, would be in by now
    warnings = await d.sql(
        "SELECT data->>'timer' AS timer FROM events WHERE type = 'sla_warning' AND ticket_id = $1",
        ticket["id"],
    )
    assert [r["timer"] for r in warnings] == ["first_response:warning"]
    due, count = await _sla_checks(d)
    assert due >= 1 and count >= 1


async def test_a_killed_gateways_claimed_work_is_taken_over_and_answered_once(
    deployment: Deployment,
) -> None:
    d = deployment
    tag = f"tk{uuid.uuid4().hex[:6]}"
    # Greetings are Rasa's (not the fast path's): with A's Rasa gone they wait, claimed by A.
    held = [
        faults.Message(f"{tag}-{i}", f"{tag}-a{i}", text, ack_latency.SMALL_TALK)
        for i, text in enumerate(["hi", "hello there", "good morning", "hey!", "hi", "hello"])
    ]
    # Meanwhile B keeps taking its own load, across the kill.
    load = [
        faults.Message(f"{tag}-b{i}", f"{tag}-b{i % 3}", m.text, m.category)
        for i, m in enumerate(faults.messages_for(1.0, 12.0, tag, 5))
    ]
    await d.proxy.close()  # A's Rasa is gone; B's is not
    await _wait_rasa(d.a.url, up=False, timeout=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        on_a = faults.WebCustomers(session, d.a.url, held)
        on_b = faults.WebCustomers(session, d.b.url, load)
        await on_a.send(5.0, asyncio.Event())
        await on_a.resend(time.monotonic() + 30)
        assert len(on_a.accepted) == len(held), on_a.errors
        # Acked (a receipt), claimed by A, unanswered.
        deadline = time.monotonic() + 60
        while True:
            rows = await d.sql(
                "SELECT client_message_id, status, acked_at, claimed_by FROM messages "
                "WHERE direction = 'in' AND client_message_id LIKE $1",
                f"{tag}-%",
            )
            waiting = [
                r
                for r in rows
                if r["status"] == "pending"
                and r["acked_at"] is not None
                and r["claimed_by"] == d.a_name
            ]
            if len(waiting) == len(held):
                break
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.3)
        sender = asyncio.create_task(on_b.send(1.0, asyncio.Event()))
        # While A lives and renews its claims, B leaves them alone (a whole lease and more).
        await asyncio.sleep(LEASE + 1)
        frames = await on_a.histories()
        assert len(faults.unanswered(on_a.accepted, frames)) == len(held), frames
        killed = time.monotonic()
        d.a.kill()  # kill -9 of A's process group
        on_a.url = d.b.url  # the customers' widgets reach B now (a load balancer would)
        frames = await on_a.wait_answered(ANSWER_WAIT)
        taken_over = time.monotonic() - killed
        await sender
        await on_b.resend(time.monotonic() + 60)
        frames_b = await on_b.wait_answered(ANSWER_WAIT)
    for name, customers, got in (("held by A", on_a, frames), ("B's load", on_b, frames_b)):
        row = faults.Row(f"take-over {name}")
        faults.judge(row, customers, got, 2.0, window_required=False)
        _assert_kept(row, customers, len(customers.messages))
    logger.info(
        "A's %d claimed messages answered by B %.1f s after the kill (lease %g s)",
        len(held),
        taken_over,
        LEASE,
    )
    # Not before A's last renewal (at most a third of the lease before the kill) lapsed.
    assert taken_over >= LEASE * 2 / 3 - 1, taken_over
    inbound = await _store_checks(d, tag, len(held) + len(load))
    owners = {r["client_message_id"]: r["claimed_by"] for r in inbound}
    assert {owners[m.cmid] for m in held} == {d.b_name}, owners  # taken over by B
    assert {owners[m.cmid] for m in load} == {d.b_name}, owners
    # A's tickets' timers (the breaches still ahead at the kill) are fired once, by B.
    await asyncio.sleep(2)
    await _sla_checks(d)
