"""Which queue a handoff goes to and at what priority. Pure.

The queue is the first routing rule matching the intent, language, tier and channel, else the
default queue. Priority starts from the intent (an outage is urgent, a complaint high) and goes
up one level for each signal: urgency cues ("asap", "right now"), frustration cues (insults of
the service, "!!!", shouting in capitals), and an enterprise customer. Signals alone never make
a ticket urgent: only the outage intent does, so an angry but routine message cannot jump the
urgent queue.
"""

from __future__ import annotations

import re

from bot.handoff.config import PRIORITIES, Priority, RoutingSettings, Tier

_ORDER = list(PRIORITIES)
_BY_INTENT = {
    "urgent_outage": Priority.URGENT,
    "complaint": Priority.HIGH,
    "refund_request": Priority.NORMAL,
    "human_handoff": Priority.NORMAL,
    "order_status": Priority.NORMAL,
}
URGENCY = re.compile(
    r"\b(urgent(ly)?|asap|immediately|right now|emergency|straight away|as soon as possible)\b",
    re.IGNORECASE,
)
FRUSTRATION = re.compile(
    r"\b(ridiculous|terrible|worst|unacceptable|furious|angry|disgusting|useless|awful|"
    r"pathetic|fed up|third time|still waiting)\b|!{2,}",
    re.IGNORECASE,
)
_SHOUTED_WORD = re.compile(r"\b[A-Z]{3,}\b")


def queue_for(routing: RoutingSettings, facts: dict[str, str | None]) -> str:
    """``facts``: intent, language, tier and channel of the handoff."""
    return next((r.queue for r in routing.rules if r.when.matches(facts)), routing.default_queue)


def is_shouting(text: str) -> bool:
    return len(_SHOUTED_WORD.findall(text)) >= 2


FILLER_WORDS = 50  # a message this long or longer ...
FILLER_VARIETY = 0.1  # ... with fewer distinct words than this share is filler


def is_filler(text: str) -> bool:
    """A long message of a few words repeated ("word word word …", pasted lorem ipsum): no
    question for anyone, and no ground for a classifier's confidence (one such message was
    read as an outage and opened an urgent ticket)."""
    words = re.findall(r"\w+", text.lower())
    return len(words) >= FILLER_WORDS and len(set(words)) < FILLER_VARIETY * len(words)


def cues(text: str, tier: Tier = Tier.CONSUMER) -> list[str]:
    """The signals found, named as they appear in ticket reasons."""
    found = ["enterprise"] if tier is Tier.ENTERPRISE else []
    if URGENCY.search(text):
        found.append("urgency")
    if FRUSTRATION.search(text) or is_shouting(text):
        found.append("frustration")
    return found


def priority_for(intent: str | None, text: str, tier: Tier = Tier.CONSUMER) -> Priority:
    base = _BY_INTENT.get(intent or "", Priority.NORMAL)
    if base is Priority.URGENT:
        return base
    level = min(_ORDER.index(base) + len(cues(text, tier)), _ORDER.index(Priority.HIGH))
    return _ORDER[max(level, _ORDER.index(base))]


def raised(priority: Priority) -> Priority:
    """One level up (an escalation after a breach), up to urgent."""
    return _ORDER[min(_ORDER.index(priority) + 1, len(_ORDER) - 1)]


def at_most(priority: Priority, limit: Priority) -> bool:
    """Whether ``priority`` ranks at or below ``limit`` (low < normal < high < urgent)."""
    return _ORDER.index(priority) <= _ORDER.index(limit)
