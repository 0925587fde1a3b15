"""Articles as editors keep them, in the shared database.

Every change (save, publish, archive, restore) appends a version; the ``articles`` row mirrors
the newest one. A write names the version it was based on and fails with ``stale_version``
when someone saved in between, so two editors never overwrite each other silently. What
searches serve is the newest *published* version, unless a later version archived the article:
drafts saved on top of a published article do not change what customers see until published.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, cast

from bot.clock import Clock, utc_now
from bot.console.article_content import Content, diff_content, make_content, valid_id
from bot.errors import Conflict, NotFound, Unprocessable
from bot.hub import FrameHub, Subscription
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from knowledge_base.articles import Article, Audience
from knowledge_base.importers import Problem, Record, parse_markdown_dir
from knowledge_base.live import LiveKnowledgeBase

logger = logging.getLogger(__name__)

Status = Literal["draft", "published", "archived"]
STATUSES: tuple[Status, ...] = ("draft", "published", "archived")
IMPORT_AUTHOR = "import"
WATCH_INTERVAL = 2.0  # seconds between checks for articles published by other processes
# The hub topic on which a gateway says the published articles changed (never a conversation
# id): every gateway's watch, this one's included, looks at once instead of at its next poll.
ARTICLES_TOPIC = "kb:articles"
_IMPORT_BATCH = 200  # records per transaction: the store's thread serves others in between
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
_SELECT_PUBLISHED = (
    f"SELECT a.id, {', '.join('v.' + c for c in _CONTENT.split(', '))} FROM articles a "
    f"JOIN article_versions v ON v.article_id = a.id AND v.version = {_LIVE}"
)
_UPSERT_ARTICLE = (
    f"INSERT INTO articles (id, {_CONTENT}, status, version, updated_at, updated_by) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "title = excluded.title, body = excluded.body, questions = excluded.questions, "
    "tags = excluded.tags, language = excluded.language, audience = excluded.audience, "
    "status = excluded.status, version = excluded.version, "
    "updated_at = excluded.updated_at, updated_by = excluded.updated_by"
)
_INSERT_VERSION = (
    f"INSERT INTO article_versions (article_id, version, {_CONTENT}, status, author, at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_LAST_IMPORTED = "WHERE article_id = ? AND author = ? ORDER BY version DESC LIMIT 1"
# PostgreSQL transactions that write articles take this advisory lock first, so they run one
# at a time as SQLite's writes do ("PROMARTS"): a stale version or a taken id is found by
# reading, never by two writers racing to the same version.
_WRITE_LOCK = 0x50524F4D41525453


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
    rejected: list[Problem] = field(default_factory=list)  # where from and why


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
        language=content.language,
    )


class ArticleStore:
    """Articles and their versions; every operation is one transaction."""

    def __init__(
        self,
        store: SQLiteStore | PostgresStore,
        clock: Clock = utc_now,
        hub: FrameHub | None = None,
    ) -> None:
        self._queries: _Queries = (
            _PostgresQueries(store) if isinstance(store, PostgresStore) else _SQLiteQueries(store)
        )
        self._clock = clock
        self._hub = hub  # shared by the gateways when they share Redis (``RedisHub``)

    async def find(
        self, *, status: str | None = None, text: str | None = None
    ) -> list[StoredArticle]:
        """Newest change first; ``text`` matches title, body or questions (ASCII case-folded)."""
        pattern = None
        if text and text.strip():
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text.strip()) + "%"
        return await self._queries.articles(
            None if status is None else _valid_status(status), pattern
        )

    async def get(self, article_id: str) -> StoredArticle:
        return await self._queries.article(article_id)

    async def create(self, article_id: str, content: Content, author: str) -> StoredArticle:
        return await self._queries.create(valid_id(article_id), content, author, self._clock())

    async def save_draft(
        self, article_id: str, content: Content, *, version: int, author: str
    ) -> StoredArticle:
        return await self._change(article_id, version, author, "draft", _Source(content))

    async def publish(
        self, article_id: str, *, version: int, author: str, content: Content | None = None
    ) -> StoredArticle:
        """Publish ``content`` (default: the newest version's) as a new version."""
        return await self._change(article_id, version, author, "published", _Source(content))

    async def archive(self, article_id: str, *, version: int, author: str) -> StoredArticle:
        return await self._change(article_id, version, author, "archived", _Source())

    async def restore(
        self, article_id: str, old: int, *, version: int, author: str
    ) -> StoredArticle:
        """Save version ``old`` again as a new draft (publish it to serve it)."""
        return await self._change(article_id, version, author, "draft", _Source(restore=old))

    async def versions(self, article_id: str) -> list[Version]:
        """Newest first."""
        return await self._queries.versions(article_id)

    async def version(self, article_id: str, number: int) -> Version:
        return await self._queries.version(article_id, number)

    async def diff(self, article_id: str, old: int, new: int) -> str:
        """A unified diff per changed field (title, body, questions, tags, audience, language)."""
        # Versions never change once written: two reads see what one would.
        before = await self._queries.version(article_id, old)
        after = await self._queries.version(article_id, new)
        return diff_versions(before, after)

    async def published(self) -> list[Article]:
        """What searches should serve, e.g. to build the knowledge base at start."""
        return await self._queries.published()

    async def stamp(self) -> tuple[int, str | None]:
        """Changes whenever any article is created or changed: cheap to poll."""
        return await self._queries.stamp()

    async def watch(self, kb: LiveKnowledgeBase, interval: float = WATCH_INTERVAL) -> None:
        """Serve what other processes publish (another gateway, ``promptly kb import``): sync
        the KB with the published articles when ``stamp`` moves, checked as soon as a gateway
        says on the hub that articles changed, and every ``interval`` (an import, a notice lost
        while Redis was away). This gateway's editor swaps its own publishes in at once; the
        sync then finds nothing to do."""
        seen = await self.stamp()
        notices = None if self._hub is None else self._hub.subscribe()
        try:
            while True:
                await _next_notice(notices, interval)
                try:
                    stamp = await self.stamp()
                    if stamp != seen:
                        upserted, removed = await kb.sync(await self.published())
                        seen = stamp
                        if upserted or removed:
                            logger.info(
                                "articles changed elsewhere: %d in, %d out", upserted, removed
                            )
                except Exception:
                    logger.exception("syncing articles failed; trying again")
        finally:
            if notices is not None:
                notices.close()

    async def import_markdown_dir(self, path: Path) -> ImportReport:
        """Bring the Markdown folder in (at start): ``import_records`` over its files. A bad
        file is logged and skipped; the rest, and what was imported before, still serve."""
        parsed = await asyncio.to_thread(parse_markdown_dir, path)
        report = await self.import_records(parsed.records)
        report.rejected[:0] = parsed.problems
        for rejected in report.rejected:
            logger.warning("article not imported: %s", rejected)
        return report

    async def import_records(
        self,
        records: Sequence[Record],
        *,
        overwrite: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        """Store imported articles: new ids are published, changed ones published as a new
        version by ``import``, unchanged ones left alone.

        A record is compared with the last version imported for its id, so an unchanged source
        never overwrites an editor's later edit. A *changed* one over an editor's edit (or over
        an article made in the console) is rejected as a conflict, unless ``overwrite``.
        ``progress(n)`` is called after each batch of ``n`` records.
        """
        report = ImportReport()
        valid: list[tuple[Record, Content]] = []
        for record in records:
            try:
                valid_id(record.article.id)
                valid.append((record, _imported_content(record.article)))
            except Unprocessable as exc:
                report.rejected.append(Problem(record.location, exc.message))
        if progress is not None and len(valid) < len(records):
            progress(len(records) - len(valid))
        for start in range(0, len(valid), _IMPORT_BATCH):
            batch = valid[start : start + _IMPORT_BATCH]
            outcomes = await self._queries.import_batch(
                [(record.article.id, content) for record, content in batch],
                self._clock(),
                overwrite,
            )
            for (record, _), outcome in zip(batch, outcomes, strict=True):
                if outcome == "added":
                    report.added.append(record.article.id)
                elif outcome == "updated":
                    report.updated.append(record.article.id)
                elif outcome == "unchanged":
                    report.unchanged += 1
                else:
                    report.rejected.append(Problem(record.location, outcome))
            if progress is not None:
                progress(len(batch))
        if report.added or report.updated:
            self._announce()
        return report

    async def _change(
        self, article_id: str, version: int, author: str, status: Status, source: _Source
    ) -> StoredArticle:
        changed = await self._queries.change(
            article_id, version, author, status, source, self._clock()
        )
        if status != "draft":  # what searches serve changed
            self._announce()
        return changed

    def _announce(self) -> None:
        if self._hub is not None:
            self._hub.publish(ARTICLES_TOPIC, {"type": "articles_changed"})


async def _next_notice(notices: Subscription | None, interval: float) -> None:
    """Until a gateway announces a change (several at once count as one), or ``interval``."""
    if notices is None:
        await asyncio.sleep(interval)
        return
    notices.follow(ARTICLES_TOPIC)  # again after the hub dropped it (Redis came back)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(notices.queue.get(), interval)
    with contextlib.suppress(asyncio.QueueEmpty):
        while True:
            notices.queue.get_nowait()


def diff_versions(old: Version, new: Version) -> str:
    return diff_content(old.content, new.content, f"v{old.version}", f"v{new.version}")


def _valid_status(status: str) -> Status:
    for known in STATUSES:
        if status == known:
            return known
    raise Unprocessable("invalid_status", f"status is one of {', '.join(STATUSES)}", field="status")


@dataclass(frozen=True)
class _Source:
    """What a change saves: ``content``, else version ``restore``'s, else the newest's."""

    content: Content | None = None
    restore: int | None = None


def _stale(head: StoredArticle, version: int) -> Conflict:
    return Conflict(
        "stale_version",
        f"{head.id!r} is at version {head.version} (saved by {head.updated_by}) "
        f"but your edit is based on version {version}: reload it and edit again",
        field="version",
    )


def _exists(article_id: str) -> Conflict:
    return Conflict("article_exists", f"there is already an article {article_id!r}", field="id")


def _unknown(article_id: str) -> NotFound:
    return NotFound("unknown_article", f"no article {article_id!r}", field="id")


def _unknown_version(article_id: str, number: int) -> NotFound:
    return NotFound("unknown_version", f"{article_id!r} has no version {number}", field="version")


def _changes_nothing(head: StoredArticle, status: Status, new: Content) -> bool:
    """Publishing or archiving again changes nothing."""
    return status != "draft" and head.status == status and new == head.content


def _import_outcome(
    article_id: str,
    head: StoredArticle,
    last: Version | None,
    incoming: Content,
    *,
    overwrite: bool,
) -> str:
    """For an existing article: "updated" (append the import), "unchanged", or why not."""
    if last is not None and _normalised(last.content) == incoming:
        return "unchanged"  # the source is as last imported: whatever editors did since stands
    if head.status == "published" and _normalised(head.content) == incoming:
        return "unchanged"  # already what is served
    # An article made in the console, or changed there since the last import (edited, a
    # draft saved, archived), is the editors' now: a changed source must not undo that.
    edited = last is None or (
        head.version != last.version
        and (head.content != last.content or head.status != last.status)
    )
    if edited and not overwrite:
        who = "created" if last is None else "changed"
        return (
            f"conflict: {article_id!r} was {who} in the console (version {head.version} by "
            f"{head.updated_by}, {head.status}) since the last import; not overwritten"
        )
    return "updated"


# -- queries, one object per backend ---------------------------------------------------------

_Batch = Sequence[tuple[str, Content]]


class _Queries(Protocol):
    async def articles(self, status: Status | None, pattern: str | None) -> list[StoredArticle]:
        """Newest change first, then by id; ``pattern`` (LIKE, ``\\`` escapes) matches title,
        body or questions, ASCII letters in either case."""

    async def article(self, article_id: str) -> StoredArticle:
        """``NotFound`` when there is none."""

    async def create(
        self, article_id: str, content: Content, author: str, at: datetime
    ) -> StoredArticle:
        """Version 1, a draft; ``Conflict`` when the id is taken."""

    async def change(
        self,
        article_id: str,
        version: int,
        author: str,
        status: Status,
        source: _Source,
        at: datetime,
    ) -> StoredArticle:
        """A new version based on ``version``; ``Conflict`` when that is not the newest."""

    async def versions(self, article_id: str) -> list[Version]: ...

    async def version(self, article_id: str, number: int) -> Version: ...

    async def published(self) -> list[Article]: ...

    async def stamp(self) -> tuple[int, str | None]: ...

    async def import_batch(self, batch: _Batch, at: datetime, overwrite: bool) -> list[str]:
        """One transaction: the outcome of each record, in order."""


class _SQLiteQueries:
    """Every method is one transaction on the store's thread; JSON lists and times are text."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def articles(self, status: Status | None, pattern: str | None) -> list[StoredArticle]:
        where: list[str] = []
        args: list[str] = []
        if status is not None:
            where.append("a.status = ?")
            args.append(status)
        if pattern is not None:
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

    async def article(self, article_id: str) -> StoredArticle:
        return await self._store.run(lambda db: _existing(db, article_id), write=False)

    async def create(
        self, article_id: str, content: Content, author: str, at: datetime
    ) -> StoredArticle:
        def write(db: sqlite3.Connection) -> StoredArticle:
            if _head(db, article_id) is not None:
                raise _exists(article_id)
            return _append(db, article_id, 1, content, "draft", author, at)

        return await self._store.run(write, write=True)

    async def change(
        self,
        article_id: str,
        version: int,
        author: str,
        status: Status,
        source: _Source,
        at: datetime,
    ) -> StoredArticle:
        def write(db: sqlite3.Connection) -> StoredArticle:
            head = _existing(db, article_id)
            if head.version != version:
                raise _stale(head, version)
            new = source.content or head.content
            if source.restore is not None:
                new = _version_of(db, article_id, source.restore).content
            if _changes_nothing(head, status, new):
                return head
            return _append(db, article_id, head.version + 1, new, status, author, at)

        return await self._store.run(write, write=True)

    async def versions(self, article_id: str) -> list[Version]:
        def read(db: sqlite3.Connection) -> list[Version]:
            _existing(db, article_id)
            sql = f"{_SELECT_VERSIONS} WHERE article_id = ? ORDER BY version DESC"
            return [_version(row) for row in db.execute(sql, (article_id,))]

        return await self._store.run(read, write=False)

    async def version(self, article_id: str, number: int) -> Version:
        return await self._store.run(lambda db: _version_of(db, article_id, number), write=False)

    async def published(self) -> list[Article]:
        sql = f"{_SELECT_PUBLISHED} ORDER BY a.id"
        rows = await self._store.run(lambda db: db.execute(sql).fetchall(), write=False)
        return [kb_article(row[0], _content(row[1:7])) for row in rows]

    async def stamp(self) -> tuple[int, str | None]:
        sql = "SELECT count(*), max(updated_at) FROM articles"
        row = await self._store.run(lambda db: db.execute(sql).fetchone(), write=False)
        return int(row[0]), row[1]

    async def import_batch(self, batch: _Batch, at: datetime, overwrite: bool) -> list[str]:
        def write(db: sqlite3.Connection) -> list[str]:
            return [
                _import(db, article_id, content, at, overwrite) for article_id, content in batch
            ]

        return await self._store.run(write, write=True)


# Rows on SQLite's database thread.


def _head(db: sqlite3.Connection, article_id: str) -> StoredArticle | None:
    row = db.execute(f"{_SELECT_ARTICLES} WHERE a.id = ?", (article_id,)).fetchone()
    return None if row is None else _article(row)


def _existing(db: sqlite3.Connection, article_id: str) -> StoredArticle:
    head = _head(db, article_id)
    if head is None:
        raise _unknown(article_id)
    return head


def _version_of(db: sqlite3.Connection, article_id: str, number: int) -> Version:
    sql = f"{_SELECT_VERSIONS} WHERE article_id = ? AND version = ?"
    row = db.execute(sql, (article_id, number)).fetchone()
    if row is None:
        _existing(db, article_id)
        raise _unknown_version(article_id, number)
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
    db.execute(_UPSERT_ARTICLE, (article_id, *values, version, at.isoformat(), author))
    db.execute(_INSERT_VERSION, (article_id, version, *values, author, at.isoformat()))
    head = _head(db, article_id)
    assert head is not None, "just written"
    return head


def _import(
    db: sqlite3.Connection, article_id: str, incoming: Content, at: datetime, overwrite: bool
) -> str:
    """The outcome: "added", "updated", "unchanged", or why the record was rejected."""
    head = _head(db, article_id)
    if head is None:
        _append(db, article_id, 1, incoming, "published", IMPORT_AUTHOR, at)
        return "added"
    row = db.execute(f"{_SELECT_VERSIONS} {_LAST_IMPORTED}", (article_id, IMPORT_AUTHOR)).fetchone()
    last = _version(row) if row else None
    outcome = _import_outcome(article_id, head, last, incoming, overwrite=overwrite)
    if outcome == "updated":
        _append(db, article_id, head.version + 1, incoming, "published", IMPORT_AUTHOR, at)
    return outcome


class _PostgresQueries:
    """The same SQL with ``$n`` placeholders (``_numbered``); JSON lists are jsonb (the
    pool's codec encodes and decodes them) and times timestamptz. Ids sort and text matches
    under the "C" collation, as SQLite's binary ordering and ASCII-only ``LIKE`` do. Writes
    take ``_WRITE_LOCK`` first."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def articles(self, status: Status | None, pattern: str | None) -> list[StoredArticle]:
        where: list[str] = []
        args: list[str] = []
        if status is not None:
            where.append("a.status = ?")
            args.append(status)
        if pattern is not None:
            where.append(
                "(a.title COLLATE \"C\" ILIKE ? ESCAPE '\\' "
                "OR a.body COLLATE \"C\" ILIKE ? ESCAPE '\\' "
                "OR a.questions::text COLLATE \"C\" ILIKE ? ESCAPE '\\')"
            )
            args += [pattern] * 3
        sql = _SELECT_ARTICLES + (f" WHERE {' AND '.join(where)}" if where else "")
        sql = _numbered(sql + ' ORDER BY a.updated_at DESC, a.id COLLATE "C"')

        async def read(db: Any) -> Any:
            return await db.fetch(sql, *args)

        return [_article(row) for row in await self._store.run(read, write=False)]

    async def article(self, article_id: str) -> StoredArticle:
        return await self._store.run(lambda db: _pg_existing(db, article_id), write=False)

    async def create(
        self, article_id: str, content: Content, author: str, at: datetime
    ) -> StoredArticle:
        async def write(db: Any) -> StoredArticle:
            await _pg_lock(db)
            if await _pg_head(db, article_id) is not None:
                raise _exists(article_id)
            return await _pg_append(db, article_id, 1, content, "draft", author, at)

        return await self._store.run(write, write=True)

    async def change(
        self,
        article_id: str,
        version: int,
        author: str,
        status: Status,
        source: _Source,
        at: datetime,
    ) -> StoredArticle:
        async def write(db: Any) -> StoredArticle:
            await _pg_lock(db)
            head = await _pg_existing(db, article_id)
            if head.version != version:
                raise _stale(head, version)
            new = source.content or head.content
            if source.restore is not None:
                new = (await _pg_version_of(db, article_id, source.restore)).content
            if _changes_nothing(head, status, new):
                return head
            return await _pg_append(db, article_id, head.version + 1, new, status, author, at)

        return await self._store.run(write, write=True)

    async def versions(self, article_id: str) -> list[Version]:
        async def read(db: Any) -> list[Version]:
            await _pg_existing(db, article_id)
            sql = f"{_SELECT_VERSIONS} WHERE article_id = ? ORDER BY version DESC"
            return [_version(row) for row in await db.fetch(_numbered(sql), article_id)]

        return await self._store.run(read, write=False)

    async def version(self, article_id: str, number: int) -> Version:
        return await self._store.run(lambda db: _pg_version_of(db, article_id, number), write=False)

    async def published(self) -> list[Article]:
        async def read(db: Any) -> Any:
            return await db.fetch(f'{_SELECT_PUBLISHED} ORDER BY a.id COLLATE "C"')

        rows = await self._store.run(read, write=False)
        return [kb_article(row[0], _content(row[1:7])) for row in rows]

    async def stamp(self) -> tuple[int, str | None]:
        async def read(db: Any) -> Any:
            return await db.fetchrow("SELECT count(*), max(updated_at) FROM articles")

        row = await self._store.run(read, write=False)
        return int(row[0]), None if row[1] is None else row[1].isoformat()

    async def import_batch(self, batch: _Batch, at: datetime, overwrite: bool) -> list[str]:
        async def write(db: Any) -> list[str]:
            await _pg_lock(db)
            return [
                await _pg_import(db, article_id, content, at, overwrite)
                for article_id, content in batch
            ]

        return await self._store.run(write, write=True)


# Rows on a PostgreSQL connection.


async def _pg_lock(db: Any) -> None:
    await db.execute("SELECT pg_advisory_xact_lock($1)", _WRITE_LOCK)


async def _pg_head(db: Any, article_id: str) -> StoredArticle | None:
    row = await db.fetchrow(_numbered(f"{_SELECT_ARTICLES} WHERE a.id = ?"), article_id)
    return None if row is None else _article(row)


async def _pg_existing(db: Any, article_id: str) -> StoredArticle:
    head = await _pg_head(db, article_id)
    if head is None:
        raise _unknown(article_id)
    return head


async def _pg_version_of(db: Any, article_id: str, number: int) -> Version:
    sql = f"{_SELECT_VERSIONS} WHERE article_id = ? AND version = ?"
    row = await db.fetchrow(_numbered(sql), article_id, number)
    if row is None:
        await _pg_existing(db, article_id)
        raise _unknown_version(article_id, number)
    return _version(row)


async def _pg_append(
    db: Any,
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
        list(content.questions),
        list(content.tags),
        content.language,
        content.audience,
        status,
    )
    await db.execute(_numbered(_UPSERT_ARTICLE), article_id, *values, version, at, author)
    await db.execute(_numbered(_INSERT_VERSION), article_id, version, *values, author, at)
    head = await _pg_head(db, article_id)
    assert head is not None, "just written"
    return head


async def _pg_import(
    db: Any, article_id: str, incoming: Content, at: datetime, overwrite: bool
) -> str:
    head = await _pg_head(db, article_id)
    if head is None:
        await _pg_append(db, article_id, 1, incoming, "published", IMPORT_AUTHOR, at)
        return "added"
    sql = _numbered(f"{_SELECT_VERSIONS} {_LAST_IMPORTED}")
    row = await db.fetchrow(sql, article_id, IMPORT_AUTHOR)
    last = _version(row) if row else None
    outcome = _import_outcome(article_id, head, last, incoming, overwrite=overwrite)
    if outcome == "updated":
        await _pg_append(db, article_id, head.version + 1, incoming, "published", IMPORT_AUTHOR, at)
    return outcome


def _numbered(sql: str) -> str:
    """SQLite's ``?`` placeholders as PostgreSQL's ``$1``, ``$2``, … (our SQL has no ``?`` in
    a literal)."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))


def _imported_content(article: Article) -> Content:
    """The article as an editor would have saved it (validated and normalised), so that a
    re-import compares like with like; ``Unprocessable`` names the field at fault."""
    return make_content(
        title=article.title,
        body=article.body,
        questions=article.questions,
        tags=article.tags,
        language=article.language,
        audience=article.audience,
    )


def _normalised(content: Content) -> Content:
    # Versions imported before content was normalised on import compare as if they had been.
    try:
        return _imported_content(kb_article("-", content))
    except Unprocessable:
        return content


def _json(items: tuple[str, ...]) -> str:
    return json.dumps(list(items), ensure_ascii=False)


def _items(value: str | list[str]) -> tuple[str, ...]:
    """A JSON list: text from SQLite, already decoded from PostgreSQL's jsonb."""
    return tuple(json.loads(value) if isinstance(value, str) else value)


def _at(value: str | datetime) -> datetime:
    """A time: ISO text from SQLite, a datetime from PostgreSQL's timestamptz."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _content(row: Sequence[Any]) -> Content:
    title, body, questions, tags, language, audience = row
    return Content(
        title=title,
        body=body,
        questions=_items(questions),
        tags=_items(tags),
        language=language,
        audience=cast(Audience, audience),
    )


def _article(row: Sequence[Any]) -> StoredArticle:
    return StoredArticle(
        id=row[0],
        content=_content(row[1:7]),
        status=cast(Status, row[7]),
        version=row[8],
        updated_at=_at(row[9]),
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
        at=_at(row[10]),
    )
