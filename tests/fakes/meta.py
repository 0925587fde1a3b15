"""A fake Graph API serving both WhatsApp Cloud and Messenger sends, and builders for what Meta
POSTs to Promptly's webhooks (signed the documented way: X-Hub-Signature-256).

    async with FakeGraph() as graph:
        headers, body = graph.whatsapp.signed_update(text="hi", user_id="447700900123")
        headers, body = graph.messenger.signed_message("image", user_id="6543210987654321")
        # adapters built with api_base=graph.url send to it; graph.calls records them

Payload shapes follow Meta's webhook references ("WhatsApp Cloud API > Webhooks > messages",
"Messenger Platform > Webhook events").
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.base import Call, FakePlatform

WHATSAPP_SECRET = "whatsapp-app-secret"
WHATSAPP_TOKEN = "whatsapp-access-token"
MESSENGER_SECRET = "messenger-app-secret"
PAGE_TOKEN = "messenger-page-token"
VERIFY_TOKEN = "meta-verify-token"
PHONE_NUMBER_ID = "106540352242922"
PAGE_ID = "1122334455667788"
_ids = itertools.count(1)


def graph_error(code: int, message: str = "error", **extra: Any) -> str:
    """A Graph API error body ("Handling errors"), e.g. for ``fail_next(400, body=...)``."""
    return json.dumps(
        {
            "error": {
                "message": f"(#{code}) {message}",
                "type": "OAuthException",
                "code": code,
                "fbtrace_id": "AbCdEf123",
                **extra,
            }
        }
    )


def sign(app_secret: str, payload: dict[str, Any] | bytes) -> tuple[dict[str, str], bytes]:
    """(headers, raw body) as Meta sends them: sha256=<hex HMAC-SHA256 of the body>."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}, body


def challenge_query(token: str = VERIFY_TOKEN, challenge: str = "1158201444") -> dict[str, str]:
    """The GET query of Meta's webhook verification request."""
    return {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": challenge}


# -- WhatsApp ----------------------------------------------------------------------------------

# kind -> (message type, its object), one per type the webhook reference documents.
WHATSAPP_SAMPLES: dict[str, tuple[str, Any]] = {
    "image": (
        "image",
        {
            "caption": "my router",
            "mime_type": "image/jpeg",
            "sha256": "aGFzaA==",
            "id": "1479537139650973",
        },
    ),
    "sticker": (
        "sticker",
        {
            "mime_type": "image/webp",
            "sha256": "aGFzaA==",
            "id": "1030000000000001",
            "animated": False,
        },
    ),
    "voice": (
        "audio",
        {
            "mime_type": "audio/ogg; codecs=opus",
            "sha256": "aGFzaA==",
            "id": "1030000000000002",
            "voice": True,
        },
    ),
    "audio": (
        "audio",
        {"mime_type": "audio/mpeg", "sha256": "aGFzaA==", "id": "1030000000000003", "voice": False},
    ),
    "video": (
        "video",
        {
            "caption": "it blinks",
            "mime_type": "video/mp4",
            "sha256": "aGFzaA==",
            "id": "1030000000000004",
        },
    ),
    "file": (
        "document",
        {
            "caption": "invoice",
            "filename": "invoice-42.pdf",
            "mime_type": "application/pdf",
            "sha256": "aGFzaA==",
            "id": "1030000000000005",
        },
    ),
    "location": (
        "location",
        {
            "latitude": 51.5072,
            "longitude": -0.1276,
            "name": "Head office",
            "address": "1 Main St, London",
        },
    ),
    "contact": (
        "contacts",
        [
            {
                "name": {"formatted_name": "Grace Hopper", "first_name": "Grace"},
                "phones": [{"phone": "+1 555 0100", "wa_id": "15550100", "type": "CELL"}],
                "emails": [{"email": "grace@example.com", "type": "WORK"}],
            }
        ],
    ),
    "reaction": ("reaction", {"message_id": "wamid.HBgLMTU1NTAxMDAVAgARGBI=", "emoji": "👍"}),
    "button_reply": (
        "interactive",
        {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes please"}},
    ),
    "list_reply": (
        "interactive",
        {
            "type": "list_reply",
            "list_reply": {
                "id": "billing",
                "title": "Billing",
                "description": "Invoices and refunds",
            },
        },
    ),
    "button": ("button", {"payload": "talk_to_agent", "text": "Talk to a person"}),
    "unsupported": ("unsupported", {"type": "edit"}),
}


class WhatsAppHooks:
    """What Meta POSTs for one WhatsApp business phone number."""

    def __init__(
        self, app_secret: str = WHATSAPP_SECRET, phone_number_id: str = PHONE_NUMBER_ID
    ) -> None:
        self.app_secret = app_secret
        self.phone_number_id = phone_number_id

    def message(
        self, type_: str, content: Any, *, user_id: str, message_id: str | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "from": user_id,
            "id": message_id or new_wamid(user_id),
            "timestamp": str(int(time.time())),
            "type": type_,
        }
        if type_ == "unsupported":  # "Unsupported messages": the reason is in errors[]
            message["errors"] = [
                {
                    "code": 131051,
                    "title": "Message type unknown",
                    "message": "Message type unknown",
                    "error_data": {"details": "Message type is not supported"},
                }
            ]
        if type_ == "contacts":
            message["contacts"] = content
        else:
            message[type_] = content
        return message

    def payload(
        self,
        messages: list[dict[str, Any]] | None = None,
        *,
        names: dict[str, str] | None = None,
        statuses: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """One entry with one "messages" change; ``names`` maps wa_id to profile name."""
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550783881",
                "phone_number_id": self.phone_number_id,
            },
        }
        if messages is not None:
            value["contacts"] = [
                {"profile": {"name": name}, "wa_id": wa_id} for wa_id, name in (names or {}).items()
            ]
            value["messages"] = messages
        if statuses is not None:
            value["statuses"] = statuses
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}
            ],
        }

    def signed(self, payload: dict[str, Any] | bytes) -> tuple[dict[str, str], bytes]:
        return sign(self.app_secret, payload)

    def signed_update(
        self,
        text: str = "Hello",
        *,
        user_id: str = "447700900123",
        message_id: str | None = None,
        name: str = "Ada Lovelace",
    ) -> tuple[dict[str, str], bytes]:
        message = self.message("text", {"body": text}, user_id=user_id, message_id=message_id)
        return self.signed(self.payload([message], names={user_id: name}))

    def signed_message(
        self,
        kind: str,
        *,
        user_id: str = "447700900123",
        message_id: str | None = None,
        name: str = "Ada Lovelace",
    ) -> tuple[dict[str, str], bytes]:
        """A non-text message: ``kind`` is a key of ``WHATSAPP_SAMPLES``."""
        type_, content = WHATSAPP_SAMPLES[kind]
        message = self.message(type_, content, user_id=user_id, message_id=message_id)
        return self.signed(self.payload([message], names={user_id: name}))

    def signed_status(
        self, message_id: str, status: str = "delivered", *, user_id: str = "447700900123"
    ) -> tuple[dict[str, str], bytes]:
        """A delivery receipt for one of our messages."""
        receipt = {
            "id": message_id,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": user_id,
        }
        return self.signed(self.payload(statuses=[receipt]))


