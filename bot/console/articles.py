"""Articles as editors keep them, in the shared database.

Every change (save, publish, archive, restore) appends a version; the ``articles`` row mirrors
the newest one. A write names the version it was based on and fails with ``stale_version``
when someone saved in between, so two editors never overwrite each other silently. What
searches serve is the newest *published* version, unless a later version archived the article:
drafts saved on top of a published article do not change what customers see until published.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

from bot.clock import Clock, utc_now
from bot.console.article_content import Content, diff_content, valid_id
from bot.errors import Conflict, NotFound, Unprocessable
from bot.store.sqlite import SQLiteStore
from knowledge_base.articles import Article, Audience, load_markdown_dir

Status = Literal["draft", "published", "archived"]
STATUSES: tuple[Status, ...] = ("draft", "published", "archived")
IMPORT_AUTHOR = "import"
# The version searches serve: the newest published or archived one, if it is published.
_LIVE = (
    "(SELECT CASE WHEN v.status = 'published' THEN v.version END FROM article_versions v "
    "WHERE v.article_id = a.id AND v.status != 'draft' ORDER BY v.version DESC LIMIT 1)"
)
_CONTENT = "title, body, questions, tags, language, audience"
_SELECT_ARTICLES = (
    f"SELECT a.id, {', '.join('a.' + c for c in _CONTENT.split(', '))}, "
    f"a.status, a.version, a.updated_at, a.updated_by, {_LIVE} FROM articles a"
)
_SELECT_VERSIONS = (
    f"SELECT article_id, version, {_CONTENT}, status, author, at FROM article_versions"
)


@dataclass(frozen=True)
class StoredArticle:
    id: str
    content: Content
    status: Status
    version: int
    updated_at: datetime
    updated_by: str
    live_version: int | None  # the version searches serve; None when none does


@dataclass(frozen=True)
class Version:
    article_id: str
    version: int
    content: Content
    status: Status
    author: str
    at: datetime


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0


def kb_article(article_id: str, content: Content) -> Article:
    """The article as the knowledge base indexes it."""
    return Article(
        id=article_id,
        title=content.title,
        body=content.body,
        url=None,
        tags=content.tags,
        questions=content.questions,
        audience=content.audience,
    )


class ArticleStore:
    """Articles and their versions; every operation is one transaction on the store's thread."""

    def __init__(self, store: SQLiteStore, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock

    async def find(
        self, *, status: str | None = None, text: str | None = None
    ) -> list[StoredArticle]:
        """Newest change first; ``text`` matches title, body or questions (ASCII case-folded)."""
        where: list[str] = []
        args: list[str] = []
        if status is not None:
            where.append("a.status = ?")
            args.append(_valid_status(status))
        if text and text.strip():
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text.strip()) + "%"
            where.append(
                "(a.title LIKE ? ESCAPE '\\' OR a.body LIKE ? ESCAPE '\\' "
                "OR a.questions LIKE ? ESCAPE '\\')"
            )
            args += [pattern] * 3
        sql = _SELECT_ARTICLES + (f" WHERE {' AND '.join(where)}" if where else "")
        rows = await self._store.run(
            lambda db: db.execute(sql + " ORDER BY a.updated_at DESC, a.id", args).fetchall(),
            write=False,
        )
        return [_article(row) for row in rows]

    async def get(self, article_id: str) -> StoredArticle:
        return await self._store.run(lambda db: _existing(db, article_id), write=False)

    async def create(self, article_id: str, content: Content, author: str) -> StoredArticle:
        article_id = valid_id(article_id)
        at = self._clock()

        def write(db: sqlite3.Connection) -> StoredArticle:
            if _head(db, article_id) is not None:
                raise Conflict(
                    "article_exists", f"there is already an article {article_id!r}", field="id"
                )
            return _append(db, article_id, 1, content, "draft", author, at)

        return await self._store.run(write, write=True)

    async def save_draft(
        self, article_id: str, content: Content, *, version: int, author: str
    ) -> StoredArticle:
        return await self._change(article_id, version, author, "draft", lambda db, head: content)

    async def publish(
        self, article_id: str, *, version: int, author: str, content: Content | None = None
    ) -> StoredArticle:
        """Publish ``content`` (default: the newest version's) as a new version."""
        return await self._change(
            article_id, version, author, "published", lambda db, head: content or head.content
        )

    async def archive(self, article_id: str, *, version: int, author: str) -> StoredArticle:
        return await self._change(
            article_id, version, author, "archived", lambda db, head: head.content
        )

    async def restore(
        self, article_id: str, old: int, *, version: int, author: str
    ) -> StoredArticle:
        """Save version ``old`` again as a new draft (publish it to serve it)."""
        return await self._change(
            article_id,
            version,
            author,
            "draft",
            lambda db, head: _version_of(db, article_id, old).content,
        )

    async def versions(self, article_id: str) -> list[Version]:
        """Newest first."""

        def read(db: sqlite3.Connection) -> list[Version]:
            _existing(db, article_id)
            sql = f"{_SELECT_VERSIONS} WHERE article_id = ? ORDER BY version DESC"
            return [_version(row) for row in db.execute(sql, (article_id,))]

        return await self._store.run(read, write=False)

    async def version(self, article_id: str, number: int) -> Version:
        return await self._store.run(lambda db: _version_of(db, article_id, number), write=False)

    async def diff(self, article_id: str, old: int, new: int) -> str:
        """A unified diff per changed field (title, body, questions, tags, audience, language)."""
        before, after = await self._store.run(
            lambda db: (_version_of(db, article_id, old), _version_of(db, article_id, new)),
            write=False,
        )
        return diff_versions(before, after)

    async def published(self) -> list[Article]:
        """What searches should serve, e.g. to build the knowledge base at start."""
        sql = (
            f"SELECT a.id, {', '.join('v.' + c for c in _CONTENT.split(', '))} FROM articles a "
            f"JOIN article_versions v ON v.article_id = a.id AND v.version = {_LIVE} "
            "ORDER BY a.id"
        )
        rows = await self._store.run(lambda db: db.execute(sql).fetchall(), write=False)
        return [kb_article(row[0], _content(row[1:7])) for row in rows]

    async def import_markdown_dir(self, path: Path) -> ImportReport:
        """Bring the Markdown folder in: new files are published, changed ones published as a
        new version by ``import``. A file is compared with the last version imported from it,
        so an unchanged file never overwrites an editor's later edits."""
        articles = await asyncio.to_thread(load_markdown_dir, path)
        at = self._clock()

        def write(db: sqlite3.Connection) -> ImportReport:
            report = ImportReport()
            for article in articles:
                outcome = _import(db, article, at)
                if outcome == "added":
                    report.added.append(article.id)
                elif outcome == "updated":
                    report.updated.append(article.id)
                else:
                    report.unchanged += 1
            return report

        return await self._store.run(write, write=True)

    async def _change(
        self,
        article_id: str,
        version: int,
        author: str,
        status: Status,
        content_of: Callable[[sqlite3.Connection, StoredArticle], Content],
    ) -> StoredArticle:
        at = self._clock()

        def write(db: sqlite3.Connection) -> StoredArticle:
            head = _existing(db, article_id)
            if head.version != version:
                raise Conflict(
                    "stale_version",
                    f"{article_id!r} is at version {head.version} (saved by {head.updated_by}) "
                    f"but your edit is based on version {version}: reload it and edit again",
                    field="version",
                )
            new = content_of(db, head)
            if status != "draft" and head.status == status and new == head.content:
                return head  # publishing or archiving again changes nothing
            return _append(db, article_id, head.version + 1, new, status, author, at)

        return await self._store.run(write, write=True)


