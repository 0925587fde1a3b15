"""Messenger adapter against the fake Graph API (no gateway)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from bot.channels.base import EVENT_KINDS, MEDIA_KINDS, OutboundMessage, ReplyType
from bot.channels.messenger import MessengerChannel
from bot.channels.meta import GRAPH_API
from bot.channels.platform import Response, SendError, Webhook, Window
from bot.errors import BadRequest, Forbidden, Unauthorized
from tests.fakes.meta import (
    MESSENGER_SAMPLES,
    MESSENGER_SECRET,
    PAGE_TOKEN,
    VERIFY_TOKEN,
    FakeGraph,
    MessengerHooks,
    challenge_query,
    graph_error,
    sign,
)

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
SECRETS = {"app_secret": MESSENGER_SECRET, "access_token": PAGE_TOKEN, "verify_token": VERIFY_TOKEN}
HOOKS = MessengerHooks()
PSID = "6543210987654321"
REPLY_TO = {"psid": PSID}


def adapter(session: Any = None, api_base: str = "", **secrets: str) -> MessengerChannel:
    return MessengerChannel({**SECRETS, **secrets}, {}, session, api_base)


def hook(
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    method: str = "POST",
    query: dict[str, str] | None = None,
) -> Webhook:
    return Webhook(
        method=method,
        url="https://promptly.example.com/webhooks/messenger",
        headers=CIMultiDict(headers or {}),
        query=query or {},
        body=body,
        received_at=NOW,
    )


def parse(headers: dict[str, str], body: bytes) -> list[Any]:
    channel = adapter()
    request = hook(headers, body)
    assert channel.verify(request) is None
    return channel.parse(request)


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# -- verify ------------------------------------------------------------------------------------


def test_a_good_signature_passes() -> None:
    assert adapter().verify(hook(*HOOKS.signed_update("hi"))) is None


def test_a_missing_signature_is_refused() -> None:
    _, body = HOOKS.signed_update("hi")
    with pytest.raises(Unauthorized) as caught:
        adapter().verify(hook({}, body))
    assert caught.value.code == "signature_missing"


def test_a_bad_signature_is_refused() -> None:
    headers, body = HOOKS.signed_update("hi")
    for tampered in ((headers, body + b" "), (sign("whatsapp-app-secret", body)[0], body)):
        with pytest.raises(Unauthorized) as caught:
            adapter().verify(hook(*tampered))
        assert caught.value.code == "signature_invalid"


def test_the_subscription_challenge_is_echoed() -> None:
    answer = adapter().verify(hook(method="GET", query=challenge_query(challenge="42")))
    assert answer == Response(200, "42", "text/plain")


def test_a_wrong_verify_token_is_forbidden() -> None:
    with pytest.raises(Forbidden):
        adapter().verify(hook(method="GET", query=challenge_query(token="nope")))


# -- parse -------------------------------------------------------------------------------------


def test_a_text_message() -> None:
    [message] = parse(*HOOKS.signed_update("Where is my order?", user_id=PSID, message_id="m_1"))
    assert message.channel == "messenger"
    assert message.platform_message_id == "m_1"
    assert (message.text, message.kind, message.attachments) == ("Where is my order?", "text", ())
    assert message.customer.external_id == PSID
    assert message.customer.verified is False
    assert message.received_at == NOW
    assert message.reply_to == REPLY_TO


def test_a_batch_returns_every_event_of_every_entry() -> None:
    payload = HOOKS.payload(
        [
            HOOKS.event("1", message={"mid": "m_a", "text": "a"}),
            HOOKS.event("2", message={"mid": "m_b", "text": "b"}),
        ]
    )
    payload["entry"].append(
        HOOKS.payload([HOOKS.event("3", message={"mid": "m_c", "text": "c"})])["entry"][0]
    )
    messages = parse(*HOOKS.signed(payload))
    assert [(m.customer.external_id, m.platform_message_id, m.text) for m in messages] == [
        ("1", "m_a", "a"),
        ("2", "m_b", "b"),
        ("3", "m_c", "c"),
    ]


@pytest.mark.parametrize("sample", ["echo", "read", "delivery"])
def test_echoes_and_receipts_are_not_messages(sample: str) -> None:
    assert parse(*HOOKS.signed_message(sample)) == []


def test_other_objects_are_ignored() -> None:
    assert parse(*HOOKS.signed({"object": "instagram", "entry": []})) == []


EXPECTED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "image": ("image", "", {"url": "https://scontent.example/router.jpg"}),
    "sticker": ("sticker", "", {"sticker_id": "369239263222822"}),
    "audio": ("audio", "", {"url": "https://cdn.fbsbx.example/voice.mp4"}),
    "video": ("video", "", {"url": "https://video.example/blink.mp4"}),
    "file": ("file", "", {"url": "https://cdn.fbsbx.example/invoice.pdf"}),
    "location": ("location", "", {"latitude": 51.5072, "longitude": -0.1276}),
    "fallback": (
        "text",
        "look https://example.com",
        {"url": "https://example.com", "title": "Example"},
    ),
    "quick_reply": ("text", "Billing", {"kind": "quick_reply", "payload": "TOPIC_BILLING"}),
    "postback": ("text", "Talk to a person", {"kind": "postback", "payload": "AGENT"}),
    "reaction": ("reaction", "", {"message_id": "m_ours", "action": "react", "emoji": "❤️"}),
    "edit": ("edit", "", {"message_id": "m_edited", "text": "my order is 43, not 42"}),
}


@pytest.mark.parametrize("sample", sorted(EXPECTED))
def test_every_kind_is_described(sample: str) -> None:
    kind, text, described = EXPECTED[sample]
    [message] = parse(*HOOKS.signed_message(sample))
    assert (message.kind, message.text) == (kind, text)
    assert message.kind in MEDIA_KINDS | EVENT_KINDS | {"text"}
    assert described.items() <= message.attachments[0].items()
    json.dumps(list(message.attachments))


def test_the_dedup_id_is_the_mid() -> None:
    [message] = parse(*HOOKS.signed_message("image", message_id="m_custom"))
    assert message.platform_message_id == "m_custom"


def test_a_reaction_gets_a_stable_id_of_its_own() -> None:
    event = HOOKS.event(PSID, **MESSENGER_SAMPLES["reaction"])
    [first] = parse(*HOOKS.signed(HOOKS.payload([event])))
    [again] = parse(*HOOKS.signed(HOOKS.payload([event])))  # Meta redelivers
    undone = {**event, "reaction": {**event["reaction"], "action": "unreact"}}
    [removed] = parse(*HOOKS.signed(HOOKS.payload([undone])))
    assert first.platform_message_id == again.platform_message_id != "m_ours"
    assert removed.platform_message_id != first.platform_message_id


def test_edits_of_one_message_get_one_id_each() -> None:
    edit = MESSENGER_SAMPLES["edit"]["message_edit"]
    ids = {
        parse(
            *HOOKS.signed(HOOKS.payload([HOOKS.event(PSID, message_edit={**edit, "num_edit": n})]))
        )[0].platform_message_id
        for n in (1, 2)
    }
    assert len(ids) == 2


def test_an_unknown_event_is_other() -> None:
    [message] = parse(*HOOKS.signed(HOOKS.payload([HOOKS.event(PSID, hologram={"x": 1})])))
    assert message.kind == "other"
    assert "hologram" in message.attachments[0]["keys"]


def test_several_attachments_in_one_message_are_all_kept() -> None:
    attachments = [
        {"type": "image", "payload": {"url": "https://a.example/1.jpg"}},
        {"type": "image", "payload": {"url": "https://a.example/2.jpg"}},
    ]
    event = HOOKS.event(PSID, message={"mid": "m_2", "attachments": attachments})
    [message] = parse(*HOOKS.signed(HOOKS.payload([event])))
    assert [a["url"] for a in message.attachments] == [
        "https://a.example/1.jpg",
        "https://a.example/2.jpg",
    ]


@pytest.mark.parametrize("body", [b"{", b"\xff", b"[]", b"3"])
def test_a_malformed_body_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse(*sign(MESSENGER_SECRET, body))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
ATTACHMENT = st.fixed_dictionaries(
    {"type": st.sampled_from(["image", "audio", "video", "file", "location", "fallback", "x"])},
    optional={
        "payload": JSON
        | st.fixed_dictionaries(
            {}, optional={"url": JSON, "sticker_id": JSON, "coordinates": JSON}
        ),
        "title": JSON,
        "URL": JSON,
    },
)
MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "mid": JSON,
        "text": JSON,
        "attachments": st.lists(ATTACHMENT, max_size=2) | JSON,
        "quick_reply": JSON,
        "is_echo": JSON,
    },
)
EVENT = st.fixed_dictionaries(
    {"sender": st.just({"id": PSID}) | JSON},
    optional={
        "message": MESSAGE | JSON,
        "postback": JSON,
        "reaction": JSON,
        "message_edit": JSON,
        "read": JSON,
        "timestamp": JSON,
        "other": JSON,
    },
)
WELL_FORMED = st.fixed_dictionaries(
    {
        "object": st.just("page"),
        "entry": st.lists(
            st.fixed_dictionaries({"messaging": st.lists(EVENT | JSON, min_size=1, max_size=3)}),
            min_size=1,
            max_size=2,
        ),
    }
)
# Each level may also be anything at all.
MISSHAPEN = st.fixed_dictionaries(
    {
        "object": st.just("page") | JSON,
        "entry": st.lists(st.fixed_dictionaries({"messaging": JSON | st.lists(JSON)}) | JSON)
        | JSON,
    }
)
PAYLOAD = WELL_FORMED | MISSHAPEN | st.dictionaries(st.text(max_size=8), JSON)


@given(PAYLOAD)
def test_parse_never_raises_on_signed_json(payload: dict[str, Any]) -> None:
    for message in parse(*HOOKS.signed(payload)):
        assert message.platform_message_id and message.customer.external_id
        assert isinstance(message.text, str)
        assert message.kind in MEDIA_KINDS | EVENT_KINDS | {"text"}
        json.dumps([list(message.attachments), dict(message.reply_to)])


# -- render ------------------------------------------------------------------------------------


def answer(text: str) -> OutboundMessage:
    return OutboundMessage(ReplyType.ANSWER, text)


@given(st.text(min_size=1, max_size=5000))
def test_render_splits_within_the_limit_and_loses_nothing(text: str) -> None:
    parts = adapter().render(answer(text))
    assert all(0 < len(part) <= MessengerChannel.MAX_CHARS for part in parts)
    assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)


def test_a_short_answer_is_one_part_as_is() -> None:
    text = "Reset the router.\nSources: [1] Router FAQ https://example.com/faq"
    assert adapter().render(answer(text)) == [text]


# -- send --------------------------------------------------------------------------------------


async def test_send_posts_the_documented_request(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    sent = await adapter(session, graph.url).send(REPLY_TO, "Your order ships today.", agent=False)
    [call] = graph.calls
    assert sent.platform_message_id and sent.platform_message_id.startswith("m_")
    assert (call.method, call.path) == ("POST", "/me/messages")  # the fake checked the token
    assert call.json == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {"text": "Your order ships today."},
    }


async def test_an_agent_reply_uses_the_human_agent_tag(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    await adapter(session, graph.url).send(REPLY_TO, "Hi, Sam here.", agent=True)
    assert graph.calls[0].json == {
        "recipient": {"id": PSID},
        "messaging_type": "MESSAGE_TAG",
        "tag": "HUMAN_AGENT",
        "message": {"text": "Hi, Sam here."},
    }


async def send_error(graph: FakeGraph, session: aiohttp.ClientSession, **secrets: str) -> SendError:
    with pytest.raises(SendError) as caught:
        await adapter(session, graph.url, **secrets).send(REPLY_TO, "hello", agent=False)
    return caught.value


async def test_429_with_retry_after_is_retryable(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    graph.fail_next(
        429,
        body=graph_error(613, "Calls to this api have exceeded the rate limit"),
        headers={"Retry-After": "12"},
    )
    error = await send_error(graph, session)
    assert (error.retryable, error.retry_after, error.status) == (True, 12.0, 429)


@pytest.mark.parametrize("code", [613, 1200, 32])
async def test_throttling_codes_are_retryable(
    graph: FakeGraph, session: aiohttp.ClientSession, code: int
) -> None:
    graph.fail_next(400, body=graph_error(code))
    assert (await send_error(graph, session)).retryable


async def test_5xx_is_retryable(graph: FakeGraph, session: aiohttp.ClientSession) -> None:
    graph.fail_next(503, body="upstream unavailable")
    error = await send_error(graph, session)
    assert (error.retryable, error.status) == (True, 503)


async def test_outside_the_window_is_permanent(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    graph.fail_next(
        400,
        body=graph_error(
            10, "This message is sent outside of allowed window.", error_subcode=2018278
        ),
    )
    error = await send_error(graph, session)
    assert (error.retryable, error.status) == (False, 400)


async def test_a_wrong_page_token_is_permanent(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    error = await send_error(graph, session, access_token="expired")
    assert (error.retryable, error.status) == (False, 401)


async def test_connection_refused_is_retryable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SendError) as caught:
        await adapter(session, f"http://127.0.0.1:{port}").send(REPLY_TO, "x", agent=False)
    assert caught.value.retryable


async def test_a_reply_to_without_psid_is_permanent(session: aiohttp.ClientSession) -> None:
    with pytest.raises(SendError) as caught:
        await adapter(session).send({}, "x", agent=False)
    assert not caught.value.retryable


# -- declarations ------------------------------------------------------------------------------


def test_declarations() -> None:
    assert MessengerChannel.name == "messenger"
    assert MessengerChannel.MAX_CHARS == 2000
    window = MessengerChannel.WINDOW
    assert window == Window(timedelta(hours=24), timedelta(days=7))
    assert dict(MessengerChannel.SECRETS) == {
        "app_secret": "PROMPTLY_MESSENGER_APP_SECRET",
        "access_token": "PROMPTLY_MESSENGER_PAGE_TOKEN",
        "verify_token": "PROMPTLY_MESSENGER_VERIFY_TOKEN",
    }
    assert adapter().api_base == GRAPH_API
