"""Every messaging channel through the real gateway and a real Rasa server.

Each platform is a local fake that speaks its wire format (tests/fakes): the test POSTs what
the platform would (signed its way) to ``/webhooks/<channel>`` and reads what the gateway
sent back through the fake's send API. Email goes over real SMTP both ways.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import AGENT_TOKEN, Stack, free_port, running_stack
from tests.fakes import meta, smtp, telegram
from tests.fakes.base import Call, FakePlatform
from tests.fakes.meta import FakeGraph
from tests.fakes.secrets import GATEWAY_ENV
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import FakeSMTPServer
from tests.fakes.telegram import FakeTelegram
from tests.fakes.threaded import FakeThread, wait_calls
from tests.fakes.twilio import FakeTwilio

pytestmark = pytest.mark.integration
FAQ = "How long does delivery take?"
Signed = tuple[dict[str, str], bytes]


@dataclass
class Platforms:
    thread: FakeThread
    telegram: FakeTelegram
    slack: FakeSlack
    graph: FakeGraph
    twilio: FakeTwilio
    smtp: FakeSMTPServer
    email_port: int


@pytest.fixture(scope="module")
def platforms() -> Iterator[Platforms]:
    thread = FakeThread()
    fakes = Platforms(
        thread, FakeTelegram(), FakeSlack(), FakeGraph(), FakeTwilio(), FakeSMTPServer(), 0
    )
    fakes.email_port = free_port()
    with thread.serving(fakes.telegram, fakes.slack, fakes.graph, fakes.twilio, fakes.smtp):
        yield fakes


@pytest.fixture(scope="module")
def channels_stack(
    platforms: Platforms, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    config = f"""
