"""Ack-latency benchmark: how fast does every customer message get its first reply?

By default it runs everything itself on 127.0.0.1: a Rasa server with the trained model and a
fresh gateway per scenario (own SQLite database), on random free ports in a temporary folder.
It measures, at fixed open-loop message rates:

* ``up``: Promptly over the WebSocket with Rasa running,
* ``down``: Promptly over the WebSocket with Rasa stopped,
* ``baseline``: Rasa's REST webhook alone (what a client waits for without the gateway),
* ``channels``: the messaging platforms' webhooks and email, against local fakes of each
  platform (bench/channel_load.py), once at ``--channel-rate``,

prints a table and writes a Markdown report (``docs/benchmarks.md`` by default).

    .venv/bin/python bench/ack_latency.py [--rates 50,200,500] [--duration 60]
        [--out docs/benchmarks.md] [--url http://127.0.0.1:8080 --rasa-url http://127.0.0.1:5005]
        [--scenarios up,down,baseline,channels] [--channel-rate 200]

See bench/README.md for what each number means and how long a run takes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import math
import os
import platform
import random
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from report import write_section  # bench/report.py, beside this script

from bot.errors import PromptlyError
from bot.rasa_server import RasaServer, write_endpoints
from bot.settings import load_settings
from bot.training import model_path, rasa_executable, train
from knowledge_base import load_markdown_dir

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SCENARIOS = ("up", "down", "baseline")
CHANNELS = "channels"  # the platform-webhook scenario: bench/channel_load.py
TITLES = {
    "up": "Promptly, Rasa up",
    "down": "Promptly, Rasa stopped",
    "baseline": "Baseline: Rasa REST webhook alone",
}
BASELINE_TIMEOUT = 30.0  # client timeout per baseline request, seconds
START_DELAY = 1.0  # seconds between building the schedule and its first message

Floats = npt.NDArray[np.float64]

# --- the message mix --------------------------------------------------------------------------

FAQ, SMALL_TALK, ORDER, HANDOFF, OUT_OF_SCOPE = range(5)
CATEGORY_NAMES = ("faq", "small talk", "order status", "handoff", "out of scope")
# Per block of 10 messages: 4 FAQ, 2 greetings/thanks, 2 order status, 1 handoff, 1 off-topic.
MIX_BLOCK = (FAQ,) * 4 + (SMALL_TALK,) * 2 + (ORDER,) * 2 + (HANDOFF, OUT_OF_SCOPE)

FAQ_PARAPHRASES = (
    "how many days does standard shipping usually take?",
    "can I send a jacket back if it doesn't fit?",
    "when will I get my money back after returning something?",
    "how do I reset my password?",
    "do you take PayPal?",
    "is it too late to cancel the order I placed this morning?",
    "do you deliver to Canada?",
    "my tent pole snapped after two trips, is that covered?",
    "my discount code doesn't work at checkout",
    "I typed the wrong address, can you change it?",
)
SMALL_TALK_TEXTS = (
    "hi",
    "hello there",
    "good morning",
    "hey!",
    "hi, anyone there?",
    "thanks!",
    "thank you so much",
    "thanks, that helps",
    "great, thank you",
    "cheers",
)
ORDER_TEMPLATES = (
    "where is order {n}",
    "what's the status of order {n}?",
    "has {n} shipped yet?",
    "tracking for {n} please",
    "when will my order {n} arrive?",
    "hi, where is order {n}?",
)
HANDOFF_TEXTS = (
    "I want to talk to a person",
    "can I speak to someone please",
    "agent please",
    "get me a human please",
    "transfer me to an agent",
    "I'd rather speak with a member of staff",
)
OUT_OF_SCOPE_TEXTS = (
    "what's the weather tomorrow",
    "tell me a joke",
    "who won the football last night",
    "can you recommend a good movie",
    "what is the capital of Australia",
    "how do I cook rice",
    "what's the bitcoin price today",
)


def faq_questions(articles: Path) -> list[str]:
    questions = [q for article in load_markdown_dir(articles) for q in article.questions]
    if not questions:
        raise SystemExit(f"no FAQ questions found in {articles}")
    return questions + list(FAQ_PARAPHRASES)


def order_numbers(csv_path: Path) -> list[str]:
    numbers: list[str] = []
    with contextlib.suppress(OSError), csv_path.open(encoding="utf-8") as f:
        numbers = [row["order_number"] for row in csv.DictReader(f) if row.get("order_number")]
    return numbers or ["AC-10452", "AC-10453", "AC-10454"]


@dataclass(frozen=True)
class Workload:
    """Precomputed: message i is sent at t0 + i / rate on connection i % connections."""

    rate: float
    categories: npt.NDArray[np.int8]
    texts: list[str]
    conversations: list[str]  # baseline sender / WebSocket customer of each message

    @property
    def count(self) -> int:
        return len(self.texts)


def build_workload(
    rate: float, duration: float, connections: int, tag: str, seed: int, articles: Path
) -> Workload:
    rng = random.Random(seed)
    faq = faq_questions(articles)
    orders = order_numbers(articles.parent / "demo_orders.csv")
    count = max(int(round(rate * duration)), 1)
    categories: list[int] = []
    while len(categories) < count:
        block = list(MIX_BLOCK)
        rng.shuffle(block)
        categories.extend(block)
    del categories[count:]
    texts: list[str] = []
    conversations: list[str] = []
    for i, category in enumerate(categories):
        if category == FAQ:
            text = rng.choice(faq)
        elif category == SMALL_TALK:
            text = rng.choice(SMALL_TALK_TEXTS)
        elif category == ORDER:
            number = rng.choice(orders)
            if rng.random() < 0.3:
                number = number.removeprefix("AC-")
            text = rng.choice(ORDER_TEMPLATES).format(n=number)
        elif category == HANDOFF:
            text = rng.choice(HANDOFF_TEXTS)
        else:
            text = rng.choice(OUT_OF_SCOPE_TEXTS)
        texts.append(text)
        # A handoff turns its conversation over to a person (plan acks from then on), so
        # each handoff message comes from a customer of its own.
        conversations.append(f"{tag}-h{i}" if category == HANDOFF else f"{tag}-c{i % connections}")
    return Workload(rate, np.array(categories, dtype=np.int8), texts, conversations)


# --- recording --------------------------------------------------------------------------------

KIND_NONE, KIND_SOLUTION, KIND_RECEIPT, KIND_PLAN, KIND_OTHER = range(5)
KIND_CODES = {"solution": KIND_SOLUTION, "receipt": KIND_RECEIPT, "plan": KIND_PLAN}
KIND_NAMES = ("none", "solution", "receipt", "plan", "other")


def _nan(n: int) -> Floats:
    return np.full(n, np.nan, dtype=np.float64)


@dataclass
class Recording:
    """Monotonic timestamps per message (NaN = did not happen)."""

    scheduled: Floats
    sent: Floats
    accepted: Floats
    first: Floats  # first reply frame (the ack) in WebSocket runs, the response in the baseline
    answer: Floats  # first reply frame that is not a receipt
    first_kind: npt.NDArray[np.int8]
    status: npt.NDArray[np.int16]  # baseline: HTTP status, 0 = no response
    errors: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    send_end: float = math.nan
    cpu_seconds: float = math.nan  # the load generator's CPU time during the run
    wall_seconds: float = math.nan

    @classmethod
    def empty(cls, n: int) -> Recording:
        return cls(
            scheduled=_nan(n),
            sent=_nan(n),
            accepted=_nan(n),
            first=_nan(n),
            answer=_nan(n),
            first_kind=np.zeros(n, dtype=np.int8),
            status=np.zeros(n, dtype=np.int16),
        )


# --- WebSocket load (scenarios up and down) ---------------------------------------------------


class Connection:
    """One WebSocket client: a customer with one conversation, sending on its schedule."""

    def __init__(self, number: int, tag: str, base_url: str) -> None:
        self.number = number
        self.tag = tag
        self.base_url = base_url
        self.generation = 0
        self.customer = f"{tag}-c{number}"
        self.conversation: str | None = None  # the customer's conversation, once accepted
        self.last_seq: dict[str, int] = {}
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.closing = False

    def url(self) -> str:
        query = {"customer_id": self.customer}
        if self.conversation is not None:
            query["conversation_id"] = self.conversation
            query["after"] = str(self.last_seq.get(self.conversation, 0))
        return f"{self.base_url}/ws?" + "&".join(
            f"{k}={urllib.parse.quote(v, safe='')}" for k, v in query.items()
        )

    def rotate(self) -> None:
        """The bot handed this conversation to a person: go on as a new customer."""
        self.generation += 1
        self.customer = f"{self.tag}-c{self.number}g{self.generation}"
        self.conversation = None


class WebSocketLoad:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        workload: Workload,
        connections: int,
        tag: str,
    ) -> None:
        self.session = session
        self.workload = workload
        self.rec = Recording.empty(workload.count)
        self.index = {f"{tag}-{i}": i for i in range(workload.count)}
        self.ids = list(self.index)
        self.generation_of = np.full(workload.count, -1, dtype=np.int32)
        self.connections = [Connection(k, tag, base_url) for k in range(connections)]
        self.remaining = workload.count  # messages without an answer yet

    async def connect(self, connection: Connection) -> None:
        connection.ws = await self.session.ws_connect(
            connection.url(), timeout=aiohttp.ClientWSTimeout(ws_close=5), autoping=True
        )
        connection.reader = asyncio.create_task(self.read(connection, connection.ws))

    async def read(self, connection: Connection, ws: aiohttp.ClientWebSocketResponse) -> None:
        rec = self.rec
        index = self.index
        categories = self.workload.categories
        loads = json.loads
        monotonic = time.monotonic
        async for msg in ws:
            now = monotonic()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                data = loads(msg.data)
            except ValueError:
                rec.errors["unparsable frame"] += 1
                continue
            kind_of_frame = data.get("type")
            if kind_of_frame == "accepted":
                i = index.get(data.get("client_message_id"))
                if i is not None and math.isnan(rec.accepted[i]):
                    rec.accepted[i] = now
                    if (
                        categories[i] != HANDOFF
                        and self.generation_of[i] == connection.generation
                        and connection.conversation is None
                    ):
                        connection.conversation = data.get("conversation_id")
                continue
            if kind_of_frame == "error":
                error = data.get("error") or {}
                rec.errors[f"error frame: {error.get('code', '?')}"] += 1
                continue
            conversation = data.get("conversation_id")
            seq = data.get("seq")
            if (
                isinstance(conversation, str)
                and isinstance(seq, int)
                and seq > connection.last_seq.get(conversation, 0)
            ):
                connection.last_seq[conversation] = seq
            i = index.get(data.get("in_reply_to"))
            if i is None or kind_of_frame == "customer":
                continue
            kind = data.get("kind")
            if math.isnan(rec.first[i]):
                rec.first[i] = now
                code = KIND_CODES.get(kind, KIND_OTHER) if kind_of_frame == "ack" else KIND_OTHER
                rec.first_kind[i] = code
                if (
                    code == KIND_PLAN
                    and categories[i] != HANDOFF
                    and conversation == connection.conversation
                ):
                    rec.notes["conversations handed to a person by the bot"] += 1
                    connection.rotate()
            if not (kind_of_frame == "ack" and kind == "receipt") and math.isnan(rec.answer[i]):
                rec.answer[i] = now
                self.remaining -= 1
        if not connection.closing:
            rec.notes["WebSocket closed by the gateway"] += 1

    async def send_loop(self, connection: Connection, mine: Sequence[int]) -> None:
        rec = self.rec
        texts = self.workload.texts
        conversations = self.workload.conversations
        categories = self.workload.categories
        monotonic = time.monotonic
        dumps = json.dumps
        for i in mine:
            delay = rec.scheduled[i] - monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            customer = conversations[i] if categories[i] == HANDOFF else connection.customer
            payload = dumps(
                {"client_message_id": self.ids[i], "text": texts[i], "customer": {"id": customer}}
            )
            self.generation_of[i] = connection.generation
            for attempt in range(2):
                ws = connection.ws
                try:
                    if ws is None or ws.closed:
                        raise ConnectionResetError("socket closed")
                    now = monotonic()
                    await ws.send_str(payload)
                    rec.sent[i] = now
                    break
                except (aiohttp.ClientError, ConnectionError, RuntimeError) as e:
                    if attempt == 1:
                        rec.errors[f"send failed: {type(e).__name__}"] += 1
                        break
                    rec.notes["WebSocket reconnects"] += 1
                    try:
                        await asyncio.wait_for(self.connect(connection), timeout=10)
                    except (aiohttp.ClientError, OSError, TimeoutError) as e2:
                        rec.errors[f"reconnect failed: {type(e2).__name__}"] += 1
                        break

    async def run(self, start: float, grace: float) -> Recording:
        rec = self.rec
        count = self.workload.count
        rec.scheduled[:] = start + np.arange(count, dtype=np.float64) / self.workload.rate
        n = len(self.connections)
        await asyncio.gather(
            *(asyncio.wait_for(self.connect(c), timeout=30) for c in self.connections)
        )
        if time.monotonic() > start:
            rec.notes["connecting took longer than the start delay"] += 1
        try:
            await asyncio.gather(
                *(self.send_loop(c, range(c.number, count, n)) for c in self.connections)
            )
            rec.send_end = time.monotonic()
            self.remaining -= int(np.isnan(rec.sent).sum())  # never sent: nothing to wait for
            deadline = rec.send_end + grace
            while self.remaining > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await self.close()
        return rec

    async def close(self) -> None:
        for connection in self.connections:
            connection.closing = True
        # All at once and bounded: a saturated gateway can be slow to finish the handshake.
        closing = [asyncio.create_task(c.ws.close()) for c in self.connections if c.ws is not None]
        if closing:
            _, late = await asyncio.wait(closing, timeout=5)
            for task in late:
                task.cancel()
            await asyncio.gather(*closing, return_exceptions=True)
        readers = [c.reader for c in self.connections if c.reader is not None]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


# --- REST load (baseline) ---------------------------------------------------------------------


class RestLoad:
    def __init__(self, session: aiohttp.ClientSession, rasa_url: str, workload: Workload) -> None:
        self.session = session
        self.url = f"{rasa_url.rstrip('/')}/webhooks/rest/webhook"
        self.workload = workload
        self.rec = Recording.empty(workload.count)
        self.bodies = [
            json.dumps({"sender": s, "message": t}).encode()
            for s, t in zip(workload.conversations, workload.texts, strict=True)
        ]
        self.timeout = aiohttp.ClientTimeout(total=BASELINE_TIMEOUT)

    async def post(self, i: int) -> None:
        rec = self.rec
        rec.sent[i] = time.monotonic()
        try:
            async with self.session.post(
                self.url,
                data=self.bodies[i],
                headers={"Content-Type": "application/json"},
                timeout=self.timeout,
            ) as response:
                await response.read()
                rec.status[i] = response.status
                if response.status == 200:
                    rec.first[i] = time.monotonic()
                else:
                    rec.errors[f"HTTP {response.status}"] += 1
        except TimeoutError:
            rec.errors["timeout"] += 1
        except (aiohttp.ClientError, OSError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else None
            name = type(e).__name__ + (f" ({reason})" if reason else "")
            rec.errors[f"connection: {name}"] += 1

    async def run(self, start: float) -> Recording:
        rec = self.rec
        count = self.workload.count
        rec.scheduled[:] = start + np.arange(count, dtype=np.float64) / self.workload.rate
        tasks: set[asyncio.Task[None]] = set()
        monotonic = time.monotonic
        for i in range(count):
            delay = rec.scheduled[i] - monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.post(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        rec.send_end = monotonic()
        # Every request ends by itself within its client timeout.
        if tasks:
            await asyncio.wait(set(tasks), timeout=BASELINE_TIMEOUT + 10)
        for task in list(tasks):
            task.cancel()
            rec.errors["still running after the client timeout"] += 1
        return rec


# --- statistics -------------------------------------------------------------------------------


def _ms(values: Floats) -> Floats:
    return values[~np.isnan(values)] * 1000.0


def _pct(values: Floats, q: float) -> float:
    """Linear-interpolated percentile; infinite as soon as an infinite value is involved."""
    if not values.size:
        return math.nan
    ordered = np.sort(values)
    rank = q / 100 * (ordered.size - 1)
    low, high = math.floor(rank), math.ceil(rank)
    if math.isinf(ordered[high]):
        return math.inf
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def _max(values: Floats) -> float:
    return float(values.max()) if values.size else math.nan


@dataclass
class Result:
    scenario: str
    rate: float
    duration: float
    rec: Recording
    window: float
    wall: float = math.nan
    server_ack_ms: Floats | None = None  # the gateway's own ack latency (event log)

    @property
    def sent_mask(self) -> npt.NDArray[np.bool_]:
        return ~np.isnan(self.rec.sent)

    @property
    def sent(self) -> int:
        return int(self.sent_mask.sum())

    @property
    def scheduled(self) -> int:
        return len(self.rec.sent)

    @property
    def send_rate(self) -> float:
        sent = self.rec.sent[self.sent_mask]
        if sent.size < 2:
            return math.nan
        return float((sent.size - 1) / (sent.max() - sent.min()))

    @property
    def generator_cpu(self) -> str:
        """The load generator's CPU use during the run, in % of one core."""
        return f"{_f(100 * self.rec.cpu_seconds / self.rec.wall_seconds, 0)} %"

    @property
    def lag_ms(self) -> Floats:
        return _ms(self.rec.sent - self.rec.scheduled)

    @property
    def ack_ms(self) -> Floats:
        """Promptly: per sent message, infinite when it got no ack. Baseline: per HTTP 200."""
        if self.scenario == "baseline":
            return _ms(self.rec.first - self.rec.sent)
        values = (self.rec.first - self.rec.sent)[self.sent_mask] * 1000.0
        values[np.isnan(values)] = math.inf
        return values

    @property
    def accepted_ms(self) -> Floats:
        return _ms(self.rec.accepted - self.rec.sent)

    @property
    def answer_ms(self) -> Floats:
        return _ms(self.rec.answer - self.rec.sent)

    @property
    def in_window(self) -> int:
        return int((self.ack_ms <= self.window * 1000).sum())

    @property
    def in_window_share(self) -> float:
        return self.in_window / self.sent if self.sent else math.nan

    @property
    def kinds(self) -> Counter[str]:
        codes = self.rec.first_kind[self.sent_mask]
        return Counter({KIND_NAMES[c]: int((codes == c).sum()) for c in set(codes.tolist())})

    @property
    def answered_share(self) -> float:
        return self.answer_ms.size / self.sent if self.sent else math.nan

    # baseline
    @property
    def ok(self) -> int:
        return int((self.rec.status == 200).sum())

    @property
    def ok_per_s(self) -> float:
        done = self.rec.first[~np.isnan(self.rec.first)]
        if not done.size:
            return 0.0
        return float(done.size / (done.max() - self.rec.scheduled[0]))

    @property
    def timeouts(self) -> int:
        return self.rec.errors.get("timeout", 0)

    @property
    def http_errors(self) -> int:
        return sum(v for k, v in self.rec.errors.items() if k.startswith("HTTP "))

    @property
    def other_errors(self) -> int:
        return sum(self.rec.errors.values()) - self.timeouts - self.http_errors


