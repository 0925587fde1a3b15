"""The ``channels`` scenario of ack_latency.py: acks on the messaging platforms and email.

Local fakes of every platform (tests/fakes) run in this process, on an event loop of their own
in a thread. A fresh gateway is configured to send to them; the load generator POSTs signed
webhooks to ``/webhooks/<channel>`` and hands mail to the gateway's SMTP listener, open-loop at
``--channel-rate`` messages per second over all six channels, message *i* on channel *i* mod 6,
each from a platform user of its own. So the first send call a fake records for a user is that
message's ack: ack latency is the call's arrival time minus the moment the webhook (or the
SMTP DATA command) went out. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import json
import math
import re
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import aiosmtplib
import numpy as np
import numpy.typing as npt
from ack_latency import (
    HOST,
    KIND_NAMES,
    KIND_PLAN,
    KIND_RECEIPT,
    KIND_SOLUTION,
    RASA_NICE,
    ROOT,
    START_DELAY,
    WARMUP,
    Check,
    Floats,
    Orchestrator,
    Recording,
    Stack,
    _f,
    _max,
    _pct,
    _share,
    build_workload,
    free_port,
    markdown,
    plain,
)
from report import write_section

from bot.durations import format_duration
from bot.errors import PromptlyError
from bot.pipeline import RECEIPT_BUSY_TEXT, RECEIPT_BY_TEXT, RECEIPT_DOWN_TEXT, RECEIPT_TEXT
from bot.settings import ChannelsSettings, PlatformChannelSettings

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the platform fakes live with the tests

from tests.fakes import smtp  # noqa: E402
from tests.fakes.base import Call, FakePlatform  # noqa: E402
from tests.fakes.meta import FakeGraph  # noqa: E402
from tests.fakes.secrets import GATEWAY_ENV  # noqa: E402
from tests.fakes.slack import FakeSlack  # noqa: E402
from tests.fakes.smtp import FakeSMTPServer  # noqa: E402
from tests.fakes.telegram import FakeTelegram  # noqa: E402
from tests.fakes.threaded import FakeThread  # noqa: E402
from tests.fakes.twilio import FakeTwilio  # noqa: E402

NAMES = ("telegram", "slack", "whatsapp", "messenger", "twilio", "email")
WEBHOOK_TIMEOUT = 30.0  # client timeout per webhook POST and SMTP command, seconds
EMAIL_CONNECTIONS = 8  # persistent SMTP connections to the gateway's listener
WARMUP_USER = 10**8  # warm-up users are numbered from here, measured ones from 0
WARMUP_WAIT = 30.0  # seconds a warm-up round waits for its answers
ACK_TARGET_MS = 50.0
# The plan ack's two wordings (bot/handoff/tickets.py, TicketService.plan).
PLAN = re.compile(r"I've passed this to our .*\(reference |Your request \S+ is with our ")

Key = tuple[str, str]  # (channel, recipient as the platform's send API names it)


# --- the fakes and the gateway's configuration ------------------------------------------------


@dataclass
class Fakes:
    thread: FakeThread
    telegram: FakeTelegram
    slack: FakeSlack
    graph: FakeGraph  # WhatsApp and Messenger
    twilio: FakeTwilio
    smtp: FakeSMTPServer

    def platforms(self) -> dict[str, FakePlatform]:
        return {
            "telegram": self.telegram,
            "slack": self.slack,
            "graph": self.graph,
            "twilio": self.twilio,
            "smtp": self.smtp,
        }


@contextlib.contextmanager
def running_fakes() -> Iterator[Fakes]:
    fakes = Fakes(
        FakeThread(), FakeTelegram(), FakeSlack(), FakeGraph(), FakeTwilio(), FakeSMTPServer()
    )
    with fakes.thread.serving(*fakes.platforms().values()):
        yield fakes


def promised_windows() -> dict[str, timedelta]:
    """Each channel's promised ack window: its default in bot/settings.py."""
    defaults = ChannelsSettings()
    return {name: getattr(defaults, name).promise for name in NAMES}


def gateway_config(fakes: Fakes, email_port: int) -> str:
    """Every channel enabled and sending to its fake (as tests/integration/test_channels.py),
    with its promised window written out, so the gateway works to the windows checked."""
    api = {
        "telegram": fakes.telegram.url,
        "slack": fakes.slack.url,
        "whatsapp": fakes.graph.url,
        "messenger": fakes.graph.url,
        "twilio": fakes.twilio.url,
        "email": fakes.smtp.url,
    }
    windows = promised_windows()
    sections = [
        f'[channels.{name}]\napi_base = "{api[name]}"\n'
        f'promise = "{format_duration(windows[name])}"\n'
        for name in NAMES
    ]
    sections[-1] += (
        f'enabled = true\noptions = {{ address = "{smtp.SUPPORT}", '
        f'listen_host = "{HOST}", listen_port = {email_port} }}\n'
    )
    return "\n" + "".join(sections)


