"""Twilio adapter (SMS and WhatsApp through Twilio) against the fake Twilio API (no gateway)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from bot.channels.base import EVENT_KINDS, MEDIA_KINDS, OutboundMessage, ReplyType
from bot.channels.platform import Response, SendError, Webhook, Window
from bot.channels.twilio import TWILIO_API, TwilioChannel, strip_markdown
from bot.errors import BadRequest, Unauthorized
from tests.fakes.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SAMPLES,
    SMS_NUMBER,
    WEBHOOK_URL,
    WHATSAPP_NUMBER,
    FakeTwilio,
    twilio_error,
)

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
SECRETS = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN}
HOOKS = FakeTwilio()  # its webhook builders need no server
SMS_REPLY_TO = {"to": "+447700900123", "from": SMS_NUMBER}
WHATSAPP_REPLY_TO = {"to": "whatsapp:+447700900123", "from": WHATSAPP_NUMBER}


def adapter(session: Any = None, api_base: str = "", **secrets: str) -> TwilioChannel:
    return TwilioChannel({**SECRETS, **secrets}, {}, session, api_base)


def hook(headers: dict[str, str], body: bytes, url: str = WEBHOOK_URL) -> Webhook:
    return Webhook(
        method="POST",
        url=url,
        headers=CIMultiDict(headers),
        query={},
        body=body,
        received_at=NOW,
    )


def parse(headers: dict[str, str], body: bytes, url: str = WEBHOOK_URL) -> list[Any]:
    channel = adapter()
    request = hook(headers, body, url)
    assert channel.verify(request) is None
    return channel.parse(request)


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# -- verify ------------------------------------------------------------------------------------


def test_a_good_signature_passes() -> None:
    assert adapter().verify(hook(*HOOKS.signed_update("hi"))) is None


def test_the_url_query_is_signed_too() -> None:
    url = WEBHOOK_URL + "?tenant=acme&x=1"
    assert adapter().verify(hook(*HOOKS.signed_update("hi", url=url), url=url)) is None


@pytest.mark.parametrize(
    ("signed_url", "called_url"),
    [
        ("https://promptly.example.com:443/webhooks/twilio", WEBHOOK_URL),
        (WEBHOOK_URL, "https://promptly.example.com:443/webhooks/twilio"),
    ],
)
def test_the_default_port_may_be_there_or_not(signed_url: str, called_url: str) -> None:
    headers, body = HOOKS.signed_update("hi", url=signed_url)
    assert adapter().verify(hook(headers, body, called_url)) is None


def test_a_missing_signature_is_refused() -> None:
    headers, body = HOOKS.signed_update("hi")
    del headers["X-Twilio-Signature"]
    with pytest.raises(Unauthorized) as caught:
        adapter().verify(hook(headers, body))
    assert caught.value.code == "signature_missing"


def test_a_bad_signature_is_refused() -> None:
    headers, body = HOOKS.signed_update("hi")
    other_url = "https://evil.example.com/webhooks/twilio"
    for request in (
        hook(headers, body.replace(b"hi", b"ho")),
        hook(headers, body + b"&Extra=1"),
        hook(headers, body, other_url),
        hook(FakeTwilio(auth_token="other-token").signed_update("hi")[0], body),
        hook(headers, body, "https://promptly.example.com:8443/webhooks/twilio"),
    ):
        with pytest.raises(Unauthorized) as caught:
            adapter().verify(request)
        assert caught.value.code == "signature_invalid"


def test_a_body_that_is_not_utf8_is_a_bad_request() -> None:
    with pytest.raises((BadRequest, Unauthorized)):
        adapter().verify(hook({"X-Twilio-Signature": "x"}, b"Body=\xff"))
    with pytest.raises(BadRequest):
        adapter().parse(hook({}, b"Body=\xff"))


def test_ok_is_empty_twiml() -> None:
    assert adapter().ok() == Response(
        200, '<?xml version="1.0" encoding="UTF-8"?><Response></Response>', "text/xml"
    )


# -- parse -------------------------------------------------------------------------------------


def test_an_sms() -> None:
    [message] = parse(
        *HOOKS.signed_update(
            "Where is my order?", user_id="+447700900123", message_id="SM" + "a" * 32
        )
    )
    assert message.channel == "twilio"
    assert message.platform_message_id == "SM" + "a" * 32
    assert (message.text, message.kind, message.attachments) == ("Where is my order?", "text", ())
    assert message.received_at == NOW
    assert message.reply_to == SMS_REPLY_TO
    customer = message.customer
    assert (customer.external_id, customer.phone, customer.verified) == (
        "+447700900123",
        "+447700900123",
        True,
    )


def test_a_whatsapp_message() -> None:
    [message] = parse(*HOOKS.signed_update("Hi", user_id="whatsapp:+447700900123"))
    customer = message.customer
    assert (customer.external_id, customer.name) == ("whatsapp:+447700900123", "Ada Lovelace")
    assert (customer.phone, customer.verified) == ("+447700900123", True)
    assert message.reply_to == WHATSAPP_REPLY_TO


def test_a_sender_that_is_not_a_phone_number_is_not_verified() -> None:
    [message] = parse(*HOOKS.signed_update("Hi", user_id="messenger:123456"))
    assert (message.customer.phone, message.customer.verified) == (None, False)


def test_a_status_callback_is_not_a_message() -> None:
    assert parse(*HOOKS.signed_status("SM" + "b" * 32, "delivered")) == []


EXPECTED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "image": ("image", "my router", {"mime_type": "image/jpeg", "caption": "my router"}),
    "audio": ("audio", "", {"url": "https://api.twilio.com/media/ME2"}),
    "video": ("video", "", {"mime_type": "video/mp4"}),
    "file": ("file", "", {"mime_type": "application/pdf"}),
    "contact": ("contact", "", {"mime_type": "text/vcard"}),
    "two_images": ("image", "", {"url": "https://api.twilio.com/media/ME6"}),
    "location": ("location", "", {"latitude": "51.5072", "name": "Head office"}),
    "button": ("text", "Talk to a person", {"kind": "reply", "id": "agent"}),
    "unknown": ("other", "", {"type": "reaction"}),
}


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_every_kind_is_described(sample: str) -> None:
    kind, text, described = EXPECTED[sample]
    [message] = parse(*HOOKS.signed_message(sample, message_id="MM" + "c" * 32))
    assert message.platform_message_id == "MM" + "c" * 32
    assert (message.kind, message.text) == (kind, text)
    assert message.kind in MEDIA_KINDS | EVENT_KINDS | {"text"}
    assert described.items() <= message.attachments[0].items()
    json.dumps(list(message.attachments))


def test_every_media_item_is_kept() -> None:
    [message] = parse(*HOOKS.signed_message("two_images"))
    assert [a["url"] for a in message.attachments] == [
        "https://api.twilio.com/media/ME6",
        "https://api.twilio.com/media/ME7",
    ]


FIELDS = [
    "MessageSid",
    "SmsMessageSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "MediaUrl0",
    "MediaContentType0",
    "MediaContentType1",
    "Latitude",
    "Longitude",
    "ButtonText",
    "MessageType",
    "SmsStatus",
    "MessageStatus",
    "ProfileName",
]
VALUES = st.text(max_size=20) | st.sampled_from(
    ["3", "-1", "१", "10000", "received", "+447700900123", "whatsapp:+447700900123", "image/png"]
)
MESSAGE_FORM = st.fixed_dictionaries(
    {"MessageSid": st.text(min_size=1, max_size=34), "From": VALUES},
    optional={name: VALUES for name in FIELDS if name not in ("MessageSid", "From")},
)
FORM = MESSAGE_FORM | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), VALUES)


@given(FORM)
def test_parse_never_raises_on_a_signed_form(params: dict[str, str]) -> None:
    for message in parse(*HOOKS.signed(params)):
        assert message.platform_message_id and message.customer.external_id
        assert isinstance(message.text, str)
        assert message.kind in MEDIA_KINDS | EVENT_KINDS | {"text"}
        json.dumps([list(message.attachments), dict(message.reply_to)])


@given(st.binary(max_size=200))
def test_any_body_is_verified_or_refused_never_crashes(body: bytes) -> None:
    try:
        adapter().verify(hook({"X-Twilio-Signature": "c2lnbmF0dXJl"}, body))
    except (Unauthorized, BadRequest):
        return
    raise AssertionError("a made-up signature passed")


# -- render ------------------------------------------------------------------------------------


def answer(text: str) -> OutboundMessage:
    return OutboundMessage(ReplyType.ANSWER, text)


def test_sms_strips_markdown_and_keeps_urls_intact() -> None:
    text = (
        "## Reset\n**Hold** the _reset_ button for `10 s`.\n"
        "* See [the router FAQ](https://example.com/router_faq_v2) or https://example.com/a_b_c."
    )
    assert strip_markdown(text) == (
        "Reset\nHold the reset button for 10 s.\n"
        "- See the router FAQ (https://example.com/router_faq_v2) or https://example.com/a_b_c."
    )


def test_sms_keeps_plain_text_and_snake_case() -> None:
    text = "Order 4*5 = 20, file my_file_name.txt, 2 * 3 and a_b."
    assert strip_markdown(text) == text


def test_a_bare_link_is_its_url() -> None:
    assert strip_markdown("[https://x.example](https://x.example)") == "https://x.example"


def test_render_is_sms_and_render_for_knows_whatsapp() -> None:
    text = "**Bold** answer " + "word " * 100
    channel = adapter()
    sms = channel.render(answer(text))
    assert sms == channel.render_for(answer(text), SMS_REPLY_TO)
    assert sms[0].startswith("Bold answer") and all(len(p) <= 320 for p in sms)
    assert len(sms) == 2
    assert channel.render_for(answer(text), WHATSAPP_REPLY_TO) == [text.strip()]


@given(st.text(min_size=1, max_size=3000))
def test_sms_parts_fit_and_lose_no_plain_text(text: str) -> None:
    channel = adapter()
    parts = channel.render(answer(text))
    assert all(0 < len(part) <= TwilioChannel.MAX_CHARS for part in parts)
    stripped = strip_markdown(text)
    assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", stripped)


@given(st.text(alphabet=st.characters(blacklist_characters="*_`#>[]~+"), min_size=1, max_size=3000))
def test_sms_without_markup_is_unchanged_apart_from_splitting(text: str) -> None:
    parts = adapter().render(answer(text))
    assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)


@given(st.text(min_size=1, max_size=5000))
def test_whatsapp_parts_fit_and_lose_nothing(text: str) -> None:
    parts = adapter().render_for(answer(text), WHATSAPP_REPLY_TO)
    assert all(0 < len(part) <= TwilioChannel.WHATSAPP_MAX_CHARS for part in parts)
    assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)


def test_limits_and_windows_follow_the_address() -> None:
    channel = adapter()
    assert channel.max_chars_for(SMS_REPLY_TO) == 320
    assert channel.max_chars_for(WHATSAPP_REPLY_TO) == 1600
    assert channel.window_for(SMS_REPLY_TO) == Window()
    day = timedelta(hours=24)
    assert channel.window_for(WHATSAPP_REPLY_TO) == Window(day, day)


# -- send --------------------------------------------------------------------------------------


async def test_send_posts_the_documented_request(
    twilio: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    sent = await adapter(session, twilio.url).send(SMS_REPLY_TO, "Ships today.", agent=False)
    [call] = twilio.calls
    assert sent.platform_message_id and sent.platform_message_id.startswith("SM")
    assert (call.method, call.path) == ("POST", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    credentials = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert call.headers["Authorization"] == f"Basic {credentials}"
    assert call.form == {"To": "+447700900123", "From": SMS_NUMBER, "Body": "Ships today."}


async def test_whatsapp_goes_from_the_whatsapp_number(
    twilio: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    await adapter(session, twilio.url).send(WHATSAPP_REPLY_TO, "Hi, Sam here.", agent=True)
    assert twilio.calls[0].form == {
        "To": "whatsapp:+447700900123",
        "From": WHATSAPP_NUMBER,
        "Body": "Hi, Sam here.",
    }


async def send_error(
    twilio: FakeTwilio, session: aiohttp.ClientSession, **secrets: str
) -> SendError:
    with pytest.raises(SendError) as caught:
        await adapter(session, twilio.url, **secrets).send(SMS_REPLY_TO, "hello", agent=False)
    return caught.value


async def test_429_with_retry_after_is_retryable(
    twilio: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    twilio.fail_next(
        429, body=twilio_error(429, 20429, "Too Many Requests"), headers={"Retry-After": "3"}
    )
    error = await send_error(twilio, session)
    assert (error.retryable, error.retry_after, error.status) == (True, 3.0, 429)


async def test_5xx_is_retryable(twilio: FakeTwilio, session: aiohttp.ClientSession) -> None:
    twilio.fail_next(500, body=twilio_error(500, 20500, "Internal Server Error"))
    error = await send_error(twilio, session)
    assert (error.retryable, error.status) == (True, 500)


async def test_400_is_permanent(twilio: FakeTwilio, session: aiohttp.ClientSession) -> None:
    twilio.fail_next(400, body=twilio_error(400, 21211, "Invalid 'To' Phone Number"))
    error = await send_error(twilio, session)
    assert (error.retryable, error.status) == (False, 400)


async def test_a_wrong_auth_token_is_permanent(
    twilio: FakeTwilio, session: aiohttp.ClientSession
) -> None:
    error = await send_error(twilio, session, auth_token="wrong")
    assert (error.retryable, error.status) == (False, 401)


async def test_connection_refused_is_retryable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SendError) as caught:
        await adapter(session, f"http://127.0.0.1:{port}").send(SMS_REPLY_TO, "x", agent=False)
    assert caught.value.retryable


async def test_a_reply_to_without_from_is_permanent(session: aiohttp.ClientSession) -> None:
    with pytest.raises(SendError) as caught:
        await adapter(session).send({"to": "+447700900123"}, "x", agent=False)
    assert not caught.value.retryable


# -- declarations ------------------------------------------------------------------------------


def test_declarations() -> None:
    assert TwilioChannel.name == "twilio"
    assert dict(TwilioChannel.SECRETS) == {
        "account_sid": "PROMPTLY_TWILIO_ACCOUNT_SID",
        "auth_token": "PROMPTLY_TWILIO_AUTH_TOKEN",
    }
    assert adapter().api_base == TWILIO_API


def test_form_parameters_are_signed_sorted_by_name() -> None:
    # The documented algorithm, spelled out: URL + name1value1 + name2value2... (sorted).
    params = {"To": "+15005550006", "Body": "hi", "From": "+447700900123", "MessageSid": "SM1"}
    data = WEBHOOK_URL + "Bodyhi" + "From+447700900123" + "MessageSidSM1" + "To+15005550006"
    expected = base64.b64encode(hmac.new(AUTH_TOKEN.encode(), data.encode(), hashlib.sha1).digest())
    body = urlencode(params).encode()
    headers = {"X-Twilio-Signature": expected.decode()}
    assert adapter().verify(hook(headers, body)) is None
