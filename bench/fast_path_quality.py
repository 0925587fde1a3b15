"""Answer quality with the answer fast path on and off, on the public validation sets.

Issue 11 asks that the fast path (bot/fastpath.py) change nothing in answer quality. For each
set in ../shared/eval (val split; Banking77-lite on a seeded sample of its 9,849 queries), the
set's articles become the knowledge base (Markdown, imported by the gateway at start, as an
editor's folder would be), and every query is sent as a new web customer's first message to a
real Rasa server (the project's trained model) and gateway, twice: with ``kb.fast_path = true``
(the product's default) and ``false`` (every message through Rasa). The bot's final reply to
each query is read from the conversation's history and classified:

* ``answer``: a KB answer, citing one article (``/kb/<id>`` in its citation),
* ``offer``: up to three articles to choose from (the band below the answer floor),
* ``handoff``: a plan ack (handed to a person), or
* ``other``: anything else (the "I'm not sure" decline, small talk, a form's question).

Reported per set and side: accuracy (an in-scope query is right when answered with its article;
an out-of-scope one when not answered with any), answered share and accuracy of the answered,
offer and handoff shares, and between the sides the share of queries that got the same reply
(same kind and article). Which part answered comes from the gateway's event log.

    .venv/bin/python bench/fast_path_quality.py [--sets banking77,stackfaq,clinc150,banking77-lite]
        [--lite-sample 1000] [--concurrency 6] [--limit N] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ack_latency as al  # bench/ack_latency.py, beside this script
import aiohttp
from fast_path import sources
from kb_quality import DEFAULT_CACHE, EVAL_DIR, CachedEmbedder, load_splits
from report import write_section

from knowledge_base import KnowledgeBase, SentenceTransformerEmbedder, load_markdown_dir
from knowledge_base.articles import to_markdown

SETS = ("banking77", "stackfaq", "clinc150", "banking77-lite")
SIDES = {"fast path on": "true", "fast path off": "false"}
REPLY_TIMEOUT = 120.0  # seconds a query may wait for its final reply
POLL = 0.2
TOLERANCE = 0.01  # accuracy the fast path may lose on a set, about 1 SE at 1,000 queries


@dataclass(frozen=True)
class Reply:
    kind: str  # answer | offer | handoff | other | none
    article: str | None = None  # the cited article of an answer
    detail: str = ""  # offered ids, or the text of an ``other``

    @property
    def key(self) -> tuple[str, str | None, str]:
        return self.kind, self.article, self.detail


def classify(frame: dict[str, Any]) -> Reply:
    if frame.get("type") == "ack" and frame.get("kind") == "plan":
        return Reply("handoff")
    choices = frame.get("choices") or []
    if choices:
        return Reply("offer", detail=",".join(c["article_id"] for c in choices))
    for citation in frame.get("citations") or []:
        url = str(citation.get("url", ""))
        if url.startswith("/kb/"):
            return Reply("answer", url.removeprefix("/kb/").split("#", 1)[0])
    return Reply("other", detail=" ".join(str(frame.get("text", "")).split())[:80])


def final_reply(frames: list[dict[str, Any]], client_id: str) -> Reply | None:
    """The bot's reply to ``client_id``: not a receipt, which only says the answer follows."""
    for frame in frames:
        if frame.get("in_reply_to") != client_id:
            continue
        if frame.get("type") in ("answer", "agent") or (
            frame.get("type") == "ack" and frame.get("kind") != "receipt"
        ):
            return classify(frame)
    return None


async def ask(
    session: aiohttp.ClientSession, url: str, tag: str, i: int, text: str
) -> tuple[Reply, float]:
    customer, client_id = f"{tag}-{i}", f"{tag}-q{i}"
    started = time.monotonic()
    body = {"client_message_id": client_id, "text": text, "customer": {"id": customer}}
    async with session.post(f"{url}/api/web/messages", json=body) as response:
        if response.status != 202:
            raise RuntimeError(f"query {i}: HTTP {response.status}: {await response.text()}")
        conversation = (await response.json())["conversation_id"]
    history = f"{url}/api/web/conversations/{conversation}/messages"
    while time.monotonic() - started < REPLY_TIMEOUT:
        async with session.get(history, params={"customer_id": customer}) as response:
            frames = (await response.json())["messages"]
        reply = final_reply(frames, client_id)
        if reply is not None:
            return reply, time.monotonic() - started
        await asyncio.sleep(POLL)
    return Reply("none"), REPLY_TIMEOUT


