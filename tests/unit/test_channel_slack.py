"""The Slack adapter against Events API payloads and the fake Web API."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from bot.channels.base import OutboundMessage, ReplyType
from bot.channels.platform import Response, SendError, Webhook
from bot.channels.slack import SlackChannel, unescape_mrkdwn
from bot.errors import BadRequest, ConfigError, Unauthorized
from tests.fakes.slack import BOT_USER_ID, CHALLENGE, FakeSlack

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
NO_SESSION = cast(aiohttp.ClientSession, None)


def make_channel(
    fake: FakeSlack, session: aiohttp.ClientSession = NO_SESSION, api_base: str = ""
) -> SlackChannel:
    secrets = {"signing_secret": fake.signing_secret, "bot_token": fake.bot_token}
    return SlackChannel(secrets, {}, session, api_base or fake.url)


def hook(signed: tuple[dict[str, str], bytes], received_at: datetime = NOW) -> Webhook:
    headers, body = signed
    return Webhook(
        method="POST",
        url="https://promptly.example/webhooks/slack",
        headers=CIMultiDictProxy(CIMultiDict(headers)),
        query={},
        body=body,
        received_at=received_at,
    )


def reply(text: str) -> OutboundMessage:
    return OutboundMessage(type=ReplyType.ANSWER, text=text)


@pytest.fixture
def fake() -> FakeSlack:
    # Slack signs with its own clock: here the test's NOW.
    return FakeSlack(clock=NOW.timestamp)


@pytest.fixture
def channel(fake: FakeSlack) -> SlackChannel:
    return make_channel(fake, api_base="https://slack.invalid")


# -- configuration and verification ---------------------------------------------------------------


@pytest.mark.parametrize("role", ["signing_secret", "bot_token"])
def test_a_missing_secret_names_its_variable(role: str) -> None:
    secrets = {"signing_secret": "s", "bot_token": "xoxb-1"}
    del secrets[role]
    with pytest.raises(ConfigError, match=SlackChannel.SECRETS[role]):
        SlackChannel(secrets, {}, NO_SESSION, "")


def test_empty_api_base_means_the_public_api() -> None:
    channel = SlackChannel({"signing_secret": "s", "bot_token": "xoxb-1"}, {}, NO_SESSION, "")
    assert channel.api_base == "https://slack.com"


def test_verify_accepts_a_good_signature(channel: SlackChannel, fake: FakeSlack) -> None:
    assert channel.verify(hook(fake.signed_update())) is None


# The worked example of "Verifying requests from Slack" (a slash command's form body).
DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TIMESTAMP = "1531420618"
DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_verify_accepts_slacks_worked_example() -> None:
    headers = {"X-Slack-Request-Timestamp": DOC_TIMESTAMP, "X-Slack-Signature": DOC_SIGNATURE}
    secrets = {"signing_secret": DOC_SECRET, "bot_token": "xoxb-1"}
    channel = SlackChannel(secrets, {}, NO_SESSION, "")
    at = datetime.fromtimestamp(int(DOC_TIMESTAMP) + 60, UTC)
    assert channel.verify(hook((headers, DOC_BODY), received_at=at)) is None
    assert (
        FakeSlack(DOC_SECRET).sign(DOC_BODY, timestamp=int(DOC_TIMESTAMP))["X-Slack-Signature"]
        == DOC_SIGNATURE
    )


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"X-Slack-Signature": None}, "missing_signature"),
        ({"X-Slack-Request-Timestamp": None}, "missing_signature"),
        ({"X-Slack-Signature": "v0=" + "0" * 64}, "bad_signature"),
        ({"X-Slack-Signature": "v1=abc"}, "bad_signature"),
        ({"X-Slack-Request-Timestamp": "soon"}, "bad_timestamp"),
        ({"X-Slack-Request-Timestamp": "9" * 400}, "bad_timestamp"),
    ],
)
def test_verify_rejects_bad_or_missing_headers(
    channel: SlackChannel, fake: FakeSlack, change: dict[str, str | None], code: str
) -> None:
    headers, body = fake.signed_update()
    for name, value in change.items():
        headers.pop(name)
        if value is not None:
            headers[name] = value
    with pytest.raises(Unauthorized) as raised:
        channel.verify(hook((headers, body)))
    assert raised.value.code == code


def test_verify_rejects_a_tampered_body(channel: SlackChannel, fake: FakeSlack) -> None:
    headers, body = fake.signed_update("refund 10")
    with pytest.raises(Unauthorized):
        channel.verify(hook((headers, body.replace(b"10", b"99"))))


def test_verify_rejects_a_wrong_secret(channel: SlackChannel, fake: FakeSlack) -> None:
    body = json.dumps(fake.envelope(fake.message())).encode()
    with pytest.raises(Unauthorized):
        channel.verify(hook((fake.sign(body, secret="not-the-secret"), body)))


@pytest.mark.parametrize("skew", [-301, 301, 3600])
def test_verify_rejects_replays_outside_five_minutes(
    channel: SlackChannel, fake: FakeSlack, skew: int
) -> None:
    late = fake.signed_update()
    with pytest.raises(Unauthorized) as raised:
        channel.verify(hook(late, received_at=NOW + timedelta(seconds=skew)))
    assert raised.value.code == "stale_timestamp"


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_verify_accepts_five_minutes_of_skew(
    channel: SlackChannel, fake: FakeSlack, skew: int
) -> None:
    assert channel.verify(hook(fake.signed_update(), NOW + timedelta(seconds=skew))) is None


def test_url_verification_answers_the_challenge(channel: SlackChannel, fake: FakeSlack) -> None:
    answer = channel.verify(hook(fake.signed_url_verification()))
    assert answer == Response(status=200, body=CHALLENGE, content_type="text/plain")


def test_url_verification_is_signed_too(channel: SlackChannel, fake: FakeSlack) -> None:
    with pytest.raises(Unauthorized):
        channel.verify(hook(fake.signed_url_verification(secret="forged")))


def test_url_verification_is_not_a_message(channel: SlackChannel, fake: FakeSlack) -> None:
    assert channel.parse(hook(fake.signed_url_verification())) == []


# -- parse ----------------------------------------------------------------------------------------


def test_parse_a_direct_message(channel: SlackChannel, fake: FakeSlack) -> None:
    signed = fake.signed_update("Is 2 < 3 & 4 > 1?", event_id="Ev0TEXT0001", user_id="U0ADA")
    [message] = channel.parse(hook(signed))
    assert message.channel == "slack"
    assert message.kind == "text"
    assert message.text == "Is 2 < 3 & 4 > 1?"  # what the customer typed
    assert message.platform_message_id == "Ev0TEXT0001"  # event_id, the dedup key
    assert message.customer.external_id == "U0ADA"
    assert message.received_at == NOW
    assert message.reply_to == {"channel": "D0CUSTOMER1"}


def test_slack_escapes_are_undone(channel: SlackChannel, fake: FakeSlack) -> None:
    event = fake.message("a &lt;b&gt; &amp;lt; c")
    [message] = channel.parse(hook(fake.signed_event(event)))
    assert message.text == "a <b> &lt; c"


def test_a_redelivery_carries_the_same_event_id(channel: SlackChannel, fake: FakeSlack) -> None:
    body = json.dumps(fake.envelope(fake.message("hi"))).encode()
    first = channel.parse(hook((fake.sign(body), body)))
    retry = hook((fake.sign(body, retry_num=1), body))
    assert channel.verify(retry) is None
    assert channel.parse(retry)[0].platform_message_id == first[0].platform_message_id


def test_a_thread_reply_goes_back_to_the_thread(channel: SlackChannel, fake: FakeSlack) -> None:
    signed = fake.signed_update(
        "hi", channel="C0SUPPORT01", channel_type="channel", thread_ts="1700000000.000100"
    )
    [message] = channel.parse(hook(signed))
    assert message.reply_to == {"channel": "C0SUPPORT01", "thread_ts": "1700000000.000100"}


def test_a_profile_gives_the_name(channel: SlackChannel, fake: FakeSlack) -> None:
    profile = {"real_name": "Ada Lovelace", "display_name": "ada"}
    [message] = channel.parse(hook(fake.signed_update("hi", user_profile=profile)))
    assert message.customer.name == "ada"


@pytest.mark.parametrize(
    ("name", "mimetype", "kind"),
    [("shot.png", "image/png", "image"), ("bill.pdf", "application/pdf", "file")],
)
def test_parse_a_file_share(
    channel: SlackChannel, fake: FakeSlack, name: str, mimetype: str, kind: str
) -> None:
    [message] = channel.parse(hook(fake.signed_file("see this", name=name, mimetype=mimetype)))
    assert (message.kind, message.text) == (kind, "see this")
    [attachment] = message.attachments
    assert attachment["kind"] == kind
    assert attachment["file_id"] == "F0FILE00001"
    assert attachment["mime_type"] == mimetype
    assert attachment["url"].startswith("https://files.slack.com/")
    assert attachment["caption"] == "see this"


def test_parse_an_edit(channel: SlackChannel, fake: FakeSlack) -> None:
    [message] = channel.parse(hook(fake.signed_edit("new words", previous_text="old words")))
    assert (message.kind, message.text) == ("edit", "new words")
    assert message.attachments[0]["previous_text"] == "old words"
    assert message.customer.external_id == "U0CUSTOMER1"


def test_an_unfurl_is_not_an_edit(channel: SlackChannel, fake: FakeSlack) -> None:
    assert channel.parse(hook(fake.signed_edit("same", previous_text="same"))) == []


def test_parse_a_deletion(channel: SlackChannel, fake: FakeSlack) -> None:
    event = {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": "D0CUSTOMER1",
        "deleted_ts": "1700000000.000100",
        "previous_message": {"type": "message", "user": "U0ADA", "text": "oops"},
    }
    [message] = channel.parse(hook(fake.signed_event(event)))
    assert (message.kind, message.customer.external_id) == ("delete", "U0ADA")


@pytest.mark.parametrize("removed", [False, True])
def test_parse_a_reaction(channel: SlackChannel, fake: FakeSlack, removed: bool) -> None:
    [message] = channel.parse(hook(fake.signed_reaction("tada", removed=removed)))
    assert (message.kind, message.text) == ("reaction", "")
    assert message.attachments[0]["emoji"] == "tada"
    assert message.attachments[0]["removed"] is removed
    assert message.reply_to == {"channel": "D0CUSTOMER1"}


def test_parse_a_join(channel: SlackChannel, fake: FakeSlack) -> None:
    [message] = channel.parse(hook(fake.signed_join("U0ADA")))
    assert (message.kind, message.customer.external_id) == ("join", "U0ADA")
    assert message.reply_to == {"channel": "C0SUPPORT01"}


def test_unknown_message_subtypes_are_other(channel: SlackChannel, fake: FakeSlack) -> None:
    [message] = channel.parse(hook(fake.signed_update("x", subtype="huddle_thread")))
    assert message.kind == "other"


@pytest.mark.parametrize(
    "signed",
    [
        lambda f: f.signed_bot_message(),
        lambda f: f.signed_update("x", subtype="bot_message"),
        lambda f: f.signed_update("joined", subtype="channel_join"),
        lambda f: f.signed_join(BOT_USER_ID),  # our own bot user
        lambda f: f.signed_event({"type": "app_home_opened", "user": "U0ADA", "channel": "D1"}),
        lambda f: f.signed_event({"type": "message", "text": "no user", "channel": "D1"}),
        lambda f: f.webhook({"type": "app_rate_limited", "minute_rate_limited": 1}),
    ],
)
def test_events_that_are_not_customer_messages(
    channel: SlackChannel, fake: FakeSlack, signed: Any
) -> None:
    assert channel.parse(hook(signed(fake))) == []


@pytest.mark.parametrize(
    "body", [b"{not json", b'"text"', b'{"type": "event_callback", "event": {}}', b"\xff"]
)
def test_malformed_events_are_bad_requests(channel: SlackChannel, body: bytes) -> None:
    with pytest.raises(BadRequest):
        channel.parse(hook(({}, body)))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
# Mostly well-formed events with arbitrary JSON in places, so every branch of parse is hit.
MESSAGE = st.fixed_dictionaries(
    {"user": st.text(min_size=1), "text": st.text() | JSON},
    optional={"thread_ts": st.text() | JSON, "bot_id": JSON, "ts": JSON, "user_profile": JSON},
)
FILE = st.dictionaries(
    st.sampled_from(["id", "name", "mimetype", "url_private", "permalink"]), st.text() | JSON
)
EVENT = st.builds(
    lambda base, extra: {**base, **extra},
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                ["message", "reaction_added", "member_joined_channel", "app_mention"]
            ),
            "user": st.text(min_size=1),
            "channel": st.text(min_size=1),
        }
    ),
    st.dictionaries(
        st.sampled_from(
            ["subtype", "text", "thread_ts", "bot_id", "files", "message", "previous_message",
             "item", "reaction", "user_profile", "user", "channel"]
        ),
        st.sampled_from(["message_changed", "message_deleted", "file_share", "bot_message"])
        | st.lists(FILE, max_size=3)
        | MESSAGE
        | st.fixed_dictionaries({"channel": st.text(min_size=1), "ts": st.text()})
        | JSON,
        max_size=4,
    ),
)  # fmt: skip
ENVELOPE = st.fixed_dictionaries(
    {"type": st.just("event_callback"), "event_id": st.text(min_size=1, max_size=5)},
    optional={"event": EVENT | JSON, "authorizations": JSON},
)


@settings(max_examples=300, deadline=None)
@given(envelope=ENVELOPE | st.dictionaries(st.text(), JSON))
def test_parse_never_raises_but_bad_request(envelope: dict[str, Any]) -> None:
    fake = FakeSlack(clock=NOW.timestamp)
    channel = make_channel(fake, api_base="https://slack.invalid")
    signed = hook(fake.webhook(envelope))
    try:
        assert channel.verify(signed) is None or envelope.get("type") == "url_verification"
        messages = channel.parse(signed)
    except BadRequest:
        return
    for message in messages:
        json.dumps(dict(message.reply_to))
        json.dumps(message.attachments)


# -- render ---------------------------------------------------------------------------------------


def test_render_escapes_control_characters(channel: SlackChannel) -> None:
    [part] = channel.render(reply("If a < b & b > c, see <https://x.example>"))
    assert part == "If a &lt; b &amp; b &gt; c, see &lt;https://x.example&gt;"


def test_render_keeps_citations_and_mrkdwn(channel: SlackChannel) -> None:
    text = "*Returns* take _5 days_.\n\nSources: https://help.example.com/returns?a=1"
    [part] = channel.render(reply(text))
    assert part == text.replace("&", "&amp;")


@pytest.mark.parametrize(
    "text", ["&" * 4000, "Tom & Jerry. " * 400, ("word " * 300 + "\n\n") * 5, "x" * 9000]
)
def test_render_splits_into_parts_that_fit(channel: SlackChannel, text: str) -> None:
    parts = channel.render(reply(text))
    assert all(0 < len(p) <= SlackChannel.MAX_CHARS for p in parts)
    joined = "".join(unescape_mrkdwn(p) for p in parts)
    assert "".join(joined.split()) == "".join(text.split())


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("ab .&<>\n;é"), max_size=9000))
def test_render_loses_nothing(text: str) -> None:
    channel = make_channel(FakeSlack(), api_base="https://slack.invalid")
    parts = channel.render(reply(text))
    assert all(len(p) <= SlackChannel.MAX_CHARS for p in parts)
    joined = "".join(unescape_mrkdwn(p) for p in parts)
    assert "".join(joined.split()) == "".join(text.split())


# -- send -----------------------------------------------------------------------------------------


@pytest.fixture
async def live(fake: FakeSlack) -> AsyncIterator[tuple[SlackChannel, FakeSlack]]:
    async with fake, aiohttp.ClientSession() as session:
        yield make_channel(fake, session), fake


async def test_send_posts_chat_post_message(live: tuple[SlackChannel, FakeSlack]) -> None:
    channel, fake = live
    sent = await channel.send({"channel": "D0CUSTOMER1"}, "Ships today &amp; free", agent=False)
    [call] = fake.calls
    assert (call.method, call.path) == ("POST", "/api/chat.postMessage")
    assert call.headers["Authorization"] == f"Bearer {fake.bot_token}"
    assert call.headers["Content-Type"] == "application/json; charset=utf-8"
    assert call.json == {"channel": "D0CUSTOMER1", "text": "Ships today &amp; free"}
    assert re.fullmatch(r"\d+\.\d{6}", sent.platform_message_id or "")  # the message ts


async def test_send_into_a_thread(live: tuple[SlackChannel, FakeSlack]) -> None:
    channel, fake = live
    reply_to = {"channel": "C0SUPPORT01", "thread_ts": "1700000000.000100"}
    await channel.send(reply_to, "hi", agent=True)
    assert fake.calls[0].json == {**reply_to, "text": "hi"}


async def test_http_429_is_retryable_after_retry_after(
    live: tuple[SlackChannel, FakeSlack],
) -> None:
    channel, fake = live
    fake.fail_rate_limited(retry_after=4)
    with pytest.raises(SendError) as raised:
        await channel.send({"channel": "D1"}, "hi", agent=False)
    assert (raised.value.retryable, raised.value.retry_after, raised.value.status) == (True, 4, 429)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [("ratelimited", True), ("internal_error", True), ("channel_not_found", False)],
)
async def test_ok_false_errors(
    live: tuple[SlackChannel, FakeSlack], error: str, retryable: bool
) -> None:
    channel, fake = live
    fake.fail_error(error)
    with pytest.raises(SendError) as raised:
        await channel.send({"channel": "D1"}, "hi", agent=False)
    assert raised.value.retryable is retryable
    assert error in str(raised.value)


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (400, False)])
async def test_http_errors(
    live: tuple[SlackChannel, FakeSlack], status: int, retryable: bool
) -> None:
    channel, fake = live
    fake.fail_next(status, body="upstream error")
    with pytest.raises(SendError) as raised:
        await channel.send({"channel": "D1"}, "hi", agent=False)
    assert (raised.value.status, raised.value.retryable) == (status, retryable)


async def test_a_wrong_token_is_permanent(fake: FakeSlack) -> None:
    async with fake, aiohttp.ClientSession() as session:
        secrets = {"signing_secret": fake.signing_secret, "bot_token": "xoxb-revoked"}
        channel = SlackChannel(secrets, {}, session, fake.url)
        with pytest.raises(SendError) as raised:
            await channel.send({"channel": "D1"}, "hi", agent=False)
    assert not raised.value.retryable
    assert "invalid_auth" in str(raised.value)


async def test_a_reply_to_without_channel_is_permanent(
    live: tuple[SlackChannel, FakeSlack],
) -> None:
    channel, fake = live
    with pytest.raises(SendError) as raised:
        await channel.send({}, "hi", agent=False)
    assert not raised.value.retryable
    assert fake.calls == []


async def test_connection_refused_is_retryable(fake: FakeSlack) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with aiohttp.ClientSession() as session:
        channel = make_channel(fake, session, api_base=f"http://127.0.0.1:{port}")
        with pytest.raises(SendError) as raised:
            await channel.send({"channel": "D1"}, "hi", agent=False)
    assert raised.value.retryable
