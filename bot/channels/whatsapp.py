"""WhatsApp Cloud API channel.

Meta docs: "WhatsApp Cloud API > Webhooks > messages" (payload shapes, one entry per business
account, ``statuses`` for delivery receipts) and "Messages API" (sending text).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar

from bot.channels.base import Customer, InboundMessage, OutboundMessage
from bot.channels.meta import MetaChannel, items, obj, parse_json, string
from bot.channels.platform import SendError, Sent, Webhook, Window, split_text

# "Messages webhook" media types (audio is voice or audio, by its ``voice`` flag)
MEDIA = {"image": "image", "sticker": "sticker", "video": "video", "document": "file"}


class WhatsAppChannel(MetaChannel):
    name: ClassVar[str] = "whatsapp"
    SECRETS: ClassVar[Mapping[str, str]] = {
        "app_secret": "PROMPTLY_WHATSAPP_APP_SECRET",
        "access_token": "PROMPTLY_WHATSAPP_ACCESS_TOKEN",
        "verify_token": "PROMPTLY_WHATSAPP_VERIFY_TOKEN",
    }
    MAX_CHARS: ClassVar[int] = 4096  # "Messages API": text.body, 4096 characters
    # The customer service window: free-form messages only within 24 h of the customer's last
    # message; after it only approved templates, which Promptly does not send.
    WINDOW: ClassVar[Window] = Window(automated=timedelta(hours=24), agent=timedelta(hours=24))

    def parse(self, hook: Webhook) -> list[InboundMessage]:
        payload = parse_json(hook.body)
        if payload.get("object") != "whatsapp_business_account":
            return []
        messages: list[InboundMessage] = []
        for entry in items(payload.get("entry")):
            for change in items(entry.get("changes")):
                value = obj(change.get("value"))
                # statuses[] (sent/delivered/read receipts of our messages) are skipped.
                messages.extend(self._messages(value, hook))
        return messages

    def _messages(self, value: dict[str, Any], hook: Webhook) -> list[InboundMessage]:
        phone_number_id = string(obj(value.get("metadata")).get("phone_number_id"))
        names = {
            string(contact.get("wa_id")): string(obj(contact.get("profile")).get("name"))
            for contact in items(value.get("contacts"))
        }
        found = []
        for message in items(value.get("messages")):
            wa_id, wamid = string(message.get("from")), string(message.get("id"))
            if not wa_id or not wamid:
                continue  # nobody to answer or nothing to deduplicate on
            kind, text, attachments = content(message)
            # wa_id is the sender's phone number, which WhatsApp has verified.
            phone = "+" + wa_id if wa_id.isdigit() else None
            found.append(
                InboundMessage(
                    channel=self.name,
                    customer=Customer(
                        wa_id, names.get(wa_id) or None, phone=phone, verified=phone is not None
                    ),
                    platform_message_id=wamid,
                    text=text,
                    received_at=hook.received_at,
                    attachments=attachments,
                    kind=kind,
                    reply_to={"to": wa_id, "phone_number_id": phone_number_id},
                )
            )
        return found

    def render(self, reply: OutboundMessage) -> list[str]:
        # WhatsApp reads *bold* and _italic_ itself and needs no escaping.
        return split_text(reply.text, self.MAX_CHARS)

    async def send(self, reply_to: Mapping[str, Any], text: str, *, agent: bool) -> Sent:
        to, phone_number_id = reply_to.get("to"), reply_to.get("phone_number_id")
        if not to or not phone_number_id:
            raise SendError("reply_to needs to and phone_number_id", retryable=False)
        answer = await self.post_graph(
            f"{self.api_base}/{phone_number_id}/messages",
            {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "text",
                "text": {"body": text, "preview_url": False},
            },
            headers={"Authorization": f"Bearer {self.secrets['access_token']}"},
        )
        sent = items(answer.get("messages"))
        return Sent((string(sent[0].get("id")) or None) if sent else None)


Parsed = tuple[str, str, tuple[dict[str, Any], ...]]  # (kind, text, attachments)


def content(message: dict[str, Any]) -> Parsed:
    """What one webhook message holds, whatever its type."""
    type_ = string(message.get("type"))
    body = obj(message.get(type_))
    if type_ == "text":
        return "text", string(body.get("body")), ()
    if type_ in MEDIA or type_ == "audio":
        return _media(type_, body)
    if type_ == "location":
        return "location", "", (_location(body),)
    if type_ == "contacts":
        return "contact", "", tuple(_contact(card) for card in items(message.get("contacts")))
    if type_ == "reaction":  # an empty emoji: the customer removed their reaction
        reaction = {"kind": "reaction", "message_id": string(body.get("message_id"))}
        return "reaction", "", ({**reaction, "emoji": string(body.get("emoji"))},)
    # A tap on a reply button or list row, or on a template's quick-reply button: its title
    # is what the customer said.
    choice = obj(body.get(string(body.get("type")))) if type_ == "interactive" else {}
    if choice.get("title"):
        return _choice(string(choice.get("title")), string(choice.get("id")))
    if type_ == "button" and body.get("text"):
        return _choice(string(body.get("text")), string(body.get("payload")))
    # unsupported, order, system, anything new: the raw object, for an agent to look at.
    other = {"kind": "other", "type": type_, "data": message.get(type_)}
    return "other", "", ({**other, "errors": message.get("errors")},)


def _media(type_: str, body: dict[str, Any]) -> Parsed:
    kind = MEDIA.get(type_) or ("voice" if body.get("voice") is True else "audio")
    caption = string(body.get("caption"))
    attachment = {
        "kind": kind,
        "id": string(body.get("id")),  # to download with the Media API
        "mime_type": string(body.get("mime_type")),
        "caption": caption,
        "filename": string(body.get("filename")),
    }
    return kind, caption, (attachment,)


def _choice(title: str, choice_id: str) -> Parsed:
    return "text", title, ({"kind": "reply", "id": choice_id},)


def _location(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "location",
        "latitude": body.get("latitude"),
        "longitude": body.get("longitude"),
        "name": string(body.get("name")),
        "address": string(body.get("address")),
        "url": string(body.get("url")),
    }


def _contact(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "contact",
        "name": string(obj(card.get("name")).get("formatted_name")),
        "phones": [string(p.get("phone")) for p in items(card.get("phones"))],
        "emails": [string(e.get("email")) for e in items(card.get("emails"))],
    }