def _f(value: float, digits: int = 1) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞"
    return f"{value:,.{digits}f}"


def _share(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == 1:
        return "100 %"
    return f"{math.floor(value * 10000) / 100:.2f} %"  # never rounds up to 100 %


def _kinds(result: Result) -> str:
    kinds = result.kinds
    order = ("solution", "receipt", "plan", "other", "none")
    return ", ".join(f"{k} {kinds[k]}" for k in order if kinds.get(k))


def ws_table(results: list[Result]) -> list[list[str]]:
    header = [
        "rate/s",
        "sent",
        "send rate/s",
        "lag p99 ms",
        "ack p50 ms",
        "ack p99 ms",
        "ack max ms",
        "acked ≤ window",
        "first reply kinds",
        "answer p50 ms",
        "answer p99 ms",
        "answer max ms",
        "answered",
    ]
    rows = [header]
    for r in results:
        ack, answer = r.ack_ms, r.answer_ms
        rows.append(
            [
                _f(r.rate, 0),
                str(r.sent),
                _f(r.send_rate),
                _f(_pct(r.lag_ms, 99)),
                _f(_pct(ack, 50)),
                _f(_pct(ack, 99)),
                _f(_max(ack)),
                f"{_share(r.in_window_share)} ({r.in_window}/{r.sent})",
                _kinds(r),
                _f(_pct(answer, 50)),
                _f(_pct(answer, 99)),
                _f(_max(answer)),
                f"{_share(r.answered_share)} ({answer.size}/{r.sent})",
            ]
        )
    return rows


def ws_detail_table(results: list[Result]) -> list[list[str]]:
    header = [
        "rate/s",
        "accepted p50 ms",
        "accepted p99 ms",
        "gateway-side ack p50 ms",
        "gateway-side ack p99 ms",
        "generator CPU",
        "not sent",
        "errors",
        "notes",
    ]
    rows = [header]
    for r in results:
        accepted = r.accepted_ms
        server = r.server_ack_ms
        rows.append(
            [
                _f(r.rate, 0),
                _f(_pct(accepted, 50)),
                _f(_pct(accepted, 99)),
                _f(_pct(server, 50)) if server is not None else "n/a",
                _f(_pct(server, 99)) if server is not None else "n/a",
                r.generator_cpu,
                str(r.scheduled - r.sent),
                "; ".join(f"{k} {v}" for k, v in sorted(r.rec.errors.items())) or "none",
                "; ".join(f"{k} {v}" for k, v in sorted(r.rec.notes.items())) or "none",
            ]
        )
    return rows


def baseline_table(results: list[Result]) -> list[list[str]]:
    header = [
        "rate/s",
        "sent",
        "send rate/s",
        "lag p99 ms",
        "p50 ms",
        "p99 ms",
        "max ms",
        "ok replies",
        "ok ≤ window",
        "ok replies/s",
        "HTTP errors",
        "timeouts",
        "other errors",
        "generator CPU",
    ]
    rows = [header]
    for r in results:
        latency = r.ack_ms
        rows.append(
            [
                _f(r.rate, 0),
                str(r.sent),
                _f(r.send_rate),
                _f(_pct(r.lag_ms, 99)),
                _f(_pct(latency, 50)),
                _f(_pct(latency, 99)),
                _f(_max(latency)),
                f"{r.ok} ({_share(r.ok / r.sent if r.sent else math.nan)})",
                f"{_share(r.in_window_share)}",
                _f(r.ok_per_s),
                str(r.http_errors),
                str(r.timeouts),
                str(r.other_errors),
                r.generator_cpu,
            ]
        )
    return rows


def markdown(rows: list[list[str]]) -> str:
    columns = zip(*rows, strict=True)
    numeric = [all(c[:1].isdigit() or c in ("n/a", "∞") for c in col[1:]) for col in columns]
    lines = ["| " + " | ".join(rows[0]) + " |"]
    lines.append("| " + " | ".join("---:" if n else "---" for n in numeric) + " |")
    lines.extend("| " + " | ".join(row) + " |" for row in rows[1:])
    return "\n".join(lines)


def plain(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def _ms_text(value: float) -> str:
    return "∞ (more than 1 % never acked)" if math.isinf(value) else f"{_f(value)} ms"


@dataclass(frozen=True)
class Check:
    target: str
    measured: str
    passed: bool | None  # None: not measured in this run


Failure = tuple[str, float, str]  # scenario, rate, what went wrong


def checks(results: list[Result], window: float, failures: Sequence[Failure] = ()) -> list[Check]:
    out: list[Check] = []
    by = {(r.scenario, r.rate): r for r in results}
    failed = {(scenario, rate): error for scenario, rate, error in failures}
    for (scenario, rate), error in failed.items():
        if scenario != "baseline":
            out.append(
                Check(
                    f"100 % acked inside {window:g} s: {TITLES[scenario]}, {rate:g} msg/s",
                    f"run failed: {error}",
                    False,
                )
            )
    for r in results:
        if r.scenario == "baseline":
            continue
        out.append(
            Check(
                f"100 % acked inside {window:g} s: {TITLES[r.scenario]}, {r.rate:g} msg/s",
                f"{_share(r.in_window_share)} ({r.in_window}/{r.sent})"
                + (f", {r.scheduled - r.sent} not sent" if r.scheduled != r.sent else ""),
                r.sent == r.scheduled and r.in_window == r.sent and r.sent > 0,
            )
        )
    up200 = by.get(("up", 200.0))
    if ("up", 200.0) in failed:
        out.append(Check("ack p99 ≤ 50 ms at 200 msg/s with Rasa up", "run failed", False))
    elif up200 is None:
        out.append(Check("ack p99 ≤ 50 ms at 200 msg/s with Rasa up", "not measured", None))
    else:
        p99 = _pct(up200.ack_ms, 99)
        out.append(
            Check(
                "ack p99 ≤ 50 ms at 200 msg/s with Rasa up",
                _ms_text(p99),
                p99 <= 50,
            )
        )
    compared = False
    for rate in sorted({r.rate for r in results}):
        up, down = by.get(("up", rate)), by.get(("down", rate))
        if up is None or down is None:
            continue
        compared = True
        p_up, p_down = _pct(up.ack_ms, 99), _pct(down.ack_ms, 99)
        out.append(
            Check(
                f"ack p99 with Rasa stopped ≤ with Rasa up, {rate:g} msg/s",
                f"{_ms_text(p_down)} stopped vs {_ms_text(p_up)} up",
                math.isfinite(p_down) and p_down <= p_up,
            )
        )
    if not compared:
        out.append(Check("ack p99 with Rasa stopped ≤ with Rasa up", "not measured", None))
    return out


# --- processes (orchestrated mode) ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_until(
    what: str,
    predicate: Callable[[], object],
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited")
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if predicate():
                return
        time.sleep(0.3)
    raise RuntimeError(f"{what}: not after {timeout:.0f}s")


def rasa_state(gateway_url: str) -> str:
    return str(get_json(f"{gateway_url}/health")["components"]["rasa"])


# The load generator is not customers: each of its connections and conversations sends many
# messages a second from one loopback address. It measures acks, not the rate limits.
NO_LIMITS = """requests_per_address = 0
webhooks_per_address = 0
messages_per_sender = 0
messages_per_socket = 0
sockets_per_address = 0"""


class Gateway:
    """``python -m bot --config <tmp>/promptly.toml gateway`` in its own process group."""

    def __init__(
        self,
        folder: Path,
        index_dir: Path,
        rasa_port: int,
        action_token: str,
        config: str = "",
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        database: Path | None = None,
        limits: str = NO_LIMITS,
        articles: Path | None = None,
        kb: str = "",
    ) -> None:
        """``articles``: the KB's Markdown folder (default the shop's); ``kb``: more lines for
        the ``[kb]`` table."""
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.database = database or folder / "promptly.db"
        self.log = folder / "gateway.log"
        self.config = folder / "promptly.toml"
        venv, models = ROOT / ".venv-rasa", ROOT / "models"
        articles = articles or ROOT / "kb" / "articles"
        self.config.write_text(
            f"""
[server]
host = "{HOST}"
port = {self.port}
[storage]
database = "{self.database}"
[rasa]
url = "http://{HOST}:{rasa_port}"
manage = false
project = "{ROOT}"
venv = "{venv}"
model_dir = "{models}"
[kb]
articles = "{articles}"
index_dir = "{index_dir}"
{kb}
[limits]
{limits}
{config}""",
            encoding="utf-8",
        )
        self.env = {
            **os.environ,
            "PROMPTLY_ACTION_TOKEN": action_token,
            "PROMPTLY_AGENT_TOKEN": secrets.token_urlsafe(18),
            "HF_HUB_OFFLINE": "1",
            **(env or {}),
        }
        self.log.write_bytes(b"")
        self.process = self.launch()

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the gateway process (again: the fault suite restarts it after a kill -9)."""
        with self.log.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "bot", "--config", str(self.config), "gateway"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL the gateway's process group (the gateway and its embedding child)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def wait_ready(self, timeout: float) -> None:
        try:
            wait_until("gateway", lambda: get_json(f"{self.url}/health"), timeout, self.process)
        except RuntimeError as e:
            raise RuntimeError(f"{e}; log {self.log}:\n{self.log_tail()}") from e

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def ack_latencies_ms(self, tag: str) -> Floats | None:
        """The gateway's own first-reply latency per benchmark message, from its event log."""
        if not self.database.exists():
            return None
        try:
            db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
            try:
                rows = db.execute(
                    "SELECT e.data FROM events e JOIN messages m ON m.id = e.message_id "
                    "WHERE e.type = 'acked' AND m.client_message_id LIKE ?",
                    (f"{tag}-%",),
                ).fetchall()
            finally:
                db.close()
        except sqlite3.Error:
            return None
        values = [json.loads(row[0]).get("latency_ms") for row in rows]
        return np.array([v for v in values if isinstance(v, int | float)], dtype=np.float64)


@dataclass
class Stack:
    """What one scenario run talks to."""

    gateway_url: str
    rasa_url: str
    gateway: Gateway | None = None
    rasa: RasaServer | None = None


RASA_NICE = load_settings(ROOT / "promptly.toml", env={}).rasa.nice


class Orchestrator:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.index_dir = tmp / "kb-index"  # shared: the KB index is built once
        self.token = secrets.token_urlsafe(24)
        settings = load_settings(ROOT / "promptly.toml", env={})
        self.model = model_path(settings)
        if not self.model.exists():
            print(f"training the Rasa model {self.model.name} first", flush=True)
            train(settings)
        self.rasa_exe = rasa_executable(settings)
        self.rasa_nice = RASA_NICE
        self.rasa_startups: list[float] = []

    @contextlib.contextmanager
    def stack(
        self,
        scenario: str,
        rate: float,
        config: str = "",
        env: Mapping[str, str] | None = None,
        articles: Path | None = None,
        kb: str = "",
        index_dir: Path | None = None,
    ) -> Iterator[Stack]:
        """Rasa (unless ``down``) and a fresh gateway; ``config`` is appended to the gateway's
        TOML and ``env`` to its environment; ``articles``, ``kb`` and ``index_dir`` as for
        ``Gateway`` (a KB other than the shop's needs its own index folder)."""
        folder = self.tmp / f"{scenario}-{rate:g}"
        rasa_port = free_port()
        gateway = Gateway(
            folder,
            index_dir or self.index_dir,
            rasa_port,
            self.token,
            config,
            env,
            articles=articles,
            kb=kb,
        )
        rasa: RasaServer | None = None
        started = time.monotonic()
        try:
            if scenario != "down":
                endpoints = write_endpoints(
                    folder / "endpoints.yml", f"{gateway.url}/actions/webhook", self.token
                )
                rasa = RasaServer(
                    self.rasa_exe,
                    self.model,
                    endpoints,
                    rasa_port,
                    folder / "rasa.log",
                    ROOT,
                    nice=self.rasa_nice,
                )
                rasa.start()
            gateway.wait_ready(timeout=300)
            if rasa is not None:
                rasa.wait_ready(timeout=300)
                self.rasa_startups.append(time.monotonic() - started)
            want = "down" if scenario == "down" else "up"
            wait_until(
                f"gateway sees Rasa {want}",
                lambda: rasa_state(gateway.url) == want,
                60,
                gateway.process,
            )
            yield Stack(gateway.url, f"http://{HOST}:{rasa_port}", gateway, rasa)
        finally:
            if rasa is not None:
                rasa.stop()
            gateway.stop()


# --- running scenarios ------------------------------------------------------------------------

WARMUP = (
    "How long does shipping take?",
    "hi",
    "where is order AC-10452",
    "tell me a joke",
    "thanks!",
    "Do you ship internationally?",
)


async def warm_up(scenario: str, stack: Stack, tag: str) -> None:
    """A few messages before measuring, so first-call costs (TF graphs, the embedder) are paid."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        if scenario == "baseline":
            for text in WARMUP:
                body = {"sender": f"warmup-{tag}", "message": text}
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.post(
                        f"{stack.rasa_url}/webhooks/rest/webhook",
                        json=body,
                        timeout=aiohttp.ClientTimeout(total=60),
                    ) as response:
                        await response.read()
            return
        customer = f"warmup-{tag}"
        ws = await session.ws_connect(f"{stack.gateway_url}/ws?customer_id={customer}")
        try:
            for k, text in enumerate(WARMUP):
                cmid = f"warmup-{tag}-{k}"
                await ws.send_json(
                    {"client_message_id": cmid, "text": text, "customer": {"id": customer}}
                )
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        msg = await ws.receive(timeout=deadline - time.monotonic())
                    except TimeoutError:
                        break
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break
                    frame = json.loads(msg.data)
                    if frame.get("in_reply_to") != cmid:
                        continue
                    # With Rasa stopped only the first frame can be expected.
                    if scenario == "down" or frame.get("kind") != "receipt":
                        break
        finally:
            await ws.close()


async def measure(
    scenario: str, stack: Stack, workload: Workload, connections: int, grace: float, tag: str
) -> Recording:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu, wall = time.process_time(), time.monotonic()
        start = wall + START_DELAY
        if scenario == "baseline":
            rec = await RestLoad(session, stack.rasa_url, workload).run(start)
        else:
            load = WebSocketLoad(session, stack.gateway_url, workload, connections, tag)
            rec = await load.run(start, grace)
        rec.cpu_seconds = time.process_time() - cpu
        rec.wall_seconds = time.monotonic() - wall
        return rec


def run_one(
    scenario: str, rate: float, args: argparse.Namespace, stack: Stack, run_number: int
) -> Result:
    tag = f"b{secrets.token_hex(3)}-{scenario}-{rate:g}"
    workload = build_workload(
        rate, args.duration, args.connections, tag, args.seed + run_number, ROOT / "kb" / "articles"
    )
    asyncio.run(warm_up(scenario, stack, tag))
    started = time.monotonic()
    rec = asyncio.run(measure(scenario, stack, workload, args.connections, args.grace, tag))
    result = Result(scenario, rate, args.duration, rec, args.window, time.monotonic() - started)
    if stack.gateway is not None and scenario != "baseline":
        if stack.rasa is not None:
            stack.rasa.stop()  # first, so its backlog does not call a gateway that is gone
        stack.gateway.stop()  # flush and close the database before reading its event log
        result.server_ack_ms = stack.gateway.ack_latencies_ms(tag)
    return result


def summary_line(r: Result) -> str:
    if r.scenario == "baseline":
        lat = r.ack_ms
        return (
            f"  sent {r.sent} at {_f(r.send_rate)}/s, ok {r.ok}, p50 {_f(_pct(lat, 50))} ms, "
            f"p99 {_f(_pct(lat, 99))} ms, timeouts {r.timeouts}, HTTP errors {r.http_errors}, "
            f"other {r.other_errors}, lag p99 {_f(_pct(r.lag_ms, 99))} ms"
        )
    ack = r.ack_ms
    return (
        f"  sent {r.sent} at {_f(r.send_rate)}/s, ack p50 {_f(_pct(ack, 50))} ms, "
        f"p99 {_f(_pct(ack, 99))} ms, max {_f(_max(ack))} ms, "
        f"in window {_share(r.in_window_share)}, answered {_share(r.answered_share)}, "
        f"kinds: {_kinds(r)}, lag p99 {_f(_pct(r.lag_ms, 99))} ms"
    )


# --- report -----------------------------------------------------------------------------------


def machine_facts(rasa_version: str) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    load = "unknown"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return [
        f"- CPUs (nproc): {len(os.sched_getaffinity(0))}, {cpu}",
        f"- Memory: {memory}",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} (gateway and load generator), "
        f"aiohttp {aiohttp.__version__}, Rasa {rasa_version}",
        f"- Load average (1/5/15 min) when the run started: {load}",
    ]


def rasa_version_of(url: str) -> str:
    try:
        data = get_json(f"{url}/version")
        return str(data.get("version", "unknown"))
    except (OSError, ValueError):
        return "unknown"


def rasa_version_installed() -> str:
    python = ROOT / ".venv-rasa" / "bin" / "python"
    try:
        out = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('rasa'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def method_text(args: argparse.Namespace, orchestrated: bool) -> str:
    mix = (
        "40 % FAQ questions (the `questions` of the kb/articles front matter plus 10 "
        "paraphrases), 20 % greetings and thanks, 20 % order status with an order number from "
        "kb/demo_orders.csv, 10 % requests for a person, 10 % out of scope"
    )
    parts = [
        f"Each scenario runs at each rate for {args.duration:g} s. Load is open-loop: message "
        f"*i* is sent at t0 + *i*/rate whatever the replies, so a slow server cannot slow the "
        f"load down. The message mix is {mix}, shuffled in blocks of 10 so it stays constant "
        f"over time (seeded, so every run sends the same texts).",
        f"**Promptly** scenarios use {args.connections} WebSocket connections "
        f"(`/ws?customer_id=…`); message *i* goes out on connection *i* mod "
        f"{args.connections}. Each connection is one customer with one conversation, except "
        "that every handoff message is sent as a customer of its own (a handed-off "
        "conversation gets only plan acks from then on, which would change the mix). If the "
        "bot hands a connection's conversation to a person on its own (a misread intent), the "
        "connection goes on as a new customer; the notes count how often. "
        "*Ack latency* is from just before the frame is written to the socket to the first "
        "reply frame whose `in_reply_to` is the message's `client_message_id`; *answer "
        "latency* is to the first reply frame that is not a `receipt` (a `solution` ack, an "
        "`answer` or a `plan`). A message with no ack at all counts as outside the window "
        "and as infinitely late (∞) in the ack percentiles and maximum. After the "
        f"last send the client waits up to {args.grace:g} s for outstanding answers, then "
        "closes; with Rasa stopped, messages the help centre cannot answer stay pending by "
        'design, so they are "not answered in run".',
        "**Baseline** POSTs the same messages (same senders) straight to Rasa's "
        "`/webhooks/rest/webhook` with a "
        f"{BASELINE_TIMEOUT:g} s client timeout and an unlimited connection pool; latency is "
        "until the whole response is read, for HTTP 200 responses. Rasa still calls the "
        "gateway's action endpoint for custom actions (FAQ answers, order status, handoff), as "
        "in production. Its senders are not gateway conversations, so `action_escalate` "
        "fails there (the gateway answers 404 `unknown_conversation`, Rasa logs the error and "
        "still replies HTTP 200): the baseline's handoff turns open no ticket. *ok replies/s* "
        "is successful responses divided by the time from the first scheduled send to the "
        "last successful response.",
        "*lag* is the load generator's own delay (actual send time minus scheduled time); a "
        "large lag p99 means the generator, not the server, fell behind. Before each "
        "measurement six warm-up messages (not counted) go through the same path, so one-off "
        "costs such as TensorFlow graph building are not in the numbers. *gateway-side ack* "
        "is the gateway's own first-reply latency from its event log, which starts when the "
        "gateway has read and parsed the frame and ends when the reply is stored and "
        "published; the difference to the client's number is time spent in socket buffers "
        "and in the gateway's read loop before it gets to the message. *generator CPU* is the "
        "load generator's CPU time during the run in % of one core: it shares the machine "
        "with the gateway and Rasa.",
    ]
    if orchestrated:
        parts.append(
            "Everything runs on 127.0.0.1 on this one machine: the load generator (one asyncio "
            "loop, aiohttp), the gateway (`python -m bot gateway`, default settings: Rasa "
            "concurrency 4, 2 s window with 250 ms margin) and Rasa "
            "(`rasa run --enable-api` with the trained model, started under `nice -n "
            f"{RASA_NICE}` as `promptly run` starts it, so acks get the CPU first; the "
            "baseline's Rasa too). Every run of every scenario "
            "gets a fresh gateway with an empty database and a freshly started Rasa, so no "
            "backlog or conversation history carries over; the run with Rasa stopped simply "
            "never starts it."
        )
    else:
        parts.append(
            f"Targets: gateway {args.url}, Rasa {args.rasa_url}, both already running and not "
            "restarted by the benchmark, so the scenarios share state: conversations, "
            "tickets and any backlog an earlier run left behind."
        )
    return "\n\n".join(parts)


def write_report(
    path: Path,
    results: list[Result],
    args: argparse.Namespace,
    command: str,
    facts: list[str],
    wall: float,
    orchestrated: bool,
    rasa_startups: list[float],
    failures: Sequence[Failure],
) -> None:
    lines = [
        "## Ack latency (`ack_latency.py`)",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Written by `bench/ack_latency.py` "
        "(see bench/README.md); the numbers below are as measured, with no adjustment.",
        "",
        "### Machine",
        "",
        *facts,
        "",
        "### Command",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Total wall time: {wall / 60:.1f} min"
        + (
            f", including {len(rasa_startups)} Rasa starts of "
            f"{min(rasa_startups):.0f}–{max(rasa_startups):.0f} s each."
            if rasa_startups
            else "."
        ),
        "",
        "### Method",
        "",
        method_text(args, orchestrated),
        "",
        "### Results",
        "",
        f"Latencies in milliseconds, measured by the client. The window is {args.window:g} s.",
    ]
    for scenario in SCENARIOS:
        group = [r for r in results if r.scenario == scenario]
        if not group:
            continue
        lines += ["", f"#### {TITLES[scenario]}", ""]
        if scenario == "baseline":
            lines.append(markdown(baseline_table(group)))
            errors = Counter[str]()
            for r in group:
                errors.update(r.rec.errors)
            if errors:
                lines += [
                    "",
                    "Errors: " + "; ".join(f"{k} {v}" for k, v in sorted(errors.items())) + ".",
                ]
        else:
            lines += [
                markdown(ws_table(group)),
                "",
                "Details:",
                "",
                markdown(ws_detail_table(group)),
            ]
    if failures:
        lines += ["", "#### Failed runs", ""]
        lines += [f"- {TITLES[s]} at {r:g} msg/s: {e}" for s, r, e in failures]
    lines += [
        "",
        "### Targets",
        "",
        "| target | measured | result |",
        "| --- | --- | --- |",
    ]
    for check in checks(results, args.window, failures):
        verdict = "not measured" if check.passed is None else "PASS" if check.passed else "FAIL"
        lines.append(f"| {check.target} | {check.measured} | **{verdict}** |")
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_section(path, "ack_latency", "\n".join(lines))


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rates", default="50,200,500", help="messages per second, comma list")
    parser.add_argument("--duration", type=float, default=60, help="seconds of sending per run")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--url", help="an already running gateway, e.g. http://127.0.0.1:8080")
    parser.add_argument("--rasa-url", help="an already running Rasa, e.g. http://127.0.0.1:5005")
    parser.add_argument(
        "--scenarios",
        default=None,
        help="comma list of up, down, baseline, channels (default: all four; with --url: "
        "up,baseline)",
    )
    parser.add_argument(
        "--channel-rate",
        type=float,
        default=200,
        help="channels scenario: messages per second over all channels together (one run)",
    )
    parser.add_argument("--connections", type=int, default=50, help="WebSocket connections")
    parser.add_argument("--grace", type=float, default=15, help="seconds to wait for stragglers")
    parser.add_argument("--window", type=float, default=2.0, help="promised ack window, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--kb",
        default="",
        help='more lines for the gateways\' [kb] table, e.g. "fast_path = false" to measure '
        "the acks without the answer fast path",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = parser.parse_args(argv)
    try:
        args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error("--rates: comma-separated numbers, e.g. 50,200,500")
    if not args.rates or any(r <= 0 or r > 10000 for r in args.rates):
        parser.error("--rates: each rate must be in (0, 10000]")
    if not 0 < args.duration <= 3600 or not 0 <= args.grace <= 600:
        parser.error("--duration must be in (0, 3600] and --grace in [0, 600]")
    if not 1 <= args.connections <= 5000:
        parser.error("--connections must be in [1, 5000]")
    if bool(args.url) != bool(args.rasa_url):
        parser.error("--url and --rasa-url go together")
    for url in (args.url, args.rasa_url):
        if url and urllib.parse.urlsplit(url).hostname != HOST:
            parser.error("only loopback targets are allowed (http://127.0.0.1:PORT)")
    known = (*SCENARIOS, CHANNELS)
    default = "up,baseline" if args.url else ",".join(known)
    args.scenarios = [s.strip() for s in (args.scenarios or default).split(",") if s.strip()]
    if not args.scenarios or any(s not in known for s in args.scenarios):
        parser.error(f"--scenarios: choose from {', '.join(known)}")
    if args.url and CHANNELS in args.scenarios:
        parser.error("--scenarios channels starts its own gateway and fakes; not with --url")
    if not 0 < args.channel_rate <= 10000:
        parser.error("--channel-rate must be in (0, 10000]")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop children


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    command = shlex.join(
        [".venv/bin/python", "bench/ack_latency.py", *(sys.argv[1:] if argv is None else argv)]
    )
    began = time.monotonic()
    orchestrated = args.url is None
    results: list[Result] = []
    failures: list[Failure] = []
    tmp = Path(tempfile.mkdtemp(prefix="promptly-bench-")) if orchestrated else None
    ok = False
    rasa_startups: list[float] = []
    orchestrator: Orchestrator | None = None
    try:
        if tmp is not None:
            orchestrator = Orchestrator(tmp)
            rasa_startups = orchestrator.rasa_startups
            rasa_version = rasa_version_installed()
        else:
            rasa_version = rasa_version_of(args.rasa_url)
        facts = machine_facts(rasa_version)
        print("\n".join(facts), flush=True)
        run_number = 0
        web = [s for s in args.scenarios if s != CHANNELS]
        for scenario in web:
            for rate in args.rates:
                run_number += 1
                print(f"\n== {TITLES[scenario]} at {rate:g} msg/s ==", flush=True)
                t = time.monotonic()
                if orchestrator is not None:
                    try:
                        with orchestrator.stack(scenario, rate, kb=args.kb) as stack:
                            print(f"  stack ready in {time.monotonic() - t:.0f}s", flush=True)
                            result = run_one(scenario, rate, args, stack, run_number)
                    except (PromptlyError, RuntimeError, OSError, aiohttp.ClientError) as e:
                        # One broken run (e.g. Rasa did not start) must not lose the others.
                        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                        print(f"  RUN FAILED: {e}", flush=True)
                        failures.append((scenario, rate, error))
                        continue
                else:
                    stack = Stack(args.url.rstrip("/"), args.rasa_url.rstrip("/"))
                    if scenario != "baseline":
                        want = "down" if scenario == "down" else "up"
                        state = rasa_state(stack.gateway_url)
                        if state != want:
                            raise SystemExit(
                                f"scenario {scenario} needs the gateway to see Rasa {want}, "
                                f"but /health says {state}"
                            )
                    result = run_one(scenario, rate, args, stack, run_number)
                results.append(result)
                print(summary_line(result), flush=True)
                print(f"  run took {time.monotonic() - t:.0f}s", flush=True)
        channel_run = None
        if CHANNELS in args.scenarios and orchestrator is not None:
            import channel_load  # not at the top: it imports this module

            channel_run = channel_load.run_scenario(args, orchestrator)
        wall = time.monotonic() - began
        for scenario in SCENARIOS:
            group = [r for r in results if r.scenario == scenario]
            if group:
                table = baseline_table(group) if scenario == "baseline" else ws_table(group)
                print(f"\n{TITLES[scenario]}\n{plain(table)}")
                if scenario != "baseline":
                    print(plain(ws_detail_table(group)))
        if web:
            print("\nTargets:")
            for check in checks(results, args.window, failures):
                verdict = "n/a " if check.passed is None else "PASS" if check.passed else "FAIL"
                print(f"  {verdict}  {check.target}: {check.measured}")
            write_report(
                args.out, results, args, command, facts, wall, orchestrated, rasa_startups, failures
            )
        if channel_run is not None:
            channel_load.report(channel_run, args, command, facts)
        print(f"\nwrote {args.out} (wall time {wall / 60:.1f} min)")
        ok = not failures and (channel_run is None or channel_run.failure is None)
        return 0 if ok else 1
    finally:
        if tmp is not None and ok and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            print(f"logs and databases kept in {tmp}", file=sys.stderr)


if __name__ == "__main__":
    # One module, not two: channel_load's `import ack_latency` must get this running script.
    sys.modules.setdefault("ack_latency", sys.modules[__name__])
    sys.exit(main())
