"""Scale-out benchmark: 1 and 2 gateway processes on PostgreSQL beside SQLite, in one run.

Three configurations, each with a fresh gateway (and a fresh database) per offered rate and one
Rasa per configuration, everything on 127.0.0.1:

* ``sqlite-1``: one gateway process on its own SQLite file (as ack_latency.py runs it),
* ``pg-1``: one gateway process on PostgreSQL and Redis (``[storage] database_url``,
  ``[scale] redis_url``; Rasa's lock and tracker stores in the same Redis, as ``promptly run``
  configures them),
* ``pg-2``: the same with ``promptly gateway --workers 2`` (two processes, one port,
  SO_REUSEPORT).

Each runs ack_latency.py's mixed workload over its WebSocket load (50 connections, open loop)
at every ``--rates`` rate; a rate is sustained when at least 99 % of the messages are sent on
time and acked inside the window (2 s). During each measured phase the CPU time of every
process group is sampled from /proc: the gateway process(es) and their children, Rasa, the
PostgreSQL backends of the run's database (pg_stat_activity), the PostgreSQL server's own
background processes, Redis (``INFO cpu``), the load generator, and the whole machine
(/proc/stat), so the report can say which one ran out. Then (``--replay-minutes`` > 0)
replay_day.py's compressed support day runs once on ``pg-1`` and once on ``pg-2``, with
``promptly report``'s headline figures.

Each PostgreSQL run gets a database ``promptly_bench_<hex>`` (dropped after) and each
configuration a Redis prefix of its own (its keys deleted after).

    .venv/bin/python bench/scale_out.py [--rates 100,200,400] [--duration 15]
        [--replay-minutes 1.5] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ack_latency as al  # bench/ack_latency.py, beside this script
import asyncpg
import numpy as np
from redis import Redis
from report import write_section

from bot.rasa_server import RasaServer, write_endpoints

PG_ADMIN_URL = os.environ.get(
    "PROMPTLY_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PROMPTLY_BENCH_REDIS", "redis://127.0.0.1:6379/0")
SECTION = "scale_out"
SUSTAINED_SHARE = 0.99  # acked inside the window, of the scheduled messages
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
REPLAY_LEAD = 45.0  # real seconds between starting the replay's gateway and the day's 00:00


@dataclass(frozen=True)
class Config:
    key: str
    title: str
    postgres: bool
    workers: int


CONFIGS = (
    Config("sqlite-1", "SQLite, 1 process", False, 1),
    Config("pg-1", "PostgreSQL, 1 process", True, 1),
    Config("pg-2", "PostgreSQL, 2 processes", True, 2),
)


# --- processes and CPU time ---------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds user + system) of ``pid``, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text.rsplit(")", 1)[1].split()
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / CLOCK_TICKS


def process_tree(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and every descendant (``--workers`` children have sessions of
    their own, so the tree is followed by parent pid, not by process group)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents[int(entry)], cpu[int(entry)] = stat
    found, todo = {root}, [root]
    while todo:
        pid = todo.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found.add(child)
                todo.append(child)
    return {pid: cpu[pid] for pid in found if pid in cpu}


def machine_busy() -> float:
    """CPU seconds the machine spent busy (all cores; not idle, not waiting for I/O)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


async def _pg_pids(database: str | None) -> tuple[list[int], list[int]]:
    """(backends of ``database``, the server's background processes) from pg_stat_activity."""
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        rows = await conn.fetch("SELECT pid, datname, backend_type FROM pg_stat_activity")
    finally:
        await conn.close()
    ours = [r["pid"] for r in rows if database is not None and r["datname"] == database]
    server = [r["pid"] for r in rows if r["datname"] is None and r["backend_type"] != "walsender"]
    return ours, server


def redis_cpu() -> float:
    info = Redis.from_url(REDIS_URL, socket_timeout=5).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