# --- platform users ---------------------------------------------------------------------------


def user(channel: str, n: int) -> tuple[str, str]:
    """(sender id, recipient of our replies) of platform user ``n``: distinct for every n and
    channel, and no phone number shared between WhatsApp and Twilio (a verified phone would
    link the two senders to one customer)."""
    if channel == "telegram":
        chat = str(6_000_000_000 + n)
        return chat, chat
    if channel == "slack":
        return f"UB{n:09d}", f"DB{n:09d}"
    if channel == "whatsapp":
        wa_id = f"1555{n:09d}"
        return wa_id, wa_id
    if channel == "messenger":
        psid = str(7_100_000_000_000_000 + n)
        return psid, psid
    if channel == "twilio":
        phone = f"+4478{n:09d}"
        return phone, phone
    address = f"customer{n}@bench.example.org"
    return address, address


def recipient(platform: str, call: Call) -> Key:
    """Who a send call the fake ``platform`` recorded goes to."""
    body = call.json if isinstance(call.json, dict) else {}
    if platform == "graph" and call.path == "/me/messages":
        return "messenger", str((body.get("recipient") or {}).get("id"))
    if platform == "graph":
        return "whatsapp", str(body.get("to"))
    if platform == "twilio":
        return "twilio", call.form.get("To", "")
    if platform == "smtp":
        return "email", call.path.removeprefix("/").lower()
    if platform == "slack":
        return "slack", str(body.get("channel"))
    return "telegram", str(body.get("chat_id"))


def sent_text(channel: str, call: Call) -> str:
    """The text of a send call, without Telegram's MarkdownV2 escapes."""
    body = call.json if isinstance(call.json, dict) else {}
    if channel == "email":
        message = email.message_from_bytes(call.body, policy=email.policy.default)
        part = message.get_body(("plain",))
        return str(part.get_content()) if part is not None else ""
    if channel == "twilio":
        return call.form.get("Body", "")
    if channel == "whatsapp":
        return str((body.get("text") or {}).get("body", ""))
    if channel == "messenger":
        return str((body.get("message") or {}).get("text", ""))
    return str(body.get("text", "")).replace("\\", "")


def kind_of(text: str) -> int:
    text = text.strip()
    receipt_by = RECEIPT_BY_TEXT.partition("{")[0]
    receipt_busy = RECEIPT_BUSY_TEXT.partition("{")[0]
    if text.startswith((RECEIPT_TEXT, RECEIPT_DOWN_TEXT[:40], receipt_by, receipt_busy)):
        return KIND_RECEIPT
    if PLAN.match(text):
        return KIND_PLAN
    return KIND_SOLUTION


# --- the load ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Message i: ``texts[i]`` from user ``users[i]`` of ``channels[i]`` at t0 + i / rate."""

    rate: float
    channels: list[str]
    users: list[int]
    texts: list[str]

    @property
    def count(self) -> int:
        return len(self.texts)


class SMTPPool:
    """Persistent SMTP connections to the gateway's listener, so no message pays a handshake."""

    def __init__(self, port: int, size: int) -> None:
        self._clients = [
            aiosmtplib.SMTP(
                hostname=HOST,
                port=port,
                start_tls=False,
                local_hostname="mx.bench.example.org",  # else aiosmtplib asks DNS
                timeout=WEBHOOK_TIMEOUT,
            )
            for _ in range(size)
        ]
        self._free: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()

    async def open(self) -> None:
        for client in self._clients:
            await client.connect()
            await client.ehlo()
            self._free.put_nowait(client)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        client = await self._free.get()
        try:
            if not client.is_connected:
                await client.connect()
                await client.ehlo()
            yield client
        finally:
            self._free.put_nowait(client)

    async def close(self) -> None:
        for client in self._clients:
            if client.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                    await client.quit()


