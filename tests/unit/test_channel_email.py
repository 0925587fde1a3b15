"""The email adapter: parsing customer mail, the SMTP listener, and replies to a fake relay."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.channels.base import InboundMessage, OutboundMessage, ReplyType
from bot.channels.email import (
    EmailChannel,
    html_to_text,
    parse_email,
    plain_text,
    reply_subject,
    strip_quoted,
)
from bot.channels.platform import SendError
from bot.errors import ConfigError
from bot.settings import WORKER_ENV
from tests.fakes.smtp import (
    AUTO_REPLIES,
    CUSTOMER,
    CUSTOMER_NAME,
    SUPPORT,
    FakeSMTPServer,
    compose,
    compose_auto_reply,
    deliver,
    reply_body,
)

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
NO_SESSION = cast(aiohttp.ClientSession, None)
OPTIONS: dict[str, Any] = {
    "address": SUPPORT,
    "display_name": "Promptly Support",
    "listen_port": 0,
}


def make_channel(api_base: str = "", **options: Any) -> EmailChannel:
    return EmailChannel({}, {**OPTIONS, **options}, NO_SESSION, api_base)


def parse(raw: bytes, envelope_from: str | None = None) -> list[InboundMessage]:
    return parse_email(raw, NOW, address=SUPPORT, envelope_from=envelope_from)


def only(raw: bytes) -> InboundMessage:
    messages = parse(raw)
    assert len(messages) == 1
    return messages[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def relay() -> AsyncIterator[FakeSMTPServer]:
    async with FakeSMTPServer() as fake:
        yield fake


# -- configuration ------------------------------------------------------------------------------


def test_address_is_required() -> None:
    with pytest.raises(ConfigError, match=r"options\.address: required"):
        EmailChannel({}, {}, NO_SESSION, "")


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"address": "not an address"}, "address"),
        ({"listen_port": 70000}, "listen_port"),
        ({"smtp_port": "25"}, "smtp_port"),
        ({"smtp_starttls": "yes"}, "smtp_starttls"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"options\.{key}"):
        make_channel(**options)


def test_password_needs_a_user() -> None:
    with pytest.raises(ConfigError, match=r"options\.smtp_user"):
        EmailChannel({"smtp_password": "pw"}, OPTIONS, NO_SESSION, "")


def test_contract_attributes() -> None:
    channel = make_channel()
    assert channel.name == "email"
    assert channel.SECRETS == {}
    assert channel.OPTIONAL_SECRETS == {"smtp_password": "PROMPTLY_EMAIL_SMTP_PASSWORD"}
    assert channel.WINDOW.automated is None and channel.WINDOW.agent is None
    assert (channel.smtp_host, channel.smtp_port) == ("127.0.0.1", 25)
    assert channel.domain == "example.com"
    assert make_channel("smtp://mail.test:2526").smtp_port == 2526
    with pytest.raises(ConfigError, match="api_base"):
        make_channel("https://mail.test")


# -- parsing -----------------------------------------------------------------------------------


def test_plain_mail() -> None:
    raw = compose(message_id="<abc@example.org>", references="<root@example.com>")
    message = only(raw)
    assert message.channel == "email"
    assert message.kind == "text"
    assert message.text == "Hello, my order #1234 has not arrived yet."
    assert message.platform_message_id == "<abc@example.org>"
    assert message.received_at == NOW
    assert message.attachments == ()
    customer = message.customer
    assert (customer.external_id, customer.email, customer.name) == (
        CUSTOMER,
        CUSTOMER,
        CUSTOMER_NAME,
    )
    assert not customer.verified  # a bare From proves nothing
    assert message.reply_to == {
        "to": CUSTOMER,
        "subject": "Re: Where is my order?",
        "in_reply_to": "<abc@example.org>",
        "references": "<root@example.com> <abc@example.org>",
    }


def test_sender_is_lower_cased_and_names_are_decoded() -> None:
    raw = compose(sender="Zoe.Doe@Example.ORG", name="Zoë Doe, Jr.", subject="Réclamation")
    message = only(raw)
    assert message.customer.external_id == "zoe.doe@example.org"
    assert message.customer.name == "Zoë Doe, Jr."
    assert message.reply_to["subject"] == "Re: Réclamation"


def test_missing_message_id_uses_a_hash_of_the_bytes() -> None:
    raw = compose(message_id=None)
    first, again = only(raw), only(raw)
    assert first.platform_message_id.startswith("sha256:")
    assert first.platform_message_id == again.platform_message_id
    assert (
        first.platform_message_id
        != only(compose(message_id=None, text="other")).platform_message_id
    )
    assert first.reply_to["in_reply_to"] == ""


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Where is my order?", "Re: Where is my order?"),
        ("Re: Where is my order?", "Re: Where is my order?"),
        ("RE:  Where is\tmy order?", "RE: Where is my order?"),
        ("", "Re: your message"),
    ],
)
def test_reply_subject(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_long_reference_chains_keep_root_and_latest() -> None:
    ids = " ".join(f"<m{i}@example.org>" for i in range(40))
    references = only(compose(message_id="<new@x>", references=ids)).reply_to["references"]
    kept = references.split()
    assert len(kept) == 20
    assert kept[0] == "<m0@example.org>" and kept[-1] == "<new@x>"


ORIGINAL = "Your order has shipped.\nIt arrives on Friday."


@pytest.mark.parametrize("style", ["gmail", "wrapped", "outlook", "signature"])
def test_quoted_history_is_stripped(style: str) -> None:
    body = reply_body("It did not arrive.\nPlease check.", ORIGINAL, style)
    assert only(compose(text=body)).text == "It did not arrive.\nPlease check."


def test_inline_reply_keeps_the_new_lines() -> None:
    body = reply_body("Yes, order 1234.", "Which order?", "inline")
    assert strip_quoted(body) == "Yes, order 1234.\nNo, thanks."


@pytest.mark.parametrize(
    "text",
    [
        "Once I wrote: nothing.",  # "On" must be a word
        "I sent it on Monday -- twice.",  # a dash inside a line is no signature
        "Read the ---- lines carefully",
    ],
)
def test_ordinary_lines_are_kept(text: str) -> None:
    assert strip_quoted(text) == text


def test_fully_quoted_reply_falls_back_to_the_subject() -> None:
    body = reply_body("", ORIGINAL, "gmail")
    message = only(compose(text=body, subject="Re: Your order"))
    assert (message.kind, message.text) == ("text", "Re: Your order")


def test_html_only_mail() -> None:
    html = (
        "<html><head><title>t</title><style>p {color: red}</style></head><body>"
        "<p>Hello &amp; <b>thanks</b>,</p><div>my order <i>1234</i><br>is late.</div>"
        "<script>alert(1)</script>"
        '<div class="gmail_quote">On Mon, 2 Mar 2026, Support wrote:<br>'
        "<blockquote>old</blockquote></div></body></html>"
    )
    message = only(compose(text=None, html=html))
    assert message.kind == "text"
    assert message.text == "Hello & thanks,\nmy order 1234\nis late."


def test_plain_part_is_preferred_over_html() -> None:
    message = only(compose(text="plain words", html="<p>html words</p>"))
    assert message.text == "plain words"
    assert message.attachments == ()


def test_html_to_text_of_nothing() -> None:
    assert html_to_text("") == ""
    assert html_to_text("<p> </p>") == ""


def test_attachments_are_described_never_carried() -> None:
    pdf = b"%PDF-1.7 " + bytes(range(256)) * 4
    raw = compose(
        attachments=[
            ("invoice.pdf", "application/pdf", pdf),
            ("photo.jpg", "image/jpeg", b"\xff" * 10),
        ]
    )
    message = only(raw)
    assert message.kind == "text"
    assert message.attachments == (
        {
            "kind": "file",
            "filename": "invoice.pdf",
            "mime_type": "application/pdf",
            "size": len(pdf),
        },
        {"kind": "image", "filename": "photo.jpg", "mime_type": "image/jpeg", "size": 10},
    )


def test_attachment_without_text_is_a_file_captioned_by_the_subject() -> None:
    raw = compose(text="", subject="My receipt", attachments=[("r.png", "image/png", b"png")])
    message = only(raw)
    assert (message.kind, message.text) == ("file", "My receipt")
    assert message.attachments[0]["filename"] == "r.png"


@pytest.mark.parametrize("case", sorted(AUTO_REPLIES))
def test_automatic_mail_is_ignored(case: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="bot.channels.email")
    assert parse(compose_auto_reply(case)) == []
    assert "ignored" in caplog.text


def test_auto_submitted_no_is_a_person() -> None:
    assert len(parse(compose(headers={"Auto-Submitted": "no"}))) == 1


def test_bounce_with_null_return_path_is_ignored() -> None:
    assert parse(compose(), envelope_from="") == []
    assert parse(compose(), envelope_from="<>") == []


def test_unknown_charset_still_reads() -> None:
    raw = compose().replace(b'charset="utf-8"', b'charset="x-klingon"')
    assert only(raw).text == "Hello, my order #1234 has not arrived yet."


def test_garbage_with_an_envelope_sender_is_other() -> None:
    raw = b"\x00\xff\xfe garbage"
    messages = parse(raw, envelope_from=CUSTOMER)
    assert len(messages) == 1
    message = messages[0]
    assert (message.kind, message.text) == ("other", "")
    assert message.customer.external_id == CUSTOMER
    assert message.attachments[0]["kind"] == "other"
    assert message.attachments[0]["size"] == len(raw)
    assert message.attachments[0]["excerpt"] == "\ufffd\ufffd garbage"
    assert message.platform_message_id.startswith("sha256:")


def test_mail_without_any_sender_is_dropped() -> None:
    assert parse(b"Subject: hi\r\n\r\nhello") == []


def check(messages: list[InboundMessage]) -> None:
    for message in messages:
        assert message.kind in {"text", "file", "other"}
        for value in (message.text, message.customer.external_id, message.customer.name or ""):
            value.encode("utf-8")  # no lone surrogates
            assert "\x00" not in value
        assert all(not isinstance(v, bytes) for a in message.attachments for v in a.values())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([None, "", CUSTOMER]))
def test_parse_email_never_raises_on_any_bytes(raw: bytes, envelope_from: str | None) -> None:
    check(parse(raw, envelope_from))


HEADER_NAMES = [
    "From",
    "Subject",
    "Message-ID",
    "References",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "MIME-Version",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(HEADER_NAMES), st.binary(max_size=80)), max_size=8),
    st.binary(max_size=500),
)
def test_parse_email_never_raises_on_mangled_headers(
    headers: list[tuple[str, bytes]], body: bytes
) -> None:
    raw = b"From: Alice <alice@example.org>\r\n"
    raw += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers)
    check(parse(raw + b"\r\n" + body))


# -- render ------------------------------------------------------------------------------------


def render(text: str) -> list[str]:
    return make_channel().render(OutboundMessage(ReplyType.ANSWER, text))


def test_render_strips_markdown_and_keeps_urls() -> None:
    text = (
        "**Good news**: your _order_ ships *today*.\n"
        "* step one\n* step two\n"
        "See [the tracking page](https://shop.example/track?id=a_b_c) or "
        "<https://shop.example/help> or https://shop.example/__init__*x*.\n"
        "snake_case_name stays, 2 * 3 * 4 too."
    )
    assert render(text) == [
        "Good news: your order ships today.\n"
        "* step one\n* step two\n"
        "See the tracking page (https://shop.example/track?id=a_b_c) or "
        "https://shop.example/help or https://shop.example/__init__*x*.\n"
        "snake_case_name stays, 2 * 3 * 4 too."
    ]


def test_link_whose_text_is_its_url() -> None:
    assert plain_text("[https://a.example](https://a.example)") == "https://a.example"


def test_render_splits_long_replies_without_losing_words() -> None:
    text = " ".join(f"word{i}" for i in range(30_000))
    parts = render(text)
    assert len(parts) > 1
    assert all(len(part) <= EmailChannel.MAX_CHARS for part in parts)
    assert " ".join(parts).split() == text.split()


# -- send --------------------------------------------------------------------------------------

REPLY_TO = {
    "to": CUSTOMER,
    "subject": "Re: Where is my order?",
    "in_reply_to": "<abc@example.org>",
    "references": "<root@example.com> <abc@example.org>",
}


async def test_send_delivers_a_threaded_reply(relay: FakeSMTPServer) -> None:
    channel = make_channel(relay.url)
    sent = await channel.send(REPLY_TO, "It ships today.", agent=False)
    [mail] = relay.messages
    message = mail.message
    assert sent.platform_message_id == message["Message-ID"]
    assert message["Message-ID"].endswith("@example.com>")
    assert (mail.mail_from, mail.rcpt_tos) == (SUPPORT, [CUSTOMER])
    assert message["From"] == f"Promptly Support <{SUPPORT}>"
    assert message["To"] == CUSTOMER
    assert message["Subject"] == "Re: Where is my order?"
    assert message["In-Reply-To"] == "<abc@example.org>"
    assert message["References"] == "<root@example.com> <abc@example.org>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Date"]
    body = message.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "It ships today."


async def test_agent_replies_are_not_marked_automatic(relay: FakeSMTPServer) -> None:
    await make_channel(relay.url).send(REPLY_TO, "Hi, Sam here.", agent=True)
    assert relay.messages[0].message["Auto-Submitted"] is None


async def test_reply_threads_under_the_parsed_mail(relay: FakeSMTPServer) -> None:
    inbound = only(compose(message_id="<q1@example.org>", subject="Refund"))
    await make_channel(relay.url).send(inbound.reply_to, "Done.", agent=False)
    message = relay.messages[0].message
    assert (message["Subject"], message["In-Reply-To"], message["References"]) == (
        "Re: Refund",
        "<q1@example.org>",
        "<q1@example.org>",
    )


async def test_header_injection_is_flattened(relay: FakeSMTPServer) -> None:
    reply_to = {**REPLY_TO, "subject": "Re: hi\r\nBcc: victim@example.net"}
    await make_channel(relay.url).send(reply_to, "x", agent=False)
    [mail] = relay.messages
    assert mail.rcpt_tos == [CUSTOMER]
    assert mail.message["Bcc"] is None


async def test_send_logs_in_when_a_password_is_set() -> None:
    async with FakeSMTPServer(credentials=("bot", "s3cret")) as relay:
        channel = EmailChannel(
            {"smtp_password": "s3cret"}, {**OPTIONS, "smtp_user": "bot"}, NO_SESSION, relay.url
        )
        await channel.send(REPLY_TO, "hello", agent=False)
        assert relay.logins == ["bot"]
        assert len(relay.messages) == 1


async def test_wrong_password_is_permanent() -> None:
    async with FakeSMTPServer(credentials=("bot", "s3cret")) as relay:
        channel = EmailChannel(
            {"smtp_password": "nope"}, {**OPTIONS, "smtp_user": "bot"}, NO_SESSION, relay.url
        )
        with pytest.raises(SendError) as raised:
            await channel.send(REPLY_TO, "hello", agent=False)
        assert not raised.value.retryable
        assert relay.messages == []


@pytest.mark.parametrize(
    ("code", "stage", "retryable"),
    [
        (451, "data", True),
        (421, "data", True),
        (550, "data", False),
        (452, "rcpt", True),
        (550, "rcpt", False),
    ],
)
async def test_smtp_refusals(relay: FakeSMTPServer, code: int, stage: str, retryable: bool) -> None:
    relay.fail_next(code, stage=stage)
    with pytest.raises(SendError) as raised:
        await make_channel(relay.url).send(REPLY_TO, "hello", agent=False)
    assert raised.value.retryable is retryable
    assert raised.value.status == code
    assert relay.messages == []


async def test_451_then_success(relay: FakeSMTPServer) -> None:
    relay.fail_next(451)
    channel = make_channel(relay.url)
    with pytest.raises(SendError):
        await channel.send(REPLY_TO, "hello", agent=False)
    await channel.send(REPLY_TO, "hello", agent=False)
    assert len(relay.calls) == 2 and len(relay.messages) == 1


async def test_connection_refused_is_retryable() -> None:
    channel = make_channel(f"smtp://127.0.0.1:{free_port()}")
    with pytest.raises(SendError) as raised:
        await channel.send(REPLY_TO, "hello", agent=False)
    assert raised.value.retryable


async def test_unusable_reply_to_is_permanent(relay: FakeSMTPServer) -> None:
    with pytest.raises(SendError) as raised:
        await make_channel(relay.url).send({**REPLY_TO, "to": "nobody"}, "x", agent=False)
    assert not raised.value.retryable


# -- the listener --------------------------------------------------------------------------------


class Inbox:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[InboundMessage]] = []
        self.fail = fail

    async def __call__(self, messages: list[InboundMessage]) -> None:
        if self.fail:
            raise RuntimeError("database is locked")
        self.batches.append(messages)


@pytest.fixture
async def listener() -> AsyncIterator[tuple[EmailChannel, Inbox]]:
    channel, inbox = make_channel(), Inbox()
    await channel.start_listener(inbox, clock=lambda: NOW)
    try:
        yield channel, inbox
    finally:
        await channel.stop_listener()


async def test_customer_mail_round_trip(listener: tuple[EmailChannel, Inbox]) -> None:
    channel, inbox = listener
    host, port = channel.listening()
    code, _ = await deliver(host, port, compose(message_id="<rt@example.org>"))
    assert code == 250
    [[message]] = inbox.batches
    assert message.platform_message_id == "<rt@example.org>"
    assert message.received_at == NOW
    assert message.customer.external_id == CUSTOMER


async def test_big_mail_round_trip(listener: tuple[EmailChannel, Inbox]) -> None:
    channel, inbox = listener
    data = bytes(200_000)  # parsed off the event loop
    raw = compose(attachments=[("scan.tiff", "image/tiff", data)])
    assert (await deliver(*channel.listening(), raw))[0] == 250
    [[message]] = inbox.batches
    assert message.attachments[0]["size"] == len(data)


async def test_storage_failure_answers_451(
    listener: tuple[EmailChannel, Inbox], caplog: pytest.LogCaptureFixture
) -> None:
    channel, inbox = listener
    inbox.fail = True
    code, _ = await deliver(*channel.listening(), compose())
    assert code == 451
    assert "storing" in caplog.text
    inbox.fail = False  # the sender's retry gets through
    assert (await deliver(*channel.listening(), compose()))[0] == 250


async def test_other_recipients_get_550(listener: tuple[EmailChannel, Inbox]) -> None:
    channel, inbox = listener
    code, _ = await deliver(*channel.listening(), compose(), rcpt_to="sales@example.com")
    assert code == 550
    assert inbox.batches == []


async def test_recipient_case_does_not_matter(listener: tuple[EmailChannel, Inbox]) -> None:
    channel, inbox = listener
    assert (await deliver(*channel.listening(), compose(), rcpt_to="Support@Example.COM"))[0] == 250


async def test_automatic_mail_is_accepted_and_dropped(
    listener: tuple[EmailChannel, Inbox],
) -> None:
    channel, inbox = listener
    assert (await deliver(*channel.listening(), compose_auto_reply("x-autoreply")))[0] == 250
    assert (await deliver(*channel.listening(), compose(), mail_from=""))[0] == 250
    assert inbox.batches == []


async def test_stop_listener_closes_the_port() -> None:
    channel = make_channel(listen_port=free_port())
    await channel.start_listener(Inbox())
    host, port = channel.listening()
    await channel.stop_listener()
    await channel.stop_listener()  # idempotent
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)


async def test_gateway_workers_share_the_smtp_port(monkeypatch) -> None:
    """Under `--workers` every gateway process listens on the one SMTP port."""
    monkeypatch.setenv(WORKER_ENV, "0")
    port = free_port()
    first, second = make_channel(listen_port=port), make_channel(listen_port=port)
    inbox = Inbox()
    await first.start_listener(inbox, clock=lambda: NOW)
    try:
        await second.start_listener(inbox, clock=lambda: NOW)  # no "address already in use"
        try:
            assert first.listening()[1] == second.listening()[1] == port
            code, _ = await deliver(*first.listening(), compose(message_id="<w@example.org>"))
            assert code == 250 and len(inbox.batches) == 1
        finally:
            await second.stop_listener()
    finally:
        await first.stop_listener()


async def test_fake_relay_and_listener_talk_to_each_other(relay: FakeSMTPServer) -> None:
    # deliver() is what the gateway tests use to play the customer's MTA: same fake, any server.
    code, _ = await deliver(relay.host, relay.port, compose(), rcpt_to="anyone@example.net")
    assert code == 250
    assert relay.messages[0].message["From"] == f"{CUSTOMER_NAME} <{CUSTOMER}>"
    assert relay.calls[0].path == "/anyone@example.net"


def test_only_a_dmarc_pass_from_the_relay_verifies_the_sender() -> None:
    passed = (
        "mx.example.com; spf=pass smtp.mailfrom=example.org; dmarc=pass header.from=example.org"
    )
    failed = (
        "mx.example.com; spf=fail smtp.mailfrom=example.org; dmarc=fail header.from=example.org"
    )
    assert only(compose(headers={"Authentication-Results": passed})).customer.verified
    assert not only(compose(headers={"Authentication-Results": failed})).customer.verified
