"""A knowledge-base hit as the console and the search API show it."""

from __future__ import annotations

from typing import Any

from knowledge_base import Article, Hit


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