class Replies:
    """Matches the send calls the fakes recorded to the messages, by recipient: the first call
    for a message's user is its ack, the first that is not a receipt its answer."""

    def __init__(
        self, fakes: Fakes, plan: Plan, rec: Recording, windows: Mapping[str, float]
    ) -> None:
        self.platforms = fakes.platforms()
        self.rec = rec
        self.windows = np.array([windows[c] for c in plan.channels], dtype=np.float64)
        self.index: dict[Key, int] = {
            (channel, user(channel, n)[1]): i
            for i, (channel, n) in enumerate(zip(plan.channels, plan.users, strict=True))
        }
        self.cursors = {name: len(fake.calls) for name, fake in self.platforms.items()}

    def poll(self) -> None:
        rec = self.rec
        for name, fake in self.platforms.items():
            new = fake.calls[self.cursors[name] :]  # the fakes' thread only appends
            self.cursors[name] += len(new)
            for call in new:
                channel, to = recipient(name, call)
                i = self.index.get((channel, to))
                if i is None:
                    continue  # a late answer to a warm-up message
                kind = kind_of(sent_text(channel, call))
                if math.isnan(rec.first[i]):
                    rec.first[i] = call.at
                    rec.first_kind[i] = kind
                if kind != KIND_RECEIPT and math.isnan(rec.answer[i]):
                    rec.answer[i] = call.at

    def waiting(self, for_answers: bool) -> int:
        """Sent messages still without an ack (or an answer)."""
        done = self.rec.answer if for_answers else self.rec.first
        return int((~np.isnan(self.rec.sent) & np.isnan(done)).sum())

    def windows_end(self) -> float:
        """When the last window of a message still without an ack ends (monotonic)."""
        open_ = ~np.isnan(self.rec.sent) & np.isnan(self.rec.first)
        ends = (self.rec.sent + self.windows)[open_]
        return float(ends.max()) if ends.size else -math.inf


