"""Email over SMTP: Promptly receives customer mail itself and answers through a relay.

Inbound: an aiosmtpd ``SMTP`` server on the gateway's event loop accepts mail for the support
address only (other recipients get 550, RFC 5321 §3.3) and answers the end of DATA with 250
only once the messages are stored, or 451 if storing failed, so the sending MTA keeps the mail
and tries again (RFC 5321 §4.2.5, §4.5.4.1). Mail written by machines (RFC 3834) is accepted
and dropped, so the bot never talks to an autoresponder.

Outbound: one ``EmailMessage`` per reply, threaded with In-Reply-To and References (RFC 5322
§3.6.4), sent with aiosmtplib to the configured relay.
"""

from __future__ import annotations

import asyncio
import email
import functools
import hashlib
import html
import logging
import os
import re
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.utils import formatdate, getaddresses, make_msgid
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib
import nh3
from aiosmtpd.smtp import SMTP

from bot.channels.base import Customer, InboundMessage, OutboundMessage
from bot.channels.platform import ListeningChannel, SendError, Sent, split_text
from bot.clock import Clock, utc_now
from bot.errors import ConfigError
from bot.settings import WORKER_ENV

logger = logging.getLogger(__name__)

NAME = "email"
OnMessages = Callable[[list[InboundMessage]], Awaitable[None]]

# RFC 3834 §2 and common practice: mail that announces it was sent by a machine.
_AUTO_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "List-Id")
_ROBOT_MAILBOXES = frozenset(
    {"mailer-daemon", "postmaster", "no-reply", "noreply", "do-not-reply", "donotreply"}
)
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+")
_MSG_ID = re.compile(r"<[^<>\s]+>")
_REPLY_PREFIX = re.compile(r"\s*re\s*:", re.IGNORECASE)
_MAX_REFERENCES = 20  # keep the thread root and the latest ids (RFC 5322 §3.6.4 allows any)
_MAX_DEPTH = 20  # MIME nesting we follow; deeper parts of hostile mail are ignored
_EXCERPT_CHARS = 1000
_INLINE_PARSE_BYTES = 64 * 1024  # larger mails are parsed off the event loop

# Quoted history (keep it simple): "On <date>, <someone> wrote:" (possibly wrapped onto a
# second line by the mail client), Outlook's "-----Original Message-----", and the signature
# delimiter "-- " (RFC 3676 §4.3; many clients strip its trailing space).
_ON_WROTE = re.compile(r"^\s*On\s.*\bwrote:\s*$", re.IGNORECASE)
_ORIGINAL = re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.IGNORECASE)

# HTML elements that end a line when the text is read.
_HTML_BREAK = re.compile(r"<br\s*/?>|</(?:p|div|li|tr|h[1-6]|blockquote|table)\s*>", re.I)

# Elements whose content no reader sees.
_HTML_HIDDEN = {"script", "style", "head", "title"}

# Markdown a plain-text reader should not see; URLs are kept verbatim (a link becomes
# "text (url)"), emphasis only loses its markers.
_MD_TOKEN = re.compile(r"\[([^\]\n]+)\]\((\S+?)\)|<(https?://[^>\s]+)>|(https?://\S+)")
_MD_EMPHASIS = (
    re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"),
    re.compile(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)"),
    re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])"),
    re.compile(r"(?<!\w)_(?=[^\s_])(.+?)(?<=[^\s_])_(?!\w)"),
    re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"),
)