def diff_versions(old: Version, new: Version) -> str:
    return diff_content(old.content, new.content, f"v{old.version}", f"v{new.version}")


def _valid_status(status: str) -> Status:
    for known in STATUSES:
        if status == known:
            return known
    raise Unprocessable("invalid_status", f"status is one of {', '.join(STATUSES)}", field="status")


# -- rows (on the database thread) -----------------------------------------------------------


def _head(db: sqlite3.Connection, article_id: str) -> StoredArticle | None:
    row = db.execute(f"{_SELECT_ARTICLES} WHERE a.id = ?", (article_id,)).fetchone()
    return None if row is None else _article(row)


def _existing(db: sqlite3.Connection, article_id: str) -> StoredArticle:
    head = _head(db, article_id)
    if head is None:
        raise NotFound("unknown_article", f"no article {article_id!r}", field="id")
    return head


def _version_of(db: sqlite3.Connection, article_id: str, number: int) -> Version:
    sql = f"{_SELECT_VERSIONS} WHERE article_id = ? AND version = ?"
    row = db.execute(sql, (article_id, number)).fetchone()
    if row is None:
        _existing(db, article_id)
        raise NotFound(
            "unknown_version", f"{article_id!r} has no version {number}", field="version"
        )
    return _version(row)


def _append(
    db: sqlite3.Connection,
    article_id: str,
    version: int,
    content: Content,
    status: Status,
    author: str,
    at: datetime,
) -> StoredArticle:
    values = (
        content.title,
        content.body,
        _json(content.questions),
        _json(content.tags),
        content.language,
        content.audience,
        status,
    )
    db.execute(
        f"INSERT INTO articles (id, {_CONTENT}, status, version, updated_at, updated_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
        "title = excluded.title, body = excluded.body, questions = excluded.questions, "
        "tags = excluded.tags, language = excluded.language, audience = excluded.audience, "
        "status = excluded.status, version = excluded.version, "
        "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (article_id, *values, version, at.isoformat(), author),
    )
    db.execute(
        f"INSERT INTO article_versions (article_id, version, {_CONTENT}, status, author, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (article_id, version, *values, author, at.isoformat()),
    )
    head = _head(db, article_id)
    assert head is not None, "just written"
    return head


