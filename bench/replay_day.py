"""Promise-keeping replay: a whole support day, compressed into minutes, through a real Promptly.

It starts Rasa and a fresh gateway on 127.0.0.1 (as ack_latency.py does) with the gateway's
clock starting at 00:00 of a weekday in the default calendar (Europe/London) and running
``86400 / (--minutes * 60)`` times real time (``[debug] clock_speed``), then plays the day:

* customers arrive following a daily curve (quiet night, morning and afternoon peaks) with
  two bursts (an outage late morning, a complaint wave in the evening), on the web channel
  (WebSocket) and on Telegram and Slack (signed webhooks to the gateway, replies to the
  platform fakes of tests/fakes); some are business or enterprise customers (set through the
  agent API before they write);
* they ask FAQ questions (Banking77 validation queries from ../shared/eval, and the
  articles' own questions), hold multi-turn conversations (follow-up questions, order status
  with its number), ask for a person or complain, answer the agent's questions, and
  sometimes rate the resolved ticket through the web CSAT route;
* a pool of simulated agents logs in and out on shifts (presence through the agent API with
  the bearer token), gets tickets assigned, replies after realistic delays, sometimes sets
  waiting-on-customer, and resolves;

then stops the stack and prints and writes (``--out``, its own section ``replay_day``) the
share acked inside the window, ack p99, SLA compliance, warnings before breach,
promised-ETA accuracy, and the independent check: bench/check_report.py recomputes the same
figures from the raw event log, compared with ``promptly report --format json`` for the
same day; every figure must be equal.

    .venv/bin/python bench/replay_day.py [--minutes 10] [--conversations 500] [--agents 6]
        [--day 2026-11-18] [--out docs/benchmarks.md] [--seed 9] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from ack_latency import (
    ROOT,
    Check,
    Orchestrator,
    faq_questions,
    free_port,
    machine_facts,
    markdown,
    order_numbers,
    plain,
    rasa_version_installed,
)
from channel_load import PLAN, gateway_config, promised_windows, recipient, running_fakes, sent_text
from check_report import recompute
from report import write_section

from bot.errors import PromptlyError

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the platform fakes live with the tests

from tests.fakes.secrets import GATEWAY_ENV  # noqa: E402

DAY = 86_400.0
ZONE = ZoneInfo("Europe/London")  # the default calendar's zone
EVAL = ROOT.parent / "shared" / "eval"
LEAD = 120.0  # real seconds between starting the stack and the day's 00:00
SECTION = "replay_day"

# Arrivals per hour of the (London) day, relative; bursts multiply it.
CURVE = (
    0.25,
    0.15,
    0.1,
    0.1,
    0.1,
    0.15,
    0.3,
    0.7,
    1.4,
    2.1,
    2.4,
    2.3,
    2.0,
    2.1,
    2.3,
    2.2,
    1.9,
    1.6,
    1.3,
    1.1,
    1.0,
    0.9,
    0.6,
    0.4,
)
BURSTS = (  # (start hour, end hour, factor, what the burst is about)
    (11.0, 11.4, 5.0, "outage"),
    (19.5, 19.8, 4.0, "complaint"),
)
CHANNEL_MIX = (("web", 0.6), ("telegram", 0.25), ("slack", 0.15))
TIER_MIX = (("consumer", 0.8), ("business", 0.15), ("enterprise", 0.05))
KIND_MIX = (
    ("faq", 0.45),
    ("faq_followup", 0.15),
    ("order", 0.1),
    ("human", 0.12),
    ("complaint", 0.08),
    ("small_talk", 0.05),
    ("out_of_scope", 0.05),
    ("outage", 0.02),  # urgent at any hour; the night has nobody on call
)
HUMAN_TEXTS = (
    "I want to talk to a person",
    "Can I speak to a human agent please?",
    "Please connect me with someone from support",
    "I need a real person to help me with my account",
)
COMPLAINT_TEXTS = (
    "I want to make a complaint, my refund still hasn't arrived",
    "This is unacceptable, I was charged twice and nobody answers",
    "I'm very unhappy with your service, my order arrived broken",
    "I want to complain about the delivery, it is two weeks late!!",
)
OUTAGE_TEXTS = (
    "Your app is down, I can't log in right now",
    "The website is not working, nothing loads, urgent",
    "Service outage? I cannot access my account at all",
)
SMALL_TALK = ("Hello", "Hi there", "Thanks!", "Thank you, that helps")
FOLLOW_UPS = (
    "Thanks. And how long does shipping take?",
    "Ok. Can I change my delivery address?",
    "One more question: how do I reset my password?",
    "And what is your returns policy?",
)
ANSWERS_TO_AGENT = (
    "Sure, the order number is {order}.",
    "It was on the 3rd, I paid by card.",
    "Yes, the email on the account is the same one.",
    "I attached the receipt earlier, it is order {order}.",
)
AGENT_QUESTION = "Could you send me the order number and the date you paid, please?"
AGENT_REPLIES = (
    "Hi, {name} here. I've looked into this and sorted it out for you.",
    "Hi, {name} here. Thanks for waiting, I have fixed this on our side.",
    "Hello, this is {name}. I've checked your account and it is all in order now.",
)


def pick(rng: random.Random, mix: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([k for k, _ in mix], weights=[w for _, w in mix])[0]


# --- the day's plan ---------------------------------------------------------------------------


@dataclass
class Visit:
    """One customer's conversation: arrives at ``at`` (clock seconds after 00:00)."""

    n: int
    at: float
    channel: str
    tier: str
    kind: str
    texts: list[str]
    rates: bool  # rates the ticket if it gets resolved (web)
    replies_to_agent: bool


