"""Slack over the Events API: https://api.slack.com/apis/events-api.

Slack POSTs one JSON envelope per event, signed with the app's signing secret ("Verifying
requests from Slack"); replies go out with ``chat.postMessage``, in the thread the customer
wrote in. Slack retries an event it got no 2xx for with the same ``event_id``, the dedup key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp

from bot.channels.base import Customer, InboundMessage, OutboundMessage
from bot.channels.platform import (
    Response,
    SendError,
    Sent,
    Webhook,
    WebhookChannel,
    error_from_status,
    retry_after_seconds,
    split_escaped,
)
from bot.errors import BadRequest, Unauthorized

logger = logging.getLogger(__name__)

API_BASE = "https://slack.com"
SIGNATURE_HEADER = "X-Slack-Signature"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
# "Verifying requests from Slack": refuse requests more than five minutes old (replays).
MAX_SKEW_SECONDS = 5 * 60

# "Formatting text for app surfaces > Escaping text": only these three are control characters.
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))

# Message subtypes that are the customer speaking ("message" event, "Message subtypes").
_SPOKEN_SUBTYPES = frozenset({None, "thread_broadcast", "me_message", "file_share"})
# Subtypes that are not the customer speaking: bots, channel housekeeping, and joins and
# leaves, which member_joined_channel / member_left_channel already report.
_IGNORED_SUBTYPES = frozenset(
    {
        "bot_message",
        "bot_add",
        "bot_remove",
        "channel_join",
        "channel_leave",
        "group_join",
        "group_leave",
        "channel_topic",
        "channel_purpose",
        "channel_name",
        "channel_archive",
        "channel_unarchive",
        "group_topic",
        "group_purpose",
        "group_name",
        "group_archive",
        "group_unarchive",
        "pinned_item",
        "unpinned_item",
        "ekm_access_denied",
        "message_replied",
        "assistant_app_thread",
    }
)
# Slack's transient failures, worth another try ("chat.postMessage > Errors").
_RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class SlackChannel(WebhookChannel):
    name = "slack"
    DEFAULT_API_BASE: ClassVar[str] = API_BASE
    SECRETS: ClassVar[Mapping[str, str]] = {
        "signing_secret": "PROMPTLY_SLACK_SIGNING_SECRET",
        "bot_token": "PROMPTLY_SLACK_BOT_TOKEN",
    }
    # "chat.postMessage > Truncating content": keep text under 4,000 characters (Slack
    # truncates past 40,000).
    MAX_CHARS: ClassVar[int] = 4000

    def __init__(
        self,
        secrets: Mapping[str, str],
        options: Mapping[str, Any],
        session: aiohttp.ClientSession,
        api_base: str,
    ) -> None:
        super().__init__(secrets, options, session, api_base)
        self._signing_secret = secrets["signing_secret"].encode()
        self._token = secrets["bot_token"]

    # -- inbound ------------------------------------------------------------------------------

    def verify(self, hook: Webhook) -> Response | None:
        signature = hook.headers.get(SIGNATURE_HEADER)
        timestamp = hook.headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp:
            raise Unauthorized(
                "missing_signature", f"{SIGNATURE_HEADER} and {TIMESTAMP_HEADER} are required"
            )
        if not re.fullmatch(r"[0-9]{1,12}", timestamp):
            raise Unauthorized("bad_timestamp", f"{TIMESTAMP_HEADER} is not a Unix time")
        if abs(hook.received_at.timestamp() - int(timestamp)) > MAX_SKEW_SECONDS:
            raise Unauthorized("stale_timestamp", f"{TIMESTAMP_HEADER} is too far from now")
        # v0=hex(HMAC-SHA256(signing secret, "v0:<timestamp>:<raw body>")).
        base = b"v0:" + timestamp.encode() + b":" + hook.body
        expected = "v0=" + hmac.new(self._signing_secret, base, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(errors="replace"), expected.encode()):
            raise Unauthorized("bad_signature", f"{SIGNATURE_HEADER} does not match")
        return _url_verification(hook.body)

    def parse(self, hook: Webhook) -> list[InboundMessage]:
        envelope = _load(hook.body)
        if envelope.get("type") != "event_callback":
            return []
        event_id = _str(envelope.get("event_id"))
        if not event_id:
            raise BadRequest("missing_event_id", "a Slack event_callback needs an event_id")
        messages = _event(
            _dict(envelope.get("event")), _factory(self.name, event_id, hook.received_at)
        )
        # The app's own bot user joins channels and reacts too ("authorizations" lists it).
        bots = {
            _str(a.get("user_id"))
            for a in map(_dict, _list(envelope.get("authorizations")))
            if a.get("is_bot") is True
        }
        return [m for m in messages if m.customer.external_id not in bots]

    # -- outbound -----------------------------------------------------------------------------

    def render(self, reply: OutboundMessage) -> list[str]:
        return split_escaped(reply.text, self.MAX_CHARS, escape_mrkdwn)

    async def send(self, reply_to: Mapping[str, Any], text: str, *, agent: bool) -> Sent:
        if not reply_to.get("channel"):
            raise SendError("slack: reply_to has no channel", retryable=False)
        body: dict[str, Any] = {"channel": reply_to["channel"], "text": text}
        if reply_to.get("thread_ts"):
            body["thread_ts"] = reply_to["thread_ts"]
        headers = {
            "Authorization": f"Bearer {self._token}",
            # "Using the Slack Web API > JSON-encoded bodies": declare the charset.
            "Content-Type": "application/json; charset=utf-8",
        }
        url = f"{self.api_base}/api/chat.postMessage"
        try:
            async with self.session.post(
                url, data=json.dumps(body).encode(), headers=headers
            ) as resp:
                raw = await resp.text()
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError) as e:
            raise SendError(f"slack: {type(e).__name__}: {e}", retryable=True) from e
        return _sent(status, raw, retry_after)


# -- inbound helpers --------------------------------------------------------------------------

Make = Callable[[Customer, str, str, Mapping[str, Any], tuple[dict[str, Any], ...]], InboundMessage]


def _event(event: dict[str, Any], make: Make) -> list[InboundMessage]:
    event_type = event.get("type")
    if event_type == "message":
        return _message(event, make)
    if event_type in ("reaction_added", "reaction_removed"):
        return _reaction(event, make)
    if event_type in ("member_joined_channel", "member_left_channel"):
        kind = "join" if event_type == "member_joined_channel" else "leave"
        return _membership(event, kind, make)
    # app_mention repeats a message event; app_home_opened, tokens_revoked...: not messages.
    logger.debug("slack event of type %r ignored", event_type)
    return []


def _message(event: dict[str, Any], make: Make) -> list[InboundMessage]:
    subtype = _str(event.get("subtype"))
    # Our own replies come back as events with a bot_id ("message" event, "Bot messages").
    if "bot_id" in event or subtype in _IGNORED_SUBTYPES:
        return []
    if subtype == "message_changed":
        return _edit(event, make)
    if subtype == "message_deleted":
        return _deleted(event, make)
    customer = _customer(event)
    reply_to = _reply_to(event.get("channel"), event)
    if customer is None or reply_to is None:
        return []
    text = unescape_mrkdwn(_str(event.get("text")) or "")
    files = _files(event.get("files"), text)
    if files:
        return [make(customer, _files_kind(files), text, reply_to, files)]
    if subtype in _SPOKEN_SUBTYPES:
        return [make(customer, "text", text, reply_to, ())]
    other = {"kind": "other", "subtype": subtype}
    return [make(customer, "other", text, reply_to, (other,))]


def _edit(event: dict[str, Any], make: Make) -> list[InboundMessage]:
    """A message_changed event: the new message is in ``message``, the old one in
    ``previous_message``."""
    message = _dict(event.get("message"))
    previous = _dict(event.get("previous_message"))
    customer = _customer(message)
    reply_to = _reply_to(event.get("channel"), message)
    if "bot_id" in message or customer is None or reply_to is None:
        return []
    text = unescape_mrkdwn(_str(message.get("text")) or "")
    old = unescape_mrkdwn(_str(previous.get("text")) or "")
    # Slack also sends message_changed when it unfurls a link: the text is the same.
    if previous and text == old:
        return []
    edit = {"kind": "edit", "ts": _str(message.get("ts")), "previous_text": old}
    return [make(customer, "edit", text, reply_to, (edit,))]


def _deleted(event: dict[str, Any], make: Make) -> list[InboundMessage]:
    previous = _dict(event.get("previous_message"))
    customer = _customer(previous)
    reply_to = _reply_to(event.get("channel"), previous)
    if "bot_id" in previous or customer is None or reply_to is None:
        return []
    deleted = {"kind": "delete", "ts": _str(event.get("deleted_ts"))}
    return [make(customer, "delete", "", reply_to, (deleted,))]


def _reaction(event: dict[str, Any], make: Make) -> list[InboundMessage]:
    """A reaction_added or reaction_removed event: ``item`` is the message reacted to."""
    item = _dict(event.get("item"))
    customer = _customer(event)
    reply_to = _reply_to(item.get("channel"), {})
    if customer is None or reply_to is None:
        return []
    reaction = {
        "kind": "reaction",
        "emoji": _str(event.get("reaction")),
        "removed": event.get("type") == "reaction_removed",
        "ts": _str(item.get("ts")),
    }
    return [make(customer, "reaction", "", reply_to, (reaction,))]


def _membership(event: dict[str, Any], kind: str, make: Make) -> list[InboundMessage]:
    customer = _customer(event)
    reply_to = _reply_to(event.get("channel"), {})
    if customer is None or reply_to is None:
        return []
    return [make(customer, kind, "", reply_to, ({"kind": kind},))]


def _customer(message: dict[str, Any]) -> Customer | None:
    user = _str(message.get("user"))
    if not user:
        return None
    # Some clients add user_profile to message events; otherwise only users.info has names.
    profile = _dict(message.get("user_profile"))
    name = _str(profile.get("display_name")) or _str(profile.get("real_name"))
    return Customer(external_id=user, name=name or None)


def _reply_to(channel: Any, message: dict[str, Any]) -> dict[str, Any] | None:
    if not isinstance(channel, str) or not channel:
        return None
    reply_to: dict[str, Any] = {"channel": channel}
    # thread_ts is the parent's ts on replies ("Retrieving messages > Threads").
    thread_ts = _str(message.get("thread_ts"))
    if thread_ts:
        reply_to["thread_ts"] = thread_ts
    return reply_to


def _files(raw: Any, caption: str) -> tuple[dict[str, Any], ...]:
    """The ``files`` of a file_share message ("File object"); hidden files carry only an id."""
    return tuple(
        {
            "kind": _file_kind(_str(f.get("mimetype"))),
            "file_id": _str(f.get("id")),
            "name": _str(f.get("name")),
            "mime_type": _str(f.get("mimetype")),
            "url": _str(f.get("url_private")),
            "permalink": _str(f.get("permalink")),
            "caption": caption,
        }
        for f in _list(raw)
        if isinstance(f, dict)
    )


def _file_kind(mime_type: str | None) -> str:
    major = (mime_type or "").partition("/")[0]
    return {"image": "image", "audio": "audio", "video": "video"}.get(major, "file")


def _files_kind(files: tuple[dict[str, Any], ...]) -> str:
    kinds = {f["kind"] for f in files}
    return kinds.pop() if len(kinds) == 1 else "file"


def _url_verification(body: bytes) -> Response | None:
    """The url_verification handshake: answer the challenge, here as plain text (Slack also
    accepts JSON)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None  # parse() reports it
    if not isinstance(payload, dict) or payload.get("type") != "url_verification":
        return None
    challenge = payload.get("challenge")
    if not isinstance(challenge, str):
        raise BadRequest("missing_challenge", "url_verification needs a challenge")
    return Response(status=200, body=challenge, content_type="text/plain")


