"""WhatsApp Cloud API adapter against the fake Graph API (no gateway)."""

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
from bot.channels.meta import GRAPH_API
from bot.channels.platform import Response, SendError, Webhook, Window
from bot.channels.whatsapp import WhatsAppChannel
from bot.errors import BadRequest, Forbidden, Unauthorized
from tests.fakes.meta import (
    PHONE_NUMBER_ID,
    VERIFY_TOKEN,
    WHATSAPP_SAMPLES,
    WHATSAPP_SECRET,
    WHATSAPP_TOKEN,
    FakeGraph,
    WhatsAppHooks,
    challenge_query,
    graph_error,
    sign,
)

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
SECRETS = {
    "app_secret": WHATSAPP_SECRET,
    "access_token": WHATSAPP_TOKEN,
    "verify_token": VERIFY_TOKEN,
}
HOOKS = WhatsAppHooks()
REPLY_TO = {"to": "447700900123", "phone_number_id": PHONE_NUMBER_ID}


def adapter(session: Any = None, api_base: str = "", **secrets: str) -> WhatsAppChannel:
    return WhatsAppChannel({**SECRETS, **secrets}, {}, session, api_base)


def hook(
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    method: str = "POST",
    query: dict[str, str] | None = None,
) -> Webhook:
    return Webhook(
        method=method,
        url="https://promptly.example.com/webhooks/whatsapp",
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


def test_a_signature_in_upper_case_hex_passes() -> None:
    headers, body = HOOKS.signed_update("hi")
    headers["X-Hub-Signature-256"] = "sha256=" + headers["X-Hub-Signature-256"][7:].upper()
    assert adapter().verify(hook(headers, body)) is None


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Hub-Signature-256": ""}],
    ids=["missing", "empty"],
)
def test_a_missing_signature_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized) as caught:
        adapter().verify(hook(headers, b'{"object":"whatsapp_business_account"}'))
    assert caught.value.code == "signature_missing"


def test_a_bad_signature_is_refused() -> None:
    headers, body = HOOKS.signed_update("hi")
    for tampered in (
        (headers, body.replace(b"hi", b"ho")),
        (sign("another-secret", body)[0], body),
        ({"X-Hub-Signature-256": headers["X-Hub-Signature-256"][7:]}, body),  # no sha256=
        ({"X-Hub-Signature-256": "sha1=" + headers["X-Hub-Signature-256"][7:]}, body),
    ):
        with pytest.raises(Unauthorized) as caught:
            adapter().verify(hook(*tampered))
        assert caught.value.code == "signature_invalid"


def test_the_subscription_challenge_is_echoed() -> None:
    answer = adapter().verify(hook(method="GET", query=challenge_query(challenge="8765")))
    assert answer == Response(200, "8765", "text/plain")


@pytest.mark.parametrize(
    "query",
    [
        challenge_query(token="wrong"),
        {**challenge_query(), "hub.mode": "unsubscribe"},
        {"hub.challenge": "1"},
    ],
    ids=["wrong token", "wrong mode", "no token"],
)
def test_a_wrong_challenge_is_forbidden(query: dict[str, str]) -> None:
    with pytest.raises(Forbidden):
        adapter().verify(hook(method="GET", query=query))


def test_a_challenge_without_challenge_is_a_bad_request() -> None:
    query = challenge_query()
    del query["hub.challenge"]
    with pytest.raises(BadRequest):
        adapter().verify(hook(method="GET", query=query))


# -- parse -------------------------------------------------------------------------------------


def test_a_text_message() -> None:
    [message] = parse(
        *HOOKS.signed_update("Where is my order?", user_id="447700900123", message_id="wamid.A1")
    )
    assert message.channel == "whatsapp"
    assert message.platform_message_id == "wamid.A1"
    assert message.text == "Where is my order?"
    assert message.kind == "text"
    assert message.received_at == NOW
    assert message.attachments == ()
    assert message.reply_to == REPLY_TO
    customer = message.customer
    assert (customer.external_id, customer.name) == ("447700900123", "Ada Lovelace")
    assert (customer.phone, customer.verified) == ("+447700900123", True)


def test_a_batch_returns_every_message_of_every_entry_and_change() -> None:
    first = HOOKS.payload(
        [
            HOOKS.message("text", {"body": "one"}, user_id="111111111", message_id="wamid.1"),
            HOOKS.message("text", {"body": "two"}, user_id="222222222", message_id="wamid.2"),
        ],
        names={"111111111": "One", "222222222": "Two"},
    )
    second = WhatsAppHooks(phone_number_id="999").payload(
        [HOOKS.message("text", {"body": "three"}, user_id="333333333", message_id="wamid.3")]
    )
    first["entry"][0]["changes"].append(second["entry"][0]["changes"][0])
    first["entry"].append(second["entry"][0])
    messages = parse(*HOOKS.signed(first))
    assert [m.text for m in messages] == ["one", "two", "three", "three"]
    assert [m.customer.name for m in messages] == ["One", "Two", None, None]
    assert messages[2].reply_to == {"to": "333333333", "phone_number_id": "999"}