def _import(
    db: sqlite3.Connection, article: Article, at: datetime
) -> Literal["added", "updated", "unchanged"]:
    head = _head(db, article.id)
    incoming = Content(
        title=article.title,
        body=article.body,
        questions=article.questions,
        tags=article.tags,
        language=head.content.language if head else "en",  # files carry no language
        audience=article.audience,
    )
    if head is None:
        _append(db, article.id, 1, incoming, "published", IMPORT_AUTHOR, at)
        return "added"
    row = db.execute(
        f"{_SELECT_VERSIONS} WHERE article_id = ? AND author = ? ORDER BY version DESC LIMIT 1",
        (article.id, IMPORT_AUTHOR),
    ).fetchone()
    # Without an earlier import (an editor made this id first), compare with what is there.
    last = _version(row).content if row else head.content
    if _file_digest(last) == _file_digest(incoming):
        return "unchanged"
    _append(db, article.id, head.version + 1, incoming, "published", IMPORT_AUTHOR, at)
    return "updated"


def _file_digest(content: Content) -> str:
    """Hash of what a Markdown file holds (not the language, which only editors set)."""
    fields = [content.title, content.body, content.questions, content.tags, content.audience]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


def _json(items: tuple[str, ...]) -> str:
    return json.dumps(list(items), ensure_ascii=False)


def _content(row: Sequence[Any]) -> Content:
    title, body, questions, tags, language, audience = row
    return Content(
        title=title,
        body=body,
        questions=tuple(json.loads(questions)),
        tags=tuple(json.loads(tags)),
        language=language,
        audience=cast(Audience, audience),
    )


def _article(row: Sequence[Any]) -> StoredArticle:
    return StoredArticle(
        id=row[0],
        content=_content(row[1:7]),
        status=cast(Status, row[7]),
        version=row[8],
        updated_at=datetime.fromisoformat(row[9]),
        updated_by=row[10],
        live_version=row[11],
    )


def _version(row: Sequence[Any]) -> Version:
    return Version(
        article_id=row[0],
        version=row[1],
        content=_content(row[2:8]),
        status=cast(Status, row[8]),
        author=row[9],
        at=datetime.fromisoformat(row[10]),
    )
