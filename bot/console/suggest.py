"""Knowledge-base suggestions for agents: top passages, internal articles included."""

from __future__ import annotations

from typing import Any, Protocol

from knowledge_base import Article, Hit


class Searchable(Protocol):
    """What the console needs of the knowledge base (``KnowledgeBase`` or the live one)."""

    async def asearch(
        self, question: str, k: int = 3, *, include_internal: bool = False
    ) -> list[Hit]: ...

    def article(self, article_id: str, *, include_internal: bool = False) -> Article | None: ...


async def suggestions(kb: Searchable | None, query: str, k: int = 5) -> list[dict[str, Any]]:
    """Up to ``k`` hits, best first; none when the knowledge base is off."""
    if kb is None or not query.strip():
        return []
    hits = await kb.asearch(query, k, include_internal=True)  # agents may read internal ones
    return [hit_json(hit, kb.article(hit.article_id, include_internal=True)) for hit in hits]


def hit_json(hit: Hit, article: Article | None) -> dict[str, Any]:
    return {
        "article_id": hit.article_id,
        "title": hit.title,
        "score": round(hit.score, 4),
        "passage": hit.passage,
        "citation": {"title": hit.citation.title, "url": hit.citation.url},
        # For the agent's eyes: the console marks these and leaves their link out of a reply
        # (the customer could not open it).
        "internal": article is not None and article.audience == "internal",
    }