def rate_at(second: float) -> float:
    hour = second / 3600
    rate = CURVE[min(int(hour), 23)]
    for start, end, factor, _ in BURSTS:
        if start <= hour < end:
            rate *= factor
    return rate


def burst_of(second: float) -> str | None:
    hour = second / 3600
    return next((what for start, end, _, what in BURSTS if start <= hour < end), None)


def plan_day(count: int, rng: random.Random, faqs: list[str], orders: list[str]) -> list[Visit]:
    """About ``count`` arrivals over the day: a Poisson process following the curve
    (thinning), with the texts of each conversation drawn up front."""
    peak = max(CURVE) * max(f for _, _, f, _ in BURSTS)
    mean = sum(CURVE) / 24 + sum((e - s) * (f - 1) * CURVE[int(s)] for s, e, f, _ in BURSTS) / 24
    rate_max = count / DAY * peak / mean
    visits: list[Visit] = []
    second = 0.0
    while True:
        second += rng.expovariate(rate_max)
        if second >= DAY:
            break
        if rng.random() * peak > rate_at(second):
            continue
        burst = burst_of(second)
        kind = pick(rng, KIND_MIX)
        if burst is not None and rng.random() < 0.6:
            kind = burst
        order = rng.choice(orders)
        if kind == "faq":
            texts = [rng.choice(faqs)]
        elif kind == "faq_followup":
            texts = [rng.choice(faqs), rng.choice(FOLLOW_UPS)]
        elif kind == "order":
            texts = ["Where is my order?", order]
        elif kind == "human":
            texts = [rng.choice(faqs), rng.choice(HUMAN_TEXTS)]
        elif kind == "complaint":
            texts = [rng.choice(COMPLAINT_TEXTS)]
        elif kind == "outage":
            texts = [rng.choice(OUTAGE_TEXTS)]
        elif kind == "small_talk":
            texts = [rng.choice(SMALL_TALK), rng.choice(faqs)]
        else:
            texts = [rng.choice(OUT_OF_SCOPE)]
        channel = pick(rng, CHANNEL_MIX)
        visits.append(
            Visit(
                n=len(visits),
                at=second,
                channel=channel,
                tier=pick(rng, TIER_MIX),
                kind=kind,
                texts=texts,
                rates=channel == "web" and rng.random() < 0.6,
                replies_to_agent=rng.random() < 0.85,
            )
        )
    return visits


