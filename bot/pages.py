"""Pages and static files: demo page, widget script, OpenAPI spec, help articles, health."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, ClassVar

import aiohttp_jinja2
import nh3
from aiohttp import web
from markdown_it import MarkdownIt

from bot.emergency import Switch
from bot.store.base import Store
from knowledge_base.chunking import github_slug
from knowledge_base.live import LiveKnowledgeBase

_STATIC = resources.files("bot") / "static"


_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_ATTRIBUTES = {**nh3.ALLOWED_ATTRIBUTES, **{h: {"id"} for h in _HEADINGS}}


def render_markdown(text: str) -> str:
    """Markdown to HTML that is safe to show anywhere: nh3 drops scripts and handlers.

    Headings get the same anchors as KB citations (GitHub-style slugs, de-duplicated).
    """
    md = MarkdownIt("commonmark")
    tokens = md.parse(text)
    seen: dict[str, int] = {}
    for opening, inline in zip(tokens, tokens[1:], strict=False):
        if opening.type == "heading_open":
            slug = github_slug(inline.content)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            opening.attrSet("id", slug if count == 0 else f"{slug}-{count}")
    html = md.renderer.render(tokens, md.options, {})
    return nh3.clean(html, attributes=_ATTRIBUTES, link_rel="noopener noreferrer")


class Pages:
    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/", "index"),
        ("GET", "/widget.js", "widget"),
        ("GET", "/api/openapi.json", "openapi"),
        ("GET", "/kb/{article_id}", "article"),
        ("GET", "/health", "health"),
    ]

    def __init__(
        self,
        store: Store,
        components: Callable[[], dict[str, bool]],
        kb: LiveKnowledgeBase | None,
        channels: Mapping[str, bool] | None = None,
        switch: Callable[[], Switch] = Switch,
        overload: Callable[[], dict[str, Any]] = lambda: {"on": False},
        journaled: Callable[[], int] = lambda: 0,
    ) -> None:
        self._journaled = journaled
        self._switch = switch
        self._overload = overload
        self._store = store
        self._components = components  # up or not: rasa, kb and, when shared, redis
        self._kb = kb
        self._channels = dict(channels or {})  # platform channel -> enabled

    async def index(self, request: web.Request) -> web.Response:
        return aiohttp_jinja2.render_template(
            "index.html", request, {"title": "Acme Outdoor — Promptly demo"}
        )

    async def widget(self, request: web.Request) -> web.Response:
        body = (_STATIC / "widget.js").read_text(encoding="utf-8")
        return web.Response(
            text=body, content_type="application/javascript", headers={"Cache-Control": "no-cache"}
        )

    async def openapi(self, request: web.Request) -> web.Response:
        body = (_STATIC / "openapi.json").read_text(encoding="utf-8")
        return web.Response(text=body, content_type="application/json")

    async def article(self, request: web.Request) -> web.Response:
        article_id = request.match_info["article_id"]
        article = self._kb.article(article_id) if self._kb else None
        if article is None:  # archived, renamed, internal or never there: a page, not JSON
            missing = {"title": "Article not found"}
            return aiohttp_jinja2.render_template(
                "article_missing.html", request, missing, status=404
            )
        context: dict[str, Any] = {
            "title": article.title,
            "body_html": render_markdown(article.body),
            "article_id": article.id,
            "updated": None,
        }
        return aiohttp_jinja2.render_template("article.html", request, context)

    async def health(self, request: web.Request) -> web.Response:
        journaled = self._journaled()
        try:
            # A database stuck in a lock would hold /health as long; a second is the verdict.
            await asyncio.wait_for(self._store.ping(), timeout=1)
            database = "up" if journaled == 0 else "down"  # writes still fail or not replayed
        except Exception:
            database = "down"
        components = {name: "up" if up else "down" for name, up in self._components().items()}
        components["database"] = database
        status = "ok" if all(v == "up" for v in components.values()) else "degraded"
        channels = {name: "enabled" if on else "disabled" for name, on in self._channels.items()}
        switch = self._switch()
        for name in switch.paused:
            channels[name] = "paused"
        body = {
            "status": status,
            "components": components,
            "channels": channels,
            "emergency": switch.to_json(),
            "overload": self._overload(),
            "journal": {"waiting": journaled},
        }
        return web.json_response(body)
