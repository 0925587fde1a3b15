"""A fake Twilio Messages API, and builders for Twilio's messaging webhook (form-encoded,
signed with X-Twilio-Signature the way "Webhooks security" documents).

    async with FakeTwilio() as twilio:
        headers, body = twilio.signed_update(text="hi", user_id="+447700900123")
        headers, body = twilio.signed_update(text="hi", user_id="whatsapp:+447700900123")
        # a TwilioChannel built with api_base=twilio.url sends to it; twilio.calls records it

The signature covers the public URL Twilio called: pass the gateway's ``url`` (default
``WEBHOOK_URL``) and hand the same URL to the adapter as ``Webhook.url``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.base import Call, FakePlatform

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-auth-token"
WEBHOOK_URL = "https://promptly.example.com/webhooks/twilio"
SMS_NUMBER = "+15005550006"
WHATSAPP_NUMBER = "whatsapp:+14155238886"
_ids = itertools.count(1)

# kind -> the webhook parameters of a sample (media per "Messaging webhook request").
SAMPLES: dict[str, dict[str, str]] = {
    "image": {
        "NumMedia": "1",
        "MediaContentType0": "image/jpeg",
        "Body": "my router",
        "MediaUrl0": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}"
        "/Messages/MM1/Media/ME1",
    },
    "audio": {
        "NumMedia": "1",
        "MediaContentType0": "audio/ogg",
        "MediaUrl0": "https://api.twilio.com/media/ME2",
    },
    "video": {
        "NumMedia": "1",
        "MediaContentType0": "video/mp4",
        "MediaUrl0": "https://api.twilio.com/media/ME3",
    },
    "file": {
        "NumMedia": "1",
        "MediaContentType0": "application/pdf",
        "MediaUrl0": "https://api.twilio.com/media/ME4",
    },
    "contact": {
        "NumMedia": "1",
        "MediaContentType0": "text/vcard",
        "MediaUrl0": "https://api.twilio.com/media/ME5",
    },
    "two_images": {
        "NumMedia": "2",
        "MediaContentType0": "image/png",
        "MediaUrl0": "https://api.twilio.com/media/ME6",
        "MediaContentType1": "image/jpeg",
        "MediaUrl1": "https://api.twilio.com/media/ME7",
    },
    "location": {
        "Latitude": "51.5072",
        "Longitude": "-0.1276",
        "Address": "1 Main St",
        "Label": "Head office",
        "MessageType": "location",
    },
    "button": {"ButtonText": "Talk to a person", "ButtonPayload": "agent", "MessageType": "button"},
    "unknown": {"MessageType": "reaction"},
}


def signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """base64(HMAC-SHA1(auth token, URL + each parameter's name and value, sorted by name))."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(
        hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    ).decode()


def twilio_error(status: int, code: int, message: str) -> str:
    """A REST API error body, e.g. for ``fail_next(429, body=twilio_error(429, 20429, ...))``."""
    return json.dumps(
        {
            "code": code,
            "message": message,
            "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
        }
    )


class FakeTwilio(FakePlatform):
    """POST /2010-04-01/Accounts/{AccountSid}/Messages.json with HTTP basic auth."""

    def __init__(
        self,
        *,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        webhook_url: str = WEBHOOK_URL,
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.webhook_url = webhook_url

    # -- webhooks Promptly receives ---------------------------------------------------------

    def params(
        self,
        text: str = "Hello",
        *,
        user_id: str = "+447700900123",
        message_id: str | None = None,
        to: str | None = None,
        profile_name: str | None = "Ada Lovelace",
    ) -> dict[str, str]:
        """An inbound message's parameters; a "whatsapp:" ``user_id`` makes it WhatsApp."""
        whatsapp = user_id.startswith("whatsapp:")
        sid = message_id or f"SM{next(_ids):032x}"
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": text,
            "To": to or (WHATSAPP_NUMBER if whatsapp else SMS_NUMBER),
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": user_id,
            "ApiVersion": "2010-04-01",
        }
        if whatsapp:
            params.update(
                ProfileName=profile_name or "",
                WaId=user_id.removeprefix("whatsapp:+"),
                MessageType="text",
            )
        return params

    def signed(
        self, params: dict[str, str], url: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """(headers, form body) Twilio would POST to ``url``."""
        url = url or self.webhook_url
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature(self.auth_token, url, params),
            "I-Twilio-Idempotency-Token": f"{next(_ids):032x}",
        }
        return headers, urlencode(params).encode()

    def signed_update(
        self,
        text: str = "Hello",
        *,
        user_id: str = "+447700900123",
        message_id: str | None = None,
        url: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        return self.signed(self.params(text, user_id=user_id, message_id=message_id), url)

    def signed_message(
        self,
        kind: str,
        *,
        user_id: str = "whatsapp:+447700900123",
        message_id: str | None = None,
        url: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """A non-text message: ``kind`` is a key of ``SAMPLES``."""
        params = self.params("", user_id=user_id, message_id=message_id)
        params.update(SAMPLES[kind])
        return self.signed(params, url)

    def signed_status(
        self,
        message_id: str,
        status: str = "delivered",
        *,
        user_id: str = "+447700900123",
        url: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """A status callback for a message Promptly sent."""
        params = {
            "MessageSid": message_id,
            "SmsSid": message_id,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": user_id,
            "From": SMS_NUMBER,
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
        }
        return self.signed(params, url)

    # -- the REST API Promptly calls --------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/2010-04-01/Accounts/{account_sid}/Messages.json", self._messages)]

    def texts(self) -> list[str]:
        return [call.form.get("Body", "") for call in self.calls]

    async def _messages(self, request: web.Request) -> web.Response:
        async def answer(call: Call) -> web.Response:
            credentials = f"{self.account_sid}:{self.auth_token}".encode()
            expected = "Basic " + base64.b64encode(credentials).decode()
            if (
                request.match_info["account_sid"] != self.account_sid
                or request.headers.get("Authorization") != expected
            ):
                return _json(401, json.loads(twilio_error(401, 20003, "Authenticate")))
            form = call.form
            if not form.get("To") or not form.get("From") or "Body" not in form:
                return _json(
                    400, json.loads(twilio_error(400, 21604, "A 'To' phone number is required."))
                )
            sid = f"SM{next(_ids):032x}"
            return _json(
                201,
                {
                    "sid": sid,
                    "account_sid": self.account_sid,
                    "to": form["To"],
                    "from": form["From"],
                    "body": form["Body"],
                    "status": "queued",
                    "num_segments": "1",
                    "direction": "outbound-api",
                    "api_version": "2010-04-01",
                    "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
                },
            )

        return await self.record(request, answer)


def _json(status: int, body: dict[str, object]) -> web.Response:
    return web.json_response(body, status=status)