[channels.telegram]
api_base = "{platforms.telegram.url}"
[channels.slack]
api_base = "{platforms.slack.url}"
[channels.whatsapp]
api_base = "{platforms.graph.url}"
[channels.messenger]
api_base = "{platforms.graph.url}"
[channels.twilio]
api_base = "{platforms.twilio.url}"
[channels.email]
enabled = true
api_base = "{platforms.smtp.url}"
options = {{ address = "{smtp.SUPPORT}", listen_port = {platforms.email_port} }}
"""
    with running_stack(tmp_path_factory.mktemp("channels"), config, GATEWAY_ENV) as stack:
        yield stack


# -- helpers ---------------------------------------------------------------------------------------


def post(url: str, signed: Signed, method: str = "POST") -> tuple[int, bytes]:
    headers, body = signed
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


def agent(stack: Stack, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{stack.url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {AGENT_TOKEN}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def inbound_count(stack: Stack, channel: str) -> int:
    with sqlite3.connect(stack.database) as db:
        row = db.execute(
            "SELECT count(*) FROM messages WHERE direction = 'in' AND channel = ?", (channel,)
        ).fetchone()
    return int(row[0])


def sent_texts(fake: FakePlatform, calls: list[Call]) -> list[str]:
    texts = []
    for call in calls:
        body = call.json if isinstance(call.json, dict) else {}
        text = (
            body.get("text")
            if isinstance(body.get("text"), str)
            else (body.get("text") or {}).get("body")
            or (body.get("message") or {}).get("text")
            or call.form.get("Body")
            or ""
        )
        texts.append(str(text).replace("\\", ""))  # Telegram's MarkdownV2 escapes
    return texts


def new_calls(fake: FakePlatform, before: int, count: int, timeout: float = 30) -> list[Call]:
    return wait_calls(fake, before + count, timeout)[before:]


Sender = Callable[[Platforms, Stack, str, str], Signed]

# channel -> (fake attribute, build a signed text message from (user, text))
CHANNELS: dict[str, tuple[str, Sender]] = {
    "telegram": (
        "telegram",
        lambda p, s, user, text: p.telegram.signed_update(text, user_id=int(user)),
    ),
    "slack": (
        "slack",
        lambda p, s, user, text: p.slack.signed_update(
            text, user_id=f"U{user}", channel=f"D{user}"
        ),
    ),
    "whatsapp": (
        "graph",
        lambda p, s, user, text: p.graph.whatsapp.signed_update(text, user_id=user),
    ),
    "messenger": (
        "graph",
        lambda p, s, user, text: p.graph.messenger.signed_update(text, user_id=user),
    ),
    "twilio": (
        "twilio",
        lambda p, s, user, text: p.twilio.signed_update(
            text, user_id=f"+{user}", url=f"{s.url}/webhooks/twilio"
        ),
    ),
}


# -- tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", list(CHANNELS))
def test_an_faq_question_is_answered_with_its_citation_through_the_platform(
    channel: str, platforms: Platforms, channels_stack: Stack
) -> None:
    attribute, build = CHANNELS[channel]
    fake: FakePlatform = getattr(platforms, attribute)
    before = len(fake.calls)
    user = f"44770090{free_port()}"
    started = time.monotonic()

    status, _ = post(
        f"{channels_stack.url}/webhooks/{channel}", build(platforms, channels_stack, user, FAQ)
    )
    assert status == 200

    (call,) = new_calls(fake, before, 1)
    elapsed = time.monotonic() - started
    text = sent_texts(fake, [call])[0]
    assert "Source:" in text and "deliver" in text.lower()
    assert elapsed < 5  # inside the promised window of every chat platform (3-10 s)


def test_a_bad_or_missing_signature_is_refused_and_nothing_is_stored(
    platforms: Platforms, channels_stack: Stack
) -> None:
    names = ("telegram", "slack", "whatsapp", "twilio")
    before = {name: inbound_count(channels_stack, name) for name in names}
    headers, body = platforms.telegram.signed_update("hi", user_id=5001)
    assert (
        post(
            f"{channels_stack.url}/webhooks/telegram",
            ({**headers, "X-Telegram-Bot-Api-Secret-Token": "wrong"}, body),
        )[0]
        == 401
    )
    headers, body = platforms.slack.signed_update("hi")
    assert (
        post(
            f"{channels_stack.url}/webhooks/slack",
            ({**headers, "X-Slack-Signature": "v0=00"}, body),
        )[0]
        == 401
    )
    headers, body = platforms.graph.whatsapp.signed_update("hi")
    del headers["X-Hub-Signature-256"]
    assert post(f"{channels_stack.url}/webhooks/whatsapp", (headers, body))[0] in (401, 403)
    signed = platforms.twilio.signed_update("hi", url="http://elsewhere.example/webhooks/twilio")
    assert post(f"{channels_stack.url}/webhooks/twilio", signed)[0] in (401, 403)
    assert {name: inbound_count(channels_stack, name) for name in names} == before


def test_a_slack_request_replayed_outside_the_window_is_refused(
    platforms: Platforms, channels_stack: Stack
) -> None:
    old = FakeSlack(clock=lambda: time.time() - 6 * 60)
    status, body = post(f"{channels_stack.url}/webhooks/slack", old.signed_update("hi"))
    assert status == 401 and b"timestamp" in body.lower()


def test_handshakes(platforms: Platforms, channels_stack: Stack) -> None:
    status, body = post(
        f"{channels_stack.url}/webhooks/slack", platforms.slack.signed_url_verification("abc123")
    )
    assert status == 200 and b"abc123" in body
    query = urllib.parse.urlencode(meta.challenge_query(challenge="42"))
    with urllib.request.urlopen(f"{channels_stack.url}/webhooks/whatsapp?{query}") as response:
        assert response.read() == b"42"
    bad = urllib.parse.urlencode(meta.challenge_query(token="nope"))
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{channels_stack.url}/webhooks/messenger?{bad}")
    assert e.value.code == 403
    e.value.close()


def test_a_duplicate_delivery_is_stored_once_and_answered_once(
    platforms: Platforms, channels_stack: Stack
) -> None:
    fake = platforms.telegram
    signed = fake.signed_update("hello there", user_id=6001)
    before_in = inbound_count(channels_stack, "telegram")
    before = len(fake.calls)
    assert post(f"{channels_stack.url}/webhooks/telegram", signed)[0] == 200
    assert post(f"{channels_stack.url}/webhooks/telegram", signed)[0] == 200  # Telegram retried

    new_calls(fake, before, 1)
    time.sleep(3)  # anything a second turn would have sent is out by now
    assert inbound_count(channels_stack, "telegram") == before_in + 1
    assert len([c for c in fake.calls[before:] if c.json and c.json.get("chat_id") == 6001]) == 1


def test_a_429_is_retried_after_retry_after_then_delivered(
    platforms: Platforms, channels_stack: Stack
) -> None:
    fake = platforms.slack
    fake.fail_rate_limited(retry_after=1)
    before = len(fake.calls)
    post(
        f"{channels_stack.url}/webhooks/slack",
        fake.signed_update(FAQ, user_id="U7001", channel="D7001"),
    )
    limited, delivered = new_calls(fake, before, 2)
    assert "Source:" in sent_texts(fake, [delivered])[0]
    assert delivered.at - limited.at >= 1.0  # not sooner than Slack's Retry-After


def test_a_permanent_failure_is_kept_and_shown_as_failed(
    platforms: Platforms, channels_stack: Stack
) -> None:
    fake = platforms.telegram
    fake.fail_error(400, "Bad Request: chat not found")
    before = len(fake.calls)
    post(
        f"{channels_stack.url}/webhooks/telegram",
        fake.signed_update("I want to talk to a person", user_id=8001),
    )
    new_calls(fake, before, 1)
    ticket = wait_ticket(channels_stack, "telegram", lambda t: True, newest=True)
    messages = agent(channels_stack, f"/api/agent/tickets/{ticket['id']}")["messages"]
    failed = [m for m in messages if m.get("delivery", {}).get("status") == "failed"]
    assert failed and failed[0]["delivery"]["error"] == "send_failed"


def wait_ticket(
    stack: Stack,
    channel: str,
    match: Callable[[dict[str, Any]], bool],
    newest: bool = False,
    timeout: float = 30,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tickets = [
            t
            for t in agent(stack, "/api/agent/tickets")["tickets"]
            if t["channel"] == channel and match(t)
        ]
        if tickets:
            return tickets[-1] if newest else tickets[0]
        time.sleep(0.2)
    raise AssertionError(f"no {channel} ticket")


def test_non_text_input_is_kept_acknowledged_and_explained(
    platforms: Platforms, channels_stack: Stack
) -> None:
    fake = platforms.telegram
    before = len(fake.calls)
    post(
        f"{channels_stack.url}/webhooks/telegram",
        fake.signed_message(telegram.photo(), user_id=9001),
    )
    post(f"{channels_stack.url}/webhooks/telegram", fake.signed_join(9002))
    (call,) = new_calls(fake, before, 1)
    assert "only read text" in sent_texts(fake, [call])[0]
    with sqlite3.connect(channels_stack.database) as db:
        kinds = [
            row[0]
            for row in db.execute(
                "SELECT kind FROM messages WHERE direction = 'in' AND channel = 'telegram' "
                "AND kind IS NOT NULL"
            )
        ]
    assert "image" in kinds and "join" in kinds


def test_one_customer_on_telegram_then_email_keeps_one_history_and_one_ticket(
    platforms: Platforms, channels_stack: Stack
) -> None:
    tg = platforms.telegram
    before = len(tg.calls)
    post(
        f"{channels_stack.url}/webhooks/telegram",
        tg.signed_update("I want to talk to a person", user_id=10001),
    )
    new_calls(tg, before, 1)
    ticket = wait_ticket(channels_stack, "telegram", lambda t: True, newest=True)

    mails = len(platforms.smtp.messages)
    code, _ = platforms.thread.run(
        smtp.deliver(
            "127.0.0.1",
            platforms.email_port,
            smtp.compose(text=FAQ, sender="ada@example.org"),
            mail_from="ada@example.org",
        )
    )
    assert code == 250
    receipt, answer = wait_calls(platforms.smtp, mails + 2)[-2:]
    # Email acks at once with when the answer comes, then answers.
    assert "You'll have our answer" in receipt.body.decode(errors="replace")
    assert "Source:" in answer.body.decode(errors="replace")
    assert receipt.headers.get("Auto-Submitted") == "auto-replied"
    email_customer = customer_of(channels_stack, "email", "ada@example.org")

    agent(
        channels_stack,
        f"/api/agent/customers/{ticket['customer']['id']}/merge",
        {"from": email_customer, "agent": {"id": "a1", "name": "Bea"}},
    )
    code, _ = platforms.thread.run(
        smtp.deliver(
            "127.0.0.1",
            platforms.email_port,
            smtp.compose(text="Any news on my request?", sender="ada@example.org"),
            mail_from="ada@example.org",
        )
    )
    assert code == 250
    plan = wait_calls(platforms.smtp, mails + 3)[-1]
    assert ticket["reference"] in plan.body.decode(errors="replace")

    reply = agent(
        channels_stack,
        f"/api/agent/tickets/{ticket['id']}/replies",
        {"text": "Here is your answer.", "agent": {"id": "a1", "name": "Bea"}},
    )
    assert reply["message_id"]
    answered = wait_calls(platforms.smtp, mails + 4)[-1]
    assert "Here is your answer." in answered.body.decode(errors="replace")  # where they wrote last

    history = agent(channels_stack, f"/api/agent/customers/{ticket['customer']['id']}")
    assert {c["channel"] for c in history["conversations"]} == {"telegram", "email"}
    assert [t["id"] for t in history["tickets"] if t["status"] != "resolved"] == [ticket["id"]]


def customer_of(stack: Stack, channel: str, external_id: str) -> str:
    with sqlite3.connect(stack.database) as db:
        row = db.execute(
            "SELECT customer_id FROM channel_accounts WHERE channel = ? AND external_id = ?",
            (channel, external_id),
        ).fetchone()
    assert row is not None
    return str(row[0])
