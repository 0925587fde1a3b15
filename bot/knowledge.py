"""Load the knowledge base for the gateway (off the event loop: embedding is CPU work)."""

from __future__ import annotations

import asyncio

from bot.settings import Settings
from knowledge_base import Embedder, KnowledgeBase, SentenceTransformerEmbedder, load_markdown_dir
from knowledge_base.isolated import IsolatedEmbedder


def embedder_for(settings: Settings) -> Embedder:
    """The gateway's embedder: in a niced child process unless ``kb.isolate`` is off."""
    if settings.kb.isolate:
        return IsolatedEmbedder(nice=settings.kb.nice)
    return SentenceTransformerEmbedder()


def load_knowledge_base_sync(settings: Settings, embedder: Embedder) -> KnowledgeBase:
    articles = load_markdown_dir(settings.path(settings.kb.articles))
    return KnowledgeBase.load(settings.path(settings.kb.index_dir), embedder, articles)


async def load_knowledge_base(settings: Settings, embedder: Embedder) -> KnowledgeBase:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, load_knowledge_base_sync, settings, embedder)
