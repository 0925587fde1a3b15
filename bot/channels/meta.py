"""What WhatsApp Cloud and Messenger share: Meta's Graph API webhooks (the X-Hub-Signature-256
check and the GET verify-token challenge) and Graph API sends with Meta's error codes.

Meta docs: "Webhooks > Getting Started" (verification requests, event notifications, payload
validation) and "Graph API > Handling errors".
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp

from bot.channels.platform import (
    Response,
    SendError,
    Webhook,
    WebhookChannel,
    error_from_status,
    retry_after_seconds,
)
from bot.errors import BadRequest, Forbidden, Unauthorized

GRAPH_API = "https://graph.facebook.com/v21.0"
SIGNATURE_HEADER = "X-Hub-Signature-256"
# Graph API error codes worth retrying although Meta answers them with HTTP 400: throttling
# (4 app, 17 user, 32 page, 613 calls exceeded, 80006 Messenger, 80007 WABA, 130429 WhatsApp
# throughput, 131056 WhatsApp pair rate) and temporary failures (2 service, 1200 Messenger
# temporary send failure, 131016 WhatsApp service unavailable). "Handling errors" also marks
# such errors with ``is_transient``.
RETRYABLE_CODES = frozenset({2, 4, 17, 32, 613, 1200, 80006, 80007, 130429, 131016, 131056})


class MetaChannel(WebhookChannel):
    """Base of the Graph API channels; subclasses parse their own ``object``."""

    DEFAULT_API_BASE: ClassVar[str] = GRAPH_API

    def verify(self, hook: Webhook) -> Response | None:
        if hook.method.upper() == "GET":
            return self._challenge(hook)
        given = hook.headers.get(SIGNATURE_HEADER)
        if not given:
            raise Unauthorized("signature_missing", f"{SIGNATURE_HEADER} header is missing")
        # "Validating payloads": sha256=<hex HMAC-SHA256 of the raw body keyed by the app secret>
        expected = "sha256=" + hub_signature(self.secrets["app_secret"], hook.body)
        sent = given.strip().lower().encode(errors="replace")  # a header need not be UTF-8
        if not hmac.compare_digest(expected.encode(), sent):
            raise Unauthorized("signature_invalid", f"{SIGNATURE_HEADER} does not match the body")
        return None

    def _challenge(self, hook: Webhook) -> Response:
        """Meta's verification request: echo hub.challenge when hub.verify_token is ours."""
        token = hook.query.get("hub.verify_token", "")
        if hook.query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            token.encode(errors="replace"), self.secrets["verify_token"].encode()
        ):
            raise Forbidden("verify_token_invalid", "hub.mode or hub.verify_token is wrong")
        challenge = hook.query.get("hub.challenge")
        if not challenge:
            raise BadRequest("challenge_missing", "hub.challenge is missing")
        return Response(200, challenge, "text/plain")

    async def post_graph(
        self,
        url: str,
        body: dict[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One Graph API call; its JSON answer, or ``SendError`` (never retried here)."""
        try:
            async with self.session.post(url, json=body, headers=headers, params=params) as resp:
                text = (await resp.read()).decode("utf-8", "replace")
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError) as e:
            raise SendError(f"Graph API unreachable: {e!r}", retryable=True) from e
        answer = load_object(text)
        if 200 <= status < 300 and "error" not in answer:
            return answer
        error = error_from_status(status, text, retry_after_seconds(retry_after, datetime.now(UTC)))
        details = obj(answer.get("error"))
        code = details.get("code")
        if (isinstance(code, int) and code in RETRYABLE_CODES) or details.get(
            "is_transient"
        ) is True:
            error.retryable = True
        raise error


def hub_signature(app_secret: str, body: bytes) -> str:
    return hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def parse_json(body: bytes) -> dict[str, Any]:
    """The webhook body as a JSON object, or ``BadRequest``."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as e:  # ValueError includes UnicodeDecodeError
        raise BadRequest("malformed_json", "the body is not valid JSON") from e
    if not isinstance(payload, dict):
        raise BadRequest("malformed_payload", "the body is not a JSON object")
    return payload


def load_object(text: str) -> dict[str, Any]:
    """An API answer as a JSON object; ``{}`` when it is not one."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return obj(value)


# Payloads are untrusted JSON even when signed: these read a field as the expected type or
# give an empty value, so an unexpected shape never raises.


def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def string(value: Any) -> str:
    """A string field; ids sent as numbers are kept (as text), anything else is ``""``."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""
