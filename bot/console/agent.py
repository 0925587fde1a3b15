"""The agent console page: queues, tickets, replies and notes. The page is a shell; its
script (``static/console.js``) drives the agent API with the session and its CSRF token."""

from __future__ import annotations

from typing import ClassVar

import aiohttp_jinja2
from aiohttp import web

from bot.console.access import require_page


class Console:
    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/console", "page"),
    ]

    async def page(self, request: web.Request) -> web.Response:
        user, csrf_token = await require_page(request, "agent")
        context = {"title": "Console", "user": user, "csrf_token": csrf_token, "page": "console"}
        response = aiohttp_jinja2.render_template("console.html", request, context)
        response.headers["Cache-Control"] = "no-store"  # it carries the session's CSRF token
        return response