async def ask_all(url: str, tag: str, texts: list[str], concurrency: int) -> list[Reply]:
    replies: list[Reply | None] = [None] * len(texts)
    todo = iter(enumerate(texts))
    done = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        for i, text in todo:
            replies[i], _ = await ask(session, url, tag, i, text)
            done += 1
            if done % 250 == 0:
                print(f"  {done}/{len(texts)}", flush=True)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return [r if r is not None else Reply("none") for r in replies]


def scores(replies: list[Reply], gold: list[str | None]) -> dict[str, float]:
    n = len(replies)
    answered = [(r, g) for r, g in zip(replies, gold, strict=True) if r.kind == "answer"]
    # No reply at all is wrong whatever the query: declining takes a reply.
    right = [
        (r.kind not in ("answer", "none")) if g is None else (r.kind == "answer" and r.article == g)
        for r, g in zip(replies, gold, strict=True)
    ]
    kinds = Counter(r.kind for r in replies)
    return {
        "n": n,
        "accuracy": sum(right) / n,
        "answered": len(answered) / n,
        "answered_accuracy": (
            sum(r.article == g for r, g in answered) / len(answered) if answered else 0.0
        ),
        "offer": kinds["offer"] / n,
        "handoff": kinds["handoff"] / n,
        "other": kinds["other"] / n,
        "no_reply": kinds["none"] / n,
    }


def prepare(
    name: str, folder: Path, lite_sample: int, limit: int
) -> tuple[Path, Path, list[str], list[Any]]:
    """Write the set's articles as Markdown and build their index once (both sides load it)."""
    split = load_splits(EVAL_DIR / name, "val", 0, seed=0)[0]
    queries = split.queries
    if name == "banking77-lite" and 0 < lite_sample < len(queries):
        queries = random.Random(0).sample(queries, lite_sample)
    if limit:  # a quick look, not a report
        queries = queries[:limit]
    articles_dir, index_dir = folder / "articles", folder / "index"
    articles_dir.mkdir(parents=True)
    for article in split.articles:
        (articles_dir / f"{article.id}.md").write_text(to_markdown(article), encoding="utf-8")
    embedder = CachedEmbedder(SentenceTransformerEmbedder(threads=2), DEFAULT_CACHE)
    started = time.monotonic()
    KnowledgeBase.load(index_dir, embedder, load_markdown_dir(articles_dir))
    embedder.save()
    print(f"{name}: index of {len(split.articles)} articles in {time.monotonic() - started:.0f}s")
    return articles_dir, index_dir, [q for q, _ in queries], [g for _, g in queries]


def run_set(
    orchestrator: al.Orchestrator, name: str, tmp: Path, args: argparse.Namespace
) -> dict[str, Any]:
    articles, index_dir, texts, gold = prepare(name, tmp / name, args.lite_sample, args.limit)
    replies: dict[str, list[Reply]] = {}
    by: dict[str, str] = {}
    for side, flag in SIDES.items():
        tag = f"{name}-{flag}"
        print(f"== {name}, {side}: {len(texts)} queries ==", flush=True)
        started = time.monotonic()
        with orchestrator.stack(
            tag, 0, articles=articles, kb=f"fast_path = {flag}", index_dir=index_dir
        ) as stack:
            replies[side] = asyncio.run(ask_all(stack.gateway_url, tag, texts, args.concurrency))
            assert stack.gateway is not None
            counts = sources(stack.gateway.database)
        total = sum(counts.values()) or 1
        by[side] = ", ".join(f"{s} {n / total:.0%}" for s, n in counts.most_common())
        print(f"  {time.monotonic() - started:.0f}s; answered by {by[side]}", flush=True)
    on, off = (replies[side] for side in SIDES)
    report = {
        "set": name,
        "n": len(texts),
        "sides": {side: scores(replies[side], gold) for side in SIDES},
        "by": by,
        "same_reply": sum(a.key == b.key for a, b in zip(on, off, strict=True)) / len(texts),
        "changed": Counter(
            f"{b.kind} -> {a.kind}" for a, b in zip(on, off, strict=True) if a.key != b.key
        ).most_common(5),
    }
    print(json.dumps(report), flush=True)
    for text, a, b in [(t, a, b) for t, a, b in zip(texts, on, off, strict=True) if a != b][:8]:
        print(f"  changed: {text[:70]!r}\n    off: {b}\n    on:  {a}", flush=True)
    return report