def new_wamid(user_id: str) -> str:
    return "wamid.HBgL" + hashlib.sha1(f"{user_id}:{next(_ids)}".encode()).hexdigest().upper()


# -- Messenger ---------------------------------------------------------------------------------

# kind -> the messaging event's fields besides sender, recipient and timestamp.
MESSENGER_SAMPLES: dict[str, dict[str, Any]] = {
    "image": {
        "message": {
            "mid": "m_image",
            "attachments": [
                {"type": "image", "payload": {"url": "https://scontent.example/router.jpg"}}
            ],
        }
    },
    "sticker": {
        "message": {
            "mid": "m_sticker",
            "sticker_id": 369239263222822,
            "attachments": [
                {
                    "type": "image",
                    "payload": {
                        "url": "https://scontent.example/like.png",
                        "sticker_id": 369239263222822,
                    },
                }
            ],
        }
    },
    "audio": {
        "message": {
            "mid": "m_audio",
            "attachments": [
                {"type": "audio", "payload": {"url": "https://cdn.fbsbx.example/voice.mp4"}}
            ],
        }
    },
    "video": {
        "message": {
            "mid": "m_video",
            "attachments": [
                {"type": "video", "payload": {"url": "https://video.example/blink.mp4"}}
            ],
        }
    },
    "file": {
        "message": {
            "mid": "m_file",
            "attachments": [
                {"type": "file", "payload": {"url": "https://cdn.fbsbx.example/invoice.pdf"}}
            ],
        }
    },
    "location": {
        "message": {
            "mid": "m_location",
            "attachments": [
                {
                    "type": "location",
                    "title": "Pinned Location",
                    "payload": {"coordinates": {"lat": 51.5072, "long": -0.1276}},
                }
            ],
        }
    },
    "fallback": {
        "message": {
            "mid": "m_fallback",
            "text": "look https://example.com",
            "attachments": [
                {
                    "type": "fallback",
                    "title": "Example",
                    "URL": "https://example.com",
                    "payload": None,
                }
            ],
        }
    },
    "quick_reply": {
        "message": {
            "mid": "m_quick",
            "text": "Billing",
            "quick_reply": {"payload": "TOPIC_BILLING"},
        }
    },
    "postback": {
        "postback": {"mid": "m_postback", "title": "Talk to a person", "payload": "AGENT"}
    },
    "reaction": {
        "reaction": {"reaction": "love", "emoji": "❤️", "action": "react", "mid": "m_ours"}
    },
    "edit": {"message_edit": {"mid": "m_edited", "text": "my order is 43, not 42", "num_edit": 1}},
    "echo": {
        "message": {
            "mid": "m_echo",
            "is_echo": True,
            "app_id": 1517776481860111,
            "text": "our own reply",
        }
    },
    "read": {"read": {"watermark": 1458668856253}},
    "delivery": {"delivery": {"mids": ["m_ours"], "watermark": 1458668856253}},
}


