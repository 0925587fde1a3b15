"""Load the knowledge base for the gateway (off the event loop: embedding is CPU work)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bot.settings import Settings
from knowledge_base import Embedder, KnowledgeBase, SentenceTransformerEmbedder, load_markdown_dir
from knowledge_base.articles import Article
from knowledge_base.isolated import IsolatedEmbedder
from knowledge_base.live import LiveKnowledgeBase


def embedder_for(settings: Settings) -> Embedder:
    """The gateway's embedder: in a niced child process unless ``kb.isolate`` is off."""
    model = None if settings.kb.model is None else settings.path(settings.kb.model)
    if settings.kb.isolate:
        return IsolatedEmbedder(model, nice=settings.kb.nice)
    return SentenceTransformerEmbedder(model)


def local_embedder(settings: Settings) -> Embedder:
    """The configured model in this process (the CLI, a standalone action server)."""
    model = None if settings.kb.model is None else settings.path(settings.kb.model)
    return SentenceTransformerEmbedder(model)


def load_knowledge_base_sync(settings: Settings, embedder: Embedder) -> KnowledgeBase:
    articles = load_markdown_dir(settings.path(settings.kb.articles))
    return KnowledgeBase.load(settings.path(settings.kb.index_dir), embedder, articles)


async def load_live_knowledge_base(
    settings: Settings, embedder: Embedder, articles: Sequence[Article]
) -> LiveKnowledgeBase:
    """The gateway's KB over the published articles, reusing the saved index when current;
    editors' publications swap in a new index, which is saved as the next start's cache."""
    index_dir = settings.path(settings.kb.index_dir)
    loop = asyncio.get_running_loop()
    kb = await loop.run_in_executor(None, KnowledgeBase.load, index_dir, embedder, articles)
    return LiveKnowledgeBase(kb, save_to=index_dir)
