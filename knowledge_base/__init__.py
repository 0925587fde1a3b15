"""Promptly's knowledge base: load help articles, embed their passages, answer with citations.

Usable on its own; nothing here depends on the bot or its actions.
"""

from knowledge_base.articles import Article, load_markdown_dir, load_markdown_file
from knowledge_base.chunking import DEFAULT_MAX_CHARS, Passage, chunk_article
from knowledge_base.embedder import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from knowledge_base.errors import ArticleError, IndexLoadError, KnowledgeBaseError
from knowledge_base.index import VectorIndex
from knowledge_base.live import LiveKnowledgeBase
from knowledge_base.search import Answer, Citation, Hit, KnowledgeBase

__all__ = [
    "DEFAULT_MAX_CHARS",
    "Answer",
    "Article",
    "ArticleError",
    "Citation",
    "Embedder",
    "HashingEmbedder",
    "Hit",
    "IndexLoadError",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "LiveKnowledgeBase",
    "Passage",
    "SentenceTransformerEmbedder",
    "VectorIndex",
    "chunk_article",
    "load_markdown_dir",
    "load_markdown_file",
]