def test_delivery_receipts_are_not_messages() -> None:
    assert parse(*HOOKS.signed_status("wamid.ours", "read")) == []


def test_other_objects_are_ignored() -> None:
    assert parse(*HOOKS.signed({"object": "page", "entry": []})) == []


EXPECTED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "image": ("image", "my router", {"id": "1479537139650973", "mime_type": "image/jpeg"}),
    "sticker": ("sticker", "", {"id": "1030000000000001", "mime_type": "image/webp"}),
    "voice": ("voice", "", {"id": "1030000000000002"}),
    "audio": ("audio", "", {"id": "1030000000000003", "mime_type": "audio/mpeg"}),
    "video": ("video", "it blinks", {"caption": "it blinks", "mime_type": "video/mp4"}),
    "file": ("file", "invoice", {"filename": "invoice-42.pdf", "mime_type": "application/pdf"}),
    "location": ("location", "", {"latitude": 51.5072, "name": "Head office"}),
    "contact": ("contact", "", {"name": "Grace Hopper", "phones": ["+1 555 0100"]}),
    "reaction": ("reaction", "", {"message_id": "wamid.HBgLMTU1NTAxMDAVAgARGBI=", "emoji": "👍"}),
    "button_reply": ("text", "Yes please", {"kind": "reply", "id": "yes"}),
    "list_reply": ("text", "Billing", {"kind": "reply", "id": "billing"}),
    "button": ("text", "Talk to a person", {"kind": "reply", "id": "talk_to_agent"}),
    "unsupported": ("other", "", {"type": "unsupported"}),
}


@pytest.mark.parametrize("sample", sorted(WHATSAPP_SAMPLES))
def test_every_message_type_is_described(sample: str) -> None:
    kind, text, described = EXPECTED[sample]
    [message] = parse(*HOOKS.signed_message(sample, message_id=f"wamid.{sample}"))
    assert (message.kind, message.text) == (kind, text)
    assert message.platform_message_id == f"wamid.{sample}"
    assert message.kind in MEDIA_KINDS | EVENT_KINDS | {"text"}
    attachment = message.attachments[0]
    assert attachment["kind"] in (kind, "reply")
    assert described.items() <= attachment.items()
    json.dumps(list(message.attachments))


def test_an_unknown_type_is_other_and_keeps_its_content() -> None:
    message = HOOKS.message("hologram", {"depth": 3}, user_id="447700900123")
    [parsed] = parse(*HOOKS.signed(HOOKS.payload([message])))
    assert parsed.kind == "other"
    assert parsed.attachments[0]["data"] == {"depth": 3}


