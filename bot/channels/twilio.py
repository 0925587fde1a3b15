"""Twilio Programmable Messaging channel: SMS and WhatsApp through Twilio ("whatsapp:" numbers).

Twilio docs: "Webhooks security" (X-Twilio-Signature), "Messaging webhook request" (form
parameters), "Messages resource" (sending) and "Twilio API for WhatsApp" (the 24-hour session,
1600 characters). SMS and WhatsApp share one webhook, so the limits that differ between them
are chosen from ``reply_to``: ``window_for``, ``max_chars_for`` and ``render_for``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import aiohttp

from bot.channels.base import Customer, InboundMessage, OutboundMessage
from bot.channels.platform import (
    Response,
    SendError,
    Sent,
    Webhook,
    WebhookChannel,
    Window,
    error_from_status,
    retry_after_seconds,
    split_text,
)
from bot.errors import BadRequest, Unauthorized

TWILIO_API = "https://api.twilio.com"
SIGNATURE_HEADER = "X-Twilio-Signature"
WHATSAPP_PREFIX = "whatsapp:"
# "Receive and reply to messages with TwiML": an empty <Response> sends nothing back; replies
# go out through the Messages resource once the turn is done.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
E164 = re.compile(r"\+[1-9]\d{6,14}")
MAX_MEDIA = 10  # "Messaging webhook request": NumMedia is at most 10


class TwilioChannel(WebhookChannel):
    name: ClassVar[str] = "twilio"
    DEFAULT_API_BASE: ClassVar[str] = TWILIO_API
    SECRETS: ClassVar[Mapping[str, str]] = {
        "account_sid": "PROMPTLY_TWILIO_ACCOUNT_SID",
        "auth_token": "PROMPTLY_TWILIO_AUTH_TOKEN",
    }
    # SMS: 320 characters is two GSM-7 segments (five UCS-2 ones), so a long answer goes out as
    # a few readable texts instead of one that the handset may show truncated or out of order.
    MAX_CHARS: ClassVar[int] = 320
    WHATSAPP_MAX_CHARS: ClassVar[int] = 1600  # Twilio's Body limit
    WINDOW: ClassVar[Window] = Window()  # SMS has no session rule
    WHATSAPP_WINDOW: ClassVar[Window] = Window(
        automated=timedelta(hours=24), agent=timedelta(hours=24)
    )

    # -- inbound ------------------------------------------------------------------------------

    def verify(self, hook: Webhook) -> Response | None:
        given = hook.headers.get(SIGNATURE_HEADER)
        if not given:
            raise Unauthorized("signature_missing", f"{SIGNATURE_HEADER} header is missing")
        params = _form(hook.body) if hook.method.upper() == "POST" else []
        token = self.secrets["auth_token"]
        # Twilio's own validators accept the URL with and without the default port, since
        # proxies differ in which one they forward.
        if not any(
            hmac.compare_digest(
                signature(token, url, params).encode(), given.strip().encode(errors="replace")
            )
            for url in url_variants(hook.url)
        ):
            raise Unauthorized("signature_invalid", f"{SIGNATURE_HEADER} does not match")
        return None

    def parse(self, hook: Webhook) -> list[InboundMessage]:
        pairs = _form(hook.body) if hook.method.upper() == "POST" else list(hook.query.items())
        params = dict(pairs)
        # A status callback (sent, delivered, failed...) on the same URL is not a message.
        status = params.get("SmsStatus") or params.get("MessageStatus") or "received"
        sid = params.get("MessageSid") or params.get("SmsMessageSid")
        sender = params.get("From")
        if status != "received" or not sid or not sender:
            return []
        number = sender.removeprefix(WHATSAPP_PREFIX)
        phone = number if E164.fullmatch(number) else None
        kind, text, attachments = content(params)
        return [
            InboundMessage(
                channel=self.name,
                # Twilio (the carrier, or WhatsApp) vouches for From.
                customer=Customer(
                    sender,
                    params.get("ProfileName") or None,
                    phone=phone,
                    verified=phone is not None,
                ),
                platform_message_id=sid,
                text=text,
                received_at=hook.received_at,
                attachments=attachments,
                kind=kind,
                reply_to={"to": sender, "from": params.get("To", "")},
            )
        ]

    def ok(self) -> Response:
        return Response(200, EMPTY_TWIML, "text/xml")

    # -- outbound -----------------------------------------------------------------------------

    def window_for(self, reply_to: Mapping[str, Any]) -> Window:
        return self.WHATSAPP_WINDOW if is_whatsapp(reply_to) else self.WINDOW

    def max_chars_for(self, reply_to: Mapping[str, Any]) -> int:
        return self.WHATSAPP_MAX_CHARS if is_whatsapp(reply_to) else self.MAX_CHARS

    def render(self, reply: OutboundMessage) -> list[str]:
        """As SMS, which fits WhatsApp too; ``render_for`` knows where the reply goes."""
        return self.render_for(reply, {})

    def render_for(self, reply: OutboundMessage, reply_to: Mapping[str, Any]) -> list[str]:
        if is_whatsapp(reply_to):  # WhatsApp reads *bold* and _italic_ itself
            return split_text(reply.text, self.WHATSAPP_MAX_CHARS)
        return split_text(strip_markdown(reply.text), self.MAX_CHARS)

    async def send(self, reply_to: Mapping[str, Any], text: str, *, agent: bool) -> Sent:
        to, from_ = reply_to.get("to"), reply_to.get("from")
        if not to or not from_:
            raise SendError("reply_to needs to and from", retryable=False)
        sid = self.secrets["account_sid"]
        url = f"{self.api_base}/2010-04-01/Accounts/{sid}/Messages.json"
        form = {"To": str(to), "From": str(from_), "Body": text}
        auth = {"Authorization": basic_auth(sid, self.secrets["auth_token"])}
        try:
            async with self.session.post(url, data=form, headers=auth) as resp:
                body = (await resp.read()).decode("utf-8", "replace")
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError) as e:
            raise SendError(f"Twilio unreachable: {e!r}", retryable=True) from e
        if not 200 <= status < 300:
            # Errors are JSON {code, message, more_info, status}; 429 is code 20429.
            raise error_from_status(
                status, body, retry_after_seconds(retry_after, datetime.now(UTC))
            )
        return Sent(_sid(body))


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """ "Webhooks security": base64 HMAC-SHA1 of the URL followed by each POST parameter's
    name and value, sorted by name (then value)."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def basic_auth(login: str, password: str) -> str:
    """HTTP basic credentials (aiohttp's BasicAuth is deprecated, its replacement new)."""
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


