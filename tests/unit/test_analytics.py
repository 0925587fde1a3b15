"""Statistics on a small hand-built event log with known answers, and `promptly report`."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.analytics import events
from bot.analytics.measures import distribution, percentile, share
from bot.analytics.model import Log, Options
from bot.analytics.report import options_for
from bot.analytics.stats import Report, compute
from bot.cli import main
from bot.handoff.calendar import Calendar
from bot.settings import Settings
from bot.store.base import Event
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from tests.unit.test_store import pg_database

SINCE = datetime(2026, 11, 16, tzinfo=UTC)  # a Monday
UNTIL = SINCE + timedelta(days=7)
CONVERSATIONS = {
    "c1": ("web", "consumer"),
    "c2": ("email", "enterprise"),
    "c3": ("web", "business"),
}
TICKET_CALENDARS = {"t1": "default", "t2": "24x7", "t3": "default"}


def at(day: int, hour: int, minute: int = 0, second: float = 0.0) -> datetime:
    """Day 0 is Monday 16 November 2026 (UTC)."""
    return SINCE + timedelta(days=day, hours=hour, minutes=minute, seconds=second)


def ack(latency: float, kind: str, source: str = "rasa") -> dict[str, Any]:
    return {"latency_ms": latency, "kind": kind, "source": source, "type": "ack"}


def handoff(queue: str, priority: str, tier: str, reason: str, resolution: bool) -> dict[str, Any]:
    due = at(9, 0).isoformat() if resolution else None
    return {
        "queue": queue,
        "priority": priority,
        "tier": tier,
        "reason": reason,
        "resolution_due": due,
    }


def reply(agent: str, first: bool, within: bool, stated_met: bool | None = None) -> dict[str, Any]:
    return {"agent": agent, "first_response": first, "within_sla": within, "stated_met": stated_met}


# (at, type, conversation, message, ticket, data)
SCENARIO: list[tuple[datetime, str, str | None, str | None, str | None, dict[str, Any]]] = [
    # Before the period: not counted, but the conversation exists.
    (at(-1, 23), "received", "c1", "m0", None, {"channel": "web"}),
    (at(-1, 23, 0, 0.1), "acked", "c1", "m0", None, ack(100, "solution")),
    # c1: answered by the bot twice, ten hours apart: two deflected sessions, one came back.
    (at(0, 10), "received", "c1", "m1", None, {"channel": "web"}),
    (at(0, 10, 0, 0.8), "acked", "c1", "m1", None, ack(800, "solution")),
    (at(0, 20), "received", "c1", "m2", None, {"channel": "web"}),
    (at(0, 20, 0, 2.5), "acked", "c1", "m2", None, ack(2500, "receipt", "gateway")),
    (
        at(0, 20, 0, 3),
        "answered",
        "c1",
        "r2",
        None,
        {"latency_ms": 3000, "source": "rasa", "type": "answer"},
    ),
    # A reaction on Tuesday morning is not the customer coming back.
    (at(1, 8), "received", "c1", "m9", None, {"channel": "web", "chars": 0}),
    # c2 (email, enterprise): Rasa down, then a refund handoff on Tuesday 17:01; the first
    # response breaches (after a warning), a pause, a next response in time, resolved, rated
    # 2 and then changed to 4.
    (at(1, 17), "received", "c2", "m3", None, {"channel": "email"}),
    (at(1, 17, 0, 1), "acked", "c2", "m3", None, ack(1000, "receipt", "gateway")),
    (at(1, 17, 0, 1), "pending", "c2", "m3", None, {"reason": "rasa_unavailable"}),
    (
        at(1, 17, 1),
        "handed_off",
        "c2",
        None,
        "t1",
        handoff("billing", "high", "enterprise", "refund, urgent", True),
    ),
    (at(2, 9, 30), "sla_warning", "c2", None, "t1", {"timer": "first_response:warning"}),
    (at(2, 10), "sla_breach", "c2", None, "t1", {"timer": "first_response:breach"}),
    (at(2, 10, 15), "assigned", "c2", None, "t1", {"agent": "a1"}),
    (at(2, 10, 30), "agent_replied", "c2", "r3", "t1", reply("a1", True, False, False)),
    (at(2, 11), "waiting_on_customer", "c2", None, "t1", {"by": "a1"}),
    (at(2, 13), "customer_replied", "c2", None, "t1", {}),
    (at(2, 14), "agent_replied", "c2", "r4", "t1", reply("a1", False, True)),
    (at(2, 15), "resolved", "c2", None, "t1", {"agent": "a1"}),
    (at(2, 16), "csat", "c2", None, "t1", {"rating": 2, "replaces": None}),
    (at(3, 9), "csat", "c2", None, "t1", {"rating": 4, "replaces": {"rating": 2}}),
    # c3 (web, business): asks for a human on Thursday; taken, transferred, answered by
    # another agent, resolved, rated 5. Back an hour later with a complaint: a new ticket
    # that breaches with no warning and is still open at the end.
    (at(3, 9), "received", "c3", "m4", None, {"channel": "web"}),
    (at(3, 9, 0, 1.5), "acked", "c3", "m4", None, ack(1500, "solution")),
    (at(3, 9, 2), "received", "c3", "m5", None, {"channel": "web"}),
    (
        at(3, 9, 2),
        "handed_off",
        "c3",
        None,
        "t2",
        handoff("general", "normal", "business", "human", False),
    ),
    (at(3, 9, 2, 0.3), "acked", "c3", "m5", None, ack(300, "plan", "handoff")),
    (at(3, 9, 10), "taken", "c3", None, "t2", {"by": "a2", "agent": "a2"}),
    (at(3, 9, 20), "transferred", "c3", None, "t2", {"by": "a2", "queue": "tech"}),
    (at(3, 9, 20), "assigned", "c3", None, "t2", {"agent": "a3"}),
    (at(3, 9, 40), "agent_replied", "c3", "r5", "t2", reply("a3", True, True)),
    (at(3, 10), "resolved", "c3", None, "t2", {"agent": "a3"}),
    (at(3, 10, 5), "csat", "c3", None, "t2", {"rating": 5, "replaces": None}),
    (at(3, 11), "received", "c3", "m6", None, {"channel": "web"}),
    (
        at(3, 11, 1),
        "handed_off",
        "c3",
        None,
        "t3",
        handoff("general", "normal", "business", "complaint", True),
    ),
    (at(3, 11, 1, 0.2), "acked", "c3", "m6", None, ack(200, "plan", "handoff")),
    (at(3, 12), "sla_breach", "c3", None, "t3", {"timer": "first_response:breach"}),
]


def log_of(scenario: list[tuple[Any, ...]]) -> Log:
    return Log(
        events=tuple(Event(i + 1, *row) for i, row in enumerate(scenario)),
        channels={c: ch for c, (ch, _) in CONVERSATIONS.items()},
        tiers={c: tier for c, (_, tier) in CONVERSATIONS.items()},
        calendars=TICKET_CALENDARS,
        not_messages=frozenset({"m9"}),
    )


def options(since: datetime = SINCE, until: datetime = UNTIL) -> Options:
    calendars = {
        "default": Calendar.build("UTC", {"mon-fri": "09:00-18:00"}),
        "24x7": Calendar.always_open(),
    }
    promises = {"web": 2000.0, "email": 300_000.0}
    return Options(since, until, ZoneInfo("UTC"), promises, calendars)


@pytest.fixture(scope="module")
def report() -> Report:
    return compute(log_of(SCENARIO), options())


# -- the bot's side -------------------------------------------------------------------------


def test_ack_latency_nearest_rank_and_window(report: Report) -> None:
    acks = report.acks.all
    assert acks.distribution.count == 6  # the Sunday ack is before the period
    assert (acks.distribution.p50, acks.distribution.p90) == (800, 2500)
    assert (acks.distribution.p99, acks.distribution.max) == (2500, 2500)
    assert (acks.within.hits, acks.within.count) == (5, 6)
    web, email = report.acks.by["channel"]["web"], report.acks.by["channel"]["email"]
    assert (web.within.hits, web.within.count, email.within.hits) == (4, 5, 1)
    assert report.acks.by["kind"]["plan"].distribution.count == 2
    assert set(report.acks.by["weekday"]) == {"mon", "tue", "thu"}
    assert report.acks.by["tier"]["enterprise"].distribution.max == 1000


def test_bot_answer_latency_counts_answers_and_solution_acks(report: Report) -> None:
    answers = report.answers.all
    assert (answers.count, answers.p50, answers.max) == (3, 1500, 3000)


def test_sessions_deflection_and_handoffs(report: Report) -> None:
    s = report.sessions
    assert s.count == 5
    assert (s.deflected.hits, s.handed_off.hits) == (2, 3)
    assert (s.came_back.hits, s.came_back.count) == (1, 2)
    assert (s.unanswered.hits, s.unanswered.count) == (1, 6)
    assert s.reasons == {"complaint": 1, "human": 1, "refund": 1}
    assert s.cues == {"urgent": 1}
    assert s.by_channel["web"].share == pytest.approx(0.5)


# -- tickets --------------------------------------------------------------------------------


def test_first_response_in_calendar_and_business_time(report: Report) -> None:
    assert report.tickets == 3
    calendar = report.first_response.calendar
    assert calendar.all.count == 2  # t3 is still waiting
    assert calendar.by["queue"]["billing"].max == 17 * 3600 + 29 * 60
    # Tuesday 17:01-18:00 and Wednesday 09:00-10:30 are open: 149 minutes.
    assert report.first_response.business.by["queue"]["billing"].max == 149 * 60
    assert report.first_response.business.by["queue"]["general"].max == 38 * 60  # 24x7


def test_pause_leaves_resolution_business_time(report: Report) -> None:
    resolution = report.resolution
    assert resolution.calendar.all.count == 2
    assert resolution.calendar.by["queue"]["billing"].max == 21 * 3600 + 59 * 60
    # 59 + 360 open minutes, less the two hours waiting on the customer.
    assert resolution.business.by["queue"]["billing"].max == 299 * 60
    assert report.next_response.calendar.all.max == 3600
    assert report.next_response.business.all.max == 3600
    assert report.stages.all["waiting_on_customer"].max == 7200


def test_sla_outcomes_per_clock(report: Report) -> None:
    first = report.sla["first_response"]
    assert (first.all.met, first.all.breached, first.all.open) == (1, 2, 0)
    assert first.by["agent"]["a3"].met == 1  # the transferred ticket, by who answered it
    assert first.by["agent"]["(none)"].breached == 1
    nxt, resolution = report.sla["next_response"].all, report.sla["resolution"].all
    assert (nxt.met, nxt.breached, nxt.open) == (1, 0, 0)
    # t2 had no resolution target; t3 is still open.
    assert (resolution.met, resolution.breached, resolution.open) == (1, 0, 1)


def test_warning_to_breach_and_stated_times(report: Report) -> None:
    w = report.warnings
    assert (w.warned_then_breached.hits, w.warned_then_breached.count) == (1, 1)
    assert (w.breaches_warned.hits, w.breaches_warned.count) == (1, 2)
    assert (report.eta_met.hits, report.eta_met.count) == (0, 1)


def test_a_warning_logged_after_its_breach_does_not_count_as_warning_first() -> None:
    late = [
        e
        if e[1] != "sla_warning"
        else (at(2, 10, 5), "sla_warning", "c2", None, "t1", {"timer": "first_response:warning"})
        for e in SCENARIO
    ]
    w = compute(log_of(sorted(late, key=lambda e: e[0])), options()).warnings
    assert (w.breaches_warned.hits, w.breaches_warned.count) == (0, 2)


def test_stages_name_the_queue_wait_of_breaches(report: Report) -> None:
    breached = report.stages.breached
    assert breached["queue_wait"].count == 1  # t3 was never assigned
    assert breached["queue_wait"].max == 17 * 3600 + 14 * 60
    assert breached["agent_reply"].max == 15 * 60


def test_csat_counts_the_latest_rating(report: Report) -> None:
    csat = report.csat
    assert (csat.all.count, csat.all.mean, csat.all.replaced) == (2, 4.5, 1)
    assert csat.all.by_score == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1}
    assert csat.by["agent"]["a1"].mean == 4
    assert set(csat.by["channel"]) == {"email", "web"}


def test_a_rating_replaced_after_the_period_counts_then() -> None:
    wednesday = compute(log_of(SCENARIO), options(SINCE, at(3, 0)))
    assert wednesday.csat.all.count == 1  # until Thursday, t1's latest rating was the 2
    assert (wednesday.csat.all.by_score["2"], wednesday.csat.all.replaced) == (1, 0)
    thursday = compute(log_of(SCENARIO), options(at(3, 0), UNTIL))
    assert thursday.csat.all.by_score == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1}


def test_a_weekend_counts_no_business_time() -> None:
    friday = [
        (
            at(4, 17, 30),
            "handed_off",
            "c2",
            None,
            "t1",
            handoff("billing", "high", "enterprise", "refund", True),
        ),
        (at(7, 9, 30), "agent_replied", "c2", "r1", "t1", reply("a1", True, True)),
    ]
    report = compute(log_of(friday), options(SINCE, UNTIL + timedelta(days=1)))
    assert report.first_response.calendar.all.max == 64 * 3600
    assert report.first_response.business.all.max == 60 * 60  # 17:30-18:00, 09:00-09:30
    assert report.sla["first_response"].by["weekday"]["fri"].met == 1


def test_options_take_windows_and_zone_from_settings() -> None:
    settings = Settings.model_validate(
        {
            "calendars": {"default": {"timezone": "Asia/Shanghai"}},
            "channels": {"web": {"promise": "300ms"}},
        }
    )
    opts = options_for(settings, SINCE, UNTIL)
    assert opts.promises_ms["web"] == 300
    assert opts.promises_ms["email"] == 300_000
    assert opts.promises_ms["telegram"] == 3000
    assert str(opts.timezone) == "Asia/Shanghai"
    assert {"default", "24x7"} <= set(opts.calendars)


def test_empty_period() -> None:
    empty = compute(log_of(SCENARIO), options(at(5, 0), at(6, 0)))
    assert empty.acks.all.distribution.count == 0
    assert empty.acks.all.distribution.p99 is None
    assert empty.acks.all.within.share is None
    assert empty.tickets == 0
    assert empty.sla["first_response"].all.share_met is None
    assert empty.sessions.count == 0
    assert empty.csat.all.mean is None


@given(st.integers(1, 7 * 24 * 60 - 1))
def test_periods_add_up(minutes: int) -> None:
    """Counts over [since, cut) and [cut, until) add up to those over [since, until)."""
    cut = SINCE + timedelta(minutes=minutes)
    whole = compute(log_of(SCENARIO), options())
    parts = [compute(log_of(SCENARIO), options(a, b)) for a, b in ((SINCE, cut), (cut, UNTIL))]
    assert sum(p.acks.all.within.hits for p in parts) == whole.acks.all.within.hits
    assert sum(p.answers.all.count for p in parts) == whole.answers.all.count
    assert sum(p.tickets for p in parts) == whole.tickets
    assert sum(p.sessions.count for p in parts) == whole.sessions.count
    for p in parts:
        for figure in (p.acks.all.within, p.sessions.deflected, p.sessions.unanswered):
            assert figure.share is None or 0 <= figure.share <= 1


# -- properties -----------------------------------------------------------------------------

values = st.lists(st.floats(0, 1e9, allow_nan=False), min_size=1, max_size=200)


@given(values, st.integers(1, 100), st.integers(1, 100))
def test_percentiles_are_monotone_observed_values(xs: list[float], p: int, q: int) -> None:
    ordered = sorted(xs)
    lo, hi = sorted((p, q))
    assert percentile(ordered, lo) <= percentile(ordered, hi)
    assert percentile(ordered, p) in xs
    assert percentile(ordered, 100) == max(xs)


@given(values)
def test_distribution_is_ordered(xs: list[float]) -> None:
    d = distribution(xs)
    assert d.p50 is not None and d.p90 is not None and d.p99 is not None and d.max is not None
    assert min(xs) <= d.p50 <= d.p90 <= d.p99 <= d.max == max(xs)


@given(st.integers(0, 1000), st.integers(0, 1000))
def test_shares_are_in_unit_interval(a: int, b: int) -> None:
    hits, count = min(a, b), max(a, b)
    s = share(hits, count)
    if count == 0:
        assert s.share is None
    else:
        assert s.share is not None and 0 <= s.share <= 1


def test_percentile_refuses_what_it_cannot_define() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)


# -- the store and the CLI ------------------------------------------------------------------


async def write_store(path: Path) -> None:
    """The scenario in a real database: customers, conversations, tickets, events."""
    store = await SQLiteStore.open(path)

    def fill(db: Any) -> None:
        for cid, (channel, tier) in CONVERSATIONS.items():
            db.execute(
                "INSERT INTO customers (id, tier, created_at) VALUES (?, ?, ?)",
                ("u" + cid, tier, SINCE.isoformat()),
            )
            db.execute(
                "INSERT INTO conversations (id, customer_id, channel, state, created_at) "
                "VALUES (?, ?, ?, 'bot', ?)",
                (cid, "u" + cid, channel, SINCE.isoformat()),
            )
        db.execute(
            "INSERT INTO messages (id, conversation_id, direction, channel, type, kind, text, "
            "created_at) VALUES ('m9', 'c1', 'in', 'web', 'customer', 'reaction', '', ?)",
            (at(1, 8).isoformat(),),
        )
        for tid, calendar in TICKET_CALENDARS.items():
            db.execute(
                "INSERT INTO tickets (id, reference, conversation_id, customer_id, queue, "
                "priority, tier, status, reason, created_at, first_response_due, sla) "
                "VALUES (?, ?, 'c2', 'uc2', 'q', 'normal', 'consumer', 'resolved', 'r', ?, ?, ?)",
                (
                    tid,
                    "PR-" + tid,
                    SINCE.isoformat(),
                    SINCE.isoformat(),
                    json.dumps({"calendar": calendar}),
                ),
            )
        for when, kind, conversation, message, ticket, data in SCENARIO:
            db.execute(
                "INSERT INTO events (at, type, conversation_id, message_id, ticket_id, "
                "data) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    when.isoformat(timespec="microseconds"),
                    kind,
                    conversation,
                    message,
                    ticket,
                    json.dumps(data),
                ),
            )

    try:
        await store.run(fill, write=True)
    finally:
        await store.close()


async def fill_postgres(conn: Any) -> None:
    """``write_store``'s scenario, in a PostgreSQL database."""
    for cid, (channel, tier) in CONVERSATIONS.items():
        await conn.execute(
            "INSERT INTO customers (id, tier, created_at) VALUES ($1, $2, $3)",
            "u" + cid,
            tier,
            SINCE,
        )
        await conn.execute(
            "INSERT INTO conversations (id, customer_id, channel, state, created_at) "
            "VALUES ($1, $2, $3, 'bot', $4)",
            cid,
            "u" + cid,
            channel,
            SINCE,
        )
    await conn.execute(
        "INSERT INTO messages (id, conversation_id, direction, channel, type, kind, text, "
        "created_at) VALUES ('m9', 'c1', 'in', 'web', 'customer', 'reaction', '', $1)",
        at(1, 8),
    )
    for tid, calendar in TICKET_CALENDARS.items():
        await conn.execute(
            "INSERT INTO tickets (id, reference, conversation_id, customer_id, queue, "
            "priority, tier, status, reason, created_at, first_response_due, sla) "
            "VALUES ($1, $2, 'c2', 'uc2', 'q', 'normal', 'consumer', 'resolved', 'r', $3, $3, $4)",
            tid,
            "PR-" + tid,
            SINCE,
            {"calendar": calendar},
        )
    for when, kind, conversation, message, ticket, data in SCENARIO:
        await conn.execute(
            "INSERT INTO events (at, type, conversation_id, message_id, ticket_id, data) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            when,
            kind,
            conversation,
            message,
            ticket,
            data,
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_events_load_matches_the_hand_built_log(tmp_path: Path, backend: str) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            await write_store(tmp_path / "p.db")
            store: SQLiteStore | PostgresStore = await SQLiteStore.open(tmp_path / "p.db")
        else:
            store = await PostgresStore.open(await stack.enter_async_context(pg_database()))
            await store.run(fill_postgres, write=True)
        try:
            loaded = await events.load(store, UNTIL)
            cut = await events.load(store, at(3, 0))
        finally:
            await store.close()
    assert loaded == log_of(SCENARIO)
    assert all(e.at < at(3, 0) for e in cut.events) and len(cut.events) < len(loaded.events)


@pytest.fixture
async def config(tmp_path: Path) -> Path:
    await write_store(tmp_path / "promptly.db")
    path = tmp_path / "promptly.toml"
    path.write_text(
        '[storage]\ndatabase = "promptly.db"\n\n'
        '[calendars.default]\ntimezone = "UTC"\nhours = { mon-fri = "09:00-18:00" }\n'
    )
    return path


PERIOD = ["--since", SINCE.isoformat(), "--until", UNTIL.isoformat()]


async def test_report_cli_json_equals_the_statistics(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli(["--config", str(config), "report", *PERIOD, "--format", "json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["acks"]["all"]["distribution"]["p50"] == 800
    assert figures["acks"]["all"]["within"]["hits"] == 5
    assert figures["sla"]["first_response"]["all"]["breached"] == 2
    assert figures["resolution"]["business"]["by"]["queue"]["billing"]["max"] == 299 * 60
    assert figures["csat"]["all"]["mean"] == 4.5


async def test_report_cli_text_and_csv_to_a_folder(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli(["--config", str(config), "report", *PERIOD]) == 0
    text = capsys.readouterr().out
    assert "Acks: 6, inside the promised window 83.3%" in text
    assert "SLA first_response: met 1, breached 2, open 0" in text
    assert "stage contributing most to breaches (p90): queue_wait" in text
    out = tmp_path / "weekly"
    assert (
        await _cli(
            ["--config", str(config), "report", *PERIOD, "--format", "csv", "--out", str(out)]
        )
        == 0
    )
    rows = (out / "report.csv").read_text().splitlines()
    assert sorted(p.name for p in out.glob("*.png")) == [
        "ack_by_hour.png",
        "ack_heatmap.png",
        "csat.png",
        "sla_by_weekday.png",
        "stages.png",
    ]
    assert (out / "ack_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "acks.all.distribution.p90,2500.0" in rows
    assert "sla.first_response.by.queue.billing.breached,1" in rows


async def test_report_cli_relative_since_and_bad_time(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli(["--config", str(config), "report", "--since", "7d"]) == 0
    assert "Promptly report" in capsys.readouterr().out
    assert await _cli(["--config", str(config), "report", "--since", "last week"]) == 2
    reversed_period = ["--since", UNTIL.isoformat(), "--until", SINCE.isoformat()]
    assert await _cli(["--config", str(config), "report", *reversed_period]) == 2


async def _cli(argv: list[str]) -> int:
    # The CLI runs its own event loop, so it runs in a thread here.
    import asyncio

    return await asyncio.to_thread(main, argv)


def test_bot_stages_per_turn_from_the_first_replies() -> None:
    first = {**ack(40, "solution"), "stages_ms": {"wait": 0.5, "nlu": 30.0, "kb": 9.0}}
    later = {"latency_ms": 900, "type": "answer", "stages_ms": {"wait": 1.0, "nlu": 880.0}}
    turns = [
        (at(1, 9), "acked", "c1", "m1", None, first),
        (at(1, 9, 1), "acked", "c1", "m2", None, ack(5, "receipt", "gateway")),
        (at(1, 9, 2), "answered", "c1", "r2", None, later),
    ]
    bot = compute(log_of(turns), options()).stages.bot
    assert (bot["inbox_ack"].count, bot["inbox_ack"].max) == (2, 40)
    assert (bot["nlu"].count, bot["nlu"].p50, bot["nlu"].max) == (2, 30.0, 880.0)
    assert (bot["kb"].count, bot["kb"].max) == (1, 9.0)  # the second turn used no KB
    assert bot["wait"].count == 2
