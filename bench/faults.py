"""Fault suite (issue 11): crashes and outages under steady load, then the customers' view.

It starts one Rasa server (trained model) and, per scenario, a fresh gateway on 127.0.0.1
(own SQLite file) with ack_latency.py's helpers, drives web-chat customers open-loop over
``POST /api/web/messages`` (each message with its own ``client_message_id``; a send that got no
202 is resent with the same id, as the widget does), breaks something, and afterwards reads
every customer's history and the gateway's SQLite event log:

* ``gateway-kill``: kill -9 of the gateway (its process group) at random moments, restarted
  each time; SLA timers with short targets run meanwhile,
* ``rasa-kill``: Rasa killed (SIGKILL) and restarted after ``--rasa-down`` seconds,
* ``postgres-redis``: the gateway on PostgreSQL and Redis of the scenario's own (initdb and
  redis-server on free ports; the machine's shared servers are never touched): PostgreSQL
  stopped (``pg_ctl stop -m immediate``) for ``--pg-down`` seconds, then Redis (SIGKILL) for
  ``--redis-down`` seconds; skipped when those binaries are missing,
* ``slow-rasa``: a local proxy in front of Rasa adds ``--slow-delay`` to every request,
* ``disk-full``: the SQLite file on a small tmpfs that is filled up, then freed,
* ``db-locked``: another process holds the SQLite write lock for ``--db-locked-seconds``
  (a long backup, a stuck job): messages are journaled and acked from memory meanwhile.

    .venv/bin/python bench/faults.py [--scenarios gateway-kill,rasa-kill,...] [--rate 10]
        [--kills 12] [--rasa-down 60] [--out docs/benchmarks.md]

Prints the table (scenario, messages, lost, duplicated, acked inside the window, max ack
latency) and writes it to its section of ``--out``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import math
import os
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
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import asyncpg
from ack_latency import (
    HOST,
    NO_LIMITS,
    RASA_NICE,
    ROOT,
    Gateway,
    Stack,
    build_workload,
    free_port,
    get_json,
    machine_facts,
    markdown,
    plain,
    rasa_version_installed,
    warm_up,
)
from aiohttp import web
from report import write_section

from bot.rasa_server import RasaServer, write_endpoints
from bot.settings import load_settings
from bot.training import model_path, rasa_executable, train

SCENARIOS = ("gateway-kill", "rasa-kill", "postgres-redis", "slow-rasa", "disk-full", "db-locked")
POST_TIMEOUT = aiohttp.ClientTimeout(total=10)
RESEND_EVERY = 0.5  # seconds between resends of a message that got no 202
REPEATS = 5  # accepted messages sent again after each gateway restart
CONNECTIONS = 50  # regular customers; each handoff message comes from a customer of its own
# Short calendar-time SLA targets, so warnings and breaches fire during the scenario.
SLA_CONFIG = """
[sla]
warn_fraction = 0.5
assignment_timeout = "0s"
on_breach = ["raise_priority"]

[[sla.policies]]
name = "fault-suite"
first_response = "{target}s"
next_response = "{target}s"
resolution = "1h"
business_hours = false
"""


# --- the customers ----------------------------------------------------------------------------


@dataclass
class Message:
    cmid: str
    customer: str
    text: str
    category: int
    attempts: int = 0
    window_start: float = math.nan  # wall time the promise runs from (see accept)
    ambiguous: float = math.nan  # first attempt that may have reached the gateway, no 202
    accepted: float = math.nan
    duplicate: bool = False  # the first 202 said duplicate: an earlier attempt stored it
    server_error: bool = False  # some attempt got a 5xx
    conversation: str | None = None
    journaled: bool = False  # the 202 said journaled: the database was away
    busy: bool = False
    refused: bool = False  # a 4xx other than 429: never resent
    repeats: list[bool] = field(default_factory=list)  # `duplicate` of 202s after the first


class WebCustomers:
    """The widget's sending side, for many customers: POST each message once, resend those
    without a 202 every ``RESEND_EVERY`` seconds with the same ``client_message_id``."""

    def __init__(self, session: aiohttp.ClientSession, url: str, messages: list[Message]) -> None:
        self.session = session
        self.url = url
        self.messages = messages
        self.sent: list[Message] = []
        self.errors: Counter[str] = Counter()
        self.sending = True
        self.unanswered_before_settle: list[Message] = []
        # A journaled first message names no conversation; the widget learns it over its
        # socket, this client by asking ``resolve(cmid)`` (the gateway's database, read-only).
        self.resolve: Callable[[str], Awaitable[str | None]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def post(self, m: Message) -> None:
        m.busy = True
        m.attempts += 1
        started = time.time()
        body = {"client_message_id": m.cmid, "text": m.text, "customer": {"id": m.customer}}
        try:
            async with self.session.post(
                f"{self.url}/api/web/messages", json=body, timeout=POST_TIMEOUT
            ) as response:
                raw = await response.read()
                if response.status == 202:
                    self.accept(m, started, json.loads(raw))
                    return
                self.errors[f"HTTP {response.status} {error_code(raw)}"] += 1
                if response.status >= 500:
                    m.server_error = True
                    if math.isnan(m.ambiguous):
                        m.ambiguous = started
                elif response.status != 429:
                    m.refused = True
        except aiohttp.ClientConnectorError:
            self.errors["connection refused"] += 1  # certainly never reached the gateway
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self.errors[f"cut off ({type(e).__name__})"] += 1
            if math.isnan(m.ambiguous):
                m.ambiguous = started
        finally:
            m.busy = False

    @staticmethod
    def accept(m: Message, started: float, data: dict[str, Any]) -> None:
        if not math.isnan(m.accepted):
            m.repeats.append(bool(data.get("duplicate")))
            return
        m.accepted = time.time()
        m.conversation = data["conversation_id"]
        m.journaled = bool(data.get("journaled"))
        m.duplicate = bool(data.get("duplicate"))
        # A duplicate was stored by an earlier attempt whose answer was lost: the promise
        # runs from that attempt.
        m.window_start = m.ambiguous if m.duplicate and not math.isnan(m.ambiguous) else started

    def spawn(self, m: Message) -> None:
        task = asyncio.create_task(self.post(m))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send(self, rate: float, stop: asyncio.Event) -> None:
        """Open loop: message i at t0 + i / rate, until ``stop`` or the list ends."""
        t0 = time.monotonic() + 0.2
        for i, m in enumerate(self.messages):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                break
            self.sent.append(m)
            self.spawn(m)
        self.sending = False

    async def resend(self, deadline: float) -> None:
        """Resend what got no 202 until all are accepted (after sending ends) or ``deadline``."""
        while time.monotonic() < deadline:
            waiting = [m for m in self.sent if math.isnan(m.accepted) and not m.refused]
            if not waiting and not self.sending:
                break
            for m in waiting:
                if not m.busy:
                    self.spawn(m)
            await asyncio.sleep(RESEND_EVERY)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=15)

    def repeat_recent(self, count: int) -> None:
        """Send the last ``count`` accepted messages again, as a widget whose 202s were lost."""
        for m in self.accepted[-count:]:
            if not m.busy:
                self.spawn(m)

    @property
    def accepted(self) -> list[Message]:
        return [m for m in self.sent if not math.isnan(m.accepted)]

    async def histories(self, only: set[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """Every conversation's frames as the customer reads them (``after=0``)."""
        for m in self.accepted:
            if m.conversation is None and self.resolve is not None:
                m.conversation = await self.resolve(m.cmid)
        owners = {m.conversation: m.customer for m in self.accepted if m.conversation}
        out: dict[str, list[dict[str, Any]]] = {}
        for conversation, customer in owners.items():
            if only is not None and conversation not in only:
                continue
            url = f"{self.url}/api/web/conversations/{conversation}/messages"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.session.get(
                    url, params={"customer_id": customer, "after": "0"}, timeout=POST_TIMEOUT
                ) as response:
                    if response.status == 200:
                        out[conversation] = (await response.json())["messages"]
        return out

    async def wait_answered(self, timeout: float) -> dict[str, list[dict[str, Any]]]:
        """Poll the histories until every accepted message has an answer, or ``timeout``."""
        deadline = time.monotonic() + timeout
        frames = await self.histories()
        while time.monotonic() < deadline:
            waiting = {m.conversation for m in unanswered(self.accepted, frames) if m.conversation}
            if not waiting:
                break
            await asyncio.sleep(1.0)
            frames.update(await self.histories(waiting))
        return frames


