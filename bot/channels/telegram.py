"""Telegram (Bot API) over a webhook: https://core.telegram.org/bots/api.

Telegram POSTs one ``Update`` per request with the ``secret_token`` given to ``setWebhook`` in
the ``X-Telegram-Bot-Api-Secret-Token`` header (Bot API, "setWebhook"). Replies go out with
``sendMessage`` in MarkdownV2 with every reserved character escaped, so the customer sees
exactly the text Promptly wrote.
"""

from __future__ import annotations

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

API_BASE = "https://api.telegram.org"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

# "Formatting options > MarkdownV2 style": these must be escaped with a preceding '\', and
# '\' itself too, since any character 1-126 may be escaped.
_MARKDOWN_V2_RESERVED = re.compile(r"([_*\[\]()~`>#+\-=|{}.!\\])")

# Message fields that carry content, in the order they are checked: "animation" first because
# Telegram also sets "document" for it, "venue" before "location" for the same reason
# (Bot API, "Message").
_MEDIA_FIELDS: tuple[tuple[str, str], ...] = (
    ("photo", "image"),
    ("sticker", "sticker"),
    ("voice", "voice"),
    ("audio", "audio"),
    ("animation", "video"),
    ("video", "video"),
    ("video_note", "video"),
    ("document", "file"),
    ("venue", "location"),
    ("location", "location"),
    ("contact", "contact"),
)

# Service messages about the chat itself, not something the customer said (Bot API, "Message").
_SERVICE_FIELDS = frozenset(
    {
        "new_chat_title",
        "new_chat_photo",
        "delete_chat_photo",
        "group_chat_created",
        "supergroup_chat_created",
        "channel_chat_created",
        "message_auto_delete_timer_changed",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "pinned_message",
        "forum_topic_created",
        "forum_topic_edited",
        "forum_topic_closed",
        "forum_topic_reopened",
        "general_forum_topic_hidden",
        "general_forum_topic_unhidden",
        "video_chat_scheduled",
        "video_chat_started",
        "video_chat_ended",
        "video_chat_participants_invited",
        "write_access_allowed",
        "boost_added",
        "chat_background_set",
    }
)

# Sticker formats (Bot API, "Sticker"): static WEBP, animated TGS, video WEBM.
_STICKER_MIME = {"animated": "application/x-tgsticker", "video": "video/webm"}


