"""Rasa's custom-action endpoint, served by the gateway with rasa-sdk's ``ActionExecutor``.

Hosting actions here keeps one KB index in memory and lets actions use the same store.
"""

from __future__ import annotations

import hmac
import json
import logging
import zlib
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any, ClassVar

from aiohttp import web
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import (
    ActionExecutionRejection,
    ActionMissingDomainException,
    ActionNotFoundException,
)

from bot.errors import BadRequest, Unauthorized
from bot.http import parse_json

logger = logging.getLogger(__name__)


class ActionEndpoint:
    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("POST", "/actions/webhook", "webhook"),
        ("GET", "/actions/actions", "list_actions"),
    ]

    def __init__(
        self,
        executor: ActionExecutor,
        token: str | None,
        observe: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._executor = executor
        self._token = token.encode() if token else None
        self._observe = observe  # sees every call (the fast path learns of active forms)

    def _authorize(self, request: web.Request) -> None:
        if self._token is None:
            # No token configured: only a Rasa on this machine may call actions.
            if request.remote is None or not ip_address(request.remote).is_loopback:
                raise Unauthorized("unauthorized", "action calls are accepted from loopback only")
            return
        given = request.query.get("token", "").encode()
        if not hmac.compare_digest(given, self._token):
            raise Unauthorized("unauthorized", "invalid action endpoint token")

    async def webhook(self, request: web.Request) -> web.Response:
        self._authorize(request)
        raw = await request.read()
        if request.headers.get("Content-Encoding") == "deflate":
            try:
                raw = zlib.decompress(raw)
            except zlib.error as e:
                raise BadRequest("invalid_body", "body is not valid deflate data") from e
        action_call = parse_json(raw)
        if not isinstance(action_call, dict):
            raise BadRequest("invalid_body", "an action call must be a JSON object")
        if self._observe is not None:
            self._observe(action_call)
        try:
            result = await self._executor.run(action_call)
        except ActionExecutionRejection as e:
            return web.json_response({"error": e.message, "action_name": e.action_name}, status=400)
        except ActionNotFoundException as e:
            logger.error("Rasa asked for unknown action %s", e.action_name)
            return web.json_response({"error": e.message, "action_name": e.action_name}, status=404)
        except ActionMissingDomainException as e:
            return web.json_response({"error": e.message, "action_name": e.action_name}, status=449)
        return web.json_response(
            result.model_dump() if result else None, dumps=lambda o: json.dumps(o, default=str)
        )

    async def list_actions(self, request: web.Request) -> web.Response:
        self._authorize(request)
        names = [a.name for a in self._executor.list_actions()]
        return web.json_response({"actions": sorted(names)})