def error_code(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "(no JSON error)"


def messages_for(rate: float, seconds: float, tag: str, seed: int) -> list[Message]:
    workload = build_workload(rate, seconds, CONNECTIONS, tag, seed, ROOT / "kb" / "articles")
    return [
        Message(f"{tag}-{i}", workload.conversations[i], workload.texts[i], int(category))
        for i, category in enumerate(workload.categories)
    ]


# --- judging ----------------------------------------------------------------------------------


def replies_by_message(frames: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    out: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for conversation in frames.values():
        for frame in conversation:
            if frame.get("type") in ("ack", "answer") and frame.get("in_reply_to"):
                out[frame["in_reply_to"]].append(frame)
    return out


def is_answer(frame: dict[str, Any]) -> bool:
    return frame["type"] == "answer" or frame.get("kind") in ("solution", "plan")


def unanswered(messages: list[Message], frames: dict[str, list[dict[str, Any]]]) -> list[Message]:
    replies = replies_by_message(frames)
    return [m for m in messages if not any(is_answer(f) for f in replies.get(m.cmid, []))]


def duplicated(replies: list[dict[str, Any]]) -> bool:
    """Two acks of one kind, or the same reply (type, kind, text) twice, to one message. (A
    receipt then a plan is not a duplicate: Rasa decided the handoff after the receipt.)"""
    acks = Counter(f.get("kind") for f in replies if f["type"] == "ack")
    same = Counter((f["type"], f.get("kind"), f["text"]) for f in replies)
    return any(n > 1 for n in acks.values()) or any(n > 1 for n in same.values())


@dataclass
class Row:
    scenario: str
    sent: int = 0
    accepted: int = 0
    lost: int | None = None
    duplicated: int | None = None
    in_window: int = 0
    max_ack_ms: float = math.nan
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: bool = False

    @property
    def passed(self) -> bool | None:
        return None if self.skipped else not self.failures


def judge(
    row: Row,
    customers: WebCustomers,
    frames: dict[str, list[dict[str, Any]]],
    window: float,
    window_required: bool = True,
) -> list[Message]:
    """Fill in lost, duplicated and the ack figures; returns the messages never answered."""
    accepted = customers.accepted
    replies = replies_by_message(frames)
    row.sent, row.accepted = len(customers.sent), len(accepted)
    lost = unanswered(accepted, frames)
    row.lost = len(lost)
    row.duplicated = sum(duplicated(replies.get(m.cmid, [])) for m in accepted)
    latencies = []
    for m in accepted:
        acks = [f for f in replies.get(m.cmid, []) if f["type"] == "ack"]
        if acks:
            at = datetime.fromisoformat(acks[0]["created_at"]).timestamp()
            latencies.append(max(at - m.window_start, 0.0))
        else:
            latencies.append(math.inf)
    row.in_window = sum(v <= window for v in latencies)
    row.max_ack_ms = max(latencies, default=math.nan) * 1000
    if lost:
        row.failures.append(f"{len(lost)} accepted messages never answered")
    if row.duplicated:
        row.failures.append(f"{row.duplicated} messages with duplicated replies")
    if window_required and row.in_window < row.accepted:
        row.failures.append(f"{row.accepted - row.in_window} acks outside {window:g} s")
    if customers.errors:
        row.notes.append(
            "client saw: " + ", ".join(f"{k} ×{v}" for k, v in sorted(customers.errors.items()))
        )
    return lost


# The store checks' queries, the same on SQLite and PostgreSQL.
STORED_SQL = "SELECT client_message_id FROM messages WHERE direction = 'in' AND channel = 'web'"
ACKS_SQL = (
    "SELECT conversation_id, in_reply_to, kind FROM messages "
    "WHERE direction = 'out' AND type = 'ack'"
)
ACKED_TWICE_SQL = (
    "SELECT COUNT(*) FROM (SELECT message_id FROM events WHERE type = 'acked' "
    "GROUP BY message_id HAVING COUNT(*) > 1) AS twice"
)
OPEN_SQL = (
    "SELECT COUNT(*) FROM messages WHERE direction = 'in' AND channel = 'web' AND status != 'done'"
)
NOT_CHECKED = "not checked (PostgreSQL)"


@dataclass
class StoreFacts:
    integrity: str
    stored: Counter[str]  # inbound web rows per client_message_id
    acks: Counter[tuple[Any, ...]]  # ack rows per (conversation, in_reply_to, kind)
    acked_twice: int  # messages with more than one `acked` event
    open_rows: int  # inbound web rows not done
    sla: SLACheck | None = None


def store_checks(row: Row, database: Path, customers: WebCustomers, sla_due_by: float) -> None:
    """The gateway's SQLite file after it stopped: every accepted message stored once, one
    ack each, answered; the event log's acks once; integrity; SLA timers fired once."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        facts = StoreFacts(
            integrity=db.execute("PRAGMA integrity_check").fetchone()[0],
            stored=Counter(cmid for (cmid,) in db.execute(STORED_SQL)),
            acks=Counter(tuple(r) for r in db.execute(ACKS_SQL)),
            acked_twice=db.execute(ACKED_TWICE_SQL).fetchone()[0],
            open_rows=db.execute(OPEN_SQL).fetchone()[0],
            sla=sla_counts(db, sla_due_by),
        )
    finally:
        db.close()
    judge_store(row, facts, customers)


async def pg_store_checks(row: Row, url: str, customers: WebCustomers) -> None:
    """``store_checks`` on the gateway's PostgreSQL database (after the gateway stopped)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        facts = StoreFacts(
            integrity=NOT_CHECKED,
            stored=Counter(r[0] for r in await conn.fetch(STORED_SQL)),
            acks=Counter(tuple(r) for r in await conn.fetch(ACKS_SQL)),
            acked_twice=await conn.fetchval(ACKED_TWICE_SQL),
            open_rows=await conn.fetchval(OPEN_SQL),
        )
    finally:
        await conn.close()
    judge_store(row, facts, customers)


def judge_store(row: Row, facts: StoreFacts, customers: WebCustomers) -> None:
    accepted = {m.cmid for m in customers.accepted}
    missing = len(accepted - set(facts.stored))
    twice = sum(1 for n in facts.stored.values() if n > 1)
    ack_twice = sum(1 for n in facts.acks.values() if n > 1)
    row.notes.append(
        f"store: integrity {facts.integrity}, {len(facts.stored)} inbound rows, accepted but "
        f"not stored {missing}, stored twice {twice}, two acks of one kind stored {ack_twice}, "
        f"`acked` logged twice {facts.acked_twice}, unanswered rows {facts.open_rows}"
    )
    if facts.integrity not in ("ok", NOT_CHECKED):
        row.failures.append(f"integrity_check: {facts.integrity}")
    if missing or twice or ack_twice or facts.acked_twice:
        row.failures.append("the store lost or doubled messages, acks or events")
    if facts.open_rows:
        row.failures.append(
            f"{facts.open_rows} messages left unanswered in the store after the wait (the next "
            "start answers them again)"
        )
    if facts.sla is not None:
        row.notes.append(facts.sla.text)
        if not facts.sla.ok:
            row.failures.append("SLA timers: " + facts.sla.text)


@dataclass
class SLACheck:
    text: str
    ok: bool


def sla_counts(db: sqlite3.Connection, due_by: float) -> SLACheck | None:
    """Each ticket's first-response warning and breach: fired exactly once if due by now."""
    tickets = db.execute("SELECT id, created_at, first_response_due FROM tickets").fetchall()
    if not tickets or not math.isfinite(due_by):
        return None
    fired = Counter(
        (ticket, timer)
        for ticket, timer in db.execute(
            "SELECT ticket_id, json_extract(data, '$.timer') FROM events "
            "WHERE type IN ('sla_warning', 'sla_breach')"
        )
    )
    expected = wrong = 0
    for ticket, created, due in tickets:
        breach_at = datetime.fromisoformat(due).timestamp()
        start = datetime.fromisoformat(created).timestamp()
        warn_at = breach_at - 0.5 * (breach_at - start)
        for timer, at in (
            ("first_response:warning", warn_at),
            ("first_response:breach", breach_at),
        ):
            if at <= due_by:
                expected += 1
                wrong += fired[(ticket, timer)] != 1
    extra = sum(n for (_, t), n in fired.items() if not t.startswith("first_response:"))
    text = (
        f"SLA: {len(tickets)} tickets, {expected} first-response warnings and breaches due, "
        f"{expected - wrong} fired exactly once, {wrong} not; {extra} other timers fired"
    )
    return SLACheck(text, wrong == 0)


# --- the parts: Rasa, gateways, the slow proxy, the small disk --------------------------------


class Suite:
    """One Rasa server for the whole run; a fresh gateway per scenario on one fixed port (the
    port Rasa's action endpoint calls)."""

    def __init__(
        self, tmp: Path, redis_url: str | None = None, redis_prefix: str = "promptly:"
    ) -> None:
        self.tmp = tmp
        self.token = secrets.token_urlsafe(24)
        settings = load_settings(ROOT / "promptly.toml", env={})
        model = model_path(settings)
        if not model.exists():
            print(f"training the Rasa model {model.name} first", flush=True)
            train(settings)
        self.gateway_port = free_port()
        self.rasa_port = free_port()
        endpoints = write_endpoints(  # with redis_url, Rasa's lock and tracker stores in Redis
            tmp / "endpoints.yml",
            f"http://{HOST}:{self.gateway_port}/actions/webhook",
            self.token,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
        )
        self.rasa = RasaServer(
            rasa_executable(settings),
            model,
            endpoints,
            self.rasa_port,
            tmp / "rasa.log",
            ROOT,
            nice=RASA_NICE,
        )
        self.rasa_url = f"http://{HOST}:{self.rasa_port}"

    def start_rasa(self, timeout: float = 300) -> float:
        started = time.monotonic()
        self.rasa.start()
        self.rasa.wait_ready(timeout)
        return time.monotonic() - started

    @contextlib.contextmanager
    def gateway(
        self,
        name: str,
        config: str = "",
        rasa_port: int | None = None,
        database: Path | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        limits: str = NO_LIMITS,
    ) -> Iterator[Gateway]:
        """A gateway on the port Rasa's action endpoint calls, or on ``port`` (another)."""
        gateway = Gateway(
            self.tmp / name,
            self.tmp / "kb-index",
            rasa_port or self.rasa_port,
            self.token,
            config,
            env=env,
            port=port or self.gateway_port,
            database=database,
            limits=limits,
        )
        try:
            gateway.wait_ready(timeout=300)
            yield gateway
        finally:
            gateway.stop()

    def stack(self, gateway: Gateway) -> Stack:
        return Stack(gateway.url, self.rasa_url, gateway, self.rasa)

    def close(self) -> None:
        self.rasa.stop()


class SlowProxy:
    """An aiohttp reverse proxy to Rasa that holds every request ``delay`` seconds first."""

    def __init__(self, target: str, delay: float) -> None:
        self.target = target
        self.delay = delay
        self.port = free_port()
        self.forwarded = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=2**20)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self.port).start()

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        await asyncio.sleep(self.delay)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self._session.request(
            request.method,
            self.target + request.path_qs,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=60),
        ) as upstream:
            payload = await upstream.read()
            self.forwarded += 1
            kept = {"Content-Type": upstream.headers.get("Content-Type", "application/json")}
            return web.Response(status=upstream.status, body=payload, headers=kept)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[bool]:
    """A tmpfs of ``megabytes`` at ``path``; yields False (and mounts nothing) if mounting
    is not possible here (not root, no mount command, a container without the capability)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        yield False
        return
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(path: Path) -> int:
    """Write ``path`` until the file system is full; returns the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
            block = b"\0" * chunk
            for _ in range(100_000):  # bounded: 100 GB at most per chunk size
                try:
                    written += f.write(block) or 0
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return written


