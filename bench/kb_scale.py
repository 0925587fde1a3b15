"""Knowledge-base index at scale: build time, memory, query latency, recall, edit-to-visible.

For each size it builds ``knowledge_base.index.VectorIndex`` (exact flat up to its
``exact_limit``, IVF past it) and measures:

* build time (``add`` in batches of 65,536 then the IVF training and filling, faiss on all
  cores) and resident memory (RSS delta over the build, plus the saved base file's size);
* single-query ``search(q, 10)`` latency p50/p99 with one faiss thread, as the product runs it;
* recall@10 against exact search (``faiss.knn`` over the same vectors);
* edit-to-visible: from calling ``with_changes`` (replace one article's passages) until a search
  returns the new passage, median and max over 20 edits chained on one another;
* compaction (``compacted()`` after 5 edits), save, save-after-edits and load times;
* at the largest size, a sweep of ``nprobe``.

Data. ``10k``: real text, the first 10,000 distinct CLINC150 utterances (``intent.jsonl``,
grouped into articles by intent) embedded with ``SentenceTransformerEmbedder``
(all-MiniLM-L6-v2); queries are 1,000 Banking77-lite validation queries embedded the same way.
Larger sizes are synthetic around those 10,000 real embeddings: each vector is
``normalise((1 - w) a + w b + s g)`` with ``a``, ``b`` random real embeddings, ``w ~ U(0, 0.3)``,
``s ~ U(0.02, 0.05)`` and ``g`` standard normal (cosine to ``a`` 0.7-0.95), so the set is
clustered like real passages; the queries stay the real query embeddings. ``--random-sizes``
adds rows of i.i.d. uniform unit vectors, the structureless worst case for any ANN index.
``--compare-hnsw`` also measures a raw faiss ``IndexHNSWFlat`` (M 16, efConstruction 40, the
alternative that was rejected) and the product's IVF storing float32 instead of float16 at the
largest size, after the main report is written.

    nice -n 10 .venv/bin/python bench/kb_scale.py [--sizes 10000,100000,1000000]
        [--random-sizes 100000] [--queries 1000] [--real 10000] [--compare-hnsw]
        [--out docs/benchmarks.md] [--no-report]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_section  # noqa: E402
from knowledge_base import (  # noqa: E402
    Article,
    HashingEmbedder,
    KnowledgeBase,
    Passage,
    SentenceTransformerEmbedder,
    VectorIndex,
)
from knowledge_base.index import EXACT_LIMIT, INDEX_FILE, IVF_NPROBE  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"  # ../shared/eval beside the clone
Matrix = npt.NDArray[np.float32]
K = 10
EDITS = 20


@dataclass
class Row:
    name: str
    n: int
    data: str
    kind: str = ""
    build_s: float = 0.0
    rss_mb: float = 0.0
    file_mb: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    exact_p50_ms: float = 0.0
    recall: float = 0.0
    edit_p50_ms: float = 0.0
    edit_max_ms: float = 0.0
    compact_s: float = 0.0
    save_s: float = 0.0
    resave_s: float = 0.0
    load_s: float = 0.0
    passages_ms: float = 0.0
    kb_edit_ms: float = 0.0
    cpu_p99_ms: float = 0.0
    notes: list[str] = field(default_factory=list)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def real_text(limit: int) -> tuple[list[str], list[str], list[str]]:
    """(texts, their intent labels, queries): distinct CLINC150 utterances, Banking77-lite."""
    seen: set[str] = set()
    texts: list[str] = []
    labels: list[str] = []
    for line in (EVAL / "clinc150" / "intent.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["text"] not in seen and len(texts) < limit:
            seen.add(row["text"])
            texts.append(row["text"])
            labels.append(row["label"])
    lines = (EVAL / "banking77-lite" / "queries.jsonl").read_text().splitlines()
    queries = [json.loads(line)["query"] for line in lines]
    return texts, labels, queries


def clustered(seeds: Matrix, n: int, rng: np.random.Generator) -> Matrix:
    out = np.empty((n, seeds.shape[1]), dtype=np.float32)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        a = seeds[rng.integers(0, len(seeds), m)]
        b = seeds[rng.integers(0, len(seeds), m)]
        w = rng.uniform(0.0, 0.3, (m, 1)).astype(np.float32)
        s = rng.uniform(0.02, 0.05, (m, 1)).astype(np.float32)
        x = (1 - w) * a + w * b + s * rng.standard_normal((m, seeds.shape[1]), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def uniform(n: int, dim: int, rng: np.random.Generator) -> Matrix:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):
        x = rng.standard_normal((min(65536, n - start), dim), dtype=np.float32)
        out[start : start + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def synthetic_passages(n: int) -> list[Passage]:
    # Four passages per article, like a short help article with a few sections.
    return [Passage(f"a{i // 4}", f"t{i // 4}", None, None, f"p{i}", "section") for i in range(n)]


CPU_MS: list[float] = []


def latencies(search: Callable[[Matrix], Any], queries: Matrix) -> list[float]:
    """Wall-clock ms per query; the thread's CPU ms go to ``CPU_MS`` (what a busy machine's
    descheduling adds to the wall clock is the difference)."""
    faiss.omp_set_num_threads(1)
    for query in queries[:20]:
        search(query)
    out = []
    CPU_MS.clear()
    for query in queries:
        cpu = time.thread_time()
        started = time.perf_counter()
        search(query)
        out.append((time.perf_counter() - started) * 1000)
        CPU_MS.append((time.thread_time() - cpu) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def exact_top(vectors: Matrix, queries: Matrix) -> npt.NDArray[np.int64]:
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    _, truth = faiss.knn(queries, vectors, K, metric=faiss.METRIC_INNER_PRODUCT)
    return truth


def recall_at_k(index: VectorIndex, truth: npt.NDArray[np.int64], queries: Matrix) -> float:
    # Synthetic passage i has text "p{i}"; real ones are matched by position (no edits yet).
    position = {p.text: i for i, p in enumerate(index.passages)}
    hits = 0
    for query, expected in zip(queries, truth, strict=True):
        got = {position[p.text] for p, _ in index.search(query, K)}
        hits += len(got & set(expected.tolist()))
    return hits / (K * len(queries))


def edits(index: VectorIndex, rng: np.random.Generator) -> Iterator[float]:
    """Milliseconds from ``with_changes`` to a search that returns the replacement passage."""
    articles = sorted({p.article_id for p in index.passages[:: max(len(index) // 500, 1)]})
    for step in range(EDITS):
        article = articles[int(rng.integers(0, len(articles)))]
        passage = Passage(article, "edited", None, None, f"edit {step}", "section")
        vector = uniform(1, index.dim, rng)
        started = time.perf_counter()
        index = index.with_changes({article}, [passage], vector)
        found = index.search(vector[0], K)[0][0]
        elapsed = (time.perf_counter() - started) * 1000
        assert found == passage, "the edited passage was not found"
        yield elapsed


def kb_edit_ms(index: VectorIndex) -> float:
    """What an editor's publish costs the gateway: ``KnowledgeBase.with_changes`` (the index's
    edit plus the knowledge base's own bookkeeping) until a search returns the new text. The
    hashing embedder stands in for the model (add the one-sentence embedding time)."""
    ids = sorted({p.article_id for p in index.passages})
    articles = [Article(i, f"Title {i}", f"Body of {i}.", None, (), ()) for i in ids]
    embedder = HashingEmbedder(index.dim)
    kb = KnowledgeBase(articles, embedder, index, head=False)
    text = "We sell gift cards from 10 euros."
    edited = Article(ids[len(ids) // 3], "Gift cards", text, None, (), ())
    started = time.perf_counter()
    changed = kb.with_changes(upsert=[edited])
    hits = changed.search(text, k=1)
    elapsed = (time.perf_counter() - started) * 1000
    assert hits and hits[0].article_id == edited.id, "the edit is not visible"
    log(f"knowledge base edit to visible: {elapsed:.0f} ms over {len(index):,} passages")
    return elapsed


def measure(
    row: Row, passages: list[Passage], vectors: Matrix, queries: Matrix, exact_limit: int
) -> tuple[VectorIndex, npt.NDArray[np.int64]]:
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    before = rss_mb()
    started = time.perf_counter()
    index = VectorIndex(vectors.shape[1], "bench", "bench", exact_limit=exact_limit)
    for start in range(0, len(passages), 65536):
        index.add(passages[start : start + 65536], vectors[start : start + 65536])
    index.search(queries[0], K)  # IVF is trained and filled at first use
    row.build_s = time.perf_counter() - started
    row.rss_mb = rss_mb() - before
    row.kind = f"IVF nprobe {index.nprobe}" if index.approximate else "exact"
    log(f"{row.name}: built {row.kind} in {row.build_s:.1f}s, +{row.rss_mb:.0f} MB RSS")

    times = latencies(lambda q: index.search(q, K), queries)
    row.p50_ms, row.p99_ms = pct(times, 50), pct(times, 99)
    row.cpu_p99_ms = pct(CPU_MS, 99)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    few = queries[: max(20, min(len(queries), 20_000_000 // len(vectors)))]
    row.exact_p50_ms = pct(latencies(lambda q: flat.search(q.reshape(1, -1), K), few), 50)
    flat.reset()
    truth = exact_top(vectors, queries)
    row.recall = recall_at_k(index, truth, queries)
    log(f"{row.name}: p50 {row.p50_ms:.3f} ms p99 {row.p99_ms:.3f} ms recall {row.recall:.4f}")

    faiss.omp_set_num_threads(1)
    edit_times = list(edits(index, np.random.default_rng(7)))
    row.edit_p50_ms, row.edit_max_ms = statistics.median(edit_times), max(edit_times)
    edited = index
    for step in range(5):
        article = index.passages[int(len(index) * 0.37) + 40 * step].article_id
        edited = edited.with_changes({article}, passages[:3], vectors[:3])
    started = time.perf_counter()
    len(edited.passages)  # what KnowledgeBase.__init__ reads after every edit
    row.passages_ms = (time.perf_counter() - started) * 1000
    row.kb_edit_ms = kb_edit_ms(index)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    edited.compacted()
    row.compact_s = time.perf_counter() - started
    log(
        f"{row.name}: edit p50 {row.edit_p50_ms:.2f} ms, passages view {row.passages_ms:.0f} ms,"
        f" compaction {row.compact_s:.1f}s"
    )

    directory = Path(tempfile.mkdtemp(prefix="kb-scale-"))
    try:
        started = time.perf_counter()
        index.save(directory)
        row.save_s = time.perf_counter() - started
        row.file_mb = (directory / INDEX_FILE).stat().st_size / 2**20
        started = time.perf_counter()
        edited.save(directory)
        row.resave_s = time.perf_counter() - started
        started = time.perf_counter()
        loaded = VectorIndex.load(directory)
        row.load_s = time.perf_counter() - started
        assert len(loaded) == len(edited)
        del loaded
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    log(f"{row.name}: save {row.save_s:.1f}s, re-save {row.resave_s:.2f}s, load {row.load_s:.1f}s")
    return index, truth


def nprobe_sweep(index: VectorIndex, truth: npt.NDArray[np.int64], queries: Matrix) -> list[str]:
    lines = []
    default = index.nprobe
    for nprobe in (8, 16, 24, 28, 32, 48, 64):
        index.nprobe = nprobe
        index._cache.clear()  # noqa: SLF001 - drop the cached search parameters
        times = latencies(lambda q: index.search(q, K), queries)
        lines.append(
            f"| {nprobe} | {recall_at_k(index, truth, queries):.4f} | "
            f"{pct(times, 50):.3f} | {pct(times, 99):.3f} | {pct(CPU_MS, 99):.3f} |"
        )
        log(lines[-1])
    index.nprobe = default
    index._cache.clear()  # noqa: SLF001
    return lines


def alternatives(
    vectors: Matrix, queries: Matrix, truth: npt.NDArray[np.int64], quantizer: Any
) -> list[str]:
    """Raw faiss HNSW, and the product's IVF lists (its trained ``quantizer``) over float32
    vectors, as it stored them before float16: what half the bytes buys, in the same run."""
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(vectors.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 40
    hnsw.add(vectors)
    build = time.perf_counter() - started
    lines = []
    for ef in (64, 128, 256):
        hnsw.hnsw.efSearch = ef
        label = f"HNSW M 16, efConstruction 40, efSearch {ef}"
        lines.append(raw_row(label, build, lambda q: hnsw.search(q, K)[1][0], queries, truth))
    started = time.perf_counter()
    ivf = faiss.IndexIVFFlat(
        quantizer, vectors.shape[1], quantizer.ntotal, faiss.METRIC_INNER_PRODUCT
    )
    ivf.add(vectors)
    build = time.perf_counter() - started
    params = faiss.SearchParametersIVF()
    params.nprobe = IVF_NPROBE
    label = (
        f"IVF, the product's {ivf.nlist} trained lists, nprobe {IVF_NPROBE}, vectors as float32 "
        "(build = adding them)"
    )
    lines.append(
        raw_row(label, build, lambda q: ivf.search(q, K, params=params)[1][0], queries, truth)
    )
    return lines


def raw_row(
    label: str,
    build: float,
    search: Callable[[Matrix], npt.NDArray[np.int64]],
    queries: Matrix,
    truth: npt.NDArray[np.int64],
) -> str:
    found: list[npt.NDArray[np.int64]] = []
    times = latencies(lambda query: found.append(search(query.reshape(1, -1))), queries)
    pairs = zip(found[20:], truth, strict=True)  # the first 20 searches were the warm-up
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in pairs)
    line = (
        f"| {label} | {build:.0f} | {hits / (K * len(queries)):.4f} | {pct(times, 50):.3f} | "
        f"{pct(times, 99):.3f} | {pct(CPU_MS, 99):.3f} |"
    )
    log(line)
    return line


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--random-sizes", default="100000")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--real", type=int, default=10_000, help="real texts to embed")
    parser.add_argument("--compare-hnsw", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    random_sizes = [int(s) for s in args.random_sizes.split(",") if s]
    started_all = time.perf_counter()
    load = os.getloadavg()

    texts, labels, query_texts = real_text(args.real)
    embedder = SentenceTransformerEmbedder(threads=os.cpu_count())
    started = time.perf_counter()
    real = embedder.encode(texts)
    queries = embedder.encode(query_texts[: args.queries])
    embed_s = time.perf_counter() - started
    edit_started = time.perf_counter()
    embedder.encode(["How long does a refund take to reach my card?"])
    embed_one_ms = (time.perf_counter() - edit_started) * 1000
    log(f"embedded {len(texts)} texts + {len(queries)} queries in {embed_s:.0f}s")

    rows: list[Row] = []
    sweep: list[str] = []
    largest: tuple[Matrix, npt.NDArray[np.int64], Any] | None = None
    rng = np.random.default_rng(0)
    for n in sizes:
        if n <= len(real):
            passages = [
                Passage(label, label, None, None, text, "question")
                for text, label in zip(texts[:n], labels[:n], strict=True)
            ]
            vectors = real[:n]
            data = "real text (CLINC150)"
            rows.append(Row(f"{n:,}", n, data))
            measure(rows[-1], passages, vectors, queries, EXACT_LIMIT)
            rows.append(Row(f"{n:,}", n, data + ", IVF forced"))
            measure(rows[-1], passages, vectors, queries, 0)
            continue
        vectors = clustered(real, n, rng)
        rows.append(Row(f"{n:,}", n, "clustered around real embeddings"))
        index, truth = measure(rows[-1], synthetic_passages(n), vectors, queries, EXACT_LIMIT)
        if n == max(sizes):
            sweep = nprobe_sweep(index, truth, queries)
            if args.compare_hnsw:
                quantizer = index._base.index.quantizer  # noqa: SLF001 - its trained lists
                largest = (vectors, truth, faiss.clone_index(quantizer))
        del index, vectors
    for n in random_sizes:
        vectors = uniform(n, real.shape[1], rng)
        rows.append(Row(f"{n:,}", n, "uniform random unit vectors"))
        measure(rows[-1], synthetic_passages(n), vectors, queries, EXACT_LIMIT)
        del vectors
    # The report is written before the rejected alternative is measured: that takes minutes.
    write_report(args, rows, sweep, [], embed_s, embed_one_ms, load, started_all)
    if largest is not None:
        hnsw = alternatives(largest[0], queries, largest[1], largest[2])
        write_report(args, rows, sweep, hnsw, embed_s, embed_one_ms, load, started_all)


def write_report(
    args: argparse.Namespace,
    rows: list[Row],
    sweep: list[str],
    hnsw: list[str],
    embed_s: float,
    embed_one_ms: float,
    load: tuple[float, float, float],
    started_all: float,
) -> None:
    total_s = time.perf_counter() - started_all
    body = report(rows, sweep, hnsw, embed_s, embed_one_ms, load, total_s, sys.argv[1:])
    print(body, flush=True)
    if not args.no_report:
        write_section(args.out, "kb_scale", body)


def report(
    rows: list[Row],
    sweep: list[str],
    hnsw: list[str],
    embed_s: float,
    embed_one_ms: float,
    load: tuple[float, float, float],
    total_s: float,
    argv: list[str],
) -> str:
    command = " ".join(["nice -n 10 .venv/bin/python bench/kb_scale.py", *argv])
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        "## Knowledge-base scale (issue 5)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
        f"{os.cpu_count()} cores (shared), {memory:.0f} GB RAM, Python "
        f"{platform.python_version()}, faiss {faiss.__version__}; load average at start "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. `{command}` took {total_s / 60:.0f} min.",
        "",
        "Vectors are 384-dim all-MiniLM-L6-v2 (or synthetic in that space). Latency is one "
        "`VectorIndex.search(q, 10)` with one faiss thread (p50/p99 over the real queries; "
        "*p99 CPU* is the searching thread's CPU time, i.e. without the waits for a core that "
        "the shared machine's load adds); "
        "*exact p50* is a flat scan of the same vectors for comparison. Recall@10 is against "
        "exact search. Edit = `with_changes` replacing one article's passages until a search "
        "returns the new passage (median / max of 20 chained edits; embedding the new text is "
        f"extra: {embed_one_ms:.0f} ms for one sentence here). Compaction = `compacted()` after "
        "5 edits (every live vector re-added to a new IVF reusing the trained quantizer; an "
        "exact base is copied). "
        "`.passages` = first read of the live passage tuple after those edits (lazy, cached; "
        "`KnowledgeBase.__init__` reads it). KB edit = `KnowledgeBase.with_changes` replacing "
        "one article until a search finds its new text (what an editor's publish costs the "
        "gateway before the swap; the hashing embedder stands in for the model, whose one-"
        "sentence time is given above). Memory = RSS growth over the build; "
        "file = the saved base. Re-save = saving after "
        f"those edits (the unchanged base is not rewritten). Embedding the 10k texts and 1k "
        f"queries took {embed_s:.0f} s (not in build time).",
        "",
        "| passages | data | index | build s | RSS MB | file MB | p50 ms | p99 ms | p99 CPU ms "
        "| exact p50 ms "
        "| recall@10 | edit p50 / max ms | `.passages` ms | KB edit ms | compaction s "
        "| save / re-save / load s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.data} | {r.kind} | {r.build_s:.1f} | {r.rss_mb:.0f} | "
            f"{r.file_mb:.0f} | {r.p50_ms:.3f} | {r.p99_ms:.3f} | {r.cpu_p99_ms:.3f} | "
            f"{r.exact_p50_ms:.2f} | "
            f"{r.recall:.4f} | {r.edit_p50_ms:.2f} / {r.edit_max_ms:.2f} | {r.passages_ms:.0f} | "
            f"{r.kb_edit_ms:.0f} | {r.compact_s:.2f} | "
            f"{r.save_s:.1f} / {r.resave_s:.2f} / {r.load_s:.1f} |"
        )
    if sweep:
        lines += [
            "",
            f"IVF nprobe at {max(r.n for r in rows):,} passages (clustered):",
            "",
            "| nprobe | recall@10 | p50 ms | p99 ms | p99 CPU ms |",
            "|---:|---:|---:|---:|---:|",
            *sweep,
        ]
    if hnsw:
        lines += [
            "",
            "Alternatives at the same size and data (raw faiss): HNSW, and the product's IVF "
            "storing float32 vectors as it did before 2026-12-06 (the product stores float16):",
            "",
            "| index | build s | recall@10 | p50 ms | p99 ms | p99 CPU ms |",
            "|---|---:|---:|---:|---:|---:|",
            *hnsw,
        ]
    lines += [
        "",
        "Why IVF and not HNSW past the exact limit: on the clustered 1M set HNSW (M 16, "
        "efConstruction 40) may build faster, but its recall@10 stays far below 0.95 at any "
        "efSearch that fits the latency budget (table above), while IVF reaches it; IVF also "
        "compacts without retraining and really removes vectors. Uniform random vectors have no "
        "structure for IVF's lists to exploit (recall collapses): they bound the worst case, "
        "real embeddings are clustered. Exact p50 is why the base stops being a flat scan "
        "past 10k passages. The IVF stores its vectors as float16: half the memory and of the "
        "bytes each query scans, for the same recall (the float32 row above).",
    ]
    largest = [r for r in rows if r.n == max(r.n for r in rows) and "clustered" in r.data]
    if largest:
        r = largest[0]
        lines += [
            "",
            f"Targets at {r.name}: p99 <= 2 ms: {'PASS' if r.p99_ms <= 2 else 'FAIL'} "
            f"({r.p99_ms:.3f} ms wall, {r.cpu_p99_ms:.3f} ms CPU); recall@10 >= 0.95: "
            f"{'PASS' if r.recall >= 0.95 else 'FAIL'} "
            f"({r.recall:.4f}); edit-to-visible <= 1 s: "
            f"{'PASS' if r.kb_edit_ms + embed_one_ms <= 1000 else 'FAIL'} "
            f"({r.kb_edit_ms:.0f} ms for the knowledge base + {embed_one_ms:.0f} ms embedding; "
            f"the index alone {r.edit_max_ms:.1f} ms max).",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
