"""The knowledge base over HTTP: search (``GET /api/kb/search``) and the content-gap report
(``GET /api/kb/gaps``), for the console, the editor and integrations.

Both need a console session (agents, editors, leads) or the agent bearer token: a search
embeds the question, which costs CPU no anonymous caller should be able to spend.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from aiohttp import web

from bot.clock import Clock
from bot.console.actor import TokenOrSession
from bot.console.suggest import hit_json
from bot.errors import NotFound, Unprocessable
from bot.settings import KBSettings
from bot.store.open import AnyStore
from bot.store.postgres import Conn, PostgresStore
from knowledge_base import Hit, gaps
from knowledge_base.bands import decide
from knowledge_base.live import LiveKnowledgeBase

MAX_QUERY = 500
MAX_K = 20
DEFAULT_PERIOD = timedelta(days=30)
AUDIENCES = ("customer", "agent")  # who reads: agents see internal articles too


class KnowledgeAPI:
    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/api/kb/search", "search"),
        ("GET", "/api/kb/gaps", "gaps"),
    ]

    def __init__(
        self,
        store: AnyStore,
        kb: LiveKnowledgeBase | None,
        settings: KBSettings,
        token: str,
        clock: Clock,
    ) -> None:
        self._store = store
        self._kb = kb
        self._settings = settings
        self._auth = TokenOrSession(token)
        self._clock = clock

    async def search(self, request: web.Request) -> web.Response:
        await self._auth.actor(request, "agent", "editor")
        query = request.query.get("q", "").strip()
        if not query or len(query) > MAX_QUERY:
            raise Unprocessable(
                "validation_error", f"q: 1–{MAX_QUERY} characters to search for", field="q"
            )
        audience = request.query.get("audience", "customer")
        if audience not in AUDIENCES:
            raise Unprocessable(
                "validation_error", f"audience: one of {', '.join(AUDIENCES)}", field="audience"
            )
        k = _int(request, "k", 5, 1, MAX_K)
        kb = self._live()
        internal = audience == "agent"
        hits = await kb.asearch(query, k, include_internal=internal)
        # What the bot would do with this question (customers' searches only: the bands are
        # the bot's, and agents read internal articles the bot never answers with).
        floors = (self._settings.floor, self._settings.offer_floor)
        band = None if internal else str(decide(hits, *floors).band)
        return web.json_response(
            {
                "query": query,
                "audience": audience,
                "band": band,
                "hits": [
                    hit_json(hit, kb.article(hit.article_id, include_internal=True)) for hit in hits
                ],
            }
        )

    async def gaps(self, request: web.Request) -> web.Response:
        await self._auth.actor(request, "editor", "lead")
        until = _time(request, "until") or self._clock()
        since = _time(request, "since") or until - DEFAULT_PERIOD
        if since >= until:
            raise Unprocessable("validation_error", "since must be before until", field="since")
        limit = _int(request, "limit", 20, 1, 200)
        min_count = _int(request, "min_count", 1, 1, 1_000_000)
        report = await gap_report(
            self._store, self._live(), since, until, limit=limit, min_count=min_count
        )
        return web.json_response(report)

    def _live(self) -> LiveKnowledgeBase:
        if self._kb is None:
            raise NotFound("kb_disabled", "the knowledge base is turned off on this gateway")
        return self._kb


async def gap_report(
    store: AnyStore,
    kb: LiveKnowledgeBase,
    since: datetime,
    until: datetime,
    *,
    limit: int | None = None,
    min_count: int = 1,
    similarity: float = gaps.DEFAULT_SIMILARITY,
) -> dict[str, Any]:
    """Questions of ``[since, until)`` the bot declined or only offered choices for, grouped
    by meaning, largest group first (the first ``limit`` of at least ``min_count``), each
    with the nearest article of any audience and its score."""
    if isinstance(store, PostgresStore):
        asked = await store.run(lambda conn: _pg_asked(conn, since, until), write=False)
    else:
        asked = await store.run(lambda db: _asked(db, since, until), write=False)
    loop = asyncio.get_running_loop()
    # Embedding and clustering are CPU work: off the event loop, like the KB's own searches.
    grouping = await loop.run_in_executor(
        None, lambda: gaps.group(asked, kb.embed, similarity=similarity)
    )
    report = []
    shown = [gap for gap in grouping.gaps if gap.count >= min_count][:limit]
    for gap in shown:
        hits = await kb.asearch(gap.examples[0], 1, include_internal=True)
        report.append(
            {
                "count": gap.count,
                "unanswered": gap.unanswered,
                "low_confidence": gap.count - gap.unanswered,
                "examples": list(gap.examples),
                "last_asked": gap.last_asked.isoformat(),
                "nearest": _nearest(hits[0]) if hits else None,
            }
        )
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "questions": grouping.questions,
        "left_out": grouping.left_out,
        "gaps": report,
    }


def _nearest(hit: Hit) -> dict[str, Any]:
    return {
        "article_id": hit.article_id,
        "title": hit.title,
        "score": round(hit.score, 4),
        "url": hit.citation.url,
    }


# An ``acked``/``answered`` event marks the bot's reply to a question (``data.question``) as
# declined (``unsure``) or as an offer of articles (``offered``): ``bot/pipeline.py``.
# The condition is the partial index's (migrations/006_gap_index.sql), word for word, so
# SQLite reads the period from that index.
_ASKED = """
SELECT m.text, e.at, json_extract(e.data, '$.unsure'), json_extract(e.data, '$.score')
FROM events e INDEXED BY events_kb_gaps
JOIN messages m ON m.id = json_extract(e.data, '$.question')
WHERE (json_extract(e.data, '$.unsure') = 1 OR json_extract(e.data, '$.offered') IS NOT NULL)
  AND e.at >= ? AND e.at < ? AND e.type IN ('acked', 'answered')
ORDER BY e.seq
"""


def _asked(db: sqlite3.Connection, since: datetime, until: datetime) -> list[gaps.Asked]:
    rows: Sequence[tuple[str, str, Any, Any]] = db.execute(
        _ASKED, (_iso(since), _iso(until))
    ).fetchall()
    return [
        gaps.Asked(
            text=text,
            at=datetime.fromisoformat(at),
            unanswered=bool(unsure),
            score=float(score) if isinstance(score, int | float) else None,
        )
        for text, at, unsure, score in rows
    ]


# PostgreSQL: the same question; the condition is its partial index's
# (pg/migrations/006_gap_index.sql), so the planner reads the period from that index.
_PG_ASKED = """
SELECT m.text, e.at, e.data -> 'unsure', e.data -> 'score'
FROM events e
JOIN messages m ON m.id = e.data ->> 'question'
WHERE (e.data @> '{"unsure": true}' OR e.data ->> 'offered' IS NOT NULL)
  AND e.at >= $1 AND e.at < $2 AND e.type IN ('acked', 'answered')
ORDER BY e.seq
"""


async def _pg_asked(conn: Conn, since: datetime, until: datetime) -> list[gaps.Asked]:
    rows = await conn.fetch(_PG_ASKED, since, until)
    return [
        gaps.Asked(
            text=text,
            at=at,
            unanswered=unsure is True,
            score=float(score) if isinstance(score, int | float) else None,
        )
        for text, at, unsure, score in rows
    ]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _time(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Unprocessable(
            "validation_error", f"{name}: an ISO 8601 date or time", field=name
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise Unprocessable("validation_error", f"{name}: a whole number {low}–{high}", field=name)
    return number
