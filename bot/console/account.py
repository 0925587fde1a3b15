"""Every signed-in user's own account page: change their password.

The current password is asked for, so a session left open on a shared screen cannot be
turned into a lasting takeover, and wrong guesses count against the sign-in throttle.
"""

from __future__ import annotations

from typing import ClassVar

import aiohttp_jinja2
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot.console.access import require, require_page
from bot.console.accounts import ROLES, Accounts, Audit
from bot.console.throttle import LoginThrottle
from bot.errors import Forbidden, TooManyRequests
from bot.http import read_json, validate


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class Account:
    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/console/account", "page"),
        ("POST", "/api/console/me/password", "change_password"),
    ]

    def __init__(self, accounts: Accounts, audit: Audit, throttle: LoginThrottle) -> None:
        self._accounts = accounts
        self._audit = audit
        self._throttle = throttle

    async def page(self, request: web.Request) -> web.Response:
        user, token = await require_page(request, *ROLES)
        context = {"user": user, "csrf_token": token, "page": "account", "title": "Your account"}
        return aiohttp_jinja2.render_template("account.html", request, context)

    async def change_password(self, request: web.Request) -> web.Response:
        user = await require(request, *ROLES)
        body = validate(PasswordChange, await read_json(request, 8192))
        address = request.remote or "unknown"
        wait = await self._throttle.retry_after(user.username, address)
        if wait > 0:
            raise TooManyRequests("failed password checks", wait)
        if await self._accounts.verify(user.username, body.current_password) is None:
            await self._throttle.failed(user.username, address)
            await self._audit.record(
                user.username, "password.failed", user.id, {"address": address}
            )
            raise Forbidden("wrong_password", "the current password is not right")
        await self._accounts.update(user.id, password=body.new_password)
        await self._audit.record(user.username, "password.change", user.id)
        return web.json_response({"changed": True})
