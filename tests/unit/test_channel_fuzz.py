"""Every channel's ``parse`` on hostile input: arbitrary JSON, and the platforms' own payloads
with any part replaced by arbitrary JSON or dropped. A parse may refuse (the documented
``BadRequest``; the web channel any ``RequestError``) or find no message, never crash: a crash
would be a 500 the platform retries forever, or a socket that dies on one frame."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, cast
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from bot.channels.base import InboundMessage
from bot.channels.email import parse_email
from bot.channels.messenger import MessengerChannel
from bot.channels.platform import Webhook, WebhookChannel
from bot.channels.slack import SlackChannel
from bot.channels.telegram import TelegramChannel
from bot.channels.twilio import TwilioChannel
from bot.channels.web import parse_message
from bot.channels.whatsapp import WhatsAppChannel
from bot.errors import BadRequest, RequestError
from tests.fakes import telegram as telegram_content
from tests.fakes.meta import MESSENGER_SAMPLES, WHATSAPP_SAMPLES, MessengerHooks, WhatsAppHooks
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
FORM = "application/x-www-form-urlencoded"
FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
_DROP = object()

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


def mutated(value: Any) -> st.SearchStrategy[Any]:
    """``value`` with any part (one in ten, at every depth) replaced by arbitrary JSON, and
    dictionary keys sometimes dropped: the shapes a parser has to survive."""
    if isinstance(value, dict):
        kept = st.fixed_dictionaries({k: _maybe_dropped(v) for k, v in value.items()})
        same: st.SearchStrategy[Any] = kept.map(
            lambda d: {k: v for k, v in d.items() if v is not _DROP}
        )
    elif isinstance(value, list):
        same = st.tuples(*(mutated(v) for v in value)).map(list)
    else:
        same = st.just(value)
    return st.integers(0, 9).flatmap(lambda n: json_values if n == 0 else same)


def _maybe_dropped(value: Any) -> st.SearchStrategy[Any]:
    return st.integers(0, 14).flatmap(lambda n: st.just(_DROP) if n == 0 else mutated(value))


def payloads(*seeds: bytes) -> st.SearchStrategy[Any]:
    return st.one_of(json_values, *(mutated(json.loads(seed)) for seed in seeds))


def hook(body: bytes, content_type: str = "application/json") -> Webhook:
    return Webhook(
        method="POST",
        url="https://promptly.example/webhooks/x",
        headers=CIMultiDictProxy(CIMultiDict({"Content-Type": content_type})),
        query={},
        body=body,
        received_at=NOW,
    )


def channel(cls: type[WebhookChannel]) -> WebhookChannel:
    secrets = {role: "fuzz-secret" for role in cls.SECRETS}
    return cls(secrets, {}, cast(aiohttp.ClientSession, None), "https://api.invalid")


def parse_or_refuse(
    adapter: WebhookChannel, body: bytes, content_type: str = "application/json"
) -> list[InboundMessage]:
    """What the webhook endpoint does with a verified body: messages, or a 400."""
    try:
        messages = adapter.parse(hook(body, content_type))
    except BadRequest:
        return []
    for message in messages:
        assert isinstance(message, InboundMessage)
        assert isinstance(message.customer.external_id, str) and message.customer.external_id
        assert isinstance(message.platform_message_id, str) and message.platform_message_id
        assert isinstance(message.text, str)
        json.dumps(message.attachments)  # stored as JSON
        json.dumps(dict(message.reply_to))
    return messages


def body_of(value: Any) -> bytes:
    return json.dumps(value).encode()


# -- seeds: the recorded-shape payloads the adapter tests use ------------------------------------

_telegram = FakeTelegram()
TELEGRAM = [
    _telegram.signed_update("Hello")[1],
    _telegram.signed_message(telegram_content.photo("look"))[1],
    _telegram.signed_message(telegram_content.contact())[1],
    _telegram.signed_message(telegram_content.document())[1],
    _telegram.signed_message(telegram_content.location())[1],
    _telegram.signed_edit("edited")[1],
    _telegram.signed_reaction()[1],
    _telegram.signed_join(1001)[1],
]
_slack = FakeSlack()
SLACK = [
    _slack.signed_update("Hello")[1],
    _slack.signed_file("see attached")[1],
    _slack.signed_edit("edited")[1],
    _slack.signed_bot_message()[1],
    _slack.signed_reaction()[1],
    _slack.signed_join()[1],
]
_whatsapp = WhatsAppHooks()
WHATSAPP = [_whatsapp.signed_update("Hello")[1]] + [
    _whatsapp.signed_message(kind)[1] for kind in WHATSAPP_SAMPLES
]
_messenger = MessengerHooks()
MESSENGER = [_messenger.signed_update("Hello")[1]] + [
    _messenger.signed_message(kind)[1] for kind in MESSENGER_SAMPLES
]


@pytest.mark.parametrize(
    ("cls", "seeds"),
    [
        (TelegramChannel, TELEGRAM),
        (SlackChannel, SLACK),
        (WhatsAppChannel, WHATSAPP),
        (MessengerChannel, MESSENGER),
    ],
    ids=["telegram", "slack", "whatsapp", "messenger"],
)
@FUZZ
@given(data=st.data())
def test_json_platforms_parse_anything_without_crashing(cls, seeds, data):
    adapter = channel(cls)
    parse_or_refuse(adapter, body_of(data.draw(payloads(*seeds))))


@pytest.mark.parametrize("cls", [TelegramChannel, SlackChannel, WhatsAppChannel, MessengerChannel])
@FUZZ
@given(body=st.binary(max_size=200))
def test_json_platforms_refuse_bytes_that_are_not_json(cls, body):
    parse_or_refuse(channel(cls), body)


_twilio = FakeTwilio()
TWILIO = [
    _twilio.params("Hello"),
    _twilio.params("Hi", user_id="whatsapp:+447700900123"),
    {**_twilio.params(""), "NumMedia": "1", "MediaUrl0": "https://x.invalid/m"},
]
form_values = st.text(max_size=30) | st.sampled_from(["0", "1", "2", "-1", "99", "received", ""])


@FUZZ
@given(
    seed=st.sampled_from(TWILIO),
    changes=st.dictionaries(
        st.sampled_from(
            [
                "From",
                "Body",
                "NumMedia",
                "MediaUrl0",
                "MediaContentType0",
                "Latitude",
                "Longitude",
                "MessageType",
                "ProfileName",
                "SmsStatus",
                "MessageSid",
                "WaId",
                "ButtonText",
                "ButtonPayload",
            ]
        )
        | st.text(max_size=12),
        form_values,
        max_size=6,
    ),
    drop=st.sets(st.sampled_from(["From", "Body", "MessageSid", "SmsMessageSid", "NumMedia"])),
)
def test_twilio_parses_any_form_without_crashing(seed, changes, drop):
    params = {k: v for k, v in {**seed, **changes}.items() if k not in drop}
    parse_or_refuse(channel(TwilioChannel), urlencode(params).encode(), FORM)


@FUZZ
@given(body=st.binary(max_size=300))
def test_twilio_parses_any_bytes_without_crashing(body):
    parse_or_refuse(channel(TwilioChannel), body, FORM)


@FUZZ
@given(
    data=payloads(
        body_of({"client_message_id": "m1", "text": "hi", "customer": {"id": "c1"}}),
        body_of(
            {
                "client_message_id": "m1",
                "text": "hi",
                "customer": {"id": "c1", "name": "Ann", "email": "a@example.com"},
                "conversation_id": "c_1",
            }
        ),
    )
)
def test_web_parses_any_json_or_names_the_problem(data):
    try:
        message = parse_message(data, 4000, NOW)
    except RequestError as e:
        assert e.status in (400, 422) and e.code and e.message
        return
    assert message.text.strip() and len(message.text) <= 4000


header_text = st.text(max_size=60)


@FUZZ
@given(
    sender=header_text,
    subject=header_text,
    extra=st.dictionaries(
        st.sampled_from(
            [
                "Auto-Submitted",
                "In-Reply-To",
                "References",
                "Message-ID",
                "Authentication-Results",
                "Reply-To",
                "Content-Type",
                "Precedence",
            ]
        ),
        header_text,
        max_size=4,
    ),
    body=st.text(max_size=200),
)
def test_email_parses_any_mail_without_crashing(sender, subject, extra, body):
    lines = [f"From: {sender}", "To: support@shop.example", f"Subject: {subject}"]
    lines += [f"{name}: {value}" for name, value in extra.items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogateescape")
    messages = parse_email(raw, NOW, address="support@shop.example")
    assert all(isinstance(m, InboundMessage) for m in messages)


@FUZZ
@given(raw=st.binary(max_size=400))
def test_email_parses_any_bytes_without_crashing(raw):
    parse_email(raw, NOW, address="support@shop.example")


def test_email_fuzz_headers_reach_the_parser():
    """The generated mails above are real mails: a plain one parses into a message."""
    mail = EmailMessage()
    mail["From"] = "Ann <ann@example.com>"
    mail["To"] = "support@shop.example"
    mail["Subject"] = "Where is my order?"
    mail.set_content("It has been a week.")
    (message,) = parse_email(bytes(mail), NOW, address="support@shop.example")
    assert "week" in message.text


@pytest.mark.parametrize(
    ("cls", "seeds"),
    [
        (TelegramChannel, TELEGRAM),
        (SlackChannel, SLACK),
        (WhatsAppChannel, WHATSAPP),
        (MessengerChannel, MESSENGER),
        (TwilioChannel, [urlencode(params).encode() for params in TWILIO]),
    ],
    ids=["telegram", "slack", "whatsapp", "messenger", "twilio"],
)
def test_the_seeds_are_messages_so_the_fuzzing_starts_deep(cls, seeds):
    content_type = FORM if cls is TwilioChannel else "application/json"
    found = [parse_or_refuse(channel(cls), seed, content_type) for seed in seeds]
    assert sum(len(messages) for messages in found) >= len(seeds) // 2
