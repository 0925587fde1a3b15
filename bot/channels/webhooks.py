"""``/webhooks/<channel>``: verify, store, answer the platform; the turn runs afterwards.

The order is the contract every platform expects: the signature is checked before anything
is parsed or stored (a bad one gets 401/403 and nothing is kept), each message is stored
durably before the 2xx (so a platform retry after a crash is answered from the inbox, never
lost), and the 2xx goes out at once: acks and answers are sent later through the platform's
API by the dispatcher, inside the platform's own timeout (Slack: 3 s) whatever the bot does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

from aiohttp import web
from multidict import CIMultiDictProxy

from bot.channels.platform import Response, Webhook, WebhookChannel
from bot.clock import Clock, utc_now
from bot.errors import NotFound
from bot.http import read_body
from bot.limits import ClientLimits
from bot.pipeline import Pipeline
from bot.settings import PlatformChannelSettings

logger = logging.getLogger(__name__)


class WebhookEndpoint:
    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("POST", "/webhooks/{channel}", "handle"),
        ("GET", "/webhooks/{channel}", "handle"),  # Meta's verify-token challenge
    ]

    def __init__(
        self,
        pipeline: Pipeline,
        channels: Mapping[str, WebhookChannel],
        settings: Mapping[str, PlatformChannelSettings],
        public_url: str | None,
        limits: ClientLimits,
        clock: Clock = utc_now,
    ) -> None:
        self._limits = limits
        self._body_timeout = limits.settings.body_timeout.total_seconds()
        self._pipeline = pipeline
        self._channels = channels
        self._settings = settings
        self._public_url = public_url.rstrip("/") if public_url else None
        self._clock = clock

    async def handle(self, request: web.Request) -> web.Response:
        await self._limits.webhook(request.remote)  # before any work: reading, HMAC, parsing
        name = request.match_info["channel"]
        adapter = self._channels.get(name)
        if adapter is None:
            raise NotFound("unknown_channel", f"no enabled channel {name!r}", field="channel")
        hook = await self._webhook(request, self._settings[name].max_body_bytes)
        handshake = adapter.verify(hook)
        if handshake is not None:
            return _response(handshake)
        if request.method != "POST":
            raise NotFound("not_found", "nothing to do for this request")
        for inbound in adapter.parse(hook):
            received = await self._pipeline.accept(inbound)
            if received.duplicate:
                logger.info(
                    "%s: duplicate delivery of %s ignored", name, inbound.platform_message_id
                )
        return _response(adapter.ok())

    async def _webhook(self, request: web.Request, limit: int) -> Webhook:
        body = await read_body(request, limit, self._body_timeout, code="body_too_large")
        # Signatures that cover the URL (Twilio) need the address the platform called, which
        # behind a proxy is the configured public URL, not the one this process sees.
        url = f"{self._public_url}{request.path_qs}" if self._public_url else str(request.url)
        headers: CIMultiDictProxy[str] = request.headers
        return Webhook(
            method=request.method,
            url=url,
            headers=headers,
            query=dict(request.query),
            body=body,
            received_at=self._clock(),
        )


def _response(response: Response) -> web.Response:
    return web.Response(
        status=response.status, text=response.body, content_type=response.content_type
    )