class ChannelLoad:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        gateway_url: str,
        fakes: Fakes,
        pool: SMTPPool,
        plan: Plan,
        windows: Mapping[str, float],
    ) -> None:
        self.session = session
        self.gateway_url = gateway_url
        self.fakes = fakes
        self.pool = pool
        self.plan = plan
        self.rec = Recording.empty(plan.count)
        self.errors: dict[str, Counter[str]] = {name: Counter() for name in NAMES}
        self.replies = Replies(fakes, plan, self.rec, windows)
        self.timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)

    def signed(self, channel: str, n: int, text: str) -> tuple[dict[str, str], bytes]:
        """The webhook request the platform would send for user ``n``'s ``text``."""
        sender, to = user(channel, n)
        if channel == "telegram":
            return self.fakes.telegram.signed_update(text, user_id=int(sender))
        if channel == "slack":
            return self.fakes.slack.signed_update(text, user_id=sender, channel=to)
        if channel == "whatsapp":
            return self.fakes.graph.whatsapp.signed_update(text, user_id=sender)
        if channel == "messenger":
            return self.fakes.graph.messenger.signed_update(text, user_id=sender)
        url = f"{self.gateway_url}/webhooks/twilio"  # Twilio signs the URL it calls
        return self.fakes.twilio.signed_update(text, user_id=sender, url=url)

    async def send(self, i: int) -> None:
        channel = self.plan.channels[i]
        try:
            if channel == "email":
                await self.mail(i)
            else:
                await self.post(i, channel)
        except TimeoutError:
            self.errors[channel]["timeout"] += 1
        except aiosmtplib.SMTPResponseException as e:
            self.rec.status[i] = e.code
            self.errors[channel][f"SMTP {e.code}"] += 1
        except (aiohttp.ClientError, aiosmtplib.SMTPException, OSError) as e:
            self.errors[channel][f"connection: {type(e).__name__}"] += 1

    async def post(self, i: int, channel: str) -> None:
        rec = self.rec
        headers, body = self.signed(channel, self.plan.users[i], self.plan.texts[i])
        url = f"{self.gateway_url}/webhooks/{channel}"
        rec.sent[i] = time.monotonic()
        async with self.session.post(
            url, data=body, headers=headers, timeout=self.timeout
        ) as response:
            await response.read()
            rec.status[i] = response.status
            if 200 <= response.status < 300:
                rec.accepted[i] = time.monotonic()
            else:
                self.errors[channel][f"HTTP {response.status}"] += 1

    async def mail(self, i: int) -> None:
        rec = self.rec
        sender = user("email", self.plan.users[i])[0]
        raw = smtp.compose(text=self.plan.texts[i], sender=sender, name=None, subject="Question")
        async with self.pool.connection() as client:
            try:
                await client.mail(sender)
                await client.rcpt(smtp.SUPPORT)
                rec.sent[i] = time.monotonic()
                response = await client.data(raw)
            except aiosmtplib.SMTPResponseException:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                    await client.rset()  # end the transaction; the connection stays usable
                raise
            rec.status[i] = response.code
            rec.accepted[i] = time.monotonic()

    async def run(self, start: float, grace: float, *, for_answers: bool = False) -> Recording:
        """Send on schedule, then wait for every ack: at least ``grace`` seconds after the
        last send, and for a message still without one until its window (+1 s) is over.
        ``for_answers`` (the warm-up): wait up to ``grace`` for every answer instead."""
        rec = self.rec
        rec.scheduled[:] = start + np.arange(self.plan.count, dtype=np.float64) / self.plan.rate
        tasks: set[asyncio.Task[None]] = set()
        monotonic = time.monotonic
        for i in range(self.plan.count):
            delay = rec.scheduled[i] - monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.send(i), name=str(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        rec.send_end = monotonic()
        deadline = rec.send_end + grace
        if tasks:
            await asyncio.wait(set(tasks), timeout=max(deadline - monotonic(), 0) + 1)
        for task in list(tasks):
            task.cancel()
            channel = self.plan.channels[int(task.get_name())]
            self.errors[channel]["no response within the grace period"] += 1
        self.replies.poll()
        while self.replies.waiting(for_answers):
            if not for_answers:
                deadline = max(deadline, self.replies.windows_end() + 1)
            if monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
            self.replies.poll()
        return rec


def measured_plan(rate: float, args: argparse.Namespace) -> Plan:
    workload = build_workload(rate, args.duration, 1, "channels", args.seed, ROOT / "kb/articles")
    channels = [NAMES[i % len(NAMES)] for i in range(workload.count)]
    return Plan(rate, channels, list(range(workload.count)), workload.texts)


def warmup_plan() -> Plan:
    """Each warm-up text on every channel, six messages a second."""
    channels = [name for _ in WARMUP for name in NAMES]
    texts = [text for text in WARMUP for _ in NAMES]
    users = [WARMUP_USER + i for i in range(len(texts))]
    return Plan(float(len(NAMES)), channels, users, texts)


async def measure(
    gateway_url: str,
    fakes: Fakes,
    email_port: int,
    plan: Plan,
    windows: Mapping[str, float],
    grace: float,
) -> ChannelLoad:
    """Warm up, then send ``plan``; the finished load (recording and errors)."""
    pool = SMTPPool(email_port, EMAIL_CONNECTIONS)
    connector = aiohttp.TCPConnector(limit=0)  # never wait for a free connection
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            await pool.open()
            warm = ChannelLoad(session, gateway_url, fakes, pool, warmup_plan(), windows)
            await warm.run(time.monotonic(), WARMUP_WAIT, for_answers=True)
            load = ChannelLoad(session, gateway_url, fakes, pool, plan, windows)
            cpu, wall = time.process_time(), time.monotonic()
            await load.run(wall + START_DELAY, grace)
            load.rec.cpu_seconds = time.process_time() - cpu
            load.rec.wall_seconds = time.monotonic() - wall
            return load
        finally:
            await pool.close()


# --- one run ----------------------------------------------------------------------------------


@dataclass
class ChannelRun:
    rate: float
    duration: float
    windows: dict[str, float]  # each channel's promised window, seconds
    rec: Recording | None = None
    channels: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    errors: dict[str, Counter[str]] = field(default_factory=dict)
    server_ack_ms: dict[str, Floats] = field(default_factory=dict)
    send_call_ms: dict[str, Floats] = field(default_factory=dict)  # received -> send call
    # The first reply's kind per entry of send_call_ms: receipt, solution (the answer), plan.
    send_call_kinds: dict[str, npt.NDArray[np.str_]] = field(default_factory=dict)
    failed_deliveries: Counter[str] = field(default_factory=Counter)
    log_levels: Counter[str] = field(default_factory=Counter)
    rasa_startup: float = math.nan
    wall: float = math.nan
    failure: str | None = None


def run_scenario(args: argparse.Namespace, orchestrator: Orchestrator) -> ChannelRun:
    """Fakes, Rasa and a fresh gateway configured for them; warm up, measure, read the logs."""
    rate = args.channel_rate
    print(f"\n== Channels at {rate:g} msg/s over {len(NAMES)} channels ==", flush=True)
    began = time.monotonic()
    windows = {name: window.total_seconds() for name, window in promised_windows().items()}
    run = ChannelRun(rate, args.duration, windows)
    startups = len(orchestrator.rasa_startups)
    try:
        with running_fakes() as fakes:
            email_port = free_port()
            config = gateway_config(fakes, email_port)
            with orchestrator.stack("channels", rate, config, GATEWAY_ENV) as stack:
                print(f"  stack ready in {time.monotonic() - began:.0f}s", flush=True)
                plan = measured_plan(rate, args)
                load = asyncio.run(
                    measure(stack.gateway_url, fakes, email_port, plan, run.windows, args.grace)
                )
                run.rec, run.errors = load.rec, load.errors
                run.channels = np.array([NAMES.index(c) for c in plan.channels], dtype=np.int8)
                read_gateway(run, stack, plan)
    except (PromptlyError, RuntimeError, OSError, aiohttp.ClientError) as e:
        run.failure = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        print(f"  RUN FAILED: {e}", flush=True)
    if len(orchestrator.rasa_startups) > startups:
        run.rasa_startup = orchestrator.rasa_startups[-1]
    run.wall = time.monotonic() - began
    if run.failure is None:
        print(summary_line(run), flush=True)
    print(f"  run took {run.wall:.0f}s", flush=True)
    return run


def read_gateway(run: ChannelRun, stack: Stack, plan: Plan) -> None:
    """Stop Rasa and the gateway, then read its event log and its log file."""
    if stack.rasa is not None:
        stack.rasa.stop()  # first, so its backlog does not call a gateway that is gone
    gateway = stack.gateway
    if gateway is None:
        return
    gateway.stop()  # flush and close the database before reading it
    for line in gateway.log.read_text(errors="replace").splitlines():
        parts = line.split(" ", 3)  # "<date> <time> <LEVEL> <logger>: <message>"
        if len(parts) > 2 and parts[2] in ("WARNING", "ERROR", "CRITICAL"):
            run.log_levels[parts[2]] += 1
    senders = {(c, user(c, n)[0]) for c, n in zip(plan.channels, plan.users, strict=True)}
    latencies: dict[str, list[float]] = {name: [] for name in NAMES}
    try:
        db = sqlite3.connect(f"file:{gateway.database}?mode=ro", uri=True)
        with contextlib.closing(db):
            rows = db.execute(
                "SELECT m.channel, m.sender, e.data FROM events e JOIN messages m "
                "ON m.id = e.message_id WHERE e.type = 'acked' AND m.direction = 'in'"
            ).fetchall()
            # Webhook received (the inbound message's time) to the first send call of the
            # first reply to it, both on the gateway's clock.
            calls = db.execute(
                # SQLite takes a bare column (o.kind) from the row min() picks.
                "SELECT i.channel, i.sender, i.created_at, min(json_extract(o.delivery, "
                "'$.first_call_at')), o.kind FROM messages i JOIN messages o "
                "ON o.conversation_id = i.conversation_id AND o.direction = 'out' "
                "AND o.in_reply_to = i.client_message_id WHERE i.direction = 'in' "
                "GROUP BY i.id"
            ).fetchall()
            failed = db.execute(
                "SELECT channel, count(*) FROM messages WHERE direction = 'out' "
                "AND delivery_status = 'failed' GROUP BY channel"
            ).fetchall()
    except sqlite3.Error as e:
        print(f"  cannot read the gateway's database: {e}", flush=True)
        return
    for channel, sender, data in rows:
        latency = json.loads(data).get("latency_ms")
        if (channel, sender) in senders and isinstance(latency, int | float):
            latencies[channel].append(float(latency))
    run.server_ack_ms = {k: np.array(v, dtype=np.float64) for k, v in latencies.items()}
    to_call: dict[str, list[float]] = {name: [] for name in NAMES}
    call_kinds: dict[str, list[str]] = {name: [] for name in NAMES}
    for channel, sender, received, first_call, kind in calls:
        if (channel, sender) not in senders:
            continue  # warm-up
        call_kinds[channel].append(str(kind))
        if first_call is None:  # never sent: as late as can be
            to_call[channel].append(math.inf)
            continue
        delta = datetime.fromisoformat(first_call) - datetime.fromisoformat(received)
        to_call[channel].append(delta.total_seconds() * 1000.0)
    run.send_call_ms = {k: np.array(v, dtype=np.float64) for k, v in to_call.items()}
    run.send_call_kinds = {k: np.array(v, dtype=np.str_) for k, v in call_kinds.items()}
    run.failed_deliveries = Counter({str(channel): int(n) for channel, n in failed})


# --- statistics -------------------------------------------------------------------------------


@dataclass
class Stats:
    """One channel's messages (or all of them) in a run."""

    name: str
    run: ChannelRun
    mask: npt.NDArray[np.bool_]

    @property
    def rec(self) -> Recording:
        assert self.run.rec is not None
        return self.run.rec

    @property
    def sent_mask(self) -> npt.NDArray[np.bool_]:
        return self.mask & ~np.isnan(self.rec.sent)

    @property
    def scheduled(self) -> int:
        return int(self.mask.sum())

    @property
    def sent(self) -> int:
        return int(self.sent_mask.sum())

    @property
    def lag_ms(self) -> Floats:
        return ((self.rec.sent - self.rec.scheduled) * 1000.0)[self.sent_mask]

    @property
    def accepted_ms(self) -> Floats:
        values = (self.rec.accepted - self.rec.sent)[self.sent_mask] * 1000.0
        return values[~np.isnan(values)]

    @property
    def ack_ms(self) -> Floats:
        values = (self.rec.first - self.rec.sent)[self.sent_mask] * 1000.0
        values[np.isnan(values)] = math.inf
        return values

    @property
    def in_window(self) -> int:
        windows = np.array([self.run.windows[name] for name in NAMES], dtype=np.float64)
        limit = windows[self.run.channels[self.sent_mask]] * 1000.0
        return int((self.ack_ms <= limit).sum())

    @property
    def kinds(self) -> str:
        codes = self.rec.first_kind[self.sent_mask].tolist()
        counts = Counter(KIND_NAMES[c] for c in codes)
        order = ("solution", "receipt", "plan", "other", "none")
        return ", ".join(f"{k} {counts[k]}" for k in order if counts.get(k))

    @property
    def errors(self) -> Counter[str]:
        names = NAMES if self.name == "all" else (self.name,)
        total: Counter[str] = Counter()
        for name in names:
            total.update(self.run.errors.get(name, {}))
            if self.run.failed_deliveries.get(name):
                total["failed deliveries"] += self.run.failed_deliveries[name]
        return total

    @property
    def server_ack_ms(self) -> Floats:
        return self._gateway(self.run.server_ack_ms)

    @property
    def send_call_ms(self) -> Floats:
        return self._gateway(self.run.send_call_ms)

    def send_call_ms_of(self, kind: str) -> Floats:
        """The send-call latencies of first replies of one kind (receipt, solution, plan)."""
        kinds = self.run.send_call_kinds
        return self._gateway(
            {n: ms[kinds[n] == kind] for n, ms in self.run.send_call_ms.items() if n in kinds}
        )

    def _gateway(self, measured: dict[str, Floats]) -> Floats:
        names = NAMES if self.name == "all" else (self.name,)
        found = [measured[n] for n in names if n in measured]
        return np.concatenate(found) if found else np.zeros(0)


def stats(run: ChannelRun) -> list[Stats]:
    rows = [Stats(name, run, run.channels == k) for k, name in enumerate(NAMES)]
    return [*rows, Stats("all", run, np.ones(len(run.channels), dtype=bool))]


def window_text(run: ChannelRun, name: str) -> str:
    return "per channel" if name == "all" else f"{run.windows[name]:g} s"


def table(run: ChannelRun) -> list[list[str]]:
    header = [
        "channel",
        "window",
        "sent",
        "lag p99 ms",
        "2xx p50 ms",
        "2xx p99 ms",
        "ack p50 ms",
        "ack p99 ms",
        "ack max ms",
        "acked ≤ window",
        "first reply kinds",
        "errors",
    ]
    rows = [header]
    for s in stats(run):
        ack, accepted = s.ack_ms, s.accepted_ms
        share = s.in_window / s.sent if s.sent else math.nan
        rows.append(
            [
                s.name,
                window_text(run, s.name),
                f"{s.sent}/{s.scheduled}",
                _f(_pct(s.lag_ms, 99)),
                _f(_pct(accepted, 50)),
                _f(_pct(accepted, 99)),
                _f(_pct(ack, 50)),
                _f(_pct(ack, 99)),
                _f(_max(ack)),
                f"{_share(share)} ({s.in_window}/{s.sent})",
                s.kinds or "none",
                "; ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "none",
            ]
        )
    return rows


def detail_table(run: ChannelRun) -> list[list[str]]:
    rows = [
        [
            "channel",
            "received → ack's send call p50 ms",
            "p99 ms",
            "max ms",
            "receipts: p99 ms (n)",
            "answers as the ack: p99 ms (n)",
            "gateway-side ack stored p50 ms",
            "p99 ms",
            "2xx responses",
        ]
    ]
    for s in stats(run):
        server, call = s.server_ack_ms, s.send_call_ms
        ok = int(s.accepted_ms.size)
        rows.append(
            [
                s.name,
                _f(_pct(call, 50)),
                _f(_pct(call, 99)),
                _f(_max(call)),
                *(_p99_of(s.send_call_ms_of(kind)) for kind in ("receipt", "solution")),
                _f(_pct(server, 50)),
                _f(_pct(server, 99)),
                f"{ok}/{s.sent}",
            ]
        )
    return rows


def _p99_of(values: Floats) -> str:
    return f"{_f(_pct(values, 99))} ({values.size})" if values.size else "– (0)"


def checks(run: ChannelRun) -> list[Check]:
    out: list[Check] = []
    channels = stats(run)[:-1] if run.rec is not None else []
    for s in channels:
        # The measure: webhook received to the ack's send call, on the gateway's clock.
        p99 = _pct(s.send_call_ms, 99) if s.send_call_ms.size else math.inf
        measured = "∞ (more than 1 % never sent)" if math.isinf(p99) else f"{_f(p99)} ms"
        out.append(
            Check(
                f"webhook received → ack's send call p99 ≤ {ACK_TARGET_MS:g} ms: {s.name}",
                measured,
                p99 <= ACK_TARGET_MS,
            )
        )
    for s in channels:
        share = s.in_window / s.sent if s.sent else math.nan
        unsent = s.scheduled - s.sent
        out.append(
            Check(
                f"100 % acked inside the window ({window_text(run, s.name)}): {s.name}",
                f"{_share(share)} ({s.in_window}/{s.sent})"
                + (f", {unsent} not sent" if unsent else ""),
                s.sent == s.scheduled and s.in_window == s.sent and s.sent > 0,
            )
        )
    if run.failure is not None:
        out += [
            Check(f"ack p99 ≤ {ACK_TARGET_MS:g} ms on every channel", "run failed", False),
            Check("100 % acked inside each channel's window", "run failed", False),
        ]
    return [
        Check(f"{c.target}, {run.rate:g} msg/s over all channels", c.measured, c.passed)
        for c in out
    ]


def summary_line(run: ChannelRun) -> str:
    total = stats(run)[-1]
    ack = total.ack_ms
    return (
        f"  sent {total.sent}/{total.scheduled}, ack p50 {_f(_pct(ack, 50))} ms, "
        f"p99 {_f(_pct(ack, 99))} ms, max {_f(_max(ack))} ms, in window "
        f"{total.in_window}/{total.sent}, kinds: {total.kinds}, "
        f"lag p99 {_f(_pct(total.lag_ms, 99))} ms"
    )


def notes(run: ChannelRun) -> str:
    rec = run.rec
    parts = []
    if rec is not None:
        cpu = 100 * rec.cpu_seconds / rec.wall_seconds
        parts.append(f"bench process CPU (load generator and fakes) {_f(cpu, 0)} % of one core")
    levels = ", ".join(f"{v} {k}" for k, v in sorted(run.log_levels.items())) or "none"
    parts.append(f"gateway log lines at WARNING or above: {levels}")
    return "; ".join(parts)


# --- report -----------------------------------------------------------------------------------


def method_text(args: argparse.Namespace, windows: Mapping[str, float]) -> str:
    promised = ", ".join(f"{name} {windows[name]:g} s" for name in NAMES if name in windows)
    margin = PlatformChannelSettings().margin.total_seconds() * 1000
    return "\n\n".join(
        [
            f"One run of {args.duration:g} s at {args.channel_rate:g} messages per second in "
            "total, open-loop (message *i* is sent at t0 + *i*/rate whatever the replies). "
            f"Message *i* goes to channel *i* mod 6 ({', '.join(NAMES)}), so each channel gets "
            "a sixth of the rate; the texts are the web scenarios' message mix (same builder "
            "and seed). Every message comes from a platform user of its own (a new customer "
            "and conversation each), so the first send call the platform's fake receives for "
            "that user is the message's ack; calls are matched to messages by recipient "
            "(Telegram `chat_id`, Slack `channel`, WhatsApp `to`, Messenger `recipient.id`, "
            "Twilio `To`, the email's envelope recipient).",
            "Webhooks are built and signed as each platform does it (Telegram's secret-token "
            "header, Slack's v0 HMAC with its timestamp, Meta's `X-Hub-Signature-256`, Twilio's "
            "`X-Twilio-Signature` over the gateway URL; the builders of tests/fakes) and POSTed "
            "to `/webhooks/<channel>` through one aiohttp session with an unlimited connection "
            "pool (idle keep-alive connections are reused, a new one is opened only when none "
            f"is idle) and a {WEBHOOK_TIMEOUT:g} s client timeout. Email: a customer mail is "
            f"handed to the gateway's SMTP listener over one of {EMAIL_CONNECTIONS} persistent "
            "SMTP connections opened (and greeted with EHLO) before the warm-up, MAIL FROM and "
            "RCPT TO first, then DATA; so SMTP connection set-up and handshakes are not what is "
            "measured.",
            "*Ack latency* runs from t0, taken just before the request is handed to aiohttp "
            "(for email: just before the DATA command), to the moment the platform's fake "
            "received the first send call for that user (for email: the end of the reply's "
            'DATA at the fake relay). It therefore contains a little more than "webhook '
            "received to the ack's send call\": the client writing the request, and the "
            "gateway's request to the fake (the email channel opens a new SMTP connection to "
            "the relay for each reply). *2xx* is from t0 to the complete response of the "
            "webhook (the gateway answers once the message is stored), for email to the 250 "
            "reply to DATA. A message with no ack at all counts as outside its window and as "
            "infinitely late (∞) in the percentiles and maximum. After the last send the "
            f"client waits at least {args.grace:g} s for outstanding acks, and for a message "
            "still without one until its window (plus 1 s) is over, so the share inside the "
            f"window is exact for every channel, email's {windows['email']:g} s included. "
            "*received → ack's send call* is the issue's measure, taken inside the gateway: "
            "from the inbound message's receive time (the webhook read and its signature "
            "checked; for email, the mail parsed) to the moment the dispatcher first called the "
            "platform's API with the first reply to it (`first_call_at` in the reply's delivery "
            "record), both on the gateway's clock. The target check uses it; the client-side "
            "ack latency adds the HTTP ways in and out and this process's own scheduling. "
            "*lag* is the load generator's own delay (send time minus scheduled time; for "
            "email it includes waiting for a free connection, MAIL FROM and RCPT TO).",
            f"Windows: each channel's default in bot/settings.py ({promised}), also written "
            "into the gateway's configuration as `promise`, so the gateway works to the "
            "windows checked. *first reply kinds* are read from the text of the first send "
            "call: the receipt texts of bot/pipeline.py, the handoff plan's "
            "wording, anything else is the answer itself (`solution`). When Rasa is expected "
            f"to answer within the window minus the channel's margin ({margin:g} ms), the "
            "gateway waits that long at most for the answer and sends it as the ack (else a "
            "receipt; bot/ack.py), so a `solution` ack takes as long as Rasa did. Email is "
            "receipt-first (`answer_as_ack = false`): its ack is a receipt saying when the "
            "answer will come, sent at once, and the answer follows. The details split the "
            "send-call latency by the first reply's kind (its `kind` in the gateway's "
            "database): *receipts* is the ack path alone; *answers as the ack* waited for the "
            "answer, which the target counts too. "
            "*gateway-side ack* is the gateway's own first-reply latency from its event log, "
            "from when it starts storing the message to when the reply is stored; the rest of "
            "the client's number is the webhook's way in (HTTP, signature check) and the "
            "delivery (the dispatcher's queue, rendering, the send to the fake). *errors* are "
            "webhook responses other than 2xx, SMTP refusals, timeouts, connection errors and "
            "replies the gateway marked as failed deliveries.",
            "Everything runs on 127.0.0.1 on this one machine: the load generator (one asyncio "
            "loop, aiohttp, aiosmtplib), the platform fakes (tests/fakes, in the same process "
            "on an event loop of their own in a thread, so they share the interpreter lock with "
            "the load generator: a fake can record a call a little late when the generator "
            "holds it, which only makes the numbers worse), a fresh gateway with an empty "
            "database and all six channels enabled, and a freshly started Rasa (`nice -n "
            f"{RASA_NICE}`). Before measuring, each of the six warm-up texts goes out on every "
            "channel (36 messages, not counted) and the run waits for their answers.",
        ]
    )


def report(run: ChannelRun, args: argparse.Namespace, command: str, facts: list[str]) -> None:
    """Print the tables and targets, and write the ``channel_ack`` section of ``args.out``."""
    if run.rec is not None:
        print(f"\nChannels at {run.rate:g} msg/s\n{plain(table(run))}\n{plain(detail_table(run))}")
        print(f"  {notes(run)}")
        results = [
            "Latencies in milliseconds, measured by the client.",
            "",
            markdown(table(run)),
            "",
            "Details:",
            "",
            markdown(detail_table(run)),
            "",
            f"Notes: {notes(run)}.",
        ]
    else:
        results = [f"The run failed: {run.failure}"]
    print("\nTargets (channels):")
    lines = ["| target | measured | result |", "| --- | --- | --- |"]
    for check in checks(run):
        verdict = "PASS" if check.passed else "FAIL"
        print(f"  {verdict}  {check.target}: {check.measured}")
        lines.append(f"| {check.target} | {check.measured} | **{verdict}** |")
    rasa = ""
    if math.isfinite(run.rasa_startup):
        rasa = f", including a Rasa start of {run.rasa_startup:.0f} s"
    body = [
        "## Channel ack latency (`ack_latency.py --scenarios channels`)",
        "",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Written by `bench/ack_latency.py` "
        "(bench/channel_load.py; see bench/README.md); the numbers below are as measured, "
        "with no adjustment.",
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
        f"Wall time of this scenario: {run.wall / 60:.1f} min{rasa}.",
        "",
        "### Method",
        "",
        method_text(args, run.windows),
        "",
        "### Results",
        "",
        *results,
        "",
        "### Targets",
        "",
        *lines,
        "",
    ]
    write_section(args.out, "channel_ack", "\n".join(body))