def table(reports: list[dict[str, Any]]) -> str:
    lines = [
        "| set | queries | side | accuracy | answered | accuracy of answered | offered "
        "| handed off | other | no reply | same reply as off | answered by |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for report in reports:
        for side in SIDES:
            s = report["sides"][side]
            same = f"{report['same_reply']:.1%}" if side == "fast path on" else ""
            lines.append(
                f"| {report['set']} val | {report['n']} | {side} | {s['accuracy']:.3f} "
                f"| {s['answered']:.1%} | {s['answered_accuracy']:.3f} | {s['offer']:.1%} "
                f"| {s['handoff']:.1%} | {s['other']:.1%} | {s['no_reply']:.1%} | {same} "
                f"| {report['by'][side]} |"
            )
    return "\n".join(lines)


def verdict(reports: list[dict[str, Any]]) -> str:
    """No change in quality means: on every set, accuracy with the fast path is at least that
    without it, less ``TOLERANCE`` (about one standard error at 1,000 queries), and every query
    got a reply on both sides."""
    parts, worse = [], []
    for r in reports:
        on, off = (r["sides"][side] for side in SIDES)
        delta = on["accuracy"] - off["accuracy"]
        answered = on["answered_accuracy"] - off["answered_accuracy"]
        parts.append(f"{r['set']} {delta:+.3f} (of the answered {answered:+.3f})")
        if delta < -TOLERANCE or on["no_reply"] or off["no_reply"]:
            worse.append(r["set"])
    result = f"FAIL ({', '.join(worse)})" if worse else "PASS"
    return (
        f"Accuracy with the fast path on minus off: {'; '.join(parts)}. Target (no change in "
        f"quality): on no set more than {TOLERANCE * 100:g} point below off, and every query "
        f"answered in some way on both sides: {result}."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--lite-sample", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--limit", type=int, default=0, help="first N queries per set only")
    parser.add_argument("--out", type=Path, default=al.ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="promptly-fpq-"))
    began = time.monotonic()
    try:
        orchestrator = al.Orchestrator(tmp)
        facts = al.machine_facts(al.rasa_version_installed())
        reports = [run_set(orchestrator, name, tmp, args) for name in args.sets.split(",")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rendered = table(reports)
    print(f"\n{rendered}\n\n{verdict(reports)}")
    changes = "; ".join(
        f"{r['set']}: " + (", ".join(f"{k} {n}" for k, n in r["changed"]) or "none")
        for r in reports
    )
    command = " ".join(
        [".venv/bin/python bench/fast_path_quality.py", *(sys.argv[1:] if argv is None else argv)]
    )
    write_section(
        args.out,
        "fast_path_quality",
        "\n".join(
            [
                "## Answer quality with and without the fast path (issue 11)",
                "",
                f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. `{command}`, "
                f"{time.monotonic() - began:.0f} s.",
                "",
                *facts,
                "",
                "Each set's articles are the knowledge base; every val query (Banking77-lite: "
                f"a seeded sample of {args.lite_sample}) is a new web customer's first message "
                "to the real gateway and Rasa (the project's model), once with the fast path on "
                "(the default) and once with it off (everything through Rasa). Accuracy: an "
                "in-scope query is right when answered with its article, an out-of-scope one "
                "(CLINC150 `oos`) when not answered with any. The product's floors "
                "(`kb.floor`, `kb.offer_floor`, `kb.direct_floor`) as shipped, not calibrated "
                "per set. *Same reply*: the same kind of reply citing or offering the same "
                "articles with the fast path on as off. Accuracy is low on both sides because "
                "the project's Rasa model knows a shop's intents: it hands many of these "
                "questions to a person (it reads them as complaints or refund requests) or asks "
                "for an order number; what this measures is on against off.",
                "",
                rendered,
                "",
                verdict(reports),
                "",
                f"Most frequent changes (off -> on): {changes}.",
            ]
        ),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