def eval_texts(rng: random.Random) -> tuple[list[str], list[str]]:
    """FAQ-like questions (Banking77 validation queries) and out-of-scope ones (CLINC150
    validation ``oos``), from ../shared/eval."""
    faqs, oos = [], []
    with (EVAL / "banking77" / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("split") == "val":
                faqs.append(str(row["query"]))
    with (EVAL / "clinc150" / "intent.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("split") == "val" and row.get("label") == "oos":
                oos.append(str(row["text"]))
    rng.shuffle(faqs)
    rng.shuffle(oos)
    return faqs, oos


OUT_OF_SCOPE: list[str] = []  # filled from CLINC150 at start


@dataclass
class Shift:
    agent: str
    name: str
    start: float  # clock hours
    end: float
    queues: list[str]
    breaks: list[tuple[float, float]] = field(default_factory=list)


def shifts(agents: int) -> list[Shift]:
    """Day shifts on the general queues, staggered, with lunch breaks, plus one on-call agent
    for the urgent queue from 07:00 to 23:00 (the night is not covered: urgent tickets then
    wait, warn and breach)."""
    names = ("Ana", "Ben", "Chloe", "Dev", "Eve", "Femi", "Gus", "Hana", "Ivo", "Jo")
    day = [
        (8.5, 17.0, [(12.5, 13.25)]),
        (9.0, 17.5, [(13.0, 13.75)]),
        (10.0, 18.5, [(13.5, 14.25)]),
        (12.0, 20.5, [(16.0, 16.5)]),
        (8.0, 12.0, []),
        (14.0, 22.0, [(18.0, 18.5)]),
    ]
    out = [Shift("oncall", "Olu", 7.0, 23.0, ["urgent"], [(15.0, 15.5)])]
    for k in range(max(agents - 1, 1)):
        start, end, breaks = day[k % len(day)]
        out.append(Shift(f"a{k + 1}", names[k % len(names)], start, end, [], breaks))
    return out


# --- talking to the gateway -------------------------------------------------------------------


class Day:
    """The clock mapping, shared HTTP session and what the replay counts."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base: str,
        token: str,
        start_real: float,
        speed: float,
        fakes: Any,
    ) -> None:
        self.session = session
        self.base = base
        self.auth = {"Authorization": f"Bearer {token}"}
        self.start_real = start_real  # time.time() of the day's 00:00
        self.speed = speed
        self.fakes = fakes
        self.counts: Counter[str] = Counter()
        self.web_acks: list[float] = []  # client-side ms, send -> first reply frame
        self.platform_replies: dict[tuple[str, str], list[str]] = {}
        self.seen_calls: dict[str, int] = {}
        self.stop = asyncio.Event()

    def clock(self) -> float:
        """Clock seconds since 00:00."""
        return (time.time() - self.start_real) * self.speed

    async def until(self, second: float) -> None:
        delay = (second - self.clock()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)

    async def wait_clock(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds / self.speed, 0.0))

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(
            method, f"{self.base}{path}", json=body, headers=self.auth
        ) as response:
            data = await response.json(content_type=None)
            if response.status >= 400:
                self.counts[f"agent API {method} {path.split('/')[3]}: {response.status}"] += 1
                return None
            return data

    def poll_platforms(self) -> None:
        for platform, fake in (("telegram", self.fakes.telegram), ("slack", self.fakes.slack)):
            calls = list(fake.calls)
            for call in calls[self.seen_calls.get(platform, 0) :]:
                channel, to = recipient(platform, call)
                self.platform_replies.setdefault((channel, to), []).append(sent_text(channel, call))
            self.seen_calls[platform] = len(calls)


async def set_tier(day: Day, channel: str, external_id: str, tier: str) -> None:
    body = {"channel": channel, "external_id": external_id, "tier": tier}
    if await day.api("POST", "/api/agent/customers", body) is not None:
        day.counts[f"tier {tier}"] += 1


def platform_user(channel: str, n: int) -> tuple[str, str]:
    """(sender id, where our replies go) for platform customer ``n``."""
    if channel == "telegram":
        chat = str(6_100_000_000 + n)
        return chat, chat
    return f"UR{n:09d}", f"DR{n:09d}"


async def web_customer(day: Day, visit: Visit, rng: random.Random) -> None:
    customer = f"replay-c{visit.n}"
    if visit.tier != "consumer":
        await set_tier(day, "web", customer, visit.tier)
    url = f"{day.base}/ws?customer_id={customer}"
    frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: dict[str, float] = {}
    conversation: str | None = None
    async with day.session.ws_connect(url, autoping=True) as ws:

        async def read() -> None:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                reply_to = frame.get("in_reply_to")
                if frame.get("type") == "ack" and reply_to in sent:
                    day.web_acks.append((time.monotonic() - sent.pop(reply_to)) * 1000)
                await frames.put(frame)

        reader = asyncio.create_task(read())
        try:
            handed_off = False
            for turn, text in enumerate(visit.texts):
                cmid = f"r{visit.n}-{turn}"
                sent[cmid] = time.monotonic()
                await ws.send_json(
                    {"client_message_id": cmid, "text": text, "customer": {"id": customer}}
                )
                day.counts["web messages"] += 1
                answered = False
                deadline = time.monotonic() + 15
                while not answered and time.monotonic() < deadline:
                    try:
                        frame = await asyncio.wait_for(frames.get(), deadline - time.monotonic())
                    except TimeoutError:
                        break
                    if frame.get("type") == "accepted":
                        conversation = frame.get("conversation_id") or conversation
                    elif frame.get("type") == "ack" and frame.get("kind") == "plan":
                        handed_off = answered = True
                    elif frame.get("type") in ("ack", "answer") and frame.get("kind") != "receipt":
                        answered = True
                if handed_off:
                    break
                await day.wait_clock(rng.uniform(20, 120))  # reading, typing
            if not handed_off:
                return
            day.counts["web handoffs"] += 1
            await after_handoff(day, visit, rng, ws, frames, customer, conversation, sent)
        finally:
            reader.cancel()


async def after_handoff(
    day: Day,
    visit: Visit,
    rng: random.Random,
    ws: aiohttp.ClientWebSocketResponse,
    frames: asyncio.Queue[dict[str, Any]],
    customer: str,
    conversation: str | None,
    sent: dict[str, float],
) -> None:
    """Wait for the agent; answer their questions; rate the resolved ticket."""
    turn = len(visit.texts)
    while not day.stop.is_set():
        try:
            frame = await asyncio.wait_for(frames.get(), 5)
        except TimeoutError:
            continue
        if frame.get("type") == "agent" and str(frame.get("text", "")).endswith("?"):
            if not visit.replies_to_agent:
                continue
            await day.wait_clock(rng.uniform(120, 1800))  # the customer looks it up
            text = rng.choice(ANSWERS_TO_AGENT).format(order=10000 + visit.n)
            cmid = f"r{visit.n}-{turn}"
            turn += 1
            sent[cmid] = time.monotonic()
            await ws.send_json(
                {"client_message_id": cmid, "text": text, "customer": {"id": customer}}
            )
            day.counts["customer answers to agents"] += 1
        elif frame.get("type") == "system" and isinstance(frame.get("csat"), dict):
            if visit.rates and conversation is not None:
                await day.wait_clock(rng.uniform(10, 600))
                rating = rng.choices((5, 4, 3, 2, 1), weights=(50, 25, 12, 8, 5))[0]
                body = {
                    "customer_id": customer,
                    "ticket_id": frame["csat"]["ticket_id"],
                    "rating": rating,
                }
                path = f"/api/conversations/{conversation}/csat"
                async with day.session.post(f"{day.base}{path}", json=body) as response:
                    await response.read()
                    day.counts[f"CSAT posts: {response.status}"] += 1
            return


async def platform_customer(day: Day, visit: Visit, rng: random.Random) -> None:
    channel = visit.channel
    sender, to = platform_user(channel, visit.n)
    if visit.tier != "consumer":
        await set_tier(day, channel, sender, visit.tier)
    inbox = day.platform_replies.setdefault((channel, to), [])
    for text in visit.texts:
        before = len(inbox)
        await post_platform(day, channel, visit.n, text)
        deadline = time.monotonic() + 15
        while len(inbox) == before and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            day.poll_platforms()
        if any(PLAN.match(t.strip()) for t in inbox[before:]):
            day.counts[f"{channel} handoffs"] += 1
            break
        await day.wait_clock(rng.uniform(20, 120))
    else:
        return
    # Handed off: answer the agent's question once, if asked.
    seen = len(inbox)
    while not day.stop.is_set():
        await asyncio.sleep(0.5)
        day.poll_platforms()
        new, seen = inbox[seen:], len(inbox)
        if any(t.rstrip().endswith("?") and "rate" not in t for t in new):
            if visit.replies_to_agent:
                await day.wait_clock(rng.uniform(120, 1800))
                text = rng.choice(ANSWERS_TO_AGENT).format(order=10000 + visit.n)
                await post_platform(day, channel, visit.n, text)
                day.counts["customer answers to agents"] += 1
            return


async def post_platform(day: Day, channel: str, n: int, text: str) -> None:
    sender, to = platform_user(channel, n)
    if channel == "telegram":
        headers, body = day.fakes.telegram.signed_update(text, user_id=int(sender))
    else:
        headers, body = day.fakes.slack.signed_update(text, user_id=sender, channel=to)
    async with day.session.post(
        f"{day.base}/webhooks/{channel}", data=body, headers=headers
    ) as response:
        await response.read()
        day.counts[f"{channel} messages"] += 1
        if response.status >= 300:
            day.counts[f"{channel} webhook HTTP {response.status}"] += 1


async def customer(day: Day, visit: Visit, seed: int) -> None:
    rng = random.Random(seed)
    await day.until(visit.at)
    if day.stop.is_set():
        return
    try:
        if visit.channel == "web":
            await web_customer(day, visit, rng)
        else:
            await platform_customer(day, visit, rng)
    except (aiohttp.ClientError, OSError, ValueError) as e:
        day.counts[f"customer error: {type(e).__name__}"] += 1


# --- agents -----------------------------------------------------------------------------------


@dataclass
class Handling:
    reply_at: float | None = None  # clock second of the next reply
    resolve_at: float | None = None
    replies: int = 0
    asks: bool = False  # asks the customer a question (waiting on customer) first
    waiting_since: float | None = None


async def agent(day: Day, shift: Shift, seed: int) -> None:
    rng = random.Random(seed)
    me = {"id": shift.agent, "name": shift.name}
    handling: dict[str, Handling] = {}
    presence = "offline"

    async def set_presence(value: str) -> None:
        nonlocal presence
        if value == presence:
            return
        body = {"name": shift.name, "presence": value, "capacity": 4, "queues": shift.queues}
        if await day.api("PUT", f"/api/agent/agents/{shift.agent}", body) is not None:
            presence = value
            day.counts[f"presence {value}"] += 1

    while not day.stop.is_set():
        hour = day.clock() / 3600
        on_break = any(a <= hour < b for a, b in shift.breaks)
        wanted = (
            "away"
            if on_break and shift.start <= hour < shift.end
            else "online"
            if shift.start <= hour < shift.end
            else "offline"
        )
        await set_presence(wanted)
        if presence == "online":
            await work(day, shift, me, handling, rng)
        await asyncio.sleep(0.3)
    with contextlib.suppress(aiohttp.ClientError, OSError):
        await set_presence("offline")


async def work(
    day: Day, shift: Shift, me: dict[str, str], handling: dict[str, Handling], rng: random.Random
) -> None:
    listing = await day.api("GET", "/api/agent/tickets?status=open")
    if listing is None:
        return
    now = day.clock()
    mine = [t for t in listing["tickets"] if t.get("assignee") == shift.agent]
    for key in set(handling) - {t["id"] for t in mine}:
        del handling[key]  # resolved, returned to the queue or moved
    for ticket in mine:
        needs_reply = ticket["status"] == "new" or ticket.get("next_response_due") is not None
        h = handling.get(ticket["id"])
        if h is None:
            h = handling[ticket["id"]] = Handling(asks=rng.random() < 0.3)
            if ticket["status"] == "waiting_on_customer":  # taken over from a colleague
                h.waiting_since = now
            elif not needs_reply:
                h.resolve_at = now + rng.uniform(120, 1200)
        if needs_reply and h.reply_at is None:
            # First look and typing: median ~4 clock minutes, a long tail.
            h.reply_at = now + min(rng.lognormvariate(math.log(240), 0.6), 1500)
            h.resolve_at = None
        if needs_reply and h.reply_at is not None and now >= h.reply_at:
            await reply(day, ticket, me, h, rng)
            h.reply_at = None
        elif (
            ticket["status"] == "waiting_on_customer"
            and h.waiting_since is not None
            and now - h.waiting_since > 4 * 3600  # the customer never came back
        ):
            h.resolve_at = now
        if not needs_reply and h.resolve_at is not None and now >= h.resolve_at:
            if await day.api("POST", f"/api/agent/tickets/{ticket['id']}/resolve", {"agent": me}):
                day.counts["resolved"] += 1
            h.resolve_at = None


async def reply(
    day: Day, ticket: dict[str, Any], me: dict[str, str], h: Handling, rng: random.Random
) -> None:
    tid = ticket["id"]
    ask = h.asks and h.replies == 0
    text = AGENT_QUESTION if ask else rng.choice(AGENT_REPLIES).format(name=me["name"])
    if await day.api("POST", f"/api/agent/tickets/{tid}/replies", {"text": text, "agent": me}):
        day.counts["agent replies"] += 1
        h.replies += 1
    if ask:
        if await day.api("POST", f"/api/agent/tickets/{tid}/waiting", {"agent": me}):
            day.counts["set waiting on customer"] += 1
            h.waiting_since = day.clock()
        return
    h.waiting_since = None
    h.resolve_at = day.clock() + rng.uniform(120, 1200)  # wrap up, then resolve


# --- the run ----------------------------------------------------------------------------------


async def play(
    base: str,
    token: str,
    start_real: float,
    speed: float,
    visits: list[Visit],
    fakes: Any,
    args: argparse.Namespace,
) -> Day:
    seed = args.seed
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        day = Day(session, base, token, start_real, speed, fakes)
        late = -day.clock()
        if late < 0:
            print(f"  the day started {-late / speed:.0f}s (real) before the replay", flush=True)
        agents = [
            asyncio.create_task(agent(day, s, seed * 1000 + k))
            for k, s in enumerate(shifts(args.agents))
        ]
        customers = [asyncio.create_task(customer(day, v, seed * 7919 + v.n)) for v in visits]
        last_report = 0.0
        while day.clock() < DAY:
            await asyncio.sleep(1)
            hour = int(day.clock() // 3600)
            if hour >= last_report + 3:
                last_report = hour
                done = sum(t.done() for t in customers)
                print(f"  {hour:02d}:00 clock: {done} of {len(visits)} visits done", flush=True)
        day.stop.set()
        await asyncio.wait(agents, timeout=10)
        for task in customers:
            task.cancel()
        await asyncio.gather(*customers, *agents, return_exceptions=True)
        return day


def promptly_figures(report: Mapping[str, Any]) -> dict[str, Any]:
    """The same flat figures as check_report.recompute, from ``promptly report`` JSON."""
    out: dict[str, Any] = {}

    def acks(prefix: str, latency: Mapping[str, Any]) -> None:
        dist, within = latency["distribution"], latency["within"]
        out[f"{prefix}.count"] = dist["count"]
        out[f"{prefix}.within"] = within["hits"]
        out[f"{prefix}.share"] = within["share"]
        out[f"{prefix}.p50"] = dist["p50"]
        out[f"{prefix}.p99"] = dist["p99"]

    for channel, latency in report["acks"]["by"]["channel"].items():
        acks(f"acks.{channel}", latency)
    acks("acks.all", report["acks"]["all"])
    out["tickets"] = report["tickets"]
    for clock, split in report["sla"].items():
        c = split["all"]
        for name in ("met", "breached", "open", "share_met"):
            out[f"sla.{clock}.{name}"] = c[name]
    warned = report["warnings"]["breaches_warned"]
    out["warnings.breaches"] = warned["count"]
    out["warnings.breaches_warned"] = warned["hits"]
    out["warnings.share"] = warned["share"]
    eta = report["eta_met"]
    out["eta.count"], out["eta.met"], out["eta.share"] = eta["count"], eta["hits"], eta["share"]
    out["csat.count"] = report["csat"]["all"]["count"]
    out["csat.mean"] = report["csat"]["all"]["mean"]
    return out


def pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def ms(value: Any) -> str:
    return "–" if value is None else f"{value:.1f} ms"


def nearest(values: list[float], p: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(-(-p * len(ordered) // 100), 1) - 1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="a compressed support day through Promptly")
    p.add_argument("--minutes", type=float, default=10.0, help="real minutes the day takes")
    p.add_argument("--conversations", type=int, default=500, help="arrivals over the day")
    p.add_argument("--agents", type=int, default=6, help="simulated agents (one is on call)")
    p.add_argument(
        "--day", type=date.fromisoformat, help="the weekday replayed (default: a recent Wednesday)"
    )
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)
    if args.day is None:
        today = datetime.now(UTC).date()
        args.day = today - timedelta(days=(today.weekday() - 2) % 7 or 7)
    if args.day.weekday() >= 5:
        p.error("--day must be a weekday")
    if args.minutes <= 0 or args.minutes > 24 * 60:
        p.error("--minutes must be in (0, 1440]")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_report(config: Path, since: datetime, until: datetime) -> dict[str, Any]:
    command = [
        str(ROOT / ".venv" / "bin" / "promptly"),
        "--config",
        str(config),
        "report",
        "--since",
        since.isoformat(),
        "--until",
        until.isoformat(),
        "--format",
        "json",
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"promptly report failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    began = time.monotonic()
    rng = random.Random(args.seed)
    faqs, oos = eval_texts(rng)
    OUT_OF_SCOPE[:] = oos[:200]
    faqs = faqs[:600] + faq_questions(ROOT / "kb" / "articles")
    orders = order_numbers(ROOT / "kb" / "demo_orders.csv")
    visits = plan_day(args.conversations, rng, faqs, orders)
    speed = DAY / (args.minutes * 60)
    day_start = datetime.combine(args.day, datetime.min.time(), ZONE)
    day_end = datetime.combine(args.day + timedelta(days=1), datetime.min.time(), ZONE)
    print(
        f"replaying {args.day} ({day_start:%A}) in {args.minutes:g} min: clock speed "
        f"{speed:g}, {len(visits)} conversations, {args.agents} agents",
        flush=True,
    )
    rasa_version = rasa_version_installed()
    facts = machine_facts(rasa_version)
    tmp = Path(tempfile.mkdtemp(prefix="promptly-replay-"))
    token = secrets.token_urlsafe(24)
    failed = True
    try:
        orchestrator = Orchestrator(tmp)
        start_real = time.time() + LEAD
        real_start = datetime.fromtimestamp(start_real, UTC)
        with running_fakes() as fakes:
            # Slack signs with the sender's time and the gateway checks it against its clock.
            start_ts = day_start.timestamp()
            fakes.slack.clock = lambda: start_ts + (time.time() - start_real) * speed
            config = gateway_config(fakes, free_port()) + (
                f"\n[debug]\nclock_start = {day_start.astimezone(UTC).isoformat()!r}\n"
                f"clock_start_at = {real_start.isoformat()!r}\nclock_speed = {speed!r}\n"
            ).replace("'", '"')
            env = {**GATEWAY_ENV, "PROMPTLY_AGENT_TOKEN": token}
            with orchestrator.stack("replay", speed, config, env) as stack:
                assert stack.gateway is not None
                gateway = stack.gateway
                print(f"  stack ready in {time.monotonic() - began:.0f}s", flush=True)
                played = asyncio.run(
                    play(stack.gateway_url, token, start_real, speed, visits, fakes, args)
                )
        print("  day over; stack stopped", flush=True)
        windows = {n: w / timedelta(milliseconds=1) for n, w in promised_windows().items()}
        windows["web"] = 2000.0
        promptly = promptly_figures(run_report(gateway.config, day_start, day_end))
        recomputed = recompute(str(gateway.database), day_start, day_end, windows)
        failed = write(args, promptly, recomputed, played, visits, speed, facts, began)
    except (PromptlyError, RuntimeError, OSError, aiohttp.ClientError) as e:
        print(f"RUN FAILED: {e}", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        if args.keep or failed:
            print(f"kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


def write(
    args: argparse.Namespace,
    promptly: dict[str, Any],
    recomputed: dict[str, Any],
    played: Day,
    visits: list[Visit],
    speed: float,
    facts: list[str],
    began: float,
) -> bool:
    """Print and write the section; True when a target or the check failed."""
    keys = sorted(set(promptly) | set(recomputed))
    check_rows = [["figure", "promptly report", "check_report.py", "result"]]
    mismatches = 0
    for key in keys:
        a, b = promptly.get(key, "missing"), recomputed.get(key, "missing")
        same = a == b
        mismatches += not same
        check_rows.append([key, str(a), str(b), "PASS" if same else "FAIL"])
    for row in check_rows[1:]:
        print(f"  {row[3]} {row[0]}: promptly {row[1]}, recomputed {row[2]}")
    p = promptly
    share_met = {
        c: p.get(f"sla.{c}.share_met") for c in ("first_response", "next_response", "resolution")
    }
    web_p99 = nearest(played.web_acks, 99)
    web_in = sum(1 for v in played.web_acks if v <= 2000)
    headline = [
        ["figure", "value"],
        ["acks (gateway event log)", str(p["acks.all.count"])],
        [
            "acked inside the window",
            f"{pct(p['acks.all.share'])} ({p['acks.all.within']} of {p['acks.all.count']})",
        ],
        ["ack p50 / p99", f"{ms(p['acks.all.p50'])} / {ms(p['acks.all.p99'])}"],
        *[
            [f"  {c}: inside window, p99", f"{pct(p[f'acks.{c}.share'])}, {ms(p[f'acks.{c}.p99'])}"]
            for c in ("web", "telegram", "slack")
            if f"acks.{c}.count" in p
        ],
        [
            "web, client side: inside 2 s, p99",
            f"{pct(web_in / len(played.web_acks)) if played.web_acks else '–'}, "
            f"{ms(web_p99)} ({len(played.web_acks)} acks)",
        ],
        ["tickets handed off", str(p["tickets"])],
        *[
            [
                f"SLA {c.replace('_', ' ')}: met / breached / open",
                f"{p[f'sla.{c}.met']} / {p[f'sla.{c}.breached']} / {p[f'sla.{c}.open']} "
                f"(met {pct(share_met[c])})",
            ]
            for c in share_met
        ],
        [
            "breaches warned first",
            f"{pct(p['warnings.share'])} ({p['warnings.breaches_warned']} "
            f"of {p['warnings.breaches']})",
        ],
        ["promised ETA met", f"{pct(p['eta.share'])} ({p['eta.met']} of {p['eta.count']})"],
        ["CSAT", f"{p['csat.count']} ratings, mean {p['csat.mean']}"],
    ]
    checks = [
        Check(
            "100 % acked inside the window", pct(p["acks.all.share"]), p["acks.all.share"] == 1.0
        ),
        Check(
            "100 % of breaches preceded by a warning",
            f"{pct(p['warnings.share'])} of {p['warnings.breaches']}",
            p["warnings.share"] in (1.0, None),
        ),
        Check(
            "independent recomputation equals the report, every figure",
            f"{len(keys) - mismatches} of {len(keys)} equal",
            mismatches == 0,
        ),
    ]
    print(plain(headline))
    for c in checks:
        print(f"  {'PASS' if c.passed else 'FAIL'}: {c.target} (measured {c.measured})")
    kinds = Counter(v.kind for v in visits)
    channels = Counter(v.channel for v in visits)
    tiers = Counter(v.tier for v in visits)
    activity = ", ".join(f"{k}: {v}" for k, v in sorted(played.counts.items()))
    command = " ".join(
        shlex.quote(a) for a in [".venv/bin/python", "bench/replay_day.py", *sys.argv[1:]]
    )
    wall = time.monotonic() - began
    body = "\n".join(
        [
            "## Promise-keeping replay (`replay_day.py`)",
            "",
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {wall / 60:.1f} minutes wall time: "
            f"`{command}`",
            "",
            *facts,
            "",
            f"The day {args.day} ({args.day:%A}, Europe/London) replayed in {args.minutes:g} "
            f"real minutes: the gateway's clock ran {speed:g}× real time (`[debug] clock_speed`). "
            f"{len(visits)} conversations arriving on a daily curve with an outage burst "
            f"(11:00–11:24) and a complaint wave (19:30–19:48): "
            + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            + "; channels "
            + ", ".join(f"{k} {v}" for k, v in sorted(channels.items()))
            + "; tiers "
            + ", ".join(f"{k} {v}" for k, v in sorted(tiers.items()))
            + f". FAQ texts: Banking77 validation queries and the articles' questions; "
            f"out of scope: CLINC150 validation `oos`. {args.agents} simulated agents on "
            "staggered shifts with breaks (one on call for the urgent queue 07:00–23:00), "
            "replying after a lognormal delay (median 4 clock minutes), asking a question and "
            "setting waiting-on-customer on 30 % of tickets, resolving 2–20 clock minutes "
            "after their reply. Web customers rate 60 % of resolved tickets. Figures are for "
            "[00:00, 24:00) of the day, from `promptly report --format json`; ack latencies "
            "are real milliseconds, SLA times clock time.",
            "",
            f"What the replay did: {activity}.",
            "",
            markdown(headline),
            "",
            "Targets:",
            "",
            *[
                f"- {'PASS' if c.passed else 'FAIL'}: {c.target} (measured {c.measured})"
                for c in checks
            ],
            "",
            "Independent check (`bench/check_report.py`: plain sqlite3 on the `events` table, "
            "nothing from `bot/`), figure by figure:",
            "",
            markdown(check_rows),
        ]
    )
    write_section(args.out, SECTION, body)
    print(f"wrote section {SECTION} of {args.out}", flush=True)
    return not all(c.passed for c in checks)


if __name__ == "__main__":
    sys.exit(main())
