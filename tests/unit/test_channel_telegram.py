"""The Telegram adapter against recorded-shape updates and the fake Bot API."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from bot.channels.base import OutboundMessage, ReplyType
from bot.channels.platform import SendError, Webhook
from bot.channels.telegram import SECRET_HEADER, TelegramChannel
from bot.errors import BadRequest, ConfigError, Unauthorized
from tests.fakes import telegram as content
from tests.fakes.telegram import SECRET_TOKEN, FakeTelegram

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
NO_SESSION = cast(aiohttp.ClientSession, None)


def make_channel(
    fake: FakeTelegram, session: aiohttp.ClientSession = NO_SESSION, api_base: str = ""
) -> TelegramChannel:
    secrets = {"bot_token": fake.bot_token, "secret_token": fake.secret_token}
    return TelegramChannel(secrets, {}, session, api_base or fake.url)


def hook(signed: tuple[dict[str, str], bytes]) -> Webhook:
    headers, body = signed
    return Webhook(
        method="POST",
        url="https://promptly.example/webhooks/telegram",
        headers=CIMultiDictProxy(CIMultiDict(headers)),
        query={},
        body=body,
        received_at=NOW,
    )


def reply(text: str) -> OutboundMessage:
    return OutboundMessage(type=ReplyType.ANSWER, text=text)


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


@pytest.fixture
def fake() -> FakeTelegram:
    return FakeTelegram()


@pytest.fixture
def channel(fake: FakeTelegram) -> TelegramChannel:
    return make_channel(fake, api_base="https://api.telegram.invalid")


# -- configuration and verification ---------------------------------------------------------------


@pytest.mark.parametrize("role", ["bot_token", "secret_token"])
def test_a_missing_secret_names_its_variable(role: str) -> None:
    secrets = {"bot_token": "1:x", "secret_token": "s"}
    del secrets[role]
    with pytest.raises(ConfigError, match=TelegramChannel.SECRETS[role]):
        TelegramChannel(secrets, {}, NO_SESSION, "")


def test_empty_api_base_means_the_public_api() -> None:
    channel = TelegramChannel({"bot_token": "1:x", "secret_token": "s"}, {}, NO_SESSION, "")
    assert channel.api_base == "https://api.telegram.org"


def test_verify_accepts_the_secret_token(channel: TelegramChannel, fake: FakeTelegram) -> None:
    assert channel.verify(hook(fake.signed_update())) is None


def test_verify_header_name_is_case_insensitive(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    headers, body = fake.signed_update()
    lower = {k.lower(): v for k, v in headers.items()}
    assert channel.verify(hook((lower, body))) is None


@pytest.mark.parametrize(
    ("secret", "code"),
    [("", "missing_secret_token"), ("wrong", "bad_secret_token"), ("é" * 3, "bad_secret_token")],
)
def test_verify_rejects_a_missing_or_wrong_secret(
    channel: TelegramChannel, fake: FakeTelegram, secret: str, code: str
) -> None:
    with pytest.raises(Unauthorized) as raised:
        channel.verify(hook(fake.webhook({"message": {}}, secret=secret)))
    assert raised.value.code == code


# -- parse ----------------------------------------------------------------------------------------


def test_parse_a_text_message(channel: TelegramChannel, fake: FakeTelegram) -> None:
    [message] = channel.parse(hook(fake.signed_update("Where is my order?", update_id=77)))
    assert message.channel == "telegram"
    assert message.kind == "text"
    assert message.text == "Where is my order?"
    assert message.platform_message_id == "77"  # update_id, the dedup key
    assert message.customer.external_id == "1001"
    assert message.customer.name == "Ada Lovelace"
    assert not message.customer.verified
    assert message.received_at == NOW
    assert message.reply_to == {"chat_id": 1001}
    json.dumps(dict(message.reply_to))


def test_a_redelivered_update_keeps_its_id(channel: TelegramChannel, fake: FakeTelegram) -> None:
    signed = fake.signed_update("hi")
    first, again = channel.parse(hook(signed)), channel.parse(hook(signed))
    assert first[0].platform_message_id == again[0].platform_message_id


def test_a_forum_topic_reply_goes_back_to_the_topic(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    [message] = channel.parse(hook(fake.signed_update("hi", chat_id=-100555, thread_id=9)))
    assert message.reply_to == {"chat_id": -100555, "message_thread_id": 9}


def test_a_reply_thread_outside_forums_is_not_a_topic(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    update = {"message": fake.message({"text": "hi", "message_thread_id": 4}, chat_id=-100555)}
    [message] = channel.parse(hook(fake.webhook(update)))
    assert message.reply_to == {"chat_id": -100555}


@pytest.mark.parametrize(
    ("fields", "kind", "expected"),
    [
        (content.photo("my screen"), "image", {"file_id": "AgACAgQAAxkBAAIBPhotoLarge"}),
        (content.sticker("😀"), "sticker", {"emoji": "😀", "mime_type": "image/webp"}),
        (content.voice(), "voice", {"mime_type": "audio/ogg", "duration": 4}),
        (content.audio("a song"), "audio", {"mime_type": "audio/mpeg", "file_name": "song.mp3"}),
        (content.video("clip"), "video", {"mime_type": "video/mp4"}),
        (content.document("bill"), "file", {"file_name": "invoice.pdf"}),
        (content.location(), "location", {"latitude": 51.5007, "longitude": -0.1246}),
        (content.contact(user_id=2002), "contact", {"phone_number": "447700900123"}),
    ],
)
def test_parse_non_text_messages(
    channel: TelegramChannel,
    fake: FakeTelegram,
    fields: dict[str, Any],
    kind: str,
    expected: dict[str, Any],
) -> None:
    [message] = channel.parse(hook(fake.signed_message(fields)))
    assert message.kind == kind
    assert message.text == fields.get("caption", "")
    [attachment] = message.attachments
    assert attachment["kind"] == kind
    assert attachment["caption"] == message.text
    assert expected.items() <= attachment.items()
    json.dumps(attachment)
    # Someone else's contact says nothing about the sender's own number.
    assert message.customer.phone is None


def test_the_senders_own_contact_is_a_verified_phone(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    own = content.contact("44 7700 900123", user_id=1001)
    [message] = channel.parse(hook(fake.signed_message(own, user_id=1001)))
    assert message.kind == "contact"
    assert message.customer.phone == "+447700900123"
    assert message.customer.verified


def test_parse_an_edit(channel: TelegramChannel, fake: FakeTelegram) -> None:
    [message] = channel.parse(hook(fake.signed_edit("fixed typo", message_id=5)))
    assert (message.kind, message.text) == ("edit", "fixed typo")
    assert message.attachments[0]["message_id"] == 5


def test_parse_a_reaction(channel: TelegramChannel, fake: FakeTelegram) -> None:
    [message] = channel.parse(hook(fake.signed_reaction("🔥", message_id=3)))
    assert (message.kind, message.text) == ("reaction", "")
    assert message.attachments[0]["emoji"] == ["🔥"]
    assert message.reply_to == {"chat_id": 1001}


def test_joins_and_leaves(channel: TelegramChannel, fake: FakeTelegram) -> None:
    joined = channel.parse(hook(fake.signed_join(3003, 4004)))
    assert [(m.kind, m.customer.external_id) for m in joined] == [
        ("join", "3003"),
        ("join", "4004"),
    ]
    [left] = channel.parse(hook(fake.signed_leave(3003)))
    assert (left.kind, left.customer.external_id) == ("leave", "3003")


def test_unknown_content_is_other(channel: TelegramChannel, fake: FakeTelegram) -> None:
    dice = {"dice": {"emoji": "🎲", "value": 4}}
    [message] = channel.parse(hook(fake.signed_message(dice)))
    assert message.kind == "other"
    assert message.attachments == ({"kind": "other", "fields": ["dice"]},)


@pytest.mark.parametrize(
    "update",
    [
        {"channel_post": {"message_id": 1, "chat": {"id": -1001, "type": "channel"}, "text": "x"}},
        {"callback_query": {"id": "1", "from": {"id": 1, "is_bot": False, "first_name": "A"}}},
        {"my_chat_member": {}},
    ],
)
def test_updates_that_are_not_customer_messages(
    channel: TelegramChannel, fake: FakeTelegram, update: dict[str, Any]
) -> None:
    assert channel.parse(hook(fake.webhook(update))) == []


def test_bots_and_service_messages_are_ignored(
    channel: TelegramChannel, fake: FakeTelegram
) -> None:
    from_bot = fake.message({"text": "hi"})
    from_bot["from"]["is_bot"] = True
    pinned = fake.message({"pinned_message": {"message_id": 1}})
    for message in (from_bot, pinned):
        assert channel.parse(hook(fake.webhook({"message": message}))) == []


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"message": {}}', b"\xff"])
def test_malformed_updates_are_bad_requests(channel: TelegramChannel, body: bytes) -> None:
    with pytest.raises(BadRequest):
        channel.parse(hook(({}, body)))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
# Mostly well-formed updates with arbitrary JSON in places, so every branch of parse is hit.
USER = st.fixed_dictionaries(
    {"id": st.integers(), "is_bot": st.booleans()},
    optional={"first_name": st.text() | JSON, "last_name": JSON, "username": JSON},
)
CONTENT = st.dictionaries(
    st.sampled_from(
        ["file_id", "mime_type", "file_name", "user_id", "phone_number", "emoji", "latitude",
         "is_animated", "is_video", "location", "duration"]
    ),
    st.integers() | st.text() | JSON,
)  # fmt: skip
MESSAGE_FIELDS = st.dictionaries(
    st.sampled_from(
        ["text", "caption", "photo", "sticker", "voice", "animation", "document", "contact",
         "venue", "location", "dice", "new_chat_members", "left_chat_member", "pinned_message",
         "message_thread_id", "is_topic_message", "from", "chat"]
    ),
    st.text() | CONTENT | st.lists(CONTENT | USER, max_size=3) | USER | JSON,
    max_size=4,
)  # fmt: skip
MESSAGE = st.builds(
    lambda base, extra: {**base, **extra},
    st.fixed_dictionaries({"from": USER, "chat": st.fixed_dictionaries({"id": st.integers()})}),
    MESSAGE_FIELDS,
)
REACTION = st.fixed_dictionaries(
    {"chat": st.fixed_dictionaries({"id": st.integers()}), "user": USER},
    optional={"new_reaction": JSON | st.lists(st.dictionaries(st.just("emoji"), JSON))},
)
UPDATE = st.builds(
    lambda update_id, kind, value: {"update_id": update_id, kind: value},
    st.integers(),
    st.sampled_from(["message", "edited_message", "message_reaction", "callback_query"]),
    MESSAGE | REACTION | JSON,
)


@settings(max_examples=300, deadline=None)
@given(update=UPDATE | st.dictionaries(st.text(), JSON))
def test_parse_never_raises_but_bad_request(update: dict[str, Any]) -> None:
    channel = make_channel(FakeTelegram(), api_base="https://api.telegram.invalid")
    signed = {SECRET_HEADER: SECRET_TOKEN}, json.dumps(update).encode()
    try:
        messages = channel.parse(hook(signed))
    except BadRequest:
        return
    for message in messages:
        json.dumps(dict(message.reply_to))
        json.dumps(message.attachments)


# -- render ---------------------------------------------------------------------------------------


def test_render_escapes_every_reserved_character(channel: TelegramChannel) -> None:
    text = r"Total: 5.00 (VAT incl.) - see [docs] #1 *now*! a_b ~x~ `c` > {y} | z = w + v \ end"
    [part] = channel.render(reply(text))
    assert unescape(part) == text
    assert re.search(r"(?<!\\)[_*\[\]()~`>#+\-=|{}.!]", part.replace("\\\\", "")) is None


def test_render_keeps_citations_in_the_text(channel: TelegramChannel) -> None:
    text = "See the guide.\n\nSources: https://help.example.com/returns_policy"
    [part] = channel.render(reply(text))
    assert part.endswith(r"https://help\.example\.com/returns\_policy")


@pytest.mark.parametrize(
    "text",
    [
        "." * 4096,  # fits raw, doubles when escaped
        "Hello world. " * 700,
        ("word " * 300 + "\n\n") * 5,
        "x" * 10_000,
    ],
)
def test_render_splits_into_parts_that_fit(channel: TelegramChannel, text: str) -> None:
    parts = channel.render(reply(text))
    assert all(0 < len(p) <= TelegramChannel.MAX_CHARS for p in parts)
    assert "".join("".join(unescape(p) for p in parts).split()) == "".join(text.split())


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("ab .!_\\\n*é"), max_size=9000))
def test_render_loses_nothing(text: str) -> None:
    channel = make_channel(FakeTelegram(), api_base="https://api.telegram.invalid")
    parts = channel.render(reply(text))
    assert all(len(p) <= TelegramChannel.MAX_CHARS for p in parts)
    assert "".join("".join(unescape(p) for p in parts).split()) == "".join(text.split())


# -- send -----------------------------------------------------------------------------------------


@pytest.fixture
async def live(fake: FakeTelegram) -> AsyncIterator[tuple[TelegramChannel, FakeTelegram]]:
    async with fake, aiohttp.ClientSession() as session:
        yield make_channel(fake, session), fake


async def test_send_posts_send_message(live: tuple[TelegramChannel, FakeTelegram]) -> None:
    channel, fake = live
    [text] = channel.render(reply("Your order ships today."))
    sent = await channel.send({"chat_id": 1001}, text, agent=False)
    [call] = fake.calls
    assert (call.method, call.path) == ("POST", f"/bot{fake.bot_token}/sendMessage")
    assert call.json == {"chat_id": 1001, "text": text, "parse_mode": "MarkdownV2"}
    assert sent.platform_message_id == "1"


async def test_send_into_a_forum_topic(live: tuple[TelegramChannel, FakeTelegram]) -> None:
    channel, fake = live
    await channel.send({"chat_id": -100555, "message_thread_id": 9}, "hi", agent=True)
    assert fake.calls[0].json["message_thread_id"] == 9


async def test_flood_control_is_retryable_after_its_wait(
    live: tuple[TelegramChannel, FakeTelegram],
) -> None:
    channel, fake = live
    fake.fail_flood(retry_after=7)
    with pytest.raises(SendError) as raised:
        await channel.send({"chat_id": 1}, "hi", agent=False)
    assert (raised.value.retryable, raised.value.retry_after, raised.value.status) == (True, 7, 429)


async def test_a_retry_after_header_is_honoured(
    live: tuple[TelegramChannel, FakeTelegram],
) -> None:
    channel, fake = live
    fake.fail_next(429, headers={"Retry-After": "5"})
    with pytest.raises(SendError) as raised:
        await channel.send({"chat_id": 1}, "hi", agent=False)
    assert raised.value.retryable
    assert raised.value.retry_after == 5


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (502, True), (400, False)])
async def test_http_errors(
    live: tuple[TelegramChannel, FakeTelegram], status: int, retryable: bool
) -> None:
    channel, fake = live
    fake.fail_error(status, "Bad Request: chat not found" if status == 400 else "Bad Gateway")
    with pytest.raises(SendError) as raised:
        await channel.send({"chat_id": 1}, "hi", agent=False)
    assert (raised.value.status, raised.value.retryable) == (status, retryable)


@pytest.mark.parametrize(("code", "retryable"), [(429, True), (403, False)])
async def test_ok_false_with_http_200_is_an_error(
    live: tuple[TelegramChannel, FakeTelegram], code: int, retryable: bool
) -> None:
    channel, fake = live
    body = {"ok": False, "error_code": code, "description": "x", "parameters": {"retry_after": 2}}
    fake.fail_next(200, body=json.dumps(body))
    with pytest.raises(SendError) as raised:
        await channel.send({"chat_id": 1}, "hi", agent=False)
    assert raised.value.retryable is retryable
    assert raised.value.retry_after == 2


async def test_unescaped_markdown_is_refused_for_good(
    live: tuple[TelegramChannel, FakeTelegram],
) -> None:
    channel, _ = live
    with pytest.raises(SendError) as raised:
        await channel.send({"chat_id": 1}, "Thanks.", agent=False)
    assert not raised.value.retryable


async def test_a_reply_to_without_chat_is_permanent(
    live: tuple[TelegramChannel, FakeTelegram],
) -> None:
    channel, fake = live
    with pytest.raises(SendError) as raised:
        await channel.send({}, "hi", agent=False)
    assert not raised.value.retryable
    assert fake.calls == []


async def test_connection_refused_is_retryable_and_hides_the_token(fake: FakeTelegram) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        channel = make_channel(fake, session, api_base=f"http://127.0.0.1:{port}")
        with pytest.raises(SendError) as raised:
            await channel.send({"chat_id": 1}, "hi", agent=False)
    assert raised.value.retryable
    assert fake.bot_token not in str(raised.value)
