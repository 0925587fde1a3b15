"""Exceptions raised by the knowledge base."""

from __future__ import annotations

from pathlib import Path


class KnowledgeBaseError(Exception):
    """Base class for every error the knowledge base raises on purpose."""


class ArticleError(KnowledgeBaseError):
    """An article file (or directory of articles) could not be loaded.

    ``path`` is the offending file and ``reason`` a human-readable description of the problem;
    ``str(error)`` combines both so a log line alone is enough to fix the file.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class IndexLoadError(KnowledgeBaseError):
    """A saved vector index is missing, corrupt or inconsistent with its metadata."""