class EmailChannel(ListeningChannel):
    """Options: ``address`` (required, the support mailbox), ``display_name``, ``domain``
    (for Message-IDs; default the address's), ``listen_host``/``listen_port`` (127.0.0.1:2525),
    ``max_message_bytes``, ``smtp_host``/``smtp_port`` (127.0.0.1:25), ``smtp_starttls``,
    ``smtp_user``, ``smtp_timeout`` (seconds). A non-empty ``api_base`` of the form
    ``smtp://host:port`` overrides the relay (tests point it at a fake)."""

    name: ClassVar[str] = NAME
    SECRETS: ClassVar[Mapping[str, str]] = {}
    # Read when set (bot.channels.registry): the relay's password, used with smtp_user.
    OPTIONAL_SECRETS: ClassVar[Mapping[str, str]] = {
        "smtp_password": "PROMPTLY_EMAIL_SMTP_PASSWORD"
    }
    MAX_CHARS: ClassVar[int] = 100_000

    def __init__(
        self,
        secrets: Mapping[str, str],
        options: Mapping[str, Any],
        session: aiohttp.ClientSession,
        api_base: str,
    ) -> None:
        super().__init__(secrets, options, session, api_base)
        self.address = _required_address(options.get("address"))
        self.display_name = str(options.get("display_name") or "")
        self.domain = str(options.get("domain") or self.address.partition("@")[2])
        try:  # the From header must be buildable before the first reply is due
            Address(display_name=self.display_name, addr_spec=self.address)
        except (ValueError, IndexError) as e:
            raise ConfigError(f"options.address: {e}") from e
        self.listen_host = str(options.get("listen_host") or "127.0.0.1")
        self.listen_port = _port(options, "listen_port", 2525)
        self.max_message_bytes = _positive(options, "max_message_bytes", 10 * 1024 * 1024)
        self.smtp_host = str(options.get("smtp_host") or "127.0.0.1")
        self.smtp_port = _port(options, "smtp_port", 25)
        if self.api_base:
            self.smtp_host, self.smtp_port = _smtp_url(self.api_base)
        self.smtp_starttls = _flag(options, "smtp_starttls", False)
        self.smtp_timeout = float(_positive(options, "smtp_timeout", 30))
        self.smtp_user = str(options.get("smtp_user") or "") or None
        self.smtp_password = secrets.get("smtp_password") or None
        if self.smtp_password and not self.smtp_user:
            raise ConfigError(
                "options.smtp_user: required when PROMPTLY_EMAIL_SMTP_PASSWORD is set"
            )
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    # -- inbound -------------------------------------------------------------------------------

    def parse_email(
        self, raw: bytes, received_at: datetime, *, envelope_from: str | None = None
    ) -> list[InboundMessage]:
        return parse_email(raw, received_at, address=self.address, envelope_from=envelope_from)

    async def start_listener(self, on_messages: OnMessages, *, clock: Clock = utc_now) -> None:
        """Serve SMTP on ``listen_host:listen_port`` on the running loop. ``on_messages`` must
        store what it is given: the sender hears 250 only once it returned."""
        if self._server is not None:
            raise RuntimeError("the email listener is already running")
        # aiosmtpd logs every SMTP command, customer addresses included, at INFO: keep the
        # gateway's log to what matters (our own lines say what was received or refused).
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        handler = _Handler(self, on_messages, clock)

        def protocol() -> SMTP:
            # hostname given: aiosmtpd would otherwise ask DNS (socket.getfqdn) on the loop.
            smtp = SMTP(
                handler,
                hostname=self.domain,
                ident="Promptly ESMTP",
                data_size_limit=self.max_message_bytes,
                enable_SMTPUTF8=True,
                loop=loop,
            )
            self._sessions.add(smtp)
            return smtp

        # Under `--workers`, every gateway process listens on the port (the kernel spreads the
        # connections); each mail is stored once whichever process takes it.
        shared = os.environ.get(WORKER_ENV) is not None
        self._server = await loop.create_server(
            protocol, self.listen_host, self.listen_port, reuse_port=shared or None
        )
        logger.info("email: listening for SMTP on %s:%d", *self.listening())

    def listening(self) -> tuple[str, int]:
        """The address the listener is bound to (the real port when ``listen_port`` is 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the email listener is not running")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def stop_listener(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Open sessions outlive server.close(); a sender cut off before 250 retries later.
        for smtp in list(self._sessions):
            if smtp.transport is not None:
                smtp.transport.close()
        await server.wait_closed()

    # -- outbound ------------------------------------------------------------------------------

    def render(self, reply: OutboundMessage) -> list[str]:
        return split_text(plain_text(reply.text), self.MAX_CHARS)

    def compose(self, reply_to: Mapping[str, Any], text: str, *, agent: bool) -> EmailMessage:
        """The reply as a message threaded under the customer's (RFC 5322 §3.6.4)."""
        to = _one_line(reply_to.get("to"))
        if not _ADDRESS.fullmatch(to):
            raise ValueError(f"reply_to.to is not an address: {to!r}")
        message = EmailMessage()
        message["From"] = Address(display_name=self.display_name, addr_spec=self.address)
        message["To"] = to
        message["Subject"] = _one_line(reply_to.get("subject")) or "Re: your message"
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.domain)
        if in_reply_to := _one_line(reply_to.get("in_reply_to")):
            message["In-Reply-To"] = in_reply_to
        if references := _one_line(reply_to.get("references")):
            message["References"] = references
        if not agent:
            # RFC 3834 §5: marks the bot's answers so the customer's autoresponder stays quiet.
            message["Auto-Submitted"] = "auto-replied"
        message.set_content(text)
        return message

    async def send(self, reply_to: Mapping[str, Any], text: str, *, agent: bool) -> Sent:
        try:
            message = self.compose(reply_to, text, agent=agent)
        except (TypeError, ValueError, IndexError) as e:
            raise SendError(f"cannot build the email: {e}", retryable=False) from e
        try:
            await aiosmtplib.send(
                message,
                sender=self.address,
                recipients=[str(message["To"])],
                hostname=self.smtp_host,
                port=self.smtp_port,
                local_hostname=self.domain,  # else aiosmtplib asks DNS for our name
                username=self.smtp_user if self.smtp_password else None,
                password=self.smtp_password,
                use_tls=False,
                start_tls=self.smtp_starttls,
                timeout=self.smtp_timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as e:
            refused = e.recipients[0] if e.recipients else None
            raise _smtp_error(refused.code if refused else 550, str(e)) from e
        except aiosmtplib.SMTPResponseException as e:
            raise _smtp_error(e.code, e.message) from e
        except (aiosmtplib.SMTPNotSupported, ValueError) as e:
            # STARTTLS configured but not offered; an address aiosmtplib will not put on a
            # command line: trying again changes nothing.
            raise SendError(f"SMTP: {e}", retryable=False) from e
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            raise SendError(f"SMTP {type(e).__name__}: {e}", retryable=True) from e
        return Sent(str(message["Message-ID"]))


class _Handler:
    """aiosmtpd hooks (aiosmtpd docs, "Handler hooks"): RCPT filters, DATA stores."""

    def __init__(self, channel: EmailChannel, on_messages: OnMessages, clock: Clock) -> None:
        self._channel = channel
        self._on_messages = on_messages
        self._clock = clock

    async def handle_RCPT(  # noqa: N802 - the name aiosmtpd looks up
        self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() != self._channel.address:
            return "550 5.1.1 Mailbox unavailable: not a support address"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        parse = functools.partial(
            self._channel.parse_email, raw, self._clock(), envelope_from=envelope.mail_from
        )
        # A big mail takes the parser ~30 ms per MB (base64, HTML): in a thread the loop still
        # gets the GIL every switch interval, so acks on other channels stay prompt.
        messages = await asyncio.to_thread(parse) if len(raw) > _INLINE_PARSE_BYTES else parse()
        if messages:
            try:
                await self._on_messages(messages)
            except Exception:
                # 451: the sender keeps the mail and retries (RFC 5321 §4.2.5); nothing is lost.
                logger.exception("email: storing %s failed", messages[0].platform_message_id)
                return "451 4.3.0 Temporary failure, please try again later"
        return "250 2.0.0 OK"


# -- parsing ------------------------------------------------------------------------------------


def parse_email(
    raw: bytes,
    received_at: datetime,
    *,
    address: str | None = None,
    envelope_from: str | None = None,
) -> list[InboundMessage]:
    """The customer message in one raw RFC 5322 mail: none for machine-written mail (RFC 3834)
    or mail from ``address`` (ours), or without any sender; never raises.

    ``envelope_from`` is SMTP's MAIL FROM ("" or "<>" for a bounce), the sender of last resort.
    """
    try:
        return _parse(raw, received_at, (address or "").lower(), envelope_from)
    except Exception:
        # The stdlib parser has corner cases that raise on hostile input; the mail is still
        # kept, as "other", for an agent to read.
        logger.warning("email: unparsable message (%d bytes)", len(raw), exc_info=True)
        return _unreadable(raw, received_at, (address or "").lower(), envelope_from)


def _authenticated(message: email.message.Message) -> bool:
    """Did the receiving mail server check the sender (DMARC pass, RFC 8601 and RFC 7489)?

    A bare From is forgeable by anyone who can reach the listener, so only an address the
    relay in front authenticated links this sender to a customer known elsewhere. That relay
    must drop Authentication-Results headers the sender wrote (RFC 8601, section 5)."""
    results = " ".join(str(v) for v in message.get_all("Authentication-Results") or [])
    return re.search(r"\bdmarc=pass\b", results, re.IGNORECASE) is not None


def _parse(
    raw: bytes, received_at: datetime, address: str, envelope_from: str | None
) -> list[InboundMessage]:
    # compat32 keeps header values as sent; they are decoded here, leniently.
    message = email.message_from_bytes(raw)
    if not message.keys():  # not a mail at all
        return _unreadable(raw, received_at, address, envelope_from)
    name, sender = _sender(_raw_header(message, "From"))
    message_id = _message_id(_header(message, "Message-ID"))
    reason = _automatic(message, sender, address, envelope_from)
    if reason:
        logger.info("email: ignored %s: %s", message_id or "a message", reason)
        return []
    if not sender:
        name, sender = "", _envelope_sender(envelope_from)
    if not sender:
        logger.info("email: ignored %s: no sender address", message_id or "a message")
        return []
    subject = " ".join(_header(message, "Subject").split())
    content = _Content()
    _collect(message, content, 0)
    body = content.plain if content.plain.strip() else html_to_text(content.html)
    text = strip_quoted(body)
    attachments = tuple(content.attachments)
    kind = "text"
    if not text and attachments:
        kind, text = "file", subject  # the subject captions what was sent
    elif not text and subject:
        text = subject
    elif not text:
        kind, attachments = "other", (_excerpt(raw, message.get_content_type()),)
    references = _MSG_ID.findall(_header(message, "References"))
    if message_id:
        references.append(message_id)
    if len(references) > _MAX_REFERENCES:
        references = references[:1] + references[-(_MAX_REFERENCES - 1) :]
    return [
        InboundMessage(
            channel=NAME,
            customer=Customer(sender, name or None, email=sender, verified=_authenticated(message)),
            platform_message_id=message_id or _raw_id(raw),
            text=text,
            received_at=received_at,
            attachments=attachments,
            kind=kind,
            reply_to={
                "to": sender,
                "subject": reply_subject(subject),
                "in_reply_to": message_id,
                "references": " ".join(references),
            },
        )
    ]


def _unreadable(
    raw: bytes, received_at: datetime, address: str, envelope_from: str | None
) -> list[InboundMessage]:
    """What could be read of bytes that are no mail, from the SMTP sender if there is one."""
    sender = _envelope_sender(envelope_from)
    if not sender or sender == address:
        return []
    return [
        InboundMessage(
            channel=NAME,
            customer=Customer(sender, email=sender),
            platform_message_id=_raw_id(raw),
            text="",
            received_at=received_at,
            attachments=(_excerpt(raw, "message/rfc822"),),
            kind="other",
            reply_to={
                "to": sender,
                "subject": "Re: your message",
                "in_reply_to": "",
                "references": "",
            },
        )
    ]


def _automatic(message: Message, sender: str, address: str, envelope_from: str | None) -> str:
    """Why this mail was written by a machine (RFC 3834 §2), or ""."""
    auto = _header(message, "Auto-Submitted").partition(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = _header(message, "Precedence").strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    for header in _AUTO_HEADERS:
        if header in message:
            return f"{header} present"
    if sender.partition("@")[0] in _ROBOT_MAILBOXES:
        return f"sent by {sender.partition('@')[0]}"
    if address and address in (sender, _envelope_sender(envelope_from)):
        return "sent from the support address"
    if envelope_from is not None and envelope_from.strip() in ("", "<>"):
        return "null return path (a bounce)"
    return ""


@dataclass
class _Content:
    plain: str = ""
    html: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)


def _collect(part: Message, content: _Content, depth: int) -> None:
    """Body text and attachment descriptions from a MIME tree (RFC 2045-2046)."""
    mime = part.get_content_type()
    if mime != "message/rfc822" and part.is_multipart():
        if depth < _MAX_DEPTH:
            for child in part.get_payload():
                if isinstance(child, Message):
                    _collect(child, content, depth + 1)
        return
    if mime in ("text/plain", "text/html") and part.get_content_disposition() != "attachment":
        text = _text(part)
        if mime == "text/plain":
            content.plain = f"{content.plain}\n{text}" if content.plain else text
        else:
            content.html = f"{content.html}\n{text}" if content.html else text
        return
    content.attachments.append(_attachment(part, mime))


def _attachment(part: Message, mime: str) -> dict[str, Any]:
    payload = None if part.is_multipart() else part.get_payload(decode=True)
    filename = part.get_filename()
    maintype = mime.partition("/")[0]
    return {
        "kind": maintype if maintype in ("image", "audio", "video") else "file",
        "filename": _decode(filename) if isinstance(filename, str) else None,
        "mime_type": mime,
        "size": len(payload) if isinstance(payload, bytes) else None,
    }


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        text = payload.decode(part.get_content_charset() or "utf-8", "replace")
    except (LookupError, ValueError, TypeError):  # unknown or non-text charset
        text = payload.decode("utf-8", "replace")
    return _clean(text)


def _excerpt(raw: bytes, mime: str) -> dict[str, Any]:
    """What an agent can read of a mail Promptly could not make sense of."""
    text = _clean(raw[: _EXCERPT_CHARS * 4].decode("utf-8", "replace"))[:_EXCERPT_CHARS]
    return {"kind": "other", "mime_type": mime, "size": len(raw), "excerpt": text}


def html_to_text(markup: str) -> str:
    """The text a reader sees in an HTML body: nh3 strips every tag (and script/style
    content), block ends become line breaks, entities are decoded."""
    if not markup.strip():
        return ""
    marked = _HTML_BREAK.sub("\n", markup)
    stripped = nh3.clean(marked, tags=set(), clean_content_tags=_HTML_HIDDEN)
    lines = (" ".join(line.split()) for line in html.unescape(stripped).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def strip_quoted(text: str) -> str:
    """The customer's new words: no '>' lines, nothing from an attribution line ("On ...
    wrote:"), an Outlook "-----Original Message-----" or a signature delimiter on."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if _quote_starts(line, following):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line.rstrip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _quote_starts(line: str, following: str) -> bool:
    if line in ("-- ", "--") or _ORIGINAL.match(line):
        return True
    if _ON_WROTE.match(line):
        return True
    # Clients wrap long attributions: "On Tue, 3 Mar 2026 at 10:02, Alice Example\n<a@x> wrote:"
    return bool(
        re.match(r"^\s*On\s", line)
        and re.search(r"\bwrote:\s*$", following)
        and not following.lstrip().startswith(">")
    )


def reply_subject(subject: str) -> str:
    """ "Re: " + subject, without piling up "Re: Re:" (RFC 5322 §3.6.5)."""
    subject = " ".join(subject.split())
    if not subject:
        return "Re: your message"
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


def plain_text(markdown: str) -> str:
    """Markdown as plain text: emphasis markers dropped, links as "text (url)", URLs intact."""
    out: list[str] = []
    position = 0
    for match in _MD_TOKEN.finditer(markdown):
        out.append(_unemphasise(markdown[position : match.start()]))
        label, target, bracketed, bare = match.groups()
        if label is not None:
            label = _unemphasise(label)
            out.append(target if label == target else f"{label} ({target})")
        else:
            out.append(bracketed or bare)
        position = match.end()
    out.append(_unemphasise(markdown[position:]))
    return "".join(out)


def _unemphasise(text: str) -> str:
    for pattern in _MD_EMPHASIS:
        text = pattern.sub(r"\1", text)
    return text


# -- headers ----------------------------------------------------------------------------------


def _raw_header(message: Message, name: str) -> str:
    """The first ``name`` header, unfolded (RFC 5322 §2.2.3) but not decoded."""
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            return re.sub(r"\r?\n(?=[ \t])", "", str(value)).strip()
    return ""


def _header(message: Message, name: str) -> str:
    return _decode(_raw_header(message, name))


def _decode(value: str) -> str:
    """RFC 2047 encoded words decoded; anything malformed is kept as sent."""
    if "=?" in value:
        try:
            return _clean(str(make_header(decode_header(value))))
        except Exception:  # bad base64, unknown charsets: the text as sent beats nothing
            logger.debug("email: undecodable header %r", value[:200])
    return _clean(value)


def _clean(text: str) -> str:
    """Text safe to store: undecodable bytes (kept as surrogates by the parser) read as UTF-8
    or U+FFFD, and no NUL (PostgreSQL text refuses it)."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "")


def _sender(value: str) -> tuple[str, str]:
    """(display name, lower-cased address) of the first mailbox in a From header."""
    for name, address in getaddresses([value]):
        address = _clean(address.strip()).lower()
        if _ADDRESS.fullmatch(address):
            return " ".join(_decode(name).split()), address
    return "", ""


def _envelope_sender(envelope_from: str | None) -> str:
    address = _clean((envelope_from or "").strip().strip("<>")).lower()
    return address if _ADDRESS.fullmatch(address) else ""


def _message_id(value: str) -> str:
    found = _MSG_ID.search(value)
    return found.group(0) if found else " ".join(value.split())[:998]


def _raw_id(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _one_line(value: Any) -> str:
    """A header value that cannot smuggle in another header."""
    return " ".join(str(value).split()) if value else ""


def _smtp_error(code: int, message: str) -> SendError:
    """4xx asks to try again later, 5xx is final (RFC 5321 §4.2.1)."""
    return SendError(f"SMTP {code}: {message[:200]}", retryable=400 <= code < 500, status=code)


# -- options ----------------------------------------------------------------------------------


def _required_address(value: Any) -> str:
    if not value:
        raise ConfigError("options.address: required")
    address = str(value).strip().lower()
    if not _ADDRESS.fullmatch(address):
        raise ConfigError(f"options.address: not an email address: {value!r}")
    return address


def _port(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"options.{key}: must be a port number, got {value!r}")
    return value


def _positive(options: Mapping[str, Any], key: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"options.{key}: must be a positive integer, got {value!r}")
    return value


def _flag(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"options.{key}: must be true or false, got {value!r}")
    return value


def _smtp_url(api_base: str) -> tuple[str, int]:
    parts = urlsplit(api_base)
    try:
        port = parts.port or 25
    except ValueError:
        port = -1
    if parts.scheme != "smtp" or not parts.hostname or port < 1:
        raise ConfigError(f"api_base: must be smtp://host:port, got {api_base!r}")
    return parts.hostname, port
