"""Content fingerprint deciding whether a saved index is still valid."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from knowledge_base.articles import Article

# Bump whenever chunking or the text fed to the embedder changes, so old indexes are rebuilt.
# 2: example questions quoted in a body became question passages.
PIPELINE_VERSION = 2


def content_fingerprint(
    articles: Iterable[Article], embedder_name: str, dim: int, max_chars: int
) -> str:
    """Hex digest of everything that determines the index's passages and vectors.

    Only fields that reach the index count: editing an article's ``url`` or ``tags`` does not
    force a re-embed, because citations are always built from the current articles.
    """
    payload = {
        "pipeline": PIPELINE_VERSION,
        "embedder": embedder_name,
        "dim": dim,
        "max_chars": max_chars,
        "articles": [
            [article.id, article.title, article.body, list(article.questions)]
            for article in sorted(articles, key=lambda article: article.id)
        ],
    }
    encoded = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()
