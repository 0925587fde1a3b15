"""Knowledge-base quality: how often does the bot's own search find the right article?

Builds a fresh ``KnowledgeBase`` with the product's code and ranking (the same ``search`` the
bot calls) from an evaluation set in ../shared/eval, runs every query of one split and
prints one JSON line. Next to it, in the same run: ``plain`` (the product with its head
switched off: best passage cosine only) and ``bm25`` (rank-bm25 over title + body + questions).

    .venv/bin/python bench/kb_quality.py --dataset ../shared/eval/banking77 [--split val]
    .venv/bin/python bench/kb_quality.py --dataset ../shared/eval/hint3-curekart \\
        --split train --folds 5
    .venv/bin/python bench/kb_quality.py --all [--out docs/benchmarks.md]

Forms (see ../shared/eval/README.md): retrieval (articles.jsonl + queries.jsonl) and intent
(intent.jsonl; the train split's labels become articles whose alternate questions are the train
utterances; ``oos`` rows are never articles, and the right behaviour for them is to decline).

The confidence floor is never chosen on the split being reported. When the train split has
questions to decline (CLINC150's ``oos`` rows), 20 % of every article's alternate questions are
held out, a knowledge base is built from the rest, and the floor is the lowest one declining at
least ``--target-recall`` of the train ``oos`` rows (``knowledge_base.ranking.calibrate_floor``).
Without such questions there is nothing to place a floor against, so it is 0 (always answer).

Embeddings are memoised on disk by (model, text) in ``--cache`` so repeated runs skip the
model; timings say how many texts were embedded for real.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import re
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import write_section as write_doc_section  # noqa: E402
from knowledge_base import Article, KnowledgeBase  # noqa: E402
from knowledge_base.batching import Query  # noqa: E402
from knowledge_base.calibration import held_out_floor  # noqa: E402
from knowledge_base.embedder import Embedder, SentenceTransformerEmbedder, Vectors  # noqa: E402

EVAL_DIR = ROOT.parent / "shared" / "eval"  # ../shared/eval beside the clone
SECTION = "## Knowledge-base quality (issue 5)"
DEFAULT_CACHE = Path("/tmp/promptly-kb-bench-embeddings.pkl")
_K = 10
_BATCH = 256
_HOLDOUT = 0.2
_WORD = re.compile(r"\w+")


class CachedEmbedder:
    """Wraps the real embedder; texts embedded before (same model name) come from ``path``."""

    def __init__(self, inner: Embedder, path: Path) -> None:
        self._inner = inner
        self._path = path
        self._store: dict[tuple[str, str], Vectors] = {}
        if path.exists():
            with path.open("rb") as handle:
                self._store = pickle.load(handle)
        self.embedded = 0
        self._dirty = False

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dim(self) -> int:
        return self._inner.dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        missing = sorted({t for t in texts if (self.name, t) not in self._store})
        if missing:
            for text, vector in zip(missing, self._inner.encode(missing), strict=True):
                self._store[(self.name, text)] = vector
            self.embedded += len(missing)
            self._dirty = True
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._store[(self.name, t)] for t in texts]).astype(np.float32)

    def save(self) -> None:
        if self._dirty:
            tmp = self._path.with_suffix(".tmp")
            with tmp.open("wb") as handle:
                pickle.dump(self._store, handle)
            tmp.replace(self._path)
            self._dirty = False


@dataclass
class Split:
    """Articles to build from, declined questions to calibrate with, queries to report on."""

    articles: list[Article]
    declined: list[str]  # train questions the bot should decline (calibration only)
    queries: list[tuple[str, str | None]]  # (question, right article id or None = decline)
    intent: bool


@dataclass
class Tally:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, gold: str | None, ranked: list[str], score: float, floor: float) -> None:
        self.rows.append({"gold": gold, "ranked": ranked, "score": score, "floor": floor})

    def summary(self, intent: bool) -> dict[str, Any]:
        inside = [r for r in self.rows if r["gold"] is not None]
        outside = [r for r in self.rows if r["gold"] is None]

        def first_right(r: dict[str, Any]) -> bool:
            return bool(r["ranked"]) and r["ranked"][0] == r["gold"]

        def answered(r: dict[str, Any]) -> bool:
            return bool(r["ranked"]) and r["score"] >= r["floor"]

        def rank(r: dict[str, Any]) -> int | None:
            return r["ranked"].index(r["gold"]) + 1 if r["gold"] in r["ranked"] else None

        ranks = [rank(r) for r in inside]
        said = [r for r in self.rows if answered(r)]
        out: dict[str, Any] = {
            "n": len(self.rows),
            "top1": _round(np.mean([first_right(r) for r in inside])),
            "top5": _round(np.mean([x is not None and x <= 5 for x in ranks])),
            "mrr": _round(np.mean([1 / x if x else 0.0 for x in ranks])),
            "answered": _round(len(said) / len(self.rows)),
            "answered_accuracy": _round(np.mean([first_right(r) for r in said]) if said else 0.0),
        }
        if intent:
            out["in_scope_accuracy"] = _round(
                np.mean([answered(r) and first_right(r) for r in inside])
            )
            out["oos_recall"] = (
                _round(np.mean([not answered(r) for r in outside])) if outside else None
            )
            right = [
                (not answered(r)) if r["gold"] is None else (answered(r) and first_right(r))
                for r in self.rows
            ]
            out["accuracy"] = _round(np.mean(right))
        return out


def _round(value: float | np.floating[Any]) -> float:
    return round(float(value), 4)


def _humanise(label: str) -> str:
    return " ".join(label.replace("_", " ").replace("-", " ").split()).capitalize()


def _article(article_id: str, title: str, body: str, questions: Sequence[str]) -> Article:
    return Article(
        id=article_id, title=title, body=body, url=None, tags=(), questions=tuple(questions)
    )


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _intent_articles(rows: Sequence[dict[str, Any]]) -> list[Article]:
    by_label: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row["label"] != "oos":
            by_label[row["label"]].append(row["text"])
    articles = []
    for label in sorted(by_label):
        title = _humanise(label)
        body = f"This help article answers questions about {title.lower()}."
        articles.append(_article(_slug(label), title, body, by_label[label]))
    return articles


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "intent"


def load_splits(dataset: Path, split: str, folds: int, seed: int) -> list[Split]:
    """One Split, or one per fold when ``folds`` > 1 (stratified over the split's labels)."""
    if (dataset / "articles.jsonl").exists():
        if folds > 1:
            raise SystemExit("--folds needs an intent-form dataset")
        articles = [
            _article(a["id"], a["title"], a["body"], a.get("questions", []))
            for a in _jsonl(dataset / "articles.jsonl")
        ]
        queries: list[tuple[str, str | None]] = [
            (q["query"], q["article_id"])
            for q in _jsonl(dataset / "queries.jsonl")
            if q["split"] == split
        ]
        return [Split(articles, [], queries, intent=False)]
    rows = _jsonl(dataset / "intent.jsonl")
    train = [r for r in rows if r["split"] == "train"]
    declined = [r["text"] for r in train if r["label"] == "oos"]
    if folds <= 1:
        articles = _intent_articles(train)
        wanted = [r for r in rows if r["split"] == split]
        queries = [(r["text"], None if r["label"] == "oos" else _slug(r["label"])) for r in wanted]
        return [Split(articles, declined, queries, intent=True)]
    if split != "train":
        raise SystemExit("--folds cross-validates the train split; pass --split train")
    fold_of: dict[int, int] = {}
    by_label: dict[str, list[int]] = defaultdict(list)
    for position, row in enumerate(train):
        by_label[row["label"]].append(position)
    rng = random.Random(seed)
    offset = 0
    for label in sorted(by_label):
        members = by_label[label]
        rng.shuffle(members)
        for i, position in enumerate(members):
            fold_of[position] = (offset + i) % folds
        offset += len(members)
    splits = []
    for fold in range(folds):
        fitted = [r for i, r in enumerate(train) if fold_of[i] != fold]
        tested = [r for i, r in enumerate(train) if fold_of[i] == fold]
        articles = _intent_articles(fitted)
        # A label with fewer examples than folds is missing from some folds' articles; its
        # queries there still count as in scope, so they can only be wrong (never "declined").
        queries = [(r["text"], None if r["label"] == "oos" else _slug(r["label"])) for r in tested]
        fold_declined = [r["text"] for r in fitted if r["label"] == "oos"]
        splits.append(Split(articles, fold_declined, queries, intent=True))
    return splits


def _search(kb: KnowledgeBase, questions: Sequence[str]) -> list[list[tuple[str, float]]]:
    results: list[list[tuple[str, float]]] = []
    for start in range(0, len(questions), _BATCH):
        batch = [Query(q, _K, False) for q in questions[start : start + _BATCH]]
        for hits in kb.search_many(batch):
            results.append([(h.article_id, h.score) for h in hits])
    return results


def calibrate(
    split: Split, embedder: Embedder, head: bool, target_recall: float, seed: int
) -> tuple[float, str]:
    """The floor from the train split only (see the module docstring)."""
    if not split.declined:
        return 0.0, "0: the train split has no questions to decline"
    result, held = held_out_floor(
        split.articles,
        embedder,
        split.declined,
        holdout=_HOLDOUT,
        target_recall=target_recall,
        head=head,
        seed=seed,
    )
    how = (
        f"{result.method}; train holdout ({_HOLDOUT:.0%} of each article's questions, "
        f"{held} in-scope, {len(split.declined)} oos): in-scope accuracy "
        f"{result.in_scope_accuracy:.3f}, oos recall {result.decline_recall:.3f}"
    )
    return result.floor, how


def bm25_run(split: Split, tally: Tally) -> None:
    from rank_bm25 import BM25Okapi

    docs = [
        _WORD.findall(" ".join([a.title, a.body, *a.questions]).lower()) for a in split.articles
    ]
    bm25 = BM25Okapi(docs)
    ids = [a.id for a in split.articles]
    for question, gold in split.queries:
        scores = bm25.get_scores(_WORD.findall(question.lower()))
        order = np.argsort(-scores)[:_K]
        # No floor: BM25 scores are unbounded, and every best match counts as answered.
        tally.add(gold, [ids[i] for i in order], float(scores[order[0]]), float("-inf"))


def evaluate(dataset: Path, split: str, folds: int, args: argparse.Namespace) -> dict[str, Any]:
    embedder = CachedEmbedder(SentenceTransformerEmbedder(threads=args.threads), args.cache)
    splits = load_splits(dataset, split, folds, args.seed)
    tallies = {"product": Tally(), "plain": Tally(), "bm25": Tally()}
    floors: dict[str, list[float]] = {"product": [], "plain": []}
    how: dict[str, str] = {}
    build_s = 0.0
    query_s = 0.0
    started = time.perf_counter()
    for part in splits:
        for name, head in (("product", True), ("plain", False)):
            floor, how[name] = calibrate(part, embedder, head, args.target_recall, args.seed)
            floors[name].append(floor)
            t0 = time.perf_counter()
            kb = KnowledgeBase.build(part.articles, embedder, head=head)
            t1 = time.perf_counter()
            results = _search(kb, [q for q, _ in part.queries])
            t2 = time.perf_counter()
            if name == "product":
                build_s += t1 - t0
                query_s += t2 - t1
            for hits, (_, gold) in zip(results, part.queries, strict=True):
                ranked = [article_id for article_id, _ in hits]
                tallies[name].add(gold, ranked, hits[0][1] if hits else 0.0, floor)
        bm25_run(part, tallies["bm25"])
        embedder.save()
    n = sum(len(p.queries) for p in splits)
    intent = splits[0].intent
    report: dict[str, Any] = {"dataset": dataset.name, "split": split}
    if folds > 1:
        report["folds"] = folds
    report.update(tallies["product"].summary(intent))
    report["floor"] = _round(float(np.mean(floors["product"])))
    report["floor_calibration"] = how["product"]
    report["method"] = "mean(best passage cosine, logistic-regression head probability)"
    plain = tallies["plain"].summary(intent)
    plain["floor"] = _round(float(np.mean(floors["plain"])))
    report["plain"] = plain
    report["bm25"] = tallies["bm25"].summary(intent)
    report["timings"] = {
        "build_s": round(build_s / len(splits), 2),
        "query_ms": round(1000 * query_s / max(n, 1), 3),
        "total_s": round(time.perf_counter() - started, 1),
        "texts_embedded": embedder.embedded,
        "note": "build and query exclude embedding of cached texts (see --cache)",
    }
    return report


_ALL = [
    ("banking77", "val", 1),
    ("banking77-lite", "val", 1),
    ("stackfaq", "val", 1),
    ("clinc150", "val", 1),
    ("hint3-sofmattress", "train", 5),
    ("hint3-curekart", "train", 5),
    ("hint3-powerplay11", "train", 5),
]


def _cell(report: dict[str, Any], key: str) -> str:
    value = report.get(key)
    return "–" if value is None else f"{value:.3f}"


def write_section(path: Path, reports: Sequence[dict[str, Any]], seconds: float) -> None:
    lines = [
        SECTION,
        "",
        "`bench/kb_quality.py --all`: the product's `KnowledgeBase.search` (mean of best passage "
        "cosine and a per-KB logistic-regression head; all-MiniLM-L6-v2) vs `plain` (head off: "
        "best passage cosine) vs BM25 (rank-bm25 over title + body + questions). Retrieval sets "
        "and CLINC150 on val; HINT3 by 5-fold stratified cross-validation of train. Floors are "
        "calibrated on train only (see docs/kb-quality.md). "
        f"Whole run: {seconds:.0f} s on this machine.",
        "",
        "| set | n | top-1 | top-5 | MRR@10 | plain top-1 | BM25 top-1 | floor | answered "
        "| in-scope acc. | oos recall | accuracy | plain in-scope / oos / acc. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        plain = r["plain"]
        plain_intent = (
            f"{_cell(plain, 'in_scope_accuracy')} / {_cell(plain, 'oos_recall')} / "
            f"{_cell(plain, 'accuracy')}"
            if "accuracy" in r
            else "–"
        )
        name = r["dataset"] + (f" ({r['folds']}-fold train)" if "folds" in r else f" {r['split']}")
        lines.append(
            f"| {name} | {r['n']} | {_cell(r, 'top1')} | {_cell(r, 'top5')} | {_cell(r, 'mrr')} "
            f"| {_cell(plain, 'top1')} | {_cell(r['bm25'], 'top1')} | {r['floor']:.3f} "
            f"| {_cell(r, 'answered')} | {_cell(r, 'in_scope_accuracy')} "
            f"| {_cell(r, 'oos_recall')} | {_cell(r, 'accuracy')} | {plain_intent} |"
        )
    write_doc_section(path, "kb_quality", "\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--folds", type=int, default=1)
    parser.add_argument("--all", action="store_true", help="every set; write --out")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR)
    parser.add_argument("--target-recall", type=float, default=0.75)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.all:
        started = time.perf_counter()
        reports = []
        for name, split, folds in _ALL:
            report = evaluate(args.eval_dir / name, split, folds, args)
            print(json.dumps(report), flush=True)
            reports.append(report)
        write_section(args.out, reports, time.perf_counter() - started)
        return 0
    if args.dataset is None:
        parser.error("--dataset or --all is required")
    print(json.dumps(evaluate(args.dataset, args.split, args.folds, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