class MessengerHooks:
    """What Meta POSTs for one Facebook Page."""

    def __init__(self, app_secret: str = MESSENGER_SECRET, page_id: str = PAGE_ID) -> None:
        self.app_secret = app_secret
        self.page_id = page_id

    def event(self, user_id: str, **fields: Any) -> dict[str, Any]:
        return {
            "sender": {"id": user_id},
            "recipient": {"id": self.page_id},
            "timestamp": int(time.time() * 1000),
            **fields,
        }

    def payload(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "object": "page",
            "entry": [{"id": self.page_id, "time": int(time.time() * 1000), "messaging": events}],
        }

    def signed(self, payload: dict[str, Any] | bytes) -> tuple[dict[str, str], bytes]:
        return sign(self.app_secret, payload)

    def signed_update(
        self,
        text: str = "Hello",
        *,
        user_id: str = "6543210987654321",
        message_id: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        mid = message_id or f"m_{next(_ids)}"
        return self.signed(self.payload([self.event(user_id, message={"mid": mid, "text": text})]))

    def signed_message(
        self, kind: str, *, user_id: str = "6543210987654321", message_id: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """Anything but text: ``kind`` is a key of ``MESSENGER_SAMPLES``; ``message_id``
        replaces the sample's mid."""
        fields = json.loads(json.dumps(MESSENGER_SAMPLES[kind]))
        if message_id is not None:
            for value in fields.values():
                if isinstance(value, dict) and "mid" in value:
                    value["mid"] = message_id
        return self.signed(self.payload([self.event(user_id, **fields)]))


# -- the fake server ---------------------------------------------------------------------------


class FakeGraph(FakePlatform):
    """The Graph API's two send endpoints, checking each product's token the documented way:
    WhatsApp ``Authorization: Bearer``, Messenger ``?access_token=`` (the Page token)."""

    def __init__(
        self,
        *,
        whatsapp_token: str = WHATSAPP_TOKEN,
        page_token: str = PAGE_TOKEN,
        whatsapp_secret: str = WHATSAPP_SECRET,
        messenger_secret: str = MESSENGER_SECRET,
    ) -> None:
        super().__init__()
        self.whatsapp_token = whatsapp_token
        self.page_token = page_token
        self.whatsapp = WhatsAppHooks(whatsapp_secret)
        self.messenger = MessengerHooks(messenger_secret)

    def routes(self) -> list[web.RouteDef]:
        return [  # /me/messages first: the variable route would match it too
            web.post("/me/messages", self._messenger),
            web.post("/{phone_number_id}/messages", self._whatsapp),
        ]

    def texts(self) -> list[str]:
        """The text of every send received, in order."""
        found = []
        for call in self.calls:
            body = call.json if isinstance(call.json, dict) else {}
            text = body.get("text", {}).get("body") or body.get("message", {}).get("text")
            found.append(text or "")
        return found

    async def _whatsapp(self, request: web.Request) -> web.Response:
        async def answer(call: Call) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {self.whatsapp_token}":
                return _error(401, 190, "Invalid OAuth access token.")
            body = call.json if isinstance(call.json, dict) else {}
            to = body.get("to")
            if body.get("messaging_product") != "whatsapp" or not to or body.get("type") != "text":
                return _error(400, 100, "Invalid parameter")
            return web.json_response(
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": new_wamid(to)}],
                }
            )

        return await self.record(request, answer)

    async def _messenger(self, request: web.Request) -> web.Response:
        async def answer(call: Call) -> web.Response:
            if request.query.get("access_token") != self.page_token:
                return _error(401, 190, "Invalid OAuth access token.")
            body = call.json if isinstance(call.json, dict) else {}
            psid = body.get("recipient", {}).get("id")
            if not psid or "text" not in body.get("message", {}):
                return _error(400, 100, "Invalid parameter")
            return web.json_response({"recipient_id": psid, "message_id": f"m_sent{next(_ids)}"})

        return await self.record(request, answer)


def _error(status: int, code: int, message: str) -> web.Response:
    return web.Response(
        status=status, text=graph_error(code, message), content_type="application/json"
    )
