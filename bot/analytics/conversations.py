"""The bot's side: ack and answer latency, sessions, deflection, handoffs. Pure.

A **session** is a run of customer messages (``received``; reactions, edits and joins do
not count, nor a message that was the customer's rating: a ``csat`` event names it) in one
conversation with no gap over ``SESSION_GAP``; it belongs to the period it
starts in. A session that starts while the conversation has an open ticket is with a human
and is left out. A bot session is **handed off** when a ``handed_off`` event of its
conversation falls between its start and the next session's start; otherwise it is
**deflected**. A deflected session **came back** when the
conversation's next session starts within ``CAME_BACK`` of its last message. A customer
message is **unanswered** when it got a ``pending`` event (nothing could answer it then), or
when a reply to it was marked ``unsure`` (the knowledge base had no confident answer): an
``acked`` event with ``unsure`` true names it as its ``message_id``, an ``answered`` one as
its ``question``. A message that was both counts once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.analytics.measures import time_labels
from bot.analytics.model import Log, Options, Sample

SESSION_GAP = timedelta(minutes=30)
CAME_BACK = timedelta(hours=24)
_ANSWER_KINDS = ("solution",)  # an ack that is the answer itself


@dataclass
class Session:
    conversation_id: str
    start: datetime
    last: datetime
    with_human: bool
    messages: list[str] = field(default_factory=list)
    handed_off: bool = False
    next_start: datetime | None = None  # the conversation's next session


def acks(log: Log, options: Options) -> list[Sample]:
    """Every ``acked`` event in the period; ``hit``: inside its channel's promised window.
    A channel without a known window counts as outside."""
    samples = []
    for event in log.events:
        if event.type != "acked" or not options.covers(event.at):
            continue
        labels = _labels(log, options, event.conversation_id, event.at)
        labels["kind"] = str(event.data.get("kind", "none"))
        value = float(event.data.get("latency_ms", 0.0))
        promise = options.promises_ms.get(labels["channel"])
        samples.append(Sample(value, labels, hit=promise is not None and value <= promise))
    return samples


BOT_STAGES = ("inbox_ack", "wait", "nlu", "kb")


def bot_stages(log: Log, options: Options) -> dict[str, list[float]]:
    """Milliseconds per bot stage of the turns whose replies were logged in the period:
    ``inbox_ack`` is each ack's latency (storing the message to storing its first reply);
    ``wait``, ``nlu`` and ``kb`` come from ``stages_ms`` on a turn's first reply (the pipeline
    logs them; a stage the turn did not go through is absent, not 0)."""
    values: dict[str, list[float]] = {stage: [] for stage in BOT_STAGES}
    for event in log.events:
        if event.type not in ("acked", "answered") or not options.covers(event.at):
            continue
        if event.type == "acked":
            values["inbox_ack"].append(float(event.data.get("latency_ms", 0.0)))
        stages = event.data.get("stages_ms")
        if isinstance(stages, dict):
            for stage in BOT_STAGES[1:]:
                value = stages.get(stage)
                if isinstance(value, int | float):
                    values[stage].append(float(value))
    return values


def answers(log: Log, options: Options) -> list[Sample]:
    """Bot answer latency: each ``answered`` reply of type answer, and each ack that was the
    answer (kind solution), in the period. The event log does not link a later reply to its
    question, so this counts replies, not questions."""
    samples = []
    for event in log.events:
        if not options.covers(event.at):
            continue
        data = event.data
        is_answer = (event.type == "answered" and data.get("type") == "answer") or (
            event.type == "acked" and data.get("kind") in _ANSWER_KINDS
        )
        if is_answer:
            labels = _labels(log, options, event.conversation_id, event.at)
            labels["source"] = str(data.get("source", "unknown"))
            samples.append(Sample(float(data.get("latency_ms", 0.0)), labels))
    return samples


def sessions(log: Log, options: Options) -> list[Session]:
    """Bot sessions starting in the period, in order of their start."""
    open_tickets: dict[str, str] = {}  # ticket id -> its conversation
    latest: dict[str, Session] = {}
    found: list[Session] = []
    ratings = rating_messages(log)
    for event in log.events:
        conversation = event.conversation_id
        if event.type == "handed_off" and event.ticket_id and conversation:
            open_tickets[event.ticket_id] = conversation
            if (session := latest.get(conversation)) is not None and not session.with_human:
                session.handed_off = True
        elif event.type == "ticket_followed" and event.ticket_id in open_tickets and conversation:
            open_tickets[event.ticket_id] = conversation
        elif event.type == "resolved" and event.ticket_id:
            open_tickets.pop(event.ticket_id, None)
        elif (
            event.type == "received"
            and conversation
            and event.message_id
            and event.message_id not in log.not_messages
            and event.message_id not in ratings
        ):
            session = latest.get(conversation)
            if session is None or event.at - session.last > SESSION_GAP:
                if session is not None:
                    session.next_start = event.at
                with_human = conversation in open_tickets.values()
                session = Session(conversation, event.at, event.at, with_human)
                latest[conversation] = session
                found.append(session)
            session.last = event.at
            session.messages.append(event.message_id)
    return [s for s in found if options.covers(s.start)]


def came_back(session: Session) -> bool:
    """The conversation's next session (bot or human) starts within ``CAME_BACK``."""
    return session.next_start is not None and session.next_start - session.last <= CAME_BACK


def pending_messages(log: Log) -> set[str]:
    return {e.message_id for e in log.events if e.type == "pending" and e.message_id}


def unanswered_messages(log: Log) -> set[str]:
    """Pending messages and those with an unsure reply (the module's definition)."""
    unsure: set[str] = set()
    for event in log.events:
        if event.type in ("acked", "answered") and event.data.get("unsure") is True:
            question = event.message_id if event.type == "acked" else event.data.get("question")
            if isinstance(question, str):
                unsure.add(question)
    return pending_messages(log) | unsure


def rating_messages(log: Log) -> set[str]:
    """Customer messages that were a written rating (not a question to the bot)."""
    return {e.message_id for e in log.events if e.type == "csat" and e.message_id}


def handoff_reasons(log: Log, options: Options) -> tuple[Counter[str], Counter[str]]:
    """Handoffs in the period by intent, and by the cues that raised their priority."""
    intents: Counter[str] = Counter()
    cues: Counter[str] = Counter()
    for event in log.events:
        if event.type == "handed_off" and options.covers(event.at):
            intent, *rest = str(event.data.get("reason", "unknown")).split(", ")
            intents[intent] += 1
            cues.update(rest)
    return intents, cues


def _labels(log: Log, options: Options, conversation: str | None, at: datetime) -> dict[str, str]:
    key = conversation or ""
    return {
        "channel": log.channels.get(key, "unknown"),
        "tier": log.tiers.get(key, "unknown"),
        **time_labels(at, options.timezone),
    }
