"""Load the knowledge base for the gateway (off the event loop: embedding is CPU work)."""

from __future__ import annotations

import asyncio

from bot.settings import Settings
from knowledge_base import KnowledgeBase, SentenceTransformerEmbedder, load_markdown_dir


def load_knowledge_base_sync(settings: Settings) -> KnowledgeBase:
    articles = load_markdown_dir(settings.path(settings.kb.articles))
    return KnowledgeBase.load(
        settings.path(settings.kb.index_dir), SentenceTransformerEmbedder(), articles
    )


async def load_knowledge_base(settings: Settings) -> KnowledgeBase:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, load_knowledge_base_sync, settings)