def test_a_message_without_sender_or_id_is_skipped() -> None:
    message = HOOKS.message("text", {"body": "x"}, user_id="447700900123")
    del message["id"]
    assert parse(*HOOKS.signed(HOOKS.payload([message]))) == []


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"'])
def test_a_malformed_body_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse(*sign(WHATSAPP_SECRET, body))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
TYPES = st.sampled_from(sorted({t for t, _ in WHATSAPP_SAMPLES.values()} | {"text", "order", ""}))
MESSAGE = st.fixed_dictionaries(
    {"from": st.just("447700900123") | JSON, "id": st.just("wamid.x") | JSON, "type": TYPES},
    optional={
        **{t: JSON for t, _ in WHATSAPP_SAMPLES.values()},
        "text": st.fixed_dictionaries({}, optional={"body": JSON}),
        "interactive": st.fixed_dictionaries(
            {"type": st.sampled_from(["button_reply", "list_reply", "x"]) | JSON},
            optional={"button_reply": JSON, "list_reply": JSON},
        ),
        "errors": JSON,
    },
)
VALUE = st.fixed_dictionaries(
    {"messages": st.lists(MESSAGE | JSON, min_size=1, max_size=3)},
    optional={
        "contacts": st.lists(
            st.fixed_dictionaries({"wa_id": JSON, "profile": JSON | st.just({"name": "A"})})
        )
        | JSON,
        "metadata": JSON | st.just({"phone_number_id": PHONE_NUMBER_ID}),
        "statuses": JSON,
    },
)
WELL_FORMED = st.fixed_dictionaries(
    {
        "object": st.just("whatsapp_business_account"),
        "entry": st.lists(
            st.fixed_dictionaries(
                {"changes": st.lists(st.fixed_dictionaries({"value": VALUE}), min_size=1)}
            ),
            min_size=1,
            max_size=2,
        ),
    }
)
# Each level may also be anything at all.
MISSHAPEN = st.fixed_dictionaries(
    {
        "object": st.just("whatsapp_business_account") | JSON,
        "entry": st.lists(st.fixed_dictionaries({"changes": JSON | st.lists(JSON)}) | JSON) | JSON,
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


def test_render_leaves_whatsapp_formatting_alone() -> None:
    text = "*Reset* your router: hold _reset_ for 10 s.\n\nSee https://example.com/a_b_c"
    assert adapter().render(answer(text)) == [text]


@given(st.text(min_size=1, max_size=9000))
def test_render_splits_within_the_limit_and_loses_nothing(text: str) -> None:
    parts = adapter().render(answer(text))
    assert all(0 < len(part) <= WhatsAppChannel.MAX_CHARS for part in parts)
    assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)


def test_a_long_answer_is_split_at_paragraphs() -> None:
    paragraphs = ["word " * 600, "more " * 600]
    parts = adapter().render(answer("\n\n".join(p.strip() for p in paragraphs)))
    assert [p.split() for p in parts] == [p.split() for p in paragraphs]


# -- send --------------------------------------------------------------------------------------


async def test_send_posts_the_documented_request(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    sent = await adapter(session, graph.url).send(REPLY_TO, "Your order ships today.", agent=False)
    [call] = graph.calls
    assert sent.platform_message_id and sent.platform_message_id.startswith("wamid.")
    assert (call.method, call.path) == ("POST", f"/{PHONE_NUMBER_ID}/messages")
    assert call.headers["Authorization"] == f"Bearer {WHATSAPP_TOKEN}"
    assert call.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "447700900123",
        "type": "text",
        "text": {"body": "Your order ships today.", "preview_url": False},
    }
    assert graph.texts() == ["Your order ships today."]


async def test_an_agent_reply_is_the_same_request(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    await adapter(session, graph.url).send(REPLY_TO, "Hi, Sam here.", agent=True)
    assert graph.calls[0].json["type"] == "text"


async def send_error(graph: FakeGraph, session: aiohttp.ClientSession, **secrets: str) -> SendError:
    with pytest.raises(SendError) as caught:
        await adapter(session, graph.url, **secrets).send(REPLY_TO, "hello", agent=False)
    return caught.value


async def test_429_with_retry_after_is_retryable(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    graph.fail_next(
        429, body=graph_error(4, "Application request limit reached"), headers={"Retry-After": "7"}
    )
    error = await send_error(graph, session)
    assert (error.retryable, error.retry_after, error.status) == (True, 7.0, 429)


@pytest.mark.parametrize("code", [130429, 131056, 80007, 4])
async def test_rate_limit_codes_are_retryable_despite_http_400(
    graph: FakeGraph, session: aiohttp.ClientSession, code: int
) -> None:
    graph.fail_next(400, body=graph_error(code, "Rate limit hit"))
    error = await send_error(graph, session)
    assert (error.retryable, error.status) == (True, 400)


async def test_a_transient_error_is_retryable(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    graph.fail_next(400, body=graph_error(1, "An unknown error occurred", is_transient=True))
    assert (await send_error(graph, session)).retryable


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retryable(
    graph: FakeGraph, session: aiohttp.ClientSession, status: int
) -> None:
    graph.fail_next(status, body=graph_error(2, "Service temporarily unavailable"))
    error = await send_error(graph, session)
    assert (error.retryable, error.status) == (True, status)


async def test_400_is_permanent(graph: FakeGraph, session: aiohttp.ClientSession) -> None:
    graph.fail_next(400, body=graph_error(131047, "Re-engagement message"))
    error = await send_error(graph, session)
    assert (error.retryable, error.status) == (False, 400)


async def test_a_wrong_token_is_permanent(graph: FakeGraph, session: aiohttp.ClientSession) -> None:
    error = await send_error(graph, session, access_token="expired")
    assert (error.retryable, error.status) == (False, 401)


async def test_an_error_body_with_200_is_an_error(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    graph.fail_next(200, body=graph_error(130429, "Rate limit hit"))
    assert (await send_error(graph, session)).retryable


async def test_connection_refused_is_retryable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SendError) as caught:
        await adapter(session, f"http://127.0.0.1:{port}").send(REPLY_TO, "x", agent=False)
    assert caught.value.retryable


async def test_a_reply_to_without_phone_number_id_is_permanent(
    session: aiohttp.ClientSession,
) -> None:
    with pytest.raises(SendError) as caught:
        await adapter(session).send({"to": "447700900123"}, "x", agent=False)
    assert not caught.value.retryable


# -- declarations ------------------------------------------------------------------------------


def test_declarations() -> None:
    assert WhatsAppChannel.name == "whatsapp"
    assert WhatsAppChannel.MAX_CHARS == 4096
    window = WhatsAppChannel.WINDOW
    assert window == Window(timedelta(hours=24), timedelta(hours=24))
    assert dict(WhatsAppChannel.SECRETS) == {
        "app_secret": "PROMPTLY_WHATSAPP_APP_SECRET",
        "access_token": "PROMPTLY_WHATSAPP_ACCESS_TOKEN",
        "verify_token": "PROMPTLY_WHATSAPP_VERIFY_TOKEN",
    }
    assert adapter().api_base == GRAPH_API
