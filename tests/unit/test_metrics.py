"""GET /metrics through the real app: counts match what happened, state matches the store."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bot import keys
from bot.app import create_app
from bot.channels.base import AckKind, ReplyType
from bot.metrics import Metrics
from bot.settings import ChannelsSettings
from bot.store.base import StoredMessage
from bot.store.sqlite import SQLiteStore
from tests.unit.test_gateway import (
    escalating_on,
    frames,
    make_settings,
    open_ticket,
    post,
    wait_for_rasa,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port)))


async def scrape(client: TestClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(await response.text())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def settle(client: TestClient) -> None:
    await client.server.app[keys.PIPELINE].drain()


async def test_counts_and_state_after_answers_and_a_handoff(client, fake_rasa, tmp_path):
    await wait_for_rasa(client)
    fake_rasa.action = escalating_on("agent please", tmp_path)
    for n in range(3):
        accepted = await (await post(client, f"question {n}", mid=f"q{n}", customer=f"c{n}")).json()
        await frames(client, accepted["conversation_id"], customer=f"c{n}")
    handoff = await (await post(client, "agent please", mid="h1", customer="h")).json()
    replies = await frames(client, handoff["conversation_id"], customer="h")
    assert [r.get("kind") for r in replies] == ["plan"]
    await settle(client)

    samples = await scrape(client)
    assert value(samples, "promptly_messages_received_total", channel="web") == 4
    assert value(samples, "promptly_ack_latency_seconds_count", channel="web") == 4
    assert value(samples, "promptly_ack_latency_seconds_bucket", channel="web", le="10.0") == 4
    assert value(samples, "promptly_acks_late_total", channel="web") == 0
    answers = value(samples, "promptly_answer_latency_seconds_count", channel="web", source="rasa")
    assert answers == 3  # the plan is an ack, not an answer
    assert value(samples, "promptly_queue_length", queue="support") == 1
    assert value(samples, "promptly_queue_length", queue="billing") == 0
    assert value(samples, "promptly_open_tickets", sla_state="running") == 1
    assert value(samples, "promptly_open_tickets", sla_state="breached") == 0
    assert value(samples, "promptly_inbox_backlog", status="received") == 0
    assert value(samples, "promptly_inbox_backlog", status="pending") == 0
    assert value(samples, "promptly_component_up", component="rasa") == 1
    assert value(samples, "promptly_component_up", component="kb") == 0  # disabled in tests
    assert value(samples, "promptly_component_up", component="database") == 1


async def test_rasa_down_shows_in_health_and_backlog(tmp_path, aiohttp_client, unused_tcp_port):
    client = await aiohttp_client(create_app(make_settings(tmp_path, unused_tcp_port)))
    await wait_for_rasa(client, up=False)
    accepted = await (await post(client, "anyone there?")).json()
    assert [r.get("kind") for r in await frames(client, accepted["conversation_id"])] == ["receipt"]
    await settle(client)
    samples = await scrape(client)
    assert value(samples, "promptly_component_up", component="rasa") == 0
    assert value(samples, "promptly_inbox_backlog", status="pending") == 1
    assert value(samples, "promptly_ack_latency_seconds_count", channel="web") == 1
    assert (
        value(samples, "promptly_answer_latency_seconds_count", channel="web", source="rasa") == 0
    )


async def test_sla_timers_and_failed_deliveries_are_counted_from_the_event_log(client, tmp_path):
    accepted = await (await post(client, "hello")).json()
    conversation_id = accepted["conversation_id"]
    await settle(client)
    ticket = await open_ticket(tmp_path, conversation_id, "support")
    before = await scrape(client)  # moves the log cursor: only what follows counts below
    # Written through another connection, as a standalone action server or an earlier
    # firing would: the event log is the one place that sees them all.
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    try:
        now = datetime.now(UTC)
        for name, event in (
            ("first_response:warning", "sla_warning"),
            ("first_response:breach", "sla_breach"),
            ("resolution:breach", "sla_breach"),
        ):
            await store.fire_timer(ticket.id, name, now, now, event, {"timer": name})
        await store.log_event(
            "delivery_failed", conversation_id=conversation_id, data={"error": "send_failed"}
        )
        await store.log_event("sla_warning", data={})  # counted once, whatever is missing
    finally:
        await store.close()
    samples = await scrape(client)
    assert value(before, "promptly_sla_breaches_total", clock="first_response") == 0
    assert value(samples, "promptly_sla_warnings_total", clock="first_response") == 1
    assert value(samples, "promptly_sla_warnings_total", clock="unknown") == 1
    assert value(samples, "promptly_sla_breaches_total", clock="first_response") == 1
    assert value(samples, "promptly_sla_breaches_total", clock="resolution") == 1
    failed = value(samples, "promptly_delivery_failures_total", channel="web", error="send_failed")
    assert failed == 1
    again = await scrape(client)  # counted once, not at every scrape
    assert value(again, "promptly_sla_breaches_total", clock="first_response") == 1


async def test_breached_ticket_counts_in_its_worst_state(client, tmp_path):
    accepted = await (await post(client, "hello")).json()
    await settle(client)
    ticket = await open_ticket(tmp_path, accepted["conversation_id"], "support")
    assert value(await scrape(client), "promptly_open_tickets", sla_state="running") == 1
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    try:  # the changed ticket is measured again, not taken from the last scrape
        late = ticket.created_at - timedelta(minutes=1)
        await store.save_ticket(replace(ticket, first_response_due=late), event="test", at=late)
    finally:
        await store.close()
    samples = await scrape(client)
    assert value(samples, "promptly_open_tickets", sla_state="breached") == 1
    assert value(samples, "promptly_open_tickets", sla_state="running") == 0


def reply(
    latency_ms: float, *, type: str, kind: str | None
) -> tuple[StoredMessage, dict[str, Any]]:
    stored = StoredMessage(
        seq=1,
        id="r1",
        conversation_id="c",
        direction="out",
        type=type,
        kind=kind,
        text="",
        payload={},
        in_reply_to=None,
        client_message_id=None,
        status=None,
        created_at=datetime.now(UTC),
        acked_at=None,
    )
    data: dict[str, Any] = {"latency_ms": latency_ms, "source": "kb_direct", "type": type}
    if kind is not None:
        data["kind"] = kind
    return stored, data


def test_an_ack_after_the_promise_is_late_and_an_agent_reply_is_not_timed():
    metrics = Metrics(ChannelsSettings())
    receipt, data = reply(2500, type=ReplyType.ACK, kind=AckKind.RECEIPT)
    metrics.replied(receipt, "acked", data)
    stored, data = reply(900, type=ReplyType.ACK, kind=AckKind.SOLUTION)
    metrics.replied(stored, "acked", data)
    metrics.replied(stored, "agent_replied", {"agent": "sam"})
    get = metrics.registry.get_sample_value
    assert get("promptly_acks_late_total", {"channel": "web"}) == 1
    assert get("promptly_ack_latency_seconds_count", {"channel": "web"}) == 2
    assert get("promptly_ack_latency_seconds_bucket", {"channel": "web", "le": "1.0"}) == 1
    labels = {"channel": "web", "source": "kb_direct"}
    assert get("promptly_answer_latency_seconds_count", labels) == 1  # the receipt is no answer