class TelegramChannel(WebhookChannel):
    name = "telegram"
    DEFAULT_API_BASE: ClassVar[str] = API_BASE
    SECRETS: ClassVar[Mapping[str, str]] = {
        "bot_token": "PROMPTLY_TELEGRAM_BOT_TOKEN",
        "secret_token": "PROMPTLY_TELEGRAM_SECRET_TOKEN",
    }
    # "sendMessage": text is 1-4096 characters after entities parsing.
    MAX_CHARS: ClassVar[int] = 4096

    def __init__(
        self,
        secrets: Mapping[str, str],
        options: Mapping[str, Any],
        session: aiohttp.ClientSession,
        api_base: str,
    ) -> None:
        super().__init__(secrets, options, session, api_base)
        self._token = secrets["bot_token"]
        self._secret = secrets["secret_token"].encode()

    # -- inbound ------------------------------------------------------------------------------

    def verify(self, hook: Webhook) -> Response | None:
        given = hook.headers.get(SECRET_HEADER)
        if not given:
            raise Unauthorized("missing_secret_token", f"{SECRET_HEADER} header is missing")
        # The secret is [A-Za-z0-9_-] only, so a replaced character can never match it.
        if not hmac.compare_digest(given.encode(errors="replace"), self._secret):
            raise Unauthorized("bad_secret_token", f"{SECRET_HEADER} does not match")
        return None

    def parse(self, hook: Webhook) -> list[InboundMessage]:
        update = _load(hook.body)
        update_id = update.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise BadRequest("missing_update_id", "a Telegram update needs an integer update_id")
        # One update carries at most one of these optional fields (Bot API, "Update").
        if "message" in update:
            return self._message(update["message"], str(update_id), hook.received_at)
        if "edited_message" in update:
            return self._edit(update["edited_message"], str(update_id), hook.received_at)
        if "message_reaction" in update:
            return self._reaction(update["message_reaction"], str(update_id), hook.received_at)
        # channel posts, callback queries, inline queries, polls...: not a customer talking.
        logger.debug("telegram update %s ignored: %s", update_id, sorted(update))
        return []

    def _message(self, raw: Any, dedup: str, at: datetime) -> list[InboundMessage]:
        message = _dict(raw)
        sender = _dict(message.get("from"))
        reply_to = _reply_to(message)
        if reply_to is None:
            return []
        make = _factory(self.name, dedup, at, reply_to)
        if "new_chat_members" in message:
            members = message["new_chat_members"]
            joined = [_customer(m) for m in members] if isinstance(members, list) else []
            return [make(c, "join", "", ()) for c in joined if c is not None]
        if "left_chat_member" in message:
            left = _customer(message["left_chat_member"])
            return [make(left, "leave", "", ())] if left is not None else []
        customer = _customer(sender)
        if customer is None or _SERVICE_FIELDS.intersection(message):
            return []
        caption = _str(message.get("caption")) or ""
        text = message.get("text")
        if isinstance(text, str):
            return [make(customer, "text", text, ())]
        for field, kind in _MEDIA_FIELDS:
            if field in message:
                attachment = _attachment(field, kind, message[field], caption)
                if field == "contact":
                    customer = _with_shared_phone(customer, sender, message[field])
                return [make(customer, kind, caption, (attachment,))]
        fields = sorted(k for k in message if k not in _ENVELOPE_FIELDS)
        return [make(customer, "other", caption, ({"kind": "other", "fields": fields},))]

    def _edit(self, raw: Any, dedup: str, at: datetime) -> list[InboundMessage]:
        message = _dict(raw)
        customer = _customer(message.get("from"))
        reply_to = _reply_to(message)
        if customer is None or reply_to is None:
            return []
        text = _str(message.get("text")) or _str(message.get("caption")) or ""
        edit = {"kind": "edit", "message_id": message.get("message_id"), "text": text}
        return [_factory(self.name, dedup, at, reply_to)(customer, "edit", text, (edit,))]

    def _reaction(self, raw: Any, dedup: str, at: datetime) -> list[InboundMessage]:
        # "MessageReactionUpdated": ``user`` is absent when the reaction is anonymous.
        update = _dict(raw)
        customer = _customer(update.get("user"))
        chat_id = _dict(update.get("chat")).get("id")
        if customer is None or not _is_int(chat_id):
            return []
        reaction = {
            "kind": "reaction",
            "message_id": update.get("message_id"),
            "emoji": _emoji(update.get("new_reaction")),
            "removed": _emoji(update.get("old_reaction")),
        }
        make = _factory(self.name, dedup, at, {"chat_id": chat_id})
        return [make(customer, "reaction", "", (reaction,))]

    # -- outbound -----------------------------------------------------------------------------

    def render(self, reply: OutboundMessage) -> list[str]:
        return split_escaped(reply.text, self.MAX_CHARS, escape_markdown_v2)

    async def send(self, reply_to: Mapping[str, Any], text: str, *, agent: bool) -> Sent:
        if reply_to.get("chat_id") is None:
            raise SendError("telegram: reply_to has no chat_id", retryable=False)
        body: dict[str, Any] = {
            "chat_id": reply_to["chat_id"],
            "text": text,
            "parse_mode": "MarkdownV2",
        }
        if reply_to.get("message_thread_id") is not None:
            body["message_thread_id"] = reply_to["message_thread_id"]
        url = f"{self.api_base}/bot{self._token}/sendMessage"
        try:
            async with self.session.post(url, json=body) as resp:
                raw = await resp.text()
                status, headers = resp.status, resp.headers
        except (TimeoutError, aiohttp.ClientError) as e:
            # Messages from aiohttp can hold the URL, and the URL holds the token.
            detail = str(e).replace(self._token, "<token>")
            raise SendError(f"telegram: {type(e).__name__}: {detail}", retryable=True) from e
        return _sent(status, raw, headers.get("Retry-After"))


# -- helpers ----------------------------------------------------------------------------------

# Fields about a message rather than its content; what is left is content we do not know.
_ENVELOPE_FIELDS = frozenset(
    {
        "message_id",
        "message_thread_id",
        "is_topic_message",
        "from",
        "sender_chat",
        "date",
        "edit_date",
        "chat",
        "caption",
        "caption_entities",
        "entities",
        "reply_to_message",
        "external_reply",
        "quote",
        "forward_origin",
        "via_bot",
        "media_group_id",
        "has_media_spoiler",
        "reply_markup",
        "link_preview_options",
    }
)


def escape_markdown_v2(text: str) -> str:
    return _MARKDOWN_V2_RESERVED.sub(r"\\\1", text)