# --- a PostgreSQL and a Redis of the scenario's own -------------------------------------------


def pg_binaries() -> tuple[str, str] | None:
    """initdb and pg_ctl: the newest /usr/lib/postgresql/<version>/bin, else on the PATH."""
    folders = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in folders:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return str(folder / "initdb"), str(folder / "pg_ctl")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return (initdb, pg_ctl) if initdb and pg_ctl else None


def missing_servers() -> list[str]:
    """What the postgres-redis scenario needs and this machine lacks."""
    missing = [] if pg_binaries() else ["initdb/pg_ctl (PostgreSQL server)"]
    return missing + ([] if shutil.which("redis-server") else ["redis-server"])


class PrivatePostgres:
    """A PostgreSQL cluster of the scenario's own: ``initdb`` (trust authentication), a free
    port on 127.0.0.1 and its socket in its own folder. ``crash`` is ``pg_ctl stop -m
    immediate`` (no shutdown checkpoint, every connection cut, crash recovery at the next
    start); ``start`` brings it back on the same port and data.

    initdb refuses to run as root: as root the cluster runs as the ``postgres`` account, in a
    folder of that account's own outside the suite's (private) temporary folder; its log is
    copied into ``log_dir`` at the end."""

    def __init__(self, log_dir: Path) -> None:
        binaries = pg_binaries()
        if binaries is None:
            raise RuntimeError("no initdb/pg_ctl")
        initdb, self.pg_ctl = binaries
        self.log_dir = log_dir
        self.user = "postgres" if os.geteuid() == 0 else None
        self.folder = Path(tempfile.mkdtemp(prefix="promptly-faults-pg-"))
        if self.user is not None:
            shutil.chown(self.folder, self.user)
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@{HOST}:{self.port}/postgres"
        self.running = False
        self._run(
            [initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust"]
            + ["--encoding=UTF8", "--no-locale", "--no-sync"]
        )

    def _run(self, command: list[str], timeout: float = 120) -> None:
        done = subprocess.run(
            command,
            cwd=self.folder,
            user=self.user,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,  # not in our process group: close() stops it
        )
        if done.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)}: {done.stderr.strip() or done.stdout}")

    def start(self) -> None:
        server = f"-p {self.port} -k {self.folder} -c listen_addresses={HOST}"
        self._run(
            [self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60"]
            + ["-o", server, "start"]
        )
        self.running = True

    def crash(self) -> None:
        self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        self.running = False

    def close(self) -> None:
        try:
            if self.running:
                self.crash()
        finally:
            with contextlib.suppress(OSError):
                shutil.copy2(self.log, self.log_dir / "postgres.log")
            shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    """A redis-server of the scenario's own on a free port, nothing persisted; ``kill`` is
    SIGKILL, ``start`` brings it back (empty) on the same port."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("no redis-server")
        self.binary = binary
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", HOST, "--save", ""]
                + ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.folder)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; log {self.folder / 'redis.log'}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()
            self.process = None


def late_acks(
    customers: WebCustomers, frames: dict[str, list[dict[str, Any]]], window: float
) -> list[tuple[Message, float]]:
    """The accepted messages acked after ``window`` (as ``judge`` counts), with the delay."""
    replies = replies_by_message(frames)
    out = []
    for m in customers.accepted:
        acks = [f for f in replies.get(m.cmid, []) if f["type"] == "ack"]
        at = datetime.fromisoformat(acks[0]["created_at"]).timestamp() if acks else math.inf
        if at - m.window_start > window:
            out.append((m, at - m.window_start))
    return out


def tracebacks(log: Path, since: float) -> tuple[int, int]:
    """Tracebacks in a gateway's log: in all, and logged after ``since`` (wall time)."""
    total = late = 0
    at = -math.inf
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            # The logging module writes local time.
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()
        if line.startswith("Traceback"):
            total += 1
            late += at > since
    return total, late


async def pg_conversation_of(url: str, cmid: str) -> str | None:
    with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
        conn = await asyncpg.connect(url, timeout=5)
        try:
            value = await conn.fetchval(
                "SELECT conversation_id FROM messages "
                "WHERE client_message_id = $1 AND direction = 'in'",
                cmid,
            )
        finally:
            await conn.close()
        return None if value is None else str(value)
    return None


async def health(url: str) -> dict[str, Any]:
    """The gateway's /health (``{"error": …}`` if it did not answer)."""
    try:
        body = await asyncio.to_thread(get_json, f"{url}/health", 5)
    except (OSError, ValueError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return body if isinstance(body, dict) else {"error": repr(body)}


async def database_up_after(url: str, timeout: float) -> float:
    """Seconds until /health says the database is up (journal replayed), or NaN."""
    return await _health_after(url, timeout, lambda h: h.get("components", {}).get("database"))


async def healthy_after(url: str, timeout: float) -> float:
    """Seconds until /health says every component is up again, or NaN."""
    return await _health_after(url, timeout, lambda h: "up" if h.get("status") == "ok" else None)


async def _health_after(url: str, timeout: float, state: Any) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if state(await health(url)) == "up":
            return time.monotonic() - began
        await asyncio.sleep(0.5)
    return math.nan


# --- scenarios --------------------------------------------------------------------------------


@dataclass
class Options:
    rate: float = 10.0
    window: float = 2.0
    grace: float = 90.0  # bounded wait for answers after the load, seconds
    seed: int = 1
    kills: int = 20
    kill_gap: tuple[float, float] = (3.0, 8.0)
    sla_target: float = 20.0
    rasa_down: float = 60.0
    before: float = 10.0  # load before a fault, seconds
    after: float = 10.0  # load after a fault ends, seconds
    slow_delay: float = 5.0
    slow_seconds: float = 30.0
    disk_mb: int = 24
    disk_full_seconds: float = 15.0
    db_locked_seconds: float = 10.0
    pg_down: float = 10.0
    redis_down: float = 10.0


def tag_for(scenario: str) -> str:
    return f"f{secrets.token_hex(3)}-{scenario}"


async def with_load(
    url: str,
    options: Options,
    seconds: float,
    scenario: str,
    fault: Callable[[WebCustomers], Awaitable[None]],
    linger: float = 0.0,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> tuple[WebCustomers, dict[str, list[dict[str, Any]]], float]:
    """Load at ``options.rate`` while ``fault()`` runs (an async script), then resend what is
    left, wait for answers, run ``settle()`` and wait ``linger`` seconds more (SLA timers);
    returns the customers, their histories and the end time."""
    messages = messages_for(options.rate, seconds, tag_for(scenario), options.seed)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        customers = WebCustomers(session, url, messages)
        stop = asyncio.Event()
        sender = asyncio.create_task(customers.send(options.rate, stop))
        resender = asyncio.create_task(customers.resend(time.monotonic() + seconds + 120))
        try:
            await fault(customers)
        finally:
            stop.set()
            await sender
        await resender
        frames = await customers.wait_answered(options.grace)
        if settle is not None:
            customers.unanswered_before_settle = unanswered(customers.accepted, frames)
            await settle()
        if linger > 0 or settle is not None:
            await asyncio.sleep(linger)
            frames.update(await customers.histories())
        return customers, frames, time.time()


async def gateway_kill(suite: Suite, options: Options) -> Row:
    row = Row("gateway-kill")
    config = SLA_CONFIG.format(target=f"{options.sla_target:g}")
    rng = random.Random(options.seed)
    with suite.gateway("gateway-kill", config) as gateway:
        await warm_up("up", suite.stack(gateway), "gk")
        restarts: list[float] = []

        async def kills(customers: WebCustomers) -> None:
            for _ in range(options.kills):
                await asyncio.sleep(rng.uniform(*options.kill_gap))
                gateway.kill()
                began = time.monotonic()
                gateway.process = gateway.launch()
                await asyncio.to_thread(gateway.wait_ready, 300)
                restarts.append(time.monotonic() - began)
                customers.repeat_recent(REPEATS)
            await asyncio.sleep(options.after)

        longest = options.kills * (options.kill_gap[1] + 60) + options.after
        # The SLA timers of the last tickets fall due up to one target after the load.
        customers, frames, end = await with_load(
            gateway.url, options, longest, row.scenario, kills, linger=options.sla_target + 3
        )
        judge(row, customers, frames, options.window, window_required=False)
        due_by = end - 2
        row.notes.append(
            f"{len(restarts)} kill -9 + restarts, back up in "
            f"{min(restarts, default=0):.1f}–{max(restarts, default=0):.1f} s; "
            f"{sum(m.duplicate for m in customers.accepted)} messages accepted only on a resend "
            "after an earlier attempt had stored them (202 duplicate)"
        )
        repeats = [d for m in customers.accepted for d in m.repeats]
        row.notes.append(
            f"{len(repeats)} re-sends of already accepted messages after the restarts (a "
            f"widget whose 202 was lost), {sum(repeats)} answered 202 duplicate"
        )
        if not all(repeats):
            row.failures.append("a re-sent accepted message was not recognised as a duplicate")
        row.notes.append(
            f"{row.accepted - row.in_window} acks outside the window: messages in flight at a "
            "kill are acked after the restart (not a guarantee of this scenario)"
        )
    store_checks(row, gateway.database, customers, due_by)
    if len(restarts) < options.kills:
        row.failures.append(f"only {len(restarts)} of {options.kills} restarts")
    return row


async def rasa_kill(suite: Suite, options: Options) -> Row:
    row = Row("rasa-kill")
    with suite.gateway("rasa-kill") as gateway:
        await warm_up("up", suite.stack(gateway), "rk")
        outage: list[float] = []

        async def fault(customers: WebCustomers) -> None:
            await asyncio.sleep(options.before)
            suite.rasa.kill()
            began = time.monotonic()
            await asyncio.sleep(options.rasa_down)
            await asyncio.to_thread(suite.start_rasa)
            outage.append(time.monotonic() - began)
            await asyncio.sleep(options.after)

        seconds = options.before + options.rasa_down + 300 + options.after
        customers, frames, _ = await with_load(gateway.url, options, seconds, row.scenario, fault)
        judge(row, customers, frames, options.window)
        row.notes.append(
            f"Rasa killed for {options.rasa_down:g} s, then restarted: unavailable "
            f"{outage[0] if outage else math.nan:.0f} s in all"
        )
    store_checks(row, gateway.database, customers, math.nan)
    return row


# The rate limits checked in Redis (far above what the load sends, so none refuses it): with
# Redis away each check falls back to this process's own window (`[scale] redis_timeout`).
SCALE_LIMITS = """requests_per_address = 100000
webhooks_per_address = 0
messages_per_sender = 10000
messages_per_socket = 0
sockets_per_address = 0"""
SCALE_CONFIG = """
[scale]
redis_url = "{url}"
redis_prefix = "faults:"
"""


async def postgres_redis(suite: Suite, options: Options) -> Row:
    row = Row("postgres-redis")
    if missing := missing_servers():
        row.skipped = True
        row.notes.append(
            f"SKIPPED: no {' and no '.join(missing)} on this machine (the scenario starts a "
            "PostgreSQL and a Redis of its own, never the shared ones)"
        )
        return row
    folder = suite.tmp / "postgres-redis"
    folder.mkdir(parents=True, exist_ok=True)
    pg = PrivatePostgres(folder)
    redis = PrivateRedis(folder)
    try:
        pg.start()
        redis.start()
        env = {"PROMPTLY_DATABASE_URL": pg.url}
        config = SCALE_CONFIG.format(url=redis.url)
        with suite.gateway("postgres-redis", config, env=env, limits=SCALE_LIMITS) as gateway:
            await warm_up("up", suite.stack(gateway), "pr")
            seen: dict[str, Any] = {}

            async def outage(
                name: str, down: float, stop: Callable[[], None], start: Callable[[], None]
            ) -> None:
                began = time.monotonic()
                seen[f"{name} stopped at"] = time.time()
                await asyncio.to_thread(stop)
                seen[f"{name} down at"] = time.time()
                await asyncio.sleep(min(3.0, down / 2))
                seen[f"{name} health"] = await health(gateway.url)
                await asyncio.sleep(max(began + down - time.monotonic(), 0.0))
                await asyncio.to_thread(start)
                seen[f"{name} down"] = time.monotonic() - began

            async def fault(customers: WebCustomers) -> None:
                customers.resolve = lambda cmid: pg_conversation_of(pg.url, cmid)
                await asyncio.sleep(options.before)
                await outage("postgres", options.pg_down, pg.crash, pg.start)
                seen["replayed in"] = await database_up_after(gateway.url, 60)
                seen["database up at"] = time.time()
                await asyncio.sleep(options.after)
                await outage("redis", options.redis_down, redis.kill, redis.start)
                # The gateway resubscribes to Redis with a backoff (up to 5 s): /health says
                # redis down until it has.
                seen["healthy in"] = await healthy_after(gateway.url, 30)
                await asyncio.sleep(options.after)
                seen["health after"] = await health(gateway.url)

            seconds = options.before + options.pg_down + options.redis_down + 2 * options.after
            customers, frames, _ = await with_load(
                gateway.url, options, seconds + 60, row.scenario, fault
            )
            judge(row, customers, frames, options.window)
            journaled = [m for m in customers.accepted if m.journaled]
            refused = [m for m in customers.sent if m.server_error]
            during = {
                name: seen.get(f"{name} health", {}).get("components", {}).get("database")
                for name in ("postgres", "redis")
            }
            row.notes.append(
                f"PostgreSQL stopped (`pg_ctl stop -m immediate`) for "
                f"{seen.get('postgres down', math.nan):.1f} s until it took connections again: "
                f"{len(journaled)} messages journaled and acked from memory, /health said "
                f"database {during['postgres']} during it and up "
                f"{seen.get('replayed in', math.nan):.1f} s after the restart (journal "
                f"replayed); Redis killed (SIGKILL) for {seen.get('redis down', math.nan):.1f} s "
                f"(restarted empty), /health said database {during['redis']} meanwhile and "
                f"all up {seen.get('healthy in', math.nan):.1f} s after its restart; "
                f"{len(refused)} messages got a 5xx at least once"
            )
            if late := late_acks(customers, frames, options.window):
                stopped = seen.get("postgres stopped at", math.nan)
                row.notes.append(
                    "acked late: "
                    + ", ".join(
                        f"{m.cmid} ({'journaled' if m.journaled else 'stored'}, sent "
                        f"{m.window_start - stopped:+.1f} s from PostgreSQL's stop, acked "
                        f"{latency:.1f} s later)"
                        for m, latency in late[:5]
                    )
                )
            if not journaled:
                row.failures.append("no message was journaled: the PostgreSQL outage did not bite")
            if during["postgres"] != "down":
                row.failures.append(
                    f"/health during the PostgreSQL outage: {seen.get('postgres health')}"
                )
            if refused:
                row.failures.append(f"{len(refused)} messages refused (5xx)")
            if seen.get("health after", {}).get("status") != "ok":
                row.failures.append(f"/health after both outages: {seen.get('health after')}")
            left = gateway.config.parent.glob("var/journal*.jsonl*")
            if leftover := [p.name for p in left]:
                row.failures.append(f"journal not emptied after recovery: {leftover}")
            total, late = tracebacks(gateway.log, seen.get("database up at", math.inf))
            row.notes.append(
                f"{total} tracebacks in the gateway's log, {late} of them after /health said "
                "the database was up again"
            )
        await pg_store_checks(row, pg.url, customers)
    finally:
        redis.kill()
        pg.close()
    return row


async def slow_rasa(suite: Suite, options: Options) -> Row:
    row = Row("slow-rasa")
    proxy = SlowProxy(suite.rasa_url, 0.0)
    await proxy.start()
    try:
        with suite.gateway("slow-rasa", rasa_port=proxy.port) as gateway:
            await warm_up("up", suite.stack(gateway), "sr")

            async def fault(customers: WebCustomers) -> None:
                proxy.delay = options.slow_delay
                await asyncio.sleep(options.slow_seconds)
                proxy.delay = 0.0  # Rasa's normal speed again, so the backlog drains

            customers, frames, _ = await with_load(
                gateway.url, options, options.slow_seconds, row.scenario, fault
            )
            judge(row, customers, frames, options.window)
            row.notes.append(
                f"{options.slow_delay:g} s added to every Rasa request for "
                f"{options.slow_seconds:g} s (then removed so the backlog drains); "
                f"{proxy.forwarded} requests forwarded"
            )
        store_checks(row, gateway.database, customers, math.nan)
    finally:
        await proxy.close()
    return row


async def disk_full(suite: Suite, options: Options) -> Row:
    row = Row("disk-full")
    mount = suite.tmp / "small-disk"
    with small_disk(mount, options.disk_mb) as mounted:
        if not mounted:
            row.skipped = True
            row.notes.append(
                "SKIPPED: could not mount a tmpfs (needs root and the mount capability)"
            )
            return row
        database = mount / "promptly.db"
        filler = mount / "filler"
        with suite.gateway("disk-full", database=database) as gateway:
            await warm_up("up", suite.stack(gateway), "df")
            seen: dict[str, Any] = {}

            async def fault(customers: WebCustomers) -> None:
                # Messages journaled while the disk is full name no conversation yet.
                customers.resolve = lambda cmid: asyncio.to_thread(conversation_of, database, cmid)
                await asyncio.sleep(options.before)
                seen["filled"] = await asyncio.to_thread(fill, filler)
                seen["full_at"] = time.time()
                await asyncio.sleep(options.disk_full_seconds)
                filler.unlink()
                seen["freed_at"] = time.time()
                await asyncio.sleep(options.after)
                seen["alive"] = gateway.process.poll() is None

            async def restart() -> None:
                """A plain restart once space is back (a deploy): what did the full disk leave
                in the inbox for the start-up resume?"""
                await asyncio.to_thread(gateway.stop)
                gateway.process = gateway.launch()
                await asyncio.to_thread(gateway.wait_ready, 300)

            seconds = options.before + options.disk_full_seconds + options.after + 60
            customers, frames, _ = await with_load(
                gateway.url, options, seconds, row.scenario, fault, linger=5, settle=restart
            )
            judge(row, customers, frames, options.window, window_required=False)
            refused = [m for m in customers.sent if m.server_error]
            half = [m for m in refused if m.duplicate]
            row.notes.append(
                f"{options.disk_mb} MB tmpfs filled ({seen['filled'] / 2**20:.1f} MB of filler) "
                f"for {options.disk_full_seconds:g} s: {len(refused)} messages got a 5xx at least "
                f"once, {len(half)} of them had been stored anyway (202 duplicate on the "
                "resend); after the answers the gateway was restarted once and the histories "
                "read again"
            )
            if half:
                row.failures.append(f"{len(half)} messages stored despite a 5xx")
            if left := customers.unanswered_before_settle:
                row.failures.append(
                    f"{len(left)} accepted messages still had no answer {options.grace:g} s "
                    "after space returned, and got one only from the restart's resume ("
                    + ", ".join(f"{m.cmid} {m.text!r}" for m in left[:3])
                    + ")"
                )
            if not seen.get("alive"):
                row.failures.append("the gateway exited")
            if seen.get("alive"):
                row.notes.append("the gateway kept running while the disk was full")
        store_checks(row, database, customers, math.nan)
        for part in mount.glob("promptly.db*"):  # kept for --keep: the tmpfs goes away
            shutil.copy2(part, suite.tmp / "disk-full" / part.name)
    return row


@contextlib.contextmanager
def write_lock(database: Path) -> Iterator[sqlite3.Connection]:
    """Hold the database's write lock (what a long backup or a stuck process does)."""
    db = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield db
        db.execute("ROLLBACK")
    finally:
        db.close()


def conversation_of(database: Path, cmid: str) -> str | None:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT conversation_id FROM messages WHERE client_message_id = ? AND direction = 'in'",
            (cmid,),
        ).fetchone()
    return None if row is None else str(row[0])


async def db_locked(suite: Suite, options: Options) -> Row:
    row = Row("db-locked")
    with suite.gateway("db-locked") as gateway:
        await warm_up("up", suite.stack(gateway), "dl")
        held: list[float] = []

        async def fault(customers: WebCustomers) -> None:
            customers.resolve = lambda cmid: asyncio.to_thread(
                conversation_of, gateway.database, cmid
            )
            await asyncio.sleep(options.before)
            lock = write_lock(gateway.database)
            await asyncio.to_thread(lock.__enter__)
            began = time.monotonic()
            try:
                await asyncio.sleep(options.db_locked_seconds)
            finally:
                await asyncio.to_thread(lock.__exit__, None, None, None)
            held.append(time.monotonic() - began)
            await asyncio.sleep(options.after)

        seconds = options.before + options.db_locked_seconds + options.after + 60
        customers, frames, _ = await with_load(gateway.url, options, seconds, row.scenario, fault)
        judge(row, customers, frames, options.window)
        journaled = [m for m in customers.accepted if m.journaled]
        refused = [m for m in customers.sent if m.server_error]
        row.notes.append(
            f"write lock held {held[0] if held else math.nan:.1f} s by another process: "
            f"{len(journaled)} messages journaled and acked from memory, {len(refused)} got "
            "a 5xx at least once"
        )
        if not journaled:
            row.failures.append("no message was journaled: the lock did not bite")
        if refused:
            row.failures.append(f"{len(refused)} messages refused while the journal was there")
        left = Path(gateway.database).parent.glob("var/journal.jsonl*")
        if leftover := [p.name for p in left]:
            row.failures.append(f"journal not emptied after recovery: {leftover}")
    store_checks(row, gateway.database, customers, math.nan)
    return row


# --- report -----------------------------------------------------------------------------------


def ms(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "∞ (some never acked)" if math.isinf(value) else f"{value:,.0f}"


def table(rows: list[Row], window: float) -> list[list[str]]:
    out = [
        [
            "scenario",
            "messages (accepted/sent)",
            "lost",
            "duplicated",
            f"acked inside {window:g} s",
            "max ack latency ms",
            "result",
        ]
    ]
    for r in rows:
        if r.skipped:
            out.append([r.scenario, "–", "–", "–", "–", "–", "SKIPPED"])
            continue
        share = f"{100 * r.in_window / r.accepted:.2f} %" if r.accepted else "n/a"
        out.append(
            [
                r.scenario,
                f"{r.accepted}/{r.sent}",
                str(r.lost),
                str(r.duplicated),
                f"{share} ({r.in_window}/{r.accepted})",
                ms(r.max_ack_ms),
                "PASS" if r.passed else "FAIL",
            ]
        )
    return out


def notes_text(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        parts = [n for n in r.notes if n] + [f"**failed**: {f}" for f in r.failures]
        lines.append(f"- `{r.scenario}`: " + "; ".join(parts) + ".")
    return lines


def method(options: Options) -> str:
    return (
        f"One Rasa server (the trained model, `nice -n {RASA_NICE}`) for the whole run and a "
        "fresh gateway (`python -m bot gateway`, own SQLite file, default settings: 2 s web "
        "window) per scenario, all on 127.0.0.1. Customers are the web channel: message *i* "
        f"of the ack-latency mix is POSTed to `/api/web/messages` at t0 + *i*/{options.rate:g} "
        f"s (open loop, {CONNECTIONS} customers plus one per handoff message), each with its "
        "own `client_message_id`; a send that got no 202 (refused, cut off, 5xx, 429) is "
        f"resent with the same id every {RESEND_EVERY:g} s, as the widget does. *Accepted* = "
        "got a 202. Afterwards every conversation's history (`GET …/messages?after=0`, what "
        f"the widget replays) is polled for up to {options.grace:g} s. *Lost* = accepted and "
        "no answer (an `ack` of kind solution or plan, or an `answer` frame). *Duplicated* = "
        "two acks of the same kind, or the same reply twice, to one message (a receipt and "
        "then a plan is not: Rasa decided the handoff after the receipt). *Ack latency* = "
        "the ack's stored `created_at` (the gateway's clock; same machine) minus the start "
        "of the POST that stored the message (for a 202 `duplicate`, of the earlier attempt "
        "cut off without an answer). Then the gateway is stopped and its SQLite file "
        "checked: `PRAGMA integrity_check`, every accepted message stored once, one ack row "
        "of each kind and one `acked` event per message, and for gateway-kill each ticket's "
        "first-response `sla_warning`/`sla_breach` fired exactly once when due.\n\n"
        f"Scaled down from the issue to fit ~15 minutes on 2 cores: {options.rate:g} msg/s, "
        "not 200 (Rasa answers about 25 msg/s here, so at 200 msg/s no backlog could drain "
        f"within a bounded wait); {options.kills} gateway kills (the issue: 20; each restart "
        f"takes about 8 s here). Rasa killed for {options.rasa_down:g} s (the issue: 60 s), then "
        "restarted (and still down while it starts). SLA targets: first response "
        f"{options.sla_target:g} s of calendar time, warning at half. Slow Rasa: "
        f"+{options.slow_delay:g} s per request for {options.slow_seconds:g} s. Disk full: "
        f"the SQLite file on a {options.disk_mb} MB tmpfs filled with a file for "
        f"{options.disk_full_seconds:g} s, then freed (the journal is on the normal disk). "
        f"Database locked: another process holds SQLite's write lock (`BEGIN IMMEDIATE`) for "
        f"{options.db_locked_seconds:g} s; messages that name no conversation yet are matched "
        "to theirs by `client_message_id` in the gateway's database afterwards (the widget "
        "learns it over its socket). PostgreSQL and Redis: the gateway runs on a PostgreSQL "
        "cluster (`initdb`, trust, own port) and a `redis-server` (`--save '' --appendonly "
        "no`, own port) the scenario starts for itself, never the machine's shared ones "
        "(`PROMPTLY_DATABASE_URL`, `[scale] redis_url`, the rate limits on and checked in "
        "Redis, set far above the load); PostgreSQL is stopped with `pg_ctl stop -m "
        f"immediate` (a crash) for {options.pg_down:g} s and started again, then, "
        f"{options.after:g} s after /health says the database is up, Redis is killed "
        f"(SIGKILL) for {options.redis_down:g} s and restarted empty; the store checks run "
        "on the PostgreSQL database (no integrity pragma there)."
    )


def write_report(
    path: Path, rows: list[Row], options: Options, command: str, facts: list[str], wall: float
) -> None:
    lines = [
        "## Fault suite (`faults.py`)",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Written by `bench/faults.py` (see "
        "bench/README.md); the numbers are as measured.",
        "",
        *facts,
        "",
        "```sh",
        command,
        "```",
        "",
        f"Total wall time: {wall / 60:.1f} min.",
        "",
        method(options),
        "",
        markdown(table(rows, options.window)),
        "",
        *notes_text(rows),
        "",
    ]
    write_section(path, "faults", "\n".join(lines))


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--rate", type=float, default=10, help="messages per second")
    parser.add_argument("--kills", type=int, default=20, help="gateway kill -9s")
    parser.add_argument("--rasa-down", type=float, default=60, help="seconds Rasa stays dead")
    parser.add_argument("--slow-delay", type=float, default=5, help="seconds added per request")
    parser.add_argument("--slow-seconds", type=float, default=30)
    parser.add_argument("--disk-mb", type=int, default=24)
    parser.add_argument("--disk-full-seconds", type=float, default=15)
    parser.add_argument("--db-locked-seconds", type=float, default=10)
    parser.add_argument("--pg-down", type=float, default=10, help="seconds PostgreSQL is down")
    parser.add_argument("--redis-down", type=float, default=10, help="seconds Redis is down")
    parser.add_argument("--sla-target", type=float, default=20, help="first response, seconds")
    parser.add_argument("--grace", type=float, default=90, help="max wait for answers, seconds")
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not args.scenarios or any(s not in SCENARIOS for s in args.scenarios):
        parser.error(f"--scenarios: choose from {', '.join(SCENARIOS)}")
    if not 0 < args.rate <= 500 or not 0 <= args.kills <= 100:
        parser.error("--rate must be in (0, 500] and --kills in [0, 100]")
    if not 0 < args.rasa_down <= 600 or not 0 < args.grace <= 600:
        parser.error("--rasa-down and --grace must be in (0, 600]")
    return args


def options_of(args: argparse.Namespace) -> Options:
    return Options(
        rate=args.rate,
        window=args.window,
        grace=args.grace,
        seed=args.seed,
        kills=args.kills,
        sla_target=args.sla_target,
        rasa_down=args.rasa_down,
        slow_delay=args.slow_delay,
        slow_seconds=args.slow_seconds,
        disk_mb=args.disk_mb,
        disk_full_seconds=args.disk_full_seconds,
        db_locked_seconds=args.db_locked_seconds,
        pg_down=args.pg_down,
        redis_down=args.redis_down,
    )


async def run_scenario(name: str, suite: Suite, options: Options) -> Row:
    if name == "gateway-kill":
        return await gateway_kill(suite, options)
    if name == "rasa-kill":
        return await rasa_kill(suite, options)
    if name == "slow-rasa":
        return await slow_rasa(suite, options)
    if name == "disk-full":
        return await disk_full(suite, options)
    if name == "db-locked":
        return await db_locked(suite, options)
    return await postgres_redis(suite, options)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop children


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = options_of(args)
    signal.signal(signal.SIGTERM, _terminate)
    command = shlex.join(
        [".venv/bin/python", "bench/faults.py", *(sys.argv[1:] if argv is None else argv)]
    )
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="promptly-faults-"))
    rows: list[Row] = []
    suite = Suite(tmp)
    try:
        facts = machine_facts(rasa_version_installed())
        print("\n".join(facts), flush=True)
        print(f"Rasa ready in {suite.start_rasa():.0f} s", flush=True)
        for name in args.scenarios:
            print(f"\n== {name} ==", flush=True)
            t = time.monotonic()
            try:
                row = asyncio.run(run_scenario(name, suite, options))
            except (RuntimeError, OSError, aiohttp.ClientError) as e:
                row = Row(name, failures=[f"run failed: {type(e).__name__}: {e}"])
            if not suite.rasa.running:
                suite.start_rasa()  # a failed rasa-kill run must not take the others with it
            rows.append(row)
            print(plain(table([row], options.window)), flush=True)
            print("\n".join(notes_text([row])), flush=True)
            print(f"  took {time.monotonic() - t:.0f} s", flush=True)
    finally:
        suite.close()
    wall = time.monotonic() - began
    print("\n" + plain(table(rows, options.window)))
    write_report(args.out, rows, options, command, facts, wall)
    print(f"\nwrote {args.out} (wall time {wall / 60:.1f} min)")
    ok = all(r.passed is not False for r in rows)
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"logs and databases kept in {tmp}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.modules.setdefault("faults", sys.modules[__name__])
    sys.exit(main())
