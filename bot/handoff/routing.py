"""Which queue a handoff goes to and at what priority. Pure.

Priority starts from the intent (an outage is urgent, a complaint high) and goes up one level
for urgency cues ("asap", "right now") and one for frustration cues (insults of the service,
"!!!", shouting in capitals). Cues alone never make a ticket urgent: only the outage intent
does, so an angry but routine message cannot jump the urgent queue.
"""

from __future__ import annotations

import re

from bot.settings import Priority, RoutingSettings

_ORDER = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT]
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


def queue_for(intent: str | None, routing: RoutingSettings) -> str:
    return routing.intents.get(intent or "", routing.default_queue)


def is_shouting(text: str) -> bool:
    return len(_SHOUTED_WORD.findall(text)) >= 2


def cues(text: str) -> list[str]:
    """The signals found in the text, named as they appear in ticket reasons."""
    found = []
    if URGENCY.search(text):
        found.append("urgency")
    if FRUSTRATION.search(text) or is_shouting(text):
        found.append("frustration")
    return found


def priority_for(intent: str | None, text: str) -> Priority:
    base = _BY_INTENT.get(intent or "", Priority.NORMAL)
    if base is Priority.URGENT:
        return base
    level = min(_ORDER.index(base) + len(cues(text)), _ORDER.index(Priority.HIGH))
    return _ORDER[max(level, _ORDER.index(base))]
