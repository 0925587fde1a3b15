"""A fake Telegram Bot API: ``sendMessage`` answered as Telegram does, and updates built and
"signed" (the secret-token header) as Telegram POSTs them to a webhook.

Payload shapes follow https://core.telegram.org/bots/api ("Update", "Message" and the media
types). The message builders (``photo()``, ``contact()``...) return the fields to merge into a
message: ``fake.signed_message(photo(caption="x"), user_id=7)``.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any

from aiohttp import web

from tests.fakes.base import Call, FakePlatform

BOT_TOKEN = "123456789:AAFakeTelegramBotTokenForTests0000"
SECRET_TOKEN = "promptly-test-secret"
BOT_USER = {"id": 123456789, "is_bot": True, "first_name": "Promptly", "username": "promptly_bot"}

# "MarkdownV2 style": outside entities these must come escaped.
_RESERVED = set("_*[]()~`>#+-=|{}.!")

Signed = tuple[dict[str, str], bytes]


class FakeTelegram(FakePlatform):
    def __init__(self, bot_token: str = BOT_TOKEN, secret_token: str = SECRET_TOKEN) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.secret_token = secret_token
        self.sent: list[dict[str, Any]] = []  # bodies of the sendMessage calls that succeeded
        self._update_ids = itertools.count(500_000_001)
        self._message_ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/bot{token}/{method}", self._api)]

    async def _api(self, request: web.Request) -> web.Response:
        return await self.record(request, lambda call: self._answer(request, call))

    async def _answer(self, request: web.Request, call: Call) -> web.Response:
        if request.match_info["token"] != self.bot_token:
            return _error(401, "Unauthorized")
        if request.match_info["method"] != "sendMessage":
            return _error(404, "Not Found")
        body = call.json if isinstance(call.json, dict) else {}
        text = body.get("text")
        if body.get("chat_id") is None:
            return _error(400, "Bad Request: chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        plain = text
        if body.get("parse_mode") == "MarkdownV2":
            unescaped = _unescape_markdown_v2(text)
            if unescaped is None:
                return _error(
                    400, "Bad Request: can't parse entities: unescaped reserved character"
                )
            plain = unescaped
        if len(plain) > 4096:
            return _error(400, "Bad Request: message is too long")
        self.sent.append(body)
        message = {
            "message_id": next(self._message_ids),
            "from": BOT_USER,
            "chat": {"id": body["chat_id"], "type": "private"},
            "date": int(time.time()),
            "text": plain,
        }
        if body.get("message_thread_id") is not None:
            message["message_thread_id"] = body["message_thread_id"]
            message["is_topic_message"] = True
        return web.json_response({"ok": True, "result": message})

    # -- failures -------------------------------------------------------------------------------

    def fail_flood(self, retry_after: int = 3, times: int = 1) -> None:
        """The next sends hit flood control: 429 with ``parameters.retry_after``."""
        body = {
            "ok": False,
            "error_code": 429,
            "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after},
        }
        self.fail_next(429, times, body=json.dumps(body))

    def fail_error(self, status: int, description: str = "Bad Request", times: int = 1) -> None:
        body = {"ok": False, "error_code": status, "description": description}
        self.fail_next(status, times, body=json.dumps(body))

    # -- webhooks -------------------------------------------------------------------------------

    def webhook(self, update: dict[str, Any], *, secret: str | None = None) -> Signed:
        """What Telegram POSTs for ``update`` (an ``update_id`` is added when missing), with
        the secret-token header; ``secret=""`` leaves the header out."""
        update = {"update_id": next(self._update_ids), **update}
        secret = self.secret_token if secret is None else secret
        headers = {"Content-Type": "application/json"}
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        return headers, json.dumps(update).encode()

    def message(
        self,
        content: dict[str, Any],
        *,
        user_id: int = 1001,
        chat_id: int | None = None,
        message_id: int | None = None,
        first_name: str = "Ada",
        last_name: str | None = "Lovelace",
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        """A ``Message`` from a user, in a private chat with them unless ``chat_id`` is given."""
        sender: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name:
            sender["last_name"] = last_name
        chat: dict[str, Any] = {"id": chat_id or user_id, "type": "private"}
        if chat_id is not None and chat_id != user_id:
            chat = {"id": chat_id, "type": "supergroup", "title": "Support"}
        message: dict[str, Any] = {
            "message_id": message_id or next(self._message_ids),
            "from": sender,
            "chat": chat,
            "date": int(time.time()),
            **content,
        }
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        return message

    def signed_message(
        self, content: dict[str, Any], *, update_id: int | None = None, **message: Any
    ) -> Signed:
        update: dict[str, Any] = {"message": self.message(content, **message)}
        if update_id is not None:
            update["update_id"] = update_id
        return self.webhook(update)

    def signed_update(self, text: str = "Hello", **message: Any) -> Signed:
        """A text message; keywords as ``message()`` plus ``update_id``."""
        return self.signed_message({"text": text}, **message)

    def signed_edit(self, text: str, *, message_id: int = 1, **message: Any) -> Signed:
        content = {"text": text, "edit_date": int(time.time())}
        edited = self.message(content, message_id=message_id, **message)
        return self.webhook({"edited_message": edited})

    def signed_reaction(
        self, emoji: str = "👍", *, user_id: int = 1001, message_id: int = 1
    ) -> Signed:
        reaction = {
            "chat": {"id": user_id, "type": "private"},
            "message_id": message_id,
            "user": {"id": user_id, "is_bot": False, "first_name": "Ada"},
            "date": int(time.time()),
            "old_reaction": [],
            "new_reaction": [{"type": "emoji", "emoji": emoji}],
        }
        return self.webhook({"message_reaction": reaction})

    def signed_join(self, *user_ids: int, chat_id: int = -1001234567890) -> Signed:
        members = [_user(u) for u in user_ids or (1001,)]
        content = {"new_chat_members": members}
        return self.signed_message(content, user_id=members[0]["id"], chat_id=chat_id)

    def signed_leave(self, user_id: int = 1001, *, chat_id: int = -1001234567890) -> Signed:
        content = {"left_chat_member": _user(user_id)}
        return self.signed_message(content, user_id=user_id, chat_id=chat_id)


# -- message contents ("Message" fields) --------------------------------------------------------


def photo(caption: str = "", file_id: str = "AgACAgQAAxkBAAIBPhotoLarge") -> dict[str, Any]:
    sizes = [
        {
            "file_id": "AgACAgQAAxkBAAIBPhotoSmall",
            "file_unique_id": "s1",
            "width": 90,
            "height": 60,
            "file_size": 1200,
        },
        {
            "file_id": file_id,
            "file_unique_id": "l1",
            "width": 1280,
            "height": 853,
            "file_size": 98765,
        },
    ]
    return _captioned({"photo": sizes}, caption)


def sticker(emoji: str = "😀", kind: str = "regular") -> dict[str, Any]:
    return {
        "sticker": {
            "file_id": "CAACAgIAAxkBAAIBSticker",
            "file_unique_id": "st1",
            "type": kind,
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "set_name": "PromptlyTest",
        }
    }


def voice(duration: int = 4) -> dict[str, Any]:
    return {
        "voice": {
            "file_id": "AwACAgQAAxkBAAIBVoice",
            "file_unique_id": "v1",
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": 8000,
        }
    }


def audio(caption: str = "") -> dict[str, Any]:
    return _captioned(
        {
            "audio": {
                "file_id": "CQACAgQAAxkBAAIBAudio",
                "file_unique_id": "a1",
                "duration": 180,
                "performer": "Band",
                "title": "Song",
                "file_name": "song.mp3",
                "mime_type": "audio/mpeg",
            }
        },
        caption,
    )


def video(caption: str = "") -> dict[str, Any]:
    return _captioned(
        {
            "video": {
                "file_id": "BAACAgQAAxkBAAIBVideo",
                "file_unique_id": "vd1",
                "width": 1280,
                "height": 720,
                "duration": 12,
                "mime_type": "video/mp4",
            }
        },
        caption,
    )


def document(
    caption: str = "", file_name: str = "invoice.pdf", mime_type: str = "application/pdf"
) -> dict[str, Any]:
    return _captioned(
        {
            "document": {
                "file_id": "BQACAgQAAxkBAAIBDocument",
                "file_unique_id": "d1",
                "file_name": file_name,
                "mime_type": mime_type,
                "file_size": 34567,
            }
        },
        caption,
    )


def location(latitude: float = 51.5007, longitude: float = -0.1246) -> dict[str, Any]:
    return {"location": {"latitude": latitude, "longitude": longitude}}


def contact(phone_number: str = "447700900123", user_id: int | None = 1001) -> dict[str, Any]:
    """A shared contact; ``user_id`` equal to the sender's id makes it their own number."""
    shared: dict[str, Any] = {"phone_number": phone_number, "first_name": "Ada"}
    if user_id is not None:
        shared["user_id"] = user_id
    return {"contact": shared}


def _captioned(content: dict[str, Any], caption: str) -> dict[str, Any]:
    return {**content, "caption": caption} if caption else content


def _user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}


def _error(status: int, description: str) -> web.Response:
    body = {"ok": False, "error_code": status, "description": description}
    return web.json_response(body, status=status)


def _unescape_markdown_v2(text: str) -> str | None:
    """The plain text of MarkdownV2 without entities, or None if a reserved character is not
    escaped (Telegram answers 400 "can't parse entities")."""
    if not _all_escaped(text):
        return None
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


def _all_escaped(text: str) -> bool:
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in _RESERVED:
            return False
    return not escaped