GROUPS = ("gateway", "rasa", "postgres", "pg server", "redis", "generator", "machine")


@dataclass
class CpuSnapshot:
    at: float
    per_pid: dict[str, dict[int, float]]
    redis: float
    machine: float
    generator: float


class CpuProbe:
    """CPU seconds per process group between two snapshots."""

    def __init__(self, gateway: al.Gateway, rasa: RasaServer, database: str | None) -> None:
        self.gateway, self.rasa, self.database = gateway, rasa, database

    def snapshot(self) -> CpuSnapshot:
        rasa_pid = self.rasa._process.pid if self.rasa._process is not None else -1
        ours, server = asyncio.run(_pg_pids(self.database))
        per_pid = {
            "gateway": process_tree(self.gateway.process.pid),
            "rasa": process_tree(rasa_pid),
            "postgres": {p: s[1] for p in ours if (s := _stat(p)) is not None},
            "pg server": {p: s[1] for p in server if (s := _stat(p)) is not None},
        }
        return CpuSnapshot(
            time.monotonic(), per_pid, redis_cpu(), machine_busy(), time.process_time()
        )

    @staticmethod
    def used(a: CpuSnapshot, b: CpuSnapshot) -> dict[str, float]:
        """Seconds per group; a process that started between the two counts whole, one that
        ended between them is missed (the report's processes live through the run)."""
        out = {
            group: sum(cpu - a.per_pid[group].get(pid, 0.0) for pid, cpu in pids.items())
            for group, pids in b.per_pid.items()
        }
        out["redis"] = b.redis - a.redis
        out["generator"] = b.generator - a.generator
        out["machine"] = b.machine - a.machine
        out["wall"] = b.at - a.at
        return out


# --- the stack ----------------------------------------------------------------------------------