def _sent(status: int, raw: str, retry_after_header: str | None) -> Sent:
    """Telegram answers ``{"ok": true, "result": Message}`` or ``{"ok": false, "error_code",
    "description", "parameters": {"retry_after"}}`` (Bot API, "Making requests")."""
    answer = _try_json(raw)
    if 200 <= status < 300 and answer.get("ok") is True:
        message_id = _dict(answer.get("result")).get("message_id")
        return Sent(str(message_id) if message_id is not None else None)
    # "ResponseParameters": retry_after is the flood-control wait in seconds.
    hint = _dict(answer.get("parameters")).get("retry_after")
    retry_after = (
        max(float(hint), 0.0)
        if isinstance(hint, int | float) and not isinstance(hint, bool)
        else retry_after_seconds(retry_after_header, datetime.now(UTC))
    )
    if not 200 <= status < 300:
        raise error_from_status(status, raw, retry_after)
    code = answer.get("error_code")
    code = code if _is_int(code) else None
    retryable = code is not None and (code == 429 or code >= 500)
    description = _str(answer.get("description")) or raw[:200]
    raise SendError(
        f"telegram: {description}", retryable=retryable, retry_after=retry_after, status=code
    )


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise BadRequest("invalid_json", "the body is not valid JSON") from e
    if not isinstance(data, dict):
        raise BadRequest("invalid_update", "a Telegram update is a JSON object")
    return data


def _try_json(raw: str) -> dict[str, Any]:
    try:
        return _dict(json.loads(raw))
    except ValueError:
        return {}


def _factory(
    channel: str, dedup: str, at: datetime, reply_to: Mapping[str, Any]
) -> Callable[[Customer, str, str, tuple[dict[str, Any], ...]], InboundMessage]:
    def make(
        customer: Customer, kind: str, text: str, attachments: tuple[dict[str, Any], ...]
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


def _reply_to(message: dict[str, Any]) -> dict[str, Any] | None:
    chat_id = _dict(message.get("chat")).get("id")
    if not _is_int(chat_id):
        return None
    reply_to: dict[str, Any] = {"chat_id": chat_id}
    # message_thread_id is also set on replies in ordinary supergroups; sendMessage only takes
    # it for forum topics, which is what is_topic_message says (Bot API, "Message").
    thread = message.get("message_thread_id")
    if message.get("is_topic_message") is True and _is_int(thread):
        reply_to["message_thread_id"] = thread
    return reply_to


def _customer(raw: Any) -> Customer | None:
    """A ``User`` (Bot API, "User"); bots, including this one, are not customers."""
    user = _dict(raw)
    user_id = user.get("id")
    if not _is_int(user_id) or user.get("is_bot") is True:
        return None
    names = [_str(user.get("first_name")), _str(user.get("last_name"))]
    name = " ".join(n for n in names if n) or _str(user.get("username"))
    return Customer(external_id=str(user_id), name=name)


def _with_shared_phone(customer: Customer, sender: dict[str, Any], raw: Any) -> Customer:
    """A contact whose ``user_id`` is the sender's own is their Telegram account's number,
    which Telegram verified ("Contact"; the request_contact keyboard button sends it)."""
    contact = _dict(raw)
    digits = re.sub(r"\D", "", _str(contact.get("phone_number")) or "")
    own = _is_int(contact.get("user_id")) and contact.get("user_id") == sender.get("id")
    if not own or not 7 <= len(digits) <= 15:
        return customer
    return Customer(
        external_id=customer.external_id, name=customer.name, phone=f"+{digits}", verified=True
    )


def _attachment(field: str, kind: str, raw: Any, caption: str) -> dict[str, Any]:
    if field == "photo":
        # An array of sizes, smallest first (Bot API, "PhotoSize"): keep the largest.
        sizes = [s for s in raw if isinstance(s, dict)] if isinstance(raw, list) else []
        content = sizes[-1] if sizes else {}
    else:
        content = _dict(raw)
    attachment: dict[str, Any] = {
        "kind": kind,
        "type": field,
        "file_id": _str(content.get("file_id")),
        "mime_type": _str(content.get("mime_type")),
        "caption": caption,
    }
    if field == "sticker":
        sticker_type = "animated" if content.get("is_animated") else "static"
        sticker_type = "video" if content.get("is_video") else sticker_type
        attachment["mime_type"] = _STICKER_MIME.get(sticker_type, "image/webp")
    for key in _DETAILS:
        value = content.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            attachment[key] = value
    if field == "venue":
        location = _dict(content.get("location"))
        attachment.update({k: location[k] for k in ("latitude", "longitude") if k in location})
    return attachment


# Plain details worth showing an agent, from the media types of the Bot API.
_DETAILS = (
    "file_unique_id",
    "file_name",
    "file_size",
    "width",
    "height",
    "duration",
    "emoji",
    "set_name",
    "title",
    "performer",
    "latitude",
    "longitude",
    "address",
    "phone_number",
    "first_name",
    "last_name",
    "user_id",
    "vcard",
)


def _emoji(raw: Any) -> list[str]:
    """``ReactionType``s as text: an emoji, or the kind for custom and paid ones."""
    reactions = raw if isinstance(raw, list) else []
    found = []
    for reaction in map(_dict, reactions):
        value = reaction.get("emoji") or reaction.get("custom_emoji_id") or reaction.get("type")
        if isinstance(value, str):
            found.append(value)
    return found


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