def url_variants(url: str) -> list[str]:
    """``url`` and the same URL with the scheme's default port added or removed."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return [url]
    if default is None or not parts.hostname:
        return [url]
    if port is None:
        other = parts._replace(netloc=f"{parts.netloc}:{default}")
    elif port == default:
        other = parts._replace(netloc=parts.netloc.rsplit(":", 1)[0])
    else:
        return [url]
    return [url, urlunsplit(other)]


def is_whatsapp(reply_to: Mapping[str, Any]) -> bool:
    return str(reply_to.get("to", "")).startswith(WHATSAPP_PREFIX)


def content(params: Mapping[str, str]) -> tuple[str, str, tuple[dict[str, Any], ...]]:
    """(kind, text, attachments) of one inbound message."""
    body = params.get("Body", "")
    media = _media(params)
    if media:
        return media[0]["kind"], body, media
    if params.get("Latitude") and params.get("Longitude"):  # WhatsApp location
        location = {
            "kind": "location",
            "latitude": params["Latitude"],
            "longitude": params["Longitude"],
            "name": params.get("Label", ""),
            "address": params.get("Address", ""),
        }
        return "location", "", (location,)
    if params.get("ButtonText"):  # a WhatsApp quick-reply button: its text is the answer
        return (
            "text",
            params["ButtonText"],
            ({"kind": "reply", "id": params.get("ButtonPayload", "")},),
        )
    if body:
        return "text", body, ()
    return "other", "", ({"kind": "other", "type": params.get("MessageType", "")},)


def _media(params: Mapping[str, str]) -> tuple[dict[str, Any], ...]:
    try:
        count = min(int(params.get("NumMedia", "0")), MAX_MEDIA)
    except ValueError:
        return ()
    found = []
    for i in range(count):
        mime_type = params.get(f"MediaContentType{i}", "")
        found.append(
            {
                "kind": media_kind(mime_type),
                "url": params.get(f"MediaUrl{i}", ""),
                "mime_type": mime_type,
                "caption": params.get("Body", ""),
            }
        )
    return tuple(found)


def media_kind(mime_type: str) -> str:
    major = mime_type.split("/", 1)[0].lower()
    if major in ("image", "audio", "video"):
        return major
    if mime_type.lower() in ("text/vcard", "text/x-vcard"):
        return "contact"
    return "file"


def _form(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest("malformed_form", "the body is not UTF-8 form data") from e
    return parse_qsl(text, keep_blank_values=True)


def _sid(body: str) -> str | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    sid = answer.get("sid") if isinstance(answer, dict) else None
    return sid if isinstance(sid, str) else None


# -- Markdown for SMS -------------------------------------------------------------------------

_LINK = re.compile(r"!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# A URL, without the punctuation or markup that may close the sentence around it.
_URL = re.compile(r"(https?://[^\s<>]*[^\s<>*_.,;:!?()\[\]'\"`~])")
_LINE_MARKUP = [
    (re.compile(r"^\s{0,3}(```|~~~).*$", re.M), ""),  # code fences
    (re.compile(r"^\s{0,3}#{1,6}\s+", re.M), ""),  # headings
    (re.compile(r"^\s{0,3}>\s?", re.M), ""),  # block quotes
    (re.compile(r"^(\s*)[*+]\s+", re.M), r"\1- "),  # bullets
]
_INLINE_MARKUP = [
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"`([^`\n]+)`"), r"\1"),
]


def strip_markdown(text: str) -> str:
    """Plain text for SMS: markup removed, links as "title (url)", URLs left intact."""
    text = _LINK.sub(_link, text)
    for pattern, replacement in _LINE_MARKUP:
        text = pattern.sub(replacement, text)
    pieces = _URL.split(text)
    for i in range(0, len(pieces), 2):  # odd pieces are URLs, whose _ and * are literal
        for pattern, replacement in _INLINE_MARKUP:
            pieces[i] = pattern.sub(replacement, pieces[i])
    return re.sub(r"\n{3,}", "\n\n", "".join(pieces))


def _link(match: re.Match[str]) -> str:
    title, url = match.group(1).strip(), match.group(2)
    return url if not title or title == url else f"{title} ({url})"