def _factory(channel: str, dedup: str, at: datetime) -> Make:
    def make(
        customer: Customer,
        kind: str,
        text: str,
        reply_to: Mapping[str, Any],
        attachments: tuple[dict[str, Any], ...],
    ) -> InboundMessage:
        return InboundMessage(
            channel=channel,
            customer=customer,
            platform_message_id=dedup,
            text=text,
            received_at=at,
            attachments=attachments,
            kind=kind,
            reply_to=dict(reply_to),
        )

    return make


# -- outbound helpers -------------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    for char, entity in _ESCAPES:
        text = text.replace(char, entity)
    return text


def unescape_mrkdwn(text: str) -> str:
    """What the customer typed: Slack sends ``&``, ``<``, ``>`` escaped (``&amp;`` last, so
    ``&amp;lt;`` stays ``&lt;``)."""
    for char, entity in reversed(_ESCAPES):
        text = text.replace(entity, char)
    return text


def _sent(status: int, raw: str, retry_after_header: str | None) -> Sent:
    """Web API answers are ``{"ok": true, "ts": ...}`` or ``{"ok": false, "error": code}``,
    usually with HTTP 200; rate limits are HTTP 429 with Retry-After ("Rate limits")."""
    retry_after = retry_after_seconds(retry_after_header, datetime.now(UTC))
    if not 200 <= status < 300:
        raise error_from_status(status, raw, retry_after)
    answer = _try_json(raw)
    if answer.get("ok") is True:
        return Sent(_str(answer.get("ts")))
    error = _str(answer.get("error")) or f"unexpected answer: {raw[:200]}"
    raise SendError(
        f"slack: {error}",
        retryable=error in _RETRYABLE_ERRORS,
        retry_after=retry_after,
        status=status,
    )


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise BadRequest("invalid_json", "the body is not valid JSON") from e
    if not isinstance(data, dict):
        raise BadRequest("invalid_event", "a Slack event is a JSON object")
    return data


def _try_json(raw: str) -> dict[str, Any]:
    try:
        return _dict(json.loads(raw))
    except ValueError:
        return {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
