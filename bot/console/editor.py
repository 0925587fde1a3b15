"""The knowledge-base editor: its page and JSON API (editors and admins).

Publishing writes the version and then swaps it into the live knowledge base, under one lock,
so the order searches see changes in is the order they were stored in.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import aiohttp_jinja2
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot.console.access import require, require_page
from bot.console.accounts import Audit
from bot.console.article_content import Content, make_content
from bot.console.articles import ArticleStore, StoredArticle, Version, kb_article
from bot.errors import NotFound, Unprocessable
from bot.http import MAX_INTEGER, error_body, read_json, validate
from bot.pages import render_markdown
from bot.settings import KBSettings
from knowledge_base.bands import decide
from knowledge_base.live import LiveKnowledgeBase

ROLE = "editor"  # admins pass too
# A 100,000-character body and 200 questions of 500 characters, in any script (up to 4
# bytes a character), plus the other fields.
_MAX_JSON = 1024 * 1024


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContentIn(_In):
    title: str
    body: str
    questions: list[str] = []
    tags: list[str] = []
    language: str = "en"
    audience: str = "customer"

    def content(self) -> Content:
        # Only the content fields: subclasses add the id or the version.
        return make_content(**self.model_dump(include=set(ContentIn.model_fields)))


class NewArticleIn(ContentIn):
    id: str


class SaveIn(ContentIn):
    version: int = Field(ge=1, le=MAX_INTEGER)  # the version the edit started from


class PublishIn(_In):
    version: int = Field(ge=1, le=MAX_INTEGER)
    content: ContentIn | None = None  # publish these edits; default: the newest version


class ArchiveIn(_In):
    version: int = Field(ge=1, le=MAX_INTEGER)


class RestoreIn(_In):
    version: int = Field(ge=1, le=MAX_INTEGER)
    from_version: int = Field(ge=1, le=MAX_INTEGER)


class PreviewIn(_In):
    body: str = Field(max_length=200_000)


class TryIn(_In):
    question: str = Field(min_length=1, max_length=1000)
    k: int = Field(5, ge=1, le=10)
    include_internal: bool = False  # default: what a customer would get


class Editor:
    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/console/editor", "page"),
        ("GET", "/api/console/articles", "list_articles"),
        ("POST", "/api/console/articles", "create"),
        ("GET", "/api/console/articles/{article_id}", "get"),
        ("PUT", "/api/console/articles/{article_id}", "save_draft"),
        ("POST", "/api/console/articles/{article_id}/publish", "publish"),
        ("POST", "/api/console/articles/{article_id}/archive", "archive"),
        ("POST", "/api/console/articles/{article_id}/restore", "restore"),
        ("GET", "/api/console/articles/{article_id}/versions", "versions"),
        ("GET", "/api/console/articles/{article_id}/versions/{version}", "version"),
        ("GET", "/api/console/articles/{article_id}/diff", "diff"),
        ("POST", "/api/console/preview", "preview"),
        ("POST", "/api/console/try", "try_question"),
    ]

    def __init__(
        self,
        articles: ArticleStore,
        kb: LiveKnowledgeBase | None,
        audit: Audit,
        kb_settings: KBSettings,
    ) -> None:
        self._articles = articles
        self._kb = kb  # None when [kb] enabled = false: edits are stored, nothing is served
        self._audit = audit
        self._floor = kb_settings.floor
        self._offer_floor = kb_settings.offer_floor
        self._direct_floor = kb_settings.direct_floor
        self._live = asyncio.Lock()

    async def page(self, request: web.Request) -> web.Response:
        user, csrf_token = await require_page(request, ROLE)
        context = {
            "user": user,
            "csrf_token": csrf_token,
            "kb_enabled": self._kb is not None,
            "page": "editor",
        }
        response = aiohttp_jinja2.render_template("editor.html", request, context)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def list_articles(self, request: web.Request) -> web.Response:
        await require(request, ROLE)
        found = await self._articles.find(
            status=request.query.get("status") or None, text=request.query.get("q")
        )
        return web.json_response({"articles": [_article_json(a, body=False) for a in found]})

    async def get(self, request: web.Request) -> web.Response:
        await require(request, ROLE)
        return web.json_response(_article_json(await self._articles.get(_id(request))))

    async def create(self, request: web.Request) -> web.Response:
        user = await require(request, ROLE)
        body = validate(NewArticleIn, await read_json(request, _MAX_JSON))
        article = await self._articles.create(body.id, body.content(), user.username)
        await self._audit.record(user.username, "article.create", article.id, {"version": 1})
        return web.json_response(_article_json(article), status=201)

    async def save_draft(self, request: web.Request) -> web.Response:
        user = await require(request, ROLE)
        body = validate(SaveIn, await read_json(request, _MAX_JSON))
        article = await self._articles.save_draft(
            _id(request), body.content(), version=body.version, author=user.username
        )
        await self._record(user.username, "article.save", article)
        return web.json_response(_article_json(article))

    async def publish(self, request: web.Request) -> web.Response:
        user = await require(request, ROLE)
        body = validate(PublishIn, await read_json(request, _MAX_JSON))
        content = body.content.content() if body.content else None
        async with self._live:
            article = await self._articles.publish(
                _id(request), version=body.version, author=user.username, content=content
            )
            started = time.perf_counter()
            if self._kb is not None:
                await self._kb.publish(kb_article(article.id, article.content))
            visible_ms = round((time.perf_counter() - started) * 1000)
        await self._record(user.username, "article.publish", article, visible_ms=visible_ms)
        return web.json_response({**_article_json(article), "visible_ms": visible_ms})

    async def archive(self, request: web.Request) -> web.Response:
        user = await require(request, ROLE)
        body = validate(ArchiveIn, await read_json(request, 4096))
        async with self._live:
            article = await self._articles.archive(
                _id(request), version=body.version, author=user.username
            )
            if self._kb is not None:
                await self._kb.remove(article.id)
        await self._record(user.username, "article.archive", article)
        return web.json_response(_article_json(article))

    async def restore(self, request: web.Request) -> web.Response:
        user = await require(request, ROLE)
        body = validate(RestoreIn, await read_json(request, 4096))
        article = await self._articles.restore(
            _id(request), body.from_version, version=body.version, author=user.username
        )
        await self._record(user.username, "article.restore", article, restored=body.from_version)
        return web.json_response(_article_json(article))

    async def versions(self, request: web.Request) -> web.Response:
        await require(request, ROLE)
        found = await self._articles.versions(_id(request))
        return web.json_response({"versions": [_version_json(v, body=False) for v in found]})

    async def version(self, request: web.Request) -> web.Response:
        await require(request, ROLE)
        number = _number(request.match_info["version"], "version", NotFound)
        return web.json_response(_version_json(await self._articles.version(_id(request), number)))

    async def diff(self, request: web.Request) -> web.Response:
        await require(request, ROLE)
        old = _number(request.query.get("from", ""), "from", Unprocessable)
        new = _number(request.query.get("to", ""), "to", Unprocessable)
        text = await self._articles.diff(_id(request), old, new)
        return web.json_response({"from": old, "to": new, "diff": text})

    async def preview(self, request: web.Request) -> web.Response:
        await require(request, ROLE)
        body = validate(PreviewIn, await read_json(request, _MAX_JSON))
        # Off the loop: a long article takes milliseconds, and acks share this loop.
        return web.json_response({"html": await asyncio.to_thread(render_markdown, body.body)})

    async def try_question(self, request: web.Request) -> web.Response:
        await require(request, ROLE)
        body = validate(TryIn, await read_json(request, 8192))
        if self._kb is None:
            message = "the knowledge base is turned off ([kb] enabled = false)"
            return web.json_response(error_body("kb_disabled", message), status=503)
        hits = await self._kb.asearch(body.question, body.k, include_internal=body.include_internal)
        return web.json_response(
            {
                "question": body.question,
                "floor": self._floor,
                "offer_floor": self._offer_floor,
                "direct_floor": self._direct_floor,
                # What the bot would do with this question (knowledge_base/bands.py).
                "band": str(decide(hits, self._floor, self._offer_floor).band),
                "hits": [
                    {
                        "article_id": hit.article_id,
                        "title": hit.title,
                        "score": round(hit.score, 4),
                        "passage": hit.passage,
                        "url": hit.citation.url,
                        "above_floor": hit.score >= self._floor,
                        "above_offer_floor": hit.score >= self._offer_floor,
                        "above_direct_floor": hit.score >= self._direct_floor,
                    }
                    for hit in hits
                ],
            }
        )

    async def _record(self, actor: str, action: str, article: StoredArticle, **extra: Any) -> None:
        data = {"version": article.version, "status": article.status, **extra}
        await self._audit.record(actor, action, article.id, data)


def _id(request: web.Request) -> str:
    return request.match_info["article_id"]


def _number(text: str, name: str, error: type[NotFound] | type[Unprocessable]) -> int:
    # ASCII only: str.isdigit() also accepts "²", which int() refuses.
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_INTEGER:
        raise error(f"invalid_{name}", f"{name} must be a version number", field=name)
    return int(text)


def _content_json(content: Content, *, body: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": content.title,
        "questions": list(content.questions),
        "tags": list(content.tags),
        "language": content.language,
        "audience": content.audience,
    }
    if body:
        data["body"] = content.body
    return data


def _article_json(article: StoredArticle, *, body: bool = True) -> dict[str, Any]:
    return {
        "id": article.id,
        **_content_json(article.content, body=body),
        "status": article.status,
        "version": article.version,
        "live_version": article.live_version,
        "updated_at": article.updated_at.isoformat(),
        "updated_by": article.updated_by,
    }


def _version_json(version: Version, *, body: bool = True) -> dict[str, Any]:
    return {
        "article_id": version.article_id,
        "version": version.version,
        **_content_json(version.content, body=body),
        "status": version.status,
        "author": version.author,
        "at": version.at.isoformat(),
    }
