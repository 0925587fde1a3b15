"""Facebook Messenger channel (a Page's inbox).

Meta docs: "Messenger Platform > Webhooks" (``messages``, ``messaging_postbacks``,
``message_reactions``, ``message_edits``, ``message_echoes``, ``message_reads``,
``message_deliveries``) and "Send API" (messaging types, the HUMAN_AGENT tag).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

from bot.channels.base import Customer, InboundMessage, OutboundMessage
from bot.channels.meta import MetaChannel, items, obj, parse_json, string
from bot.channels.platform import SendError, Sent, Webhook, Window, split_text

# "Webhook events > messages": attachment types that are media; fallback, template and any
# new type are "other".
MEDIA_TYPES = frozenset({"image", "audio", "video", "file", "location"})
# Events about the conversation rather than from the customer: receipts of our own messages,
# opt-ins, referrals, handover protocol. Nothing to store; Meta gets its usual 200.
# fmt: off
IGNORED = frozenset({
    "read", "delivery", "optin", "referral", "account_linking", "pass_thread_control",
    "take_thread_control", "request_thread_control", "app_roles", "policy_enforcement",
    "game_play", "messaging_feedback",
})
# fmt: on
Content = tuple[str, str, tuple[dict[str, Any], ...], str]  # kind, text, attachments, id


class MessengerChannel(MetaChannel):
    name: ClassVar[str] = "messenger"
    SECRETS: ClassVar[Mapping[str, str]] = {
        "app_secret": "PROMPTLY_MESSENGER_APP_SECRET",
        "access_token": "PROMPTLY_MESSENGER_PAGE_TOKEN",
        "verify_token": "PROMPTLY_MESSENGER_VERIFY_TOKEN",
    }
    MAX_CHARS: ClassVar[int] = 2000  # "Send API": message.text, 2000 characters
    # "Messaging types": standard messaging within 24 h of the customer's last message; the
    # HUMAN_AGENT tag lets a person answer for 7 days.
    WINDOW: ClassVar[Window] = Window(automated=timedelta(hours=24), agent=timedelta(days=7))

    def parse(self, hook: Webhook) -> list[InboundMessage]:
        payload = parse_json(hook.body)
        if payload.get("object") != "page":
            return []
        found = []
        for entry in items(payload.get("entry")):
            for event in items(entry.get("messaging")):
                message = self._event(event, hook)
                if message is not None:
                    found.append(message)
        return found

    def _event(self, event: dict[str, Any], hook: Webhook) -> InboundMessage | None:
        psid = string(obj(event.get("sender")).get("id"))
        if not psid or IGNORED.intersection(event):
            return None
        found = _content(event, f"{psid}:{string(event.get('timestamp'))}")
        if found is None:
            return None
        kind, text, attachments, mid = found
        return InboundMessage(
            channel=self.name,
            customer=Customer(psid),  # a name would cost a User Profile API call
            platform_message_id=mid,
            text=text,
            received_at=hook.received_at,
            attachments=attachments,
            kind=kind,
            reply_to={"psid": psid},
        )

    def render(self, reply: OutboundMessage) -> list[str]:
        # Messenger shows plain text: no markup to apply, nothing to escape.
        return split_text(reply.text, self.MAX_CHARS)

    async def send(self, reply_to: Mapping[str, Any], text: str, *, agent: bool) -> Sent:
        psid = reply_to.get("psid")
        if not psid:
            raise SendError("reply_to needs psid", retryable=False)
        body: dict[str, Any] = {"recipient": {"id": psid}, "message": {"text": text}}
        if agent:
            body.update(messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT")
        else:
            body["messaging_type"] = "RESPONSE"
        answer = await self.post_graph(
            f"{self.api_base}/me/messages",
            body,
            params={"access_token": self.secrets["access_token"]},
        )
        return Sent(string(answer.get("message_id")) or None)


def _content(event: dict[str, Any], sender_time: str) -> Content | None:
    """What one messaging event holds. Events without an id of their own get one from what
    stays the same when Meta redelivers them: the sender, the event's time, the target."""
    if "message" in event:
        message = obj(event.get("message"))
        if message.get("is_echo") is True:  # what the Page itself sent
            return None
        return *_message(message), string(message.get("mid")) or f"message:{sender_time}"
    if "postback" in event:  # a tap on a button we sent: its title is the answer
        postback = obj(event.get("postback"))
        described = {"kind": "postback", "payload": string(postback.get("payload"))}
        mid = string(postback.get("mid")) or f"postback:{sender_time}"
        return "text", string(postback.get("title")), (described,), mid
    if "reaction" in event:
        return _reaction(obj(event.get("reaction")), sender_time)
    if "message_edit" in event:
        edit = obj(event.get("message_edit"))
        target = string(edit.get("mid"))
        described = {"kind": "edit", "message_id": target, "text": string(edit.get("text"))}
        return "edit", "", (described,), f"{target}:edit:{string(edit.get('num_edit'))}"
    return "other", "", ({"kind": "other", "keys": sorted(event)},), f"other:{sender_time}"


def _message(message: dict[str, Any]) -> tuple[str, str, tuple[dict[str, Any], ...]]:
    text = string(message.get("text"))
    attachments = tuple(_attachment(a) for a in items(message.get("attachments")))
    if attachments and text and all(a["type"] == "fallback" for a in attachments):
        return "text", text, attachments  # a link the customer typed, with its preview
    if attachments:  # the text, if any, is a caption
        return attachments[0]["kind"], text, attachments
    quick_reply = obj(message.get("quick_reply"))
    if quick_reply:  # the text is the quick reply's title
        return (
            "text",
            text,
            ({"kind": "quick_reply", "payload": string(quick_reply.get("payload"))},),
        )
    if "text" in message:
        return "text", text, ()
    return "other", "", ({"kind": "other", "keys": sorted(message)},)


def _attachment(attachment: dict[str, Any]) -> dict[str, Any]:
    type_ = string(attachment.get("type"))
    payload = obj(attachment.get("payload"))
    kind = type_ if type_ in MEDIA_TYPES else "other"
    if kind == "image" and payload.get("sticker_id") is not None:
        kind = "sticker"
    # A fallback (a shared link) carries its title and URL beside the payload, not in it.
    url = payload.get("url") or attachment.get("url") or attachment.get("URL")
    described: dict[str, Any] = {"kind": kind, "type": type_, "url": string(url)}
    if kind == "sticker":
        described["sticker_id"] = string(payload.get("sticker_id"))
    if kind == "location":
        coordinates = obj(payload.get("coordinates"))
        described.update(latitude=coordinates.get("lat"), longitude=coordinates.get("long"))
    if "title" in attachment or "title" in payload:
        described["title"] = string(attachment.get("title") or payload.get("title"))
    return described


def _reaction(reaction: dict[str, Any], sender_time: str) -> Content:
    target, action = string(reaction.get("mid")), string(reaction.get("action"))
    described = {
        "kind": "reaction",
        "message_id": target,  # the message reacted to
        "action": action,  # react or unreact
        "emoji": string(reaction.get("emoji")),
        "reaction": string(reaction.get("reaction")),
    }
    return "reaction", "", (described,), f"reaction:{target}:{action}:{sender_time}"
