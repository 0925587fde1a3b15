"""Who calls the agent API: an integration with the bearer token, or a signed-in console user.

The token stays for integrations (it is a server-side secret, so it needs no CSRF check); a
browser gets a session, with the CSRF header on every unsafe request. A session's acting agent
is its user's, never what the request body claims.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from bot.console.access import AUDIT, require, signed_in_user
from bot.console.accounts import User
from bot.errors import Unauthorized

API = "api"  # the audit log's actor for the bearer token


@dataclass(frozen=True)
class Actor:
    user: User | None  # None: the bearer token

    @property
    def name(self) -> str:
        """Who the audit log names."""
        return API if self.user is None else self.user.username

    @property
    def is_admin(self) -> bool:
        """The token may do everything, as it always could."""
        return self.user is None or self.user.role == "admin"

    @property
    def agent_id(self) -> str | None:
        """The agent a session works as (an admin without an agents row: by username)."""
        if self.user is None:
            return None
        return self.user.agent_id or self.user.username


class TokenOrSession:
    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def actor(self, request: web.Request, *roles: str) -> Actor:
        """The caller, allowed one of ``roles`` (default: agent); admins and the token pass."""
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            sent = token.encode("utf-8", "surrogateescape")  # bytes as sent, UTF-8 or not
            if scheme.lower() != "bearer" or not hmac.compare_digest(sent, self._token):
                raise Unauthorized("unauthorized", "a valid agent bearer token is required")
            return Actor(None)
        if await signed_in_user(request) is None:
            raise Unauthorized(
                "unauthorized", "sign in to the console or send a valid agent bearer token"
            )
        return Actor(await require(request, *(roles or ("agent",))))


async def record(
    request: web.Request, actor: Actor, action: str, target: str | None, **data: object
) -> None:
    """Append a write to the audit log (who, what, on what)."""
    await request.app[AUDIT].record(actor.name, action, target, dict(data))
