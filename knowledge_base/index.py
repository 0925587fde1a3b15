"""Inner-product vector index over passages: exact while small, IVF past a size threshold.

Edits never rebuild or copy the large part. An index is a shared, immutable *base* (a faiss
index whose sequential ids are passage ids) plus a small exact *delta* of passages added since,
plus *tombstones* for removed base passages. ``with_changes`` returns a new index sharing the
base, so readers of the old index are neither blocked nor disturbed; ``compacted`` folds the
delta and tombstones back into a base off the request path, when ``compaction_due`` says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np
import numpy.typing as npt

from knowledge_base.chunking import Passage
from knowledge_base.embedder import Vectors
from knowledge_base.errors import IndexLoadError

logger = logging.getLogger(__name__)

INDEX_FILE = "passages.faiss"
DELTA_FILE = "delta.faiss"
METADATA_FILE = "passages.json"
_FORMAT = 2

# Up to this many passages the base is an exact flat scan: at 10k real passages it measured
# p50 1.3 ms, p99 1.9 ms of CPU (bench/kb_scale.py), just inside the 2 ms budget.
EXACT_LIMIT = 10_000
# The delta is scanned exactly on every query: 2k passages cost ~0.4 ms.
DELTA_LIMIT = 2_048
# Past this share of tombstoned base passages, compaction is due (they cost scan time).
TOMBSTONE_FRACTION = 0.2
# IVF past EXACT_LIMIT, not HNSW: on 1M clustered passages (docs/benchmarks.md, 2 cores)
# IVF (4k lists, nprobe 32, float16) reached recall@10 0.96 at p99 1.1 ms, while HNSW
# (M 16, efConstruction 40) reached only 0.46-0.62 recall@10 at efSearch 64-256.
# IVF also compacts without retraining (the trained quantizer is reused) and removes for real.
IVF_LISTS_PER_SQRT = 4  # nlist = 4 * sqrt(n), the usual faiss sizing
IVF_NPROBE = 32
IVF_TRAIN_PER_LIST = 30
_QUANTIZER_HNSW_M = 32
# Finding the nprobe nearest of 4k centroids: efSearch 64 found 99.3 % of them against 99.9 %
# at 128. At 1M passages on a quiet machine: p50 1.37 ms against 1.42 ms, recall@10 0.962
# against 0.964; p99 2.16 against 2.01 ms, which is within run-to-run noise.
_QUANTIZER_EF_SEARCH = 64

_Bool = npt.NDArray[np.bool_]
_Ids = npt.NDArray[np.int64]


class _Base:
    """A faiss index whose sequential ids 0..n-1 are passage ids, and those passages.

    Appended to only while its ``VectorIndex`` is being built and not yet shared; read-only
    afterwards, so any number of ``VectorIndex`` objects and threads may use it.
    """

    def __init__(self, index: Any, passages: list[Passage]) -> None:
        self.index = index
        self.passages = passages
        self.by_article: dict[str, list[int]] = {}
        for position, passage in enumerate(passages):
            self.by_article.setdefault(passage.article_id, []).append(position)
        # (sha256, (st_dev, st_ino, st_size, st_mtime_ns)) of the file this base was last
        # saved to or loaded from: an unchanged file is not written again on the next save.
        self.saved: dict[Path, tuple[str, tuple[int, int, int, int]]] = {}

    @property
    def approximate(self) -> bool:
        return isinstance(self.index, faiss.IndexIVF)

    def append(self, passages: Sequence[Passage], matrix: npt.NDArray[np.float32]) -> None:
        first = len(self.passages)
        self.index.add(matrix)
        self.passages.extend(passages)
        for offset, passage in enumerate(passages):
            self.by_article.setdefault(passage.article_id, []).append(first + offset)
        self.saved.clear()


class VectorIndex:
    """Passages and their unit vectors; inner product equals cosine similarity.

    ``embedder_name`` and ``fingerprint`` are opaque labels saved with the index so a loader can
    tell whether it is still valid for the current model and content. ``exact_limit``: past
    this many passages the base becomes an IVF index (built once, at first use after ``add``)
    searched with ``nprobe`` lists; below it is an exact flat scan.
    """

    def __init__(
        self,
        dim: int,
        embedder_name: str,
        fingerprint: str,
        *,
        exact_limit: int = EXACT_LIMIT,
        delta_limit: int = DELTA_LIMIT,
        nprobe: int = IVF_NPROBE,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.embedder_name = embedder_name
        self.fingerprint = fingerprint
        self.exact_limit = exact_limit
        self.delta_limit = delta_limit
        self.nprobe = nprobe
        self._base = _Base(faiss.IndexFlatIP(dim), [])
        # Set on both sides by with_changes/compacted: a shared base is never appended to.
        self._shared = False
        self._dead: _Bool = np.zeros(0, dtype=np.bool_)
        self._dead_count = 0
        # IndexIDMap2 (not IndexIDMap) because it supports reconstruct(), which search uses to
        # re-score an article's sections without embedding them again. Never shared: every new
        # VectorIndex gets its own copy, so it may be appended to.
        self._delta: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._delta_passages: dict[int, Passage] = {}
        self._next_id = 0
        self._cache: dict[str, Any] = {}
        self._building = threading.Lock()

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._base.passages) - self._dead_count + len(self._delta_passages)

    @property
    def passages(self) -> Sequence[Passage]:
        """Live passages: surviving base passages in insertion order, then newer ones.

        A passage's position in this sequence is what ``vectors`` takes. ``with_changes`` and
        ``compacted`` keep survivors in the same relative order and append new passages last,
        exactly as rebuilding a fresh index from the kept and new passages would.
        """
        cached = self._cache.get("passages")
        if cached is None:
            base = self._base.passages
            if self._dead_count:
                kept: Sequence[Passage] = [base[i] for i in self._live_base_ids()]
            else:
                kept = base
            cached = (*kept, *self._delta_passages.values())
            self._cache["passages"] = cached
        return cast(tuple[Passage, ...], cached)

    @property
    def approximate(self) -> bool:
        """Whether the base is (or, at first use, will be) IVF rather than an exact scan."""
        return self._base.approximate or self._needs_ivf()

    @property
    def pending(self) -> tuple[int, int]:
        """(passages in the delta, tombstoned base passages): what a compaction would fold."""
        return len(self._delta_passages), self._dead_count

    @property
    def compaction_due(self) -> bool:
        """The delta or the tombstones have grown enough that ``compacted`` should run."""
        delta, dead = self.pending
        return delta > self.delta_limit or dead > TOMBSTONE_FRACTION * max(
            len(self._base.passages), 1
        )

    def search(self, vector: Vectors, k: int) -> list[tuple[Passage, float]]:
        """The ``k`` passages with the highest inner product with ``vector``, best first."""
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ValueError(f"expected a vector of {self.dim} values, got {query.shape[1]}")
        k = min(k, len(self))
        if k <= 0:
            return []
        # One query is far too little work for faiss's OpenMP pool, and waking it measured
        # 5-15 ms. The setting is per calling thread and faiss ships its own libgomp, so this
        # does not touch torch's threads.
        faiss.omp_set_num_threads(1)
        self._ready()
        found: list[tuple[float, Passage]] = []
        live_in_base = len(self._base.passages) - self._dead_count
        if live_in_base:
            wanted = min(k, live_in_base)
            scores, ids = self._base.index.search(query, wanted, params=self._search_params())
            if ids[0, -1] < 0 and self._base.approximate:
                # The probed lists held fewer than asked (k near the size, or many tombstones):
                # probe them all, as callers widening k expect everything eventually.
                scores, ids = self._base.index.search(
                    query, wanted, params=self._search_params(every_list=True)
                )
            found += _hits(scores[0], ids[0], self._base.passages)
        if self._delta_passages:
            scores, ids = self._delta.search(query, min(k, len(self._delta_passages)))
            found += _hits(scores[0], ids[0], self._delta_passages)
            found.sort(key=lambda item: -item[0])
        return [(passage, score) for score, passage in found[:k]]

    def positions_of(self, article_id: str) -> list[int]:
        """Positions (in ``passages``) of ``article_id``'s passages, ascending; O(its passages)
        after a one-off O(size) numpy pass per index, so callers need not scan ``passages``."""
        base = self._base.by_article.get(article_id, [])
        positions: list[int] = []
        if base:
            ids = np.asarray(base, dtype=np.int64)
            if self._dead_count:
                dead_before = self._cache.get("dead before")
                if dead_before is None:
                    dead_before = self._cache.setdefault("dead before", np.cumsum(self._dead))
                alive = ~self._dead[ids]
                positions = (ids[alive] - dead_before[ids[alive]]).tolist()
            else:
                positions = base.copy()
        if self._delta_passages:
            first = len(self._base.passages) - self._dead_count
            positions += [
                first + rank
                for rank, passage in enumerate(self._delta_passages.values())
                if passage.article_id == article_id
            ]
        return positions

    def vectors(self, positions: Sequence[int]) -> Vectors:
        """The stored vectors of the passages at ``positions`` (in ``passages``), one row each."""
        if not positions:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self._live_ids()[np.asarray(positions, dtype=np.int64)]
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        in_base = ids < len(self._base.passages)
        if in_base.any():
            out[in_base] = self._base.index.reconstruct_batch(ids[in_base])
        if not in_base.all():
            out[~in_base] = self._delta.reconstruct_batch(ids[~in_base])
        return cast(Vectors, out)

    # -- changing ------------------------------------------------------------------------------

    def add(self, passages: Sequence[Passage], vectors: Vectors) -> None:
        """Append ``passages`` with their ``vectors`` (one row each, ``dim`` columns).

        Meant for building: while this index shares nothing, rows go straight into the base
        (which becomes IVF at first use if it outgrew ``exact_limit``); otherwise into the delta.
        """
        matrix = self._matrix(passages, vectors)
        if not passages:
            return
        if self._shared or self._delta_passages:
            self._add_to_delta(passages, matrix)
        else:
            self._base.append(passages, matrix)
            self._dead = np.concatenate([self._dead, np.zeros(len(passages), dtype=np.bool_)])
            self._next_id = len(self._base.passages)
        self._cache.clear()

    def with_changes(
        self,
        remove_article_ids: Collection[str] = (),
        passages: Sequence[Passage] = (),
        vectors: Vectors | None = None,
        *,
        fingerprint: str | None = None,
    ) -> VectorIndex:
        """A new index without the passages of ``remove_article_ids``, plus ``passages``
        (``vectors`` one row each), labelled ``fingerprint`` (default: this one's).

        Costs O(changed passages + delta), not O(size): the base is shared, not copied. This
        index is left unchanged and stays safe to search meanwhile and afterwards.
        """
        matrix = self._matrix(passages, vectors)
        self._ready()
        removed = set(remove_article_ids)
        new = self._empty_like()
        if fingerprint is not None:
            new.fingerprint = fingerprint
        new._base = self._base
        self._shared = new._shared = True
        dead_ids = [i for a in removed for i in self._base.by_article.get(a, ())]
        if dead_ids:
            new._dead = self._dead.copy()
            new._dead[dead_ids] = True
            new._dead_count = int(np.count_nonzero(new._dead))
        else:
            new._dead, new._dead_count = self._dead, self._dead_count
        new._delta = faiss.clone_index(self._delta)
        gone = [i for i, p in self._delta_passages.items() if p.article_id in removed]
        if gone:
            new._delta.remove_ids(np.asarray(gone, dtype=np.int64))
        new._delta_passages = {
            i: p for i, p in self._delta_passages.items() if p.article_id not in removed
        }
        new._next_id = self._next_id
        if passages:
            new._add_to_delta(passages, matrix)
        if new.compaction_due and not new._base.approximate and len(new) <= new.exact_limit:
            # Folding into an exact base copies at most exact_limit rows (a few ms): do it now,
            # so small knowledge bases never need a separate compaction.
            return new.compacted()
        return new

    def compacted(self) -> VectorIndex:
        """An equivalent index with the delta and tombstones folded into a new base.

        Same passages in the same order, so positions are unchanged. Took ~5 min at a million
        passages on 2 busy cores: call it off the request path and swap the result in. An IVF base
        keeps its trained coarse quantizer while the size stays within 2x of what it was
        trained for; otherwise (and for an exact base) the base is built afresh.
        """
        self._ready()
        new = self._empty_like()
        live = len(self)
        vectors = self.vectors(range(live))
        quantizer = self._base.index.quantizer if self._base.approximate else None
        if quantizer is not None and live > self.exact_limit:
            wanted = _nlist(live)
            if wanted // 2 <= quantizer.ntotal <= wanted * 2:
                new._base = _Base(_empty_ivf(faiss.clone_index(quantizer), self.dim), [])
        new.add(self.passages, vectors)
        new._ready()
        return new

    # -- persistence ---------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (created if needed), replacing any previous one.

        The base file is only rewritten when it changed since this process last wrote or read
        it there, so saving after an edit costs O(delta) plus the metadata, not gigabytes.
        """
        self._ready()
        directory.mkdir(parents=True, exist_ok=True)
        base_sha = self._save_base(directory / INDEX_FILE)
        delta_blob = faiss.serialize_index(self._delta).tobytes()
        metadata = {
            "format": _FORMAT,
            "dim": self.dim,
            "embedder": self.embedder_name,
            "fingerprint": self.fingerprint,
            "exact_limit": self.exact_limit,
            "delta_limit": self.delta_limit,
            "nprobe": self.nprobe,
            # Ties the metadata to the exact index bytes: the files are replaced one after the
            # other, so a crash in between must not yield a mismatched set that loads.
            "index_sha256": base_sha,
            "delta_sha256": hashlib.sha256(delta_blob).hexdigest(),
            "passages": [_passage_to_json(p) for p in self._base.passages],
            "tombstones": np.flatnonzero(self._dead).tolist(),
            "delta": [[i, _passage_to_json(p)] for i, p in self._delta_passages.items()],
        }
        _write_atomically(directory / DELTA_FILE, delta_blob)
        text = json.dumps(metadata, ensure_ascii=False, indent=1)
        _write_atomically(directory / METADATA_FILE, text.encode("utf-8"))

    @classmethod
    def load(cls, directory: Path) -> VectorIndex:
        """Read an index written by ``save``; raise ``IndexLoadError`` if anything is off."""
        try:
            metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
            base_sha, base_stat = _sha256_file(directory / INDEX_FILE)
            delta_blob = (directory / DELTA_FILE).read_bytes()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexLoadError(f"cannot read index in {directory}: {exc}") from exc
        try:
            index = cls._from_parts(directory / INDEX_FILE, base_sha, delta_blob, metadata)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise IndexLoadError(f"invalid index in {directory}: {exc}") from exc
        index._base.saved[directory / INDEX_FILE] = (base_sha, base_stat)
        return index

    # -- internals -----------------------------------------------------------------------------

    @classmethod
    def _from_parts(
        cls, base_path: Path, base_sha: str, delta_blob: bytes, metadata: Any
    ) -> VectorIndex:
        if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
            raise ValueError("unknown metadata format")
        if base_sha != metadata["index_sha256"]:
            raise ValueError("index file does not match its metadata")
        if hashlib.sha256(delta_blob).hexdigest() != metadata["delta_sha256"]:
            raise ValueError("delta file does not match its metadata")
        dim, embedder, fingerprint = metadata["dim"], metadata["embedder"], metadata["fingerprint"]
        if not (
            isinstance(dim, int) and isinstance(embedder, str) and isinstance(fingerprint, str)
        ):
            raise TypeError("dim, embedder or fingerprint has the wrong type")
        settings = [metadata[key] for key in ("exact_limit", "delta_limit", "nprobe")]
        if not all(isinstance(value, int) for value in settings):
            raise TypeError("exact_limit, delta_limit and nprobe must be integers")
        index = cls(
            dim,
            embedder,
            fingerprint,
            exact_limit=settings[0],
            delta_limit=settings[1],
            nprobe=settings[2],
        )
        passages = [_passage_from_json(item) for item in metadata["passages"]]
        raw = faiss.read_index(str(base_path))
        if raw.d != dim or raw.ntotal != len(passages):
            raise ValueError(f"index holds {raw.ntotal}x{raw.d}, metadata {len(passages)}x{dim}")
        index._base = _Base(raw, passages)
        index._dead = np.zeros(len(passages), dtype=np.bool_)
        index._dead[np.asarray(metadata["tombstones"], dtype=np.int64)] = True
        index._dead_count = int(np.count_nonzero(index._dead))
        delta = faiss.deserialize_index(np.frombuffer(delta_blob, dtype=np.uint8))
        entries = [(int(i), _passage_from_json(item)) for i, item in metadata["delta"]]
        index._delta_passages = dict(entries)
        if (
            delta.d != dim
            or delta.ntotal != len(entries)
            or len(index._delta_passages) != len(entries)
        ):
            raise ValueError(f"delta holds {delta.ntotal}x{delta.d}, metadata {len(entries)}")
        if any(i < len(passages) for i, _ in entries):
            raise ValueError("delta ids overlap the base")
        index._delta = delta
        index._next_id = max([len(passages), *(i + 1 for i, _ in entries)])
        return index

    def _empty_like(self) -> VectorIndex:
        return VectorIndex(
            self.dim,
            self.embedder_name,
            self.fingerprint,
            exact_limit=self.exact_limit,
            delta_limit=self.delta_limit,
            nprobe=self.nprobe,
        )

    def _matrix(
        self, passages: Sequence[Passage], vectors: Vectors | None
    ) -> npt.NDArray[np.float32]:
        if vectors is None:
            vectors = np.zeros((0, self.dim), dtype=np.float32)
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape != (len(passages), self.dim):
            raise ValueError(
                f"expected vectors of shape ({len(passages)}, {self.dim}), got {matrix.shape}"
            )
        return matrix

    def _add_to_delta(self, passages: Sequence[Passage], matrix: npt.NDArray[np.float32]) -> None:
        ids = np.arange(self._next_id, self._next_id + len(passages), dtype=np.int64)
        self._delta.add_with_ids(matrix, ids)
        self._delta_passages.update(zip(ids.tolist(), passages, strict=True))
        self._next_id += len(passages)
        self._cache.clear()

    def _live_base_ids(self) -> _Ids:
        return np.flatnonzero(~self._dead).astype(np.int64)

    def _live_ids(self) -> _Ids:
        cached = self._cache.get("live_ids")
        if cached is None:
            delta = np.fromiter(self._delta_passages, dtype=np.int64)
            cached = np.concatenate([self._live_base_ids(), delta])
            self._cache["live_ids"] = cached
        return cast(_Ids, cached)

    def _needs_ivf(self) -> bool:
        return not self._base.approximate and len(self._base.passages) > self.exact_limit

    def _ready(self) -> None:
        """Turn a flat base that ``add`` grew past ``exact_limit`` into IVF, once.

        Deferred to first use so that IVF is trained on everything added, not the first batch.
        Only an unshared index can need this; its first callers wait for the build.
        """
        if not self._needs_ivf():
            return
        with self._building:
            if not self._needs_ivf():
                return
            old = self._base
            self._base = _Base(_train_ivf(_all_vectors(old.index)), old.passages)
            self._cache.clear()
            logger.info("built IVF index over %d passages", len(old.passages))

    def _search_params(self, *, every_list: bool = False) -> Any:
        """faiss search parameters: nprobe for IVF and, with tombstones, a filter.

        Filtering inside the search (rather than over-fetching and dropping) keeps results
        exact for the flat base and keeps IVF's k results full however many are tombstoned.
        """
        key = "every list" if every_list else "params"
        cached = self._cache.get(key)
        if cached is None:
            selector = bitmap = None
            if self._dead_count:
                # IDSelectorBitmap(bytes, ptr) keeps id i when bit (i & 7) of byte i >> 3 is set.
                bitmap = np.packbits(~self._dead, bitorder="little")
                selector = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
            params: Any
            quantizer = None
            if self._base.approximate:
                params = faiss.SearchParametersIVF()
                params.nprobe = self._base.index.nlist if every_list else self.nprobe
                if every_list:
                    # The centroid graph's usual effort finds the nearest few lists, not all.
                    quantizer = cast(Any, faiss).SearchParametersHNSW()  # not in the stubs
                    quantizer.efSearch = 2 * self._base.index.nlist
                    params.quantizer_params = quantizer
            else:
                params = faiss.SearchParameters()
            if selector is not None:
                params.sel = selector
            # The params only point at the selector and the bitmap: keep both alive with them
            # (on the params object itself, so a reader holding it is safe whatever the cache).
            params.referenced_objects = [selector, bitmap, quantizer]
            cached = self._cache.setdefault(key, params)
        return cached

    def _save_base(self, path: Path) -> str:
        saved = self._base.saved.get(path)
        if saved is not None:
            try:
                if _stat_key(path.stat()) == saved[1]:
                    return saved[0]
            except OSError:
                pass
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            # Straight to disk: serialising to bytes first would double the memory of a big base.
            faiss.write_index(self._base.index, str(temporary))
            sha, _ = _sha256_file(temporary)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        self._base.saved[path] = (sha, _stat_key(path.stat()))
        logger.debug("wrote %s", path)
        return sha


def _hits(
    scores: npt.NDArray[np.float32],
    ids: _Ids,
    passages: Sequence[Passage] | dict[int, Passage],
) -> list[tuple[float, Passage]]:
    # faiss pads with id -1 when fewer than k vectors pass the filter.
    return [(float(s), passages[i]) for s, i in zip(scores, ids.tolist(), strict=True) if i >= 0]


def _nlist(n: int) -> int:
    return max(16, int(IVF_LISTS_PER_SQRT * math.sqrt(n)))


def _ivf(quantizer: Any, dim: int, nlist: int) -> Any:
    # Vectors are stored as float16: half the memory and of the bytes each query scans, which
    # is what bounds its time. At 1M clustered passages, nprobe 32 (docs/benchmarks.md, one
    # run): p99 1.09 ms against 1.72 ms for the same lists in float32, recall@10 0.962 either
    # way (decoding moves a score by ~1e-3 at most, which only reorders near ties); in a trial
    # 8-bit codes lost 2 points of recall.
    return faiss.IndexIVFScalarQuantizer(
        quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )


def _empty_ivf(quantizer: Any, dim: int) -> Any:
    # Centroids are found through a small HNSW graph: scanning 4k centroids flat would cost
    # ~0.8 ms per query, a third of the budget.
    ivf = _ivf(quantizer, dim, quantizer.ntotal)
    # The quantizer is trained, so this only marks the float16 codec (which has no
    # parameters) ready.
    ivf.train(np.zeros((1, dim), dtype=np.float32))
    # A direct map makes reconstruct() work, which search uses to re-score sections.
    ivf.make_direct_map()
    return ivf


def _train_ivf(vectors: npt.NDArray[np.float32]) -> Any:
    n, dim = vectors.shape
    nlist = _nlist(n)
    quantizer = faiss.IndexHNSWFlat(dim, _QUANTIZER_HNSW_M, faiss.METRIC_INNER_PRODUCT)
    quantizer.hnsw.efSearch = _QUANTIZER_EF_SEARCH
    ivf = _ivf(quantizer, dim, nlist)
    # Spherical k-means on a fixed sample: unit vectors, inner product, reproducible builds.
    ivf.cp.spherical = True
    ivf.cp.niter = 10
    clustering = faiss.IndexFlatIP(dim)
    ivf.clustering_index = clustering
    rng = np.random.default_rng(0)
    sample = min(n, nlist * IVF_TRAIN_PER_LIST)
    ivf.train(vectors[np.sort(rng.choice(n, sample, replace=False))])
    ivf.clustering_index = None  # only needed while training
    ivf.make_direct_map()
    ivf.add(vectors)
    return ivf


def _all_vectors(index: Any) -> npt.NDArray[np.float32]:
    if index.ntotal == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    return np.asarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)


def _stat_key(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _sha256_file(path: Path) -> tuple[str, tuple[int, int, int, int]]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest(), _stat_key(stat)


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
