"""A fake Slack Web API: ``chat.postMessage`` answered as Slack does, and Events API requests
built and signed as Slack POSTs them ("Verifying requests from Slack").

Payload shapes follow https://api.slack.com/apis/events-api ("Callback type: event_callback")
and the ``message``, ``reaction_added`` and ``member_joined_channel`` event pages.
``clock`` is the sender's time for the signature timestamp: give it the gateway's clock when
that clock is not the wall clock.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.base import Call, FakePlatform

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-0000000000-0000000000000-FakeSlackBotToken"
TEAM_ID = "T0PROMPTLY"
API_APP_ID = "A0PROMPTLY"
BOT_USER_ID = "U0PROMPTBOT"
BOT_ID = "B0PROMPTBOT"
CHALLENGE = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"

Signed = tuple[dict[str, str], bytes]


class FakeSlack(FakePlatform):
    def __init__(
        self,
        signing_secret: str = SIGNING_SECRET,
        bot_token: str = BOT_TOKEN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.signing_secret = signing_secret
        self.bot_token = bot_token
        self.clock = clock
        self.sent: list[dict[str, Any]] = []  # bodies of the chat.postMessage calls that succeeded
        self._event_ids = itertools.count(1)
        self._ts = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/{method}", self._api)]

    async def _api(self, request: web.Request) -> web.Response:
        return await self.record(request, lambda call: self._answer(request, call))

    async def _answer(self, request: web.Request, call: Call) -> web.Response:
        # Web API errors are HTTP 200 with ok: false ("Web API basics > Evaluating responses").
        auth = request.headers.get("Authorization")
        if auth != f"Bearer {self.bot_token}":
            return _error("not_authed" if auth is None else "invalid_auth")
        if request.match_info["method"] != "chat.postMessage":
            return _error("unknown_method")
        body = call.json if isinstance(call.json, dict) else {}
        text = body.get("text")
        if not body.get("channel"):
            return _error("channel_not_found")
        if not isinstance(text, str) or not text.strip():
            return _error("no_text")
        if len(text) > 40_000:
            return _error("msg_too_long")
        self.sent.append(body)
        ts = self.ts()
        message: dict[str, Any] = {
            "type": "message",
            "text": text,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "ts": ts,
        }
        if body.get("thread_ts"):
            message["thread_ts"] = body["thread_ts"]
        return web.json_response(
            {"ok": True, "channel": body["channel"], "ts": ts, "message": message}
        )

    def ts(self) -> str:
        """A message timestamp, Slack's message id: "<unix seconds>.<6 digits>", unique."""
        return f"{int(self.clock())}.{next(self._ts):06d}"

    # -- failures -------------------------------------------------------------------------------

    def fail_rate_limited(self, retry_after: int = 3, times: int = 1) -> None:
        """HTTP 429 with Retry-After ("Rate limits")."""
        body = json.dumps({"ok": False, "error": "ratelimited"})
        self.fail_next(429, times, body=body, headers={"Retry-After": str(retry_after)})

    def fail_error(self, error: str = "channel_not_found", times: int = 1) -> None:
        """HTTP 200 with ``{"ok": false, "error": error}`` (also ``ratelimited``)."""
        self.fail_next(200, times, body=json.dumps({"ok": False, "error": error}))

    # -- webhooks -------------------------------------------------------------------------------

    def sign(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
        retry_num: int | None = None,
    ) -> dict[str, str]:
        """The headers Slack sends with ``body``; ``retry_num`` marks a redelivery."""
        ts = str(int(self.clock()) if timestamp is None else timestamp)
        key = (self.signing_secret if secret is None else secret).encode()
        digest = hmac.new(key, f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return headers

    def webhook(self, payload: dict[str, Any], **sign: Any) -> Signed:
        """``payload`` as Slack POSTs it; keywords as ``sign()``."""
        body = json.dumps(payload).encode()
        return self.sign(body, **sign), body

    def envelope(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        """The ``event_callback`` wrapper around one event."""
        return {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": API_APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._event_ids):010d}",
            "event_time": int(self.clock()),
            "authorizations": [
                {
                    "team_id": TEAM_ID,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }

    def signed_event(
        self, event: dict[str, Any], *, event_id: str | None = None, **sign: Any
    ) -> Signed:
        return self.webhook(self.envelope(event, event_id=event_id), **sign)

    def signed_url_verification(self, challenge: str = CHALLENGE, **sign: Any) -> Signed:
        """The handshake Slack sends when the Request URL is set ("url_verification")."""
        payload = {"token": "legacy-verification-token", "challenge": challenge}
        payload["type"] = "url_verification"
        return self.webhook(payload, **sign)

    def message(
        self,
        text: str = "Hello",
        *,
        user_id: str = "U0CUSTOMER1",
        channel: str = "D0CUSTOMER1",
        channel_type: str = "im",
        ts: str | None = None,
        thread_ts: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A ``message`` event from a user (a direct message unless told otherwise)."""
        event: dict[str, Any] = {
            "type": "message",
            "user": user_id,
            "text": text,
            "ts": ts or self.ts(),
            "team": TEAM_ID,
            "channel": channel,
            "channel_type": channel_type,
            **fields,
        }
        event["event_ts"] = event["ts"]
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    def signed_update(
        self, text: str = "Hello", *, event_id: str | None = None, **message: Any
    ) -> Signed:
        """A text message; keywords as ``message()`` plus ``event_id``."""
        return self.signed_event(self.message(text, **message), event_id=event_id)

    def signed_file(
        self,
        text: str = "",
        *,
        name: str = "screenshot.png",
        mimetype: str = "image/png",
        event_id: str | None = None,
        **message: Any,
    ) -> Signed:
        """A file_share message with one file ("File object")."""
        file = {
            "id": "F0FILE00001",
            "created": int(self.clock()),
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rpartition(".")[2],
            "user": message.get("user_id", "U0CUSTOMER1"),
            "size": 52345,
            "url_private": f"https://files.slack.com/files-pri/{TEAM_ID}-F0FILE00001/{name}",
            "permalink": f"https://promptly.slack.com/files/U0CUSTOMER1/F0FILE00001/{name}",
        }
        event = self.message(text, subtype="file_share", files=[file], upload=False, **message)
        return self.signed_event(event, event_id=event_id)

    def signed_edit(
        self,
        text: str,
        *,
        previous_text: str = "Hello",
        user_id: str = "U0CUSTOMER1",
        channel: str = "D0CUSTOMER1",
        ts: str = "1700000000.000100",
        event_id: str | None = None,
    ) -> Signed:
        """A message_changed event: the new message in ``message``, the old one in
        ``previous_message``."""
        edited = {
            "type": "message",
            "user": user_id,
            "text": text,
            "ts": ts,
            "edited": {"user": user_id, "ts": self.ts()},
        }
        previous = {"type": "message", "user": user_id, "text": previous_text, "ts": ts}
        event = {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": channel,
            "channel_type": "im",
            "message": edited,
            "previous_message": previous,
            "ts": self.ts(),
        }
        event["event_ts"] = event["ts"]
        return self.signed_event(event, event_id=event_id)

    def signed_bot_message(
        self, text: str = "Hi, I'm Promptly", *, channel: str = "D0CUSTOMER1"
    ) -> Signed:
        """Our own reply echoed back as a message event, which Promptly must ignore."""
        event = self.message(
            text, user_id=BOT_USER_ID, channel=channel, bot_id=BOT_ID, app_id=API_APP_ID
        )
        return self.signed_event(event)

    def signed_reaction(
        self,
        reaction: str = "thumbsup",
        *,
        user_id: str = "U0CUSTOMER1",
        channel: str = "D0CUSTOMER1",
        item_ts: str = "1700000000.000100",
        removed: bool = False,
        event_id: str | None = None,
    ) -> Signed:
        event = {
            "type": "reaction_removed" if removed else "reaction_added",
            "user": user_id,
            "reaction": reaction,
            "item_user": BOT_USER_ID,
            "item": {"type": "message", "channel": channel, "ts": item_ts},
            "event_ts": self.ts(),
        }
        return self.signed_event(event, event_id=event_id)

    def signed_join(
        self,
        user_id: str = "U0CUSTOMER1",
        *,
        channel: str = "C0SUPPORT01",
        event_id: str | None = None,
    ) -> Signed:
        event = {
            "type": "member_joined_channel",
            "user": user_id,
            "channel": channel,
            "channel_type": "C",
            "team": TEAM_ID,
            "event_ts": self.ts(),
        }
        return self.signed_event(event, event_id=event_id)


def _error(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})