class ScaledGateway(al.Gateway):
    """ack_latency's gateway, started as ``promptly gateway --workers N`` when N > 1."""

    def __init__(self, *args: Any, workers: int = 1, **kwargs: Any) -> None:
        self.workers = workers
        super().__init__(*args, **kwargs)

    def launch(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "bot", "--config", str(self.config), "gateway"]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        with self.log.open("ab") as log:
            return subprocess.Popen(
                command,
                cwd=al.ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def listeners(self) -> int:
        """Sockets listening on the gateway's port (one per ready worker, SO_REUSEPORT)."""
        port = f":{self.port:04X}"
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    cols = line.split()
                    count += cols[1].endswith(port) and cols[3] == "0A"
        return count

    def wait_workers(self, timeout: float) -> None:
        self.wait_ready(timeout)
        al.wait_until(
            f"{self.workers} gateway processes listening",
            lambda: self.listeners() >= self.workers,
            timeout,
            self.process,
        )

    def stop(self) -> None:
        pids = set(process_tree(self.process.pid))
        super().stop()
        for pid in pids:  # a worker the supervisor did not stop in time: ours, by pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def pg_database() -> Iterator[tuple[str, str]]:
    """(name, URL) of a fresh database, dropped afterwards."""
    name = f"promptly_bench_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield name, PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def drop_redis_keys(prefix: str) -> int:
    redis = Redis.from_url(REDIS_URL, socket_timeout=5)
    keys = list(redis.scan_iter(match=f"{prefix}*", count=1000))
    for k in range(0, len(keys), 500):
        redis.delete(*keys[k : k + 500])
    return len(keys)


@dataclass
class Deployment:
    """One configuration's Rasa, the port its gateways take, their settings."""

    config: Config
    folder: Path
    rasa: RasaServer
    port: int
    rasa_port: int
    prefix: str  # Redis, alphanumeric (Rasa's key_prefix); the gateways use it plus ":"

    def gateway_toml(self) -> str:
        if not self.config.postgres:
            return ""
        return f'\n[scale]\nredis_url = "{REDIS_URL}"\nredis_prefix = "{self.prefix}:"\n'


@contextlib.contextmanager
def deployment(orchestrator: al.Orchestrator, tmp: Path, config: Config) -> Iterator[Deployment]:
    folder = tmp / config.key
    port, rasa_port = al.free_port(), al.free_port()
    prefix = f"pbench{secrets.token_hex(5)}"
    endpoints = write_endpoints(
        folder / "endpoints.yml",
        f"http://{al.HOST}:{port}/actions/webhook",
        orchestrator.token,
        redis_url=REDIS_URL if config.postgres else None,
        redis_prefix=f"{prefix}:",
    )
    rasa = RasaServer(
        orchestrator.rasa_exe,
        orchestrator.model,
        endpoints,
        rasa_port,
        folder / "rasa.log",
        al.ROOT,
        nice=orchestrator.rasa_nice,
    )
    started = time.monotonic()
    rasa.start()
    try:
        yield Deployment(config, folder, rasa, port, rasa_port, prefix)
    finally:
        rasa.stop()
        if config.postgres:
            drop_redis_keys(prefix)
        print(f"  {config.key}: done after {time.monotonic() - started:.0f}s", flush=True)


@contextlib.contextmanager
def gateway_on(
    d: Deployment,
    orchestrator: al.Orchestrator,
    name: str,
    extra_toml: str = "",
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[ScaledGateway, str | None]]:
    """A fresh gateway (own SQLite file, or a fresh PostgreSQL database) on ``d``'s port."""
    with contextlib.ExitStack() as stack:
        database: str | None = None
        gateway_env = dict(env or {})
        if d.config.postgres:
            database, url = stack.enter_context(pg_database())
            gateway_env["PROMPTLY_DATABASE_URL"] = url
        gateway = ScaledGateway(
            d.folder / name,
            orchestrator.index_dir,
            d.rasa_port,
            orchestrator.token,
            d.gateway_toml() + extra_toml,
            gateway_env,
            port=d.port,
            workers=d.config.workers,
        )
        try:
            gateway.wait_workers(300)
            d.rasa.wait_ready(300)
            al.wait_until(
                "gateway sees Rasa up",
                lambda: al.rasa_state(gateway.url) == "up",
                90,
                gateway.process,
            )
            yield gateway, database
        finally:
            gateway.stop()


# --- ack ladder ----------------------------------------------------------------------------------


@dataclass
class Row:
    config: Config
    rate: float
    result: al.Result
    cpu: dict[str, float]
    warnings: int
    notes: list[str] = field(default_factory=list)

    @property
    def in_window(self) -> float:
        return self.result.in_window / max(self.result.scheduled, 1)

    @property
    def on_time(self) -> bool:
        return self.result.send_rate >= 0.95 * self.rate

    @property
    def sustained(self) -> bool:
        return self.in_window >= SUSTAINED_SHARE and self.on_time

    @property
    def answered_per_s(self) -> float:
        answered = int(np.isfinite(self.result.rec.answer).sum())
        return answered / self.cpu["wall"] if self.cpu["wall"] > 0 else math.nan


def log_warnings(gateway: al.Gateway) -> int:
    text = gateway.log.read_text(errors="replace")
    return sum(" WARNING " in line or " ERROR " in line for line in text.splitlines())


async def warm_up_all(stack: al.Stack, tag: str, workers: int) -> None:
    """ack_latency's warm-up on a few connections at once, so every worker (the kernel picks
    one per connection) pays its first-call costs before the measurement."""
    await asyncio.gather(*(al.warm_up("up", stack, f"{tag}-w{k}") for k in range(3 * workers)))


def run_rate(
    d: Deployment, orchestrator: al.Orchestrator, rate: float, args: argparse.Namespace, n: int
) -> Row:
    with gateway_on(d, orchestrator, f"rate-{rate:g}") as (gateway, database):
        stack = al.Stack(gateway.url, d.rasa.url, gateway, d.rasa)
        tag = f"s{secrets.token_hex(3)}-{d.config.key}-{rate:g}"
        workload = al.build_workload(
            rate, args.duration, args.connections, tag, args.seed + n, al.ROOT / "kb" / "articles"
        )
        asyncio.run(warm_up_all(stack, tag, d.config.workers))
        probe = CpuProbe(gateway, d.rasa, database)
        before = probe.snapshot()
        started = time.monotonic()
        rec = asyncio.run(al.measure("up", stack, workload, args.connections, args.grace, tag))
        after = probe.snapshot()
        result = al.Result("up", rate, args.duration, rec, args.window, time.monotonic() - started)
        row = Row(d.config, rate, result, CpuProbe.used(before, after), 0)
        if d.config.workers > 1 and gateway.listeners() < d.config.workers:
            row.notes.append("a worker was not listening at the end")
    row.warnings = log_warnings(gateway)
    return row


def pct_core(seconds: float, wall: float) -> str:
    return f"{100 * seconds / wall:.0f} %" if wall > 0 else "–"


def ladder_table(rows: list[Row]) -> list[list[str]]:
    out = [
        [
            "configuration",
            "offered msg/s",
            "sent",
            "ack p50 ms",
            "ack p99 ms",
            "acked ≤ 2 s",
            "sustained",
            "answered/s",
            "lag p99 ms",
        ]
    ]
    for r in rows:
        res = r.result
        out.append(
            [
                r.config.title,
                f"{r.rate:g}",
                f"{res.sent}/{res.scheduled}",
                al._f(al._pct(res.ack_ms, 50)),
                al._f(al._pct(res.ack_ms, 99)),
                f"{100 * r.in_window:.2f} %",
                "yes" if r.sustained else "no",
                f"{r.answered_per_s:.1f}",
                al._f(al._pct(res.lag_ms, 99)),
            ]
        )
    return out


def cpu_table(rows: list[Row]) -> list[list[str]]:
    out = [
        [
            "configuration",
            "offered msg/s",
            "wall s",
            "gateway(s)",
            "Rasa",
            "PostgreSQL backends",
            "PG server processes",
            "Redis",
            "load generator",
            "machine busy (of 200 %)",
            "unattributed",
        ]
    ]
    for r in rows:
        c, wall = r.cpu, r.cpu["wall"]
        known = sum(c[g] for g in GROUPS if g != "machine")
        out.append(
            [
                r.config.title,
                f"{r.rate:g}",
                f"{wall:.1f}",
                pct_core(c["gateway"], wall),
                pct_core(c["rasa"], wall),
                pct_core(c["postgres"], wall) if r.config.postgres else "–",
                pct_core(c["pg server"], wall),
                pct_core(c["redis"], wall),
                pct_core(c["generator"], wall),
                pct_core(c["machine"], wall),
                pct_core(max(c["machine"] - known, 0.0), wall),
            ]
        )
    return out


def detail_table(rows: list[Row]) -> list[list[str]]:
    out = [["configuration", "offered msg/s", "first reply kinds", "errors", "notes"]]
    for r in rows:
        res = r.result
        errors = ", ".join(f"{k} {v}" for k, v in res.rec.errors.items()) or "none"
        notes = [f"{k} {v}" for k, v in res.rec.notes.items()]
        notes += r.notes + [f"gateway log WARNING/ERROR lines {r.warnings}"]
        out.append([r.config.title, f"{r.rate:g}", al._kinds(res), errors, ", ".join(notes)])
    return out


# --- the replay on PostgreSQL ---------------------------------------------------------------------


@dataclass
class Replay:
    config: Config
    figures: dict[str, Any] | None
    counts: Counter[str]
    web_acks: list[float]
    cpu: dict[str, float]
    error: str | None = None


def run_replay(d: Deployment, orchestrator: al.Orchestrator, args: argparse.Namespace) -> Replay:
    import replay_day as rd  # bench/replay_day.py; imported here: it loads the eval sets
    from channel_load import gateway_config, running_fakes

    from tests.fakes.secrets import GATEWAY_ENV

    rng = random.Random(args.seed)
    faqs, oos = rd.eval_texts(rng)
    rd.OUT_OF_SCOPE[:] = oos[:200]
    faqs = faqs[:600] + al.faq_questions(al.ROOT / "kb" / "articles")
    orders = al.order_numbers(al.ROOT / "kb" / "demo_orders.csv")
    visits = rd.plan_day(args.replay_conversations, rng, faqs, orders)
    speed = rd.DAY / (args.replay_minutes * 60)
    today = datetime.now(UTC).date()
    day = today - timedelta(days=(today.weekday() - 2) % 7 or 7)
    day_start = datetime.combine(day, datetime.min.time(), rd.ZONE)
    day_end = datetime.combine(day + timedelta(days=1), datetime.min.time(), rd.ZONE)
    token = secrets.token_urlsafe(24)
    play_args = argparse.Namespace(seed=args.seed, agents=args.replay_agents)
    with running_fakes() as fakes:
        start_real = time.time() + REPLAY_LEAD
        start_ts = day_start.timestamp()
        fakes.slack.clock = lambda: start_ts + (time.time() - start_real) * speed
        # The replay uses web, Telegram and Slack: email's SMTP listener is left out (its
        # fixed port cannot be bound by two workers; see the report).
        channels = gateway_config(fakes, al.free_port()).split("[channels.email]")[0]
        real_start = datetime.fromtimestamp(start_real, UTC)
        clock = (
            f"\n[debug]\nclock_start = {day_start.astimezone(UTC).isoformat()!r}\n"
            f"clock_start_at = {real_start.isoformat()!r}\nclock_speed = {speed!r}\n"
        ).replace("'", '"')
        env = {**GATEWAY_ENV, "PROMPTLY_AGENT_TOKEN": token}
        with gateway_on(d, orchestrator, "replay", channels + clock, env) as (gateway, database):
            probe = CpuProbe(gateway, d.rasa, database)
            before = probe.snapshot()
            played = asyncio.run(
                rd.play(gateway.url, token, start_real, speed, visits, fakes, play_args)
            )
            after = probe.snapshot()
            report_env = {**os.environ, **gateway.env}
            command = [
                str(al.ROOT / ".venv" / "bin" / "promptly"),
                "--config",
                str(gateway.config),
                "report",
                "--since",
                day_start.isoformat(),
                "--until",
                day_end.isoformat(),
                "--format",
                "json",
            ]
            out = subprocess.run(
                command, capture_output=True, text=True, timeout=300, cwd=al.ROOT, env=report_env
            )
    cpu = CpuProbe.used(before, after)
    if out.returncode != 0:
        return Replay(d.config, None, played.counts, played.web_acks, cpu, out.stderr[-800:])
    import json

    figures = rd.promptly_figures(json.loads(out.stdout))
    return Replay(d.config, figures, played.counts, played.web_acks, cpu)


def replay_table(replays: list[Replay]) -> list[list[str]]:
    import replay_day as rd

    out = [["figure", *(r.config.title for r in replays)]]

    def row(name: str, f: Any) -> None:
        out.append([name, *(f(r) if r.figures is not None else "failed" for r in replays)])

    row("acks (gateway event log)", lambda r: str(r.figures["acks.all.count"]))
    row(
        "acked inside the window",
        lambda r: f"{rd.pct(r.figures['acks.all.share'])} ({r.figures['acks.all.within']})",
    )
    row(
        "ack p50 / p99",
        lambda r: f"{rd.ms(r.figures['acks.all.p50'])} / {rd.ms(r.figures['acks.all.p99'])}",
    )
    out.append(
        [
            "web, client side: p99",
            *(f"{rd.ms(rd.nearest(r.web_acks, 99))} ({len(r.web_acks)} acks)" for r in replays),
        ]
    )
    row("tickets handed off", lambda r: str(r.figures["tickets"]))
    row(
        "SLA first response met / breached / open",
        lambda r: (
            f"{r.figures['sla.first_response.met']} / "
            f"{r.figures['sla.first_response.breached']} / {r.figures['sla.first_response.open']}"
        ),
    )
    row(
        "breaches warned first",
        lambda r: f"{rd.pct(r.figures['warnings.share'])} of {r.figures['warnings.breaches']}",
    )
    row("CSAT ratings", lambda r: str(r.figures["csat.count"]))
    out.append(
        [
            "CPU: gateway(s) / Rasa / PG backends / machine",
            *(
                " / ".join(
                    pct_core(r.cpu[g], r.cpu["wall"]) for g in ("gateway", "rasa", "postgres")
                )
                + f" / {pct_core(r.cpu['machine'], r.cpu['wall'])}"
                for r in replays
            ),
        ]
    )
    out.append(
        [
            "what the replay did",
            *(", ".join(f"{k} {v}" for k, v in sorted(r.counts.items())) or "–" for r in replays),
        ]
    )
    return out


# --- report -------------------------------------------------------------------------------------


def best_rates(rows: list[Row]) -> dict[str, float]:
    return {
        c.key: max((r.rate for r in rows if r.config == c and r.sustained), default=0.0)
        for c in CONFIGS
    }


def conclusion(rows: list[Row]) -> str:
    best = best_rates(rows)
    top = max((r.rate for r in rows), default=0.0)

    def name(key: str) -> str:
        value = best[key]
        if value == 0:
            return "none of the rates"
        return f"{value:g} msg/s" + (" (the highest rate offered)" if value == top else "")

    ratio = best["pg-2"] / best["pg-1"] if best["pg-1"] else math.nan
    return (
        f"Highest sustained rate (>= {SUSTAINED_SHARE:.0%} acked inside 2 s, sent on time): "
        f"SQLite 1 process {name('sqlite-1')}, PostgreSQL 1 process {name('pg-1')}, "
        f"PostgreSQL 2 processes {name('pg-2')}"
        + (f"; 2 processes / 1 process on PostgreSQL: {ratio:.2f}x." if ratio == ratio else ".")
    )


def write(
    args: argparse.Namespace,
    rows: list[Row],
    replays: list[Replay],
    replay_note: str,
    facts: list[str],
    began: float,
) -> None:
    command = " ".join(
        shlex.quote(a) for a in [".venv/bin/python", "bench/scale_out.py", *sys.argv[1:]]
    )
    summary = conclusion(rows)
    body = [
        "## Scale-out: 1 and 2 gateway processes on PostgreSQL (`scale_out.py`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {(time.monotonic() - began) / 60:.1f} "
        f"minutes wall time: `{command}`",
        "",
        *facts,
        "- PostgreSQL 15 on 127.0.0.1 (a fresh database per run, dropped after), Redis on "
        "127.0.0.1 (a prefix per configuration, its keys deleted after); both servers are "
        "shared with other users of the machine",
        "",
        f"ack_latency.py's mixed workload over {args.connections} WebSocket connections, open "
        f"loop, {args.duration:g} s per rate plus up to {args.grace:g} s for late replies; a "
        "fresh gateway (and a fresh database) per rate, one Rasa per configuration (on "
        "PostgreSQL with its lock and tracker stores in Redis, as `promptly run` sets it up). "
        "`sustained`: at least 99 % of the scheduled messages acked inside the 2 s window and "
        "the generator kept the rate (send rate >= 95 % of offered). `answered/s`: replies "
        "other than receipts per second of the measured phase (Rasa's and the fast path's "
        "answers; the rest were acked with a receipt and answered later or not in the run).",
        "",
        al.markdown(ladder_table(rows)),
        "",
        summary,
        "",
        "CPU per process group during the measured phase (connect, send, grace), as % of one "
        "core; the machine has 2 cores (200 %). Gateway(s): the gateway process or the "
        "`--workers` supervisor and its workers with their embedding processes; PostgreSQL "
        "backends: the run's database's connections (pg_stat_activity); PG server processes: "
        "the server's background processes (WAL writer, checkpointer, ..., shared); Redis: "
        "the whole server (`INFO cpu`, shared); unattributed: the rest of the machine "
        "(other users, the kernel's network work not charged to a process):",
        "",
        al.markdown(cpu_table(rows)),
        "",
        al.markdown(detail_table(rows)),
        "",
        "### Support-day replay on PostgreSQL",
        "",
        replay_note,
    ]
    if replays:
        body += ["", al.markdown(replay_table(replays))]
    write_section(args.out, SECTION, "\n".join(body))
    print(f"wrote section {SECTION} of {args.out}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="100,200,400", help="offered msg/s, comma list")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of sending per rate")
    p.add_argument("--grace", type=float, default=5.0, help="seconds to wait for late replies")
    p.add_argument("--window", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--configs", default=",".join(c.key for c in CONFIGS))
    p.add_argument("--replay-minutes", type=float, default=1.5, help="0: no replay")
    p.add_argument("--replay-conversations", type=int, default=120)
    p.add_argument("--replay-agents", type=int, default=6)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=al.ROOT / "docs" / "benchmarks.md")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)
    args.rate_list = [float(r) for r in args.rates.split(",")]
    keys = args.configs.split(",")
    unknown = set(keys) - {c.key for c in CONFIGS}
    if unknown:
        p.error(f"unknown configurations: {', '.join(sorted(unknown))}")
    args.config_list = [c for c in CONFIGS if c.key in keys]
    return args


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    began = time.monotonic()
    facts = al.machine_facts(al.rasa_version_installed())
    print("\n".join(facts), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="promptly-scale-"))
    rows: list[Row] = []
    replays: list[Replay] = []
    failed = True
    try:
        orchestrator = al.Orchestrator(tmp)
        n = 0
        for config in args.config_list:
            with deployment(orchestrator, tmp, config) as d:
                for rate in args.rate_list:
                    n += 1
                    print(f"\n== {config.title} at {rate:g} msg/s ==", flush=True)
                    row = run_rate(d, orchestrator, rate, args, n)
                    rows.append(row)
                    c = row.cpu
                    print(al.summary_line(row.result), flush=True)
                    print(
                        "  CPU % of a core: "
                        + ", ".join(f"{g} {pct_core(c[g], c['wall'])}" for g in GROUPS),
                        flush=True,
                    )
                if config.postgres and args.replay_minutes > 0:
                    print(f"\n== replay, {config.title} ==", flush=True)
                    replay = run_replay(d, orchestrator, args)
                    replays.append(replay)
                    print(f"  {replay.figures or replay.error}", flush=True)
        rendered = al.plain(ladder_table(rows))
        print(f"\n{rendered}\n\n{al.plain(cpu_table(rows))}\n\n{conclusion(rows)}", flush=True)
        if args.replay_minutes > 0:
            replay_note = (
                f"replay_day.py's day ({args.replay_conversations} conversations, "
                f"{args.replay_agents} agents, web/Telegram/Slack) compressed into "
                f"{args.replay_minutes:g} minutes, once per PostgreSQL configuration, on a "
                "fresh database; figures from `promptly report --format json` for the day. "
                "replay_day.py's independent recomputation (bench/check_report.py) reads the "
                "SQLite file with sqlite3 and was not run on PostgreSQL."
            )
        else:
            replay_note = "Not run (`--replay-minutes 0`)."
        write(args, rows, replays, replay_note, facts, began)
        failed = False
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        if args.keep or failed:
            print(f"kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.modules.setdefault("ack_latency", al)
    sys.exit(main())
