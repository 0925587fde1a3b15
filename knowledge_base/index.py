"""Exact inner-product vector index over passages, persisted as faiss bytes plus JSON."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np

from knowledge_base.chunking import Passage
from knowledge_base.embedder import Vectors
from knowledge_base.errors import IndexLoadError

logger = logging.getLogger(__name__)

INDEX_FILE = "passages.faiss"
METADATA_FILE = "passages.json"
_FORMAT = 1


class VectorIndex:
    """Passages and their unit vectors; inner product equals cosine similarity.

    ``embedder_name`` and ``fingerprint`` are opaque labels saved with the index so a loader can
    tell whether it is still valid for the current model and content.
    """

    def __init__(self, dim: int, embedder_name: str, fingerprint: str) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.embedder_name = embedder_name
        self.fingerprint = fingerprint
        # IndexIDMap2 (not IndexIDMap) because it supports reconstruct(), which search uses to
        # re-score an article's sections without embedding them again.
        self._faiss: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._passages: list[Passage] = []

    def __len__(self) -> int:
        return len(self._passages)

    @property
    def passages(self) -> Sequence[Passage]:
        """Passages in insertion order; a passage's position is its id in the index."""
        return tuple(self._passages)

    def add(self, passages: Sequence[Passage], vectors: Vectors) -> None:
        """Append ``passages`` with their ``vectors`` (one row each, ``dim`` columns)."""
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape != (len(passages), self.dim):
            raise ValueError(
                f"expected vectors of shape ({len(passages)}, {self.dim}), got {matrix.shape}"
            )
        first = len(self._passages)
        ids = np.arange(first, first + len(passages), dtype=np.int64)
        self._faiss.add_with_ids(matrix, ids)
        self._passages.extend(passages)

    def search(self, vector: Vectors, k: int) -> list[tuple[Passage, float]]:
        """The ``k`` passages with the highest inner product with ``vector``, best first."""
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ValueError(f"expected a vector of {self.dim} values, got {query.shape[1]}")
        k = min(k, len(self._passages))
        if k <= 0:
            return []
        # A flat scan of a help centre takes microseconds on one core, while waking faiss's
        # OpenMP pool for one query measured 5-15 ms. The setting is per calling thread and
        # faiss ships its own libgomp, so this does not touch torch's threads.
        faiss.omp_set_num_threads(1)
        scores, ids = self._faiss.search(query, k)
        return [
            (self._passages[int(i)], float(score))
            for score, i in zip(scores[0], ids[0], strict=True)
            if i >= 0
        ]

    def vectors(self, positions: Sequence[int]) -> Vectors:
        """The stored vectors of the passages at ``positions``, one row each."""
        if not positions:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = np.asarray(positions, dtype=np.int64)
        return cast(Vectors, np.asarray(self._faiss.reconstruct_batch(ids), dtype=np.float32))

    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (created if needed), replacing any previous one."""
        directory.mkdir(parents=True, exist_ok=True)
        blob = faiss.serialize_index(self._faiss).tobytes()
        metadata = {
            "format": _FORMAT,
            "dim": self.dim,
            "embedder": self.embedder_name,
            "fingerprint": self.fingerprint,
            # Ties the metadata to the exact index bytes: the two files are replaced one after
            # the other, so a crash in between must not yield a mismatched pair that loads.
            "index_sha256": hashlib.sha256(blob).hexdigest(),
            "passages": [_passage_to_json(p) for p in self._passages],
        }
        _write_atomically(directory / INDEX_FILE, blob)
        text = json.dumps(metadata, ensure_ascii=False, indent=1)
        _write_atomically(directory / METADATA_FILE, text.encode("utf-8"))

    @classmethod
    def load(cls, directory: Path) -> VectorIndex:
        """Read an index written by ``save``; raise ``IndexLoadError`` if anything is off."""
        try:
            blob = (directory / INDEX_FILE).read_bytes()
            metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexLoadError(f"cannot read index in {directory}: {exc}") from exc
        try:
            index = cls._from_parts(blob, metadata)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise IndexLoadError(f"invalid index in {directory}: {exc}") from exc
        return index

    @classmethod
    def _from_parts(cls, blob: bytes, metadata: Any) -> VectorIndex:
        if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
            raise ValueError("unknown metadata format")
        if hashlib.sha256(blob).hexdigest() != metadata["index_sha256"]:
            raise ValueError("index file does not match its metadata")
        dim, embedder, fingerprint = metadata["dim"], metadata["embedder"], metadata["fingerprint"]
        if not (
            isinstance(dim, int) and isinstance(embedder, str) and isinstance(fingerprint, str)
        ):
            raise TypeError("dim, embedder or fingerprint has the wrong type")
        passages = [_passage_from_json(item) for item in metadata["passages"]]
        raw = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
        if raw.d != dim or raw.ntotal != len(passages):
            raise ValueError(f"index holds {raw.ntotal}x{raw.d}, metadata {len(passages)}x{dim}")
        index = cls(dim, embedder, fingerprint)
        index._faiss = raw
        index._passages = passages
        return index


def _passage_to_json(passage: Passage) -> dict[str, str | None]:
    return {
        "article_id": passage.article_id,
        "title": passage.title,
        "heading": passage.heading,
        "anchor": passage.anchor,
        "text": passage.text,
        "kind": passage.kind,
    }


def _passage_from_json(item: Any) -> Passage:
    if not isinstance(item, dict):
        raise TypeError("passage entry is not an object")
    strings = {key: item[key] for key in ("article_id", "title", "text")}
    optional = {key: item[key] for key in ("heading", "anchor")}
    kind = item["kind"]
    if not all(isinstance(value, str) for value in strings.values()):
        raise TypeError("passage article_id, title and text must be strings")
    if not all(value is None or isinstance(value, str) for value in optional.values()):
        raise TypeError("passage heading and anchor must be strings or null")
    if kind not in ("section", "question"):
        raise ValueError(f"unknown passage kind {kind!r}")
    return Passage(
        article_id=strings["article_id"],
        title=strings["title"],
        heading=optional["heading"],
        anchor=optional["anchor"],
        text=strings["text"],
        kind=kind,
    )


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.debug("wrote %s (%d bytes)", path, len(data))
