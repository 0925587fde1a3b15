"""What the bot does with a search result: answer, offer a choice, or decline. Pure policy.

Three bands of the best hit's score:

- at or above ``floor``: answer with the best passage and its source;
- at or above ``offer_floor`` (lower): not sure enough to answer, but close enough to be
  useful, so offer the top titles (up to ``MAX_CHOICES``) for the customer to pick;
- below: say so, offer a human, and count the question as unanswered.

Why an offer band: between "confident" and "no idea" the right article is usually among the
first few, and a customer picking it from a short list beats both a wrong answer and a handoff.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

MAX_CHOICES = 3
ELLIPSIS = "…"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_CHOICE = re.compile(r"\s*#?([1-9])[.)]?\s*")


class Scored(Protocol):
    @property
    def article_id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def score(self) -> float: ...


H = TypeVar("H", bound="Scored")


class Band(StrEnum):
    ANSWER = "answer"
    OFFER = "offer"
    DECLINE = "decline"


@dataclass(frozen=True)
class Decision(Generic[H]):
    band: Band
    hits: tuple[H, ...]  # ANSWER: the best hit; OFFER: the choices, best first; DECLINE: none
    best_score: float | None  # None when the search found nothing at all


def decide(hits: Sequence[H], floor: float, offer_floor: float) -> Decision[H]:
    """The band of ``hits`` (best first, one per article, as ``KnowledgeBase.search`` gives)."""
    if offer_floor > floor:
        raise ValueError(f"offer_floor {offer_floor} is above floor {floor}")
    if not hits:
        return Decision(Band.DECLINE, (), None)
    best = hits[0]
    if best.score >= floor:
        return Decision(Band.ANSWER, (best,), best.score)
    if best.score >= offer_floor:
        choices = tuple(hit for hit in hits[:MAX_CHOICES] if hit.score >= offer_floor)
        return Decision(Band.OFFER, choices, best.score)
    return Decision(Band.DECLINE, (), best.score)


def compose(passage: str, title: str, limit: int | None = None) -> str:
    """The answer text: the passage and its source, in at most ``limit`` characters.

    A passage too long for the channel is cut at the last sentence (else word) that fits, and
    the source line always stays: the customer can read the rest there. One message beats an
    answer split over several SMS that may arrive out of order.
    """
    source = f"\n\nSource: {title}"
    text = passage.strip() + source
    if limit is None or len(text) <= limit:
        return text
    room = limit - len(source) - len(ELLIPSIS)
    if room < 1:
        return (passage.strip()[: max(limit - len(ELLIPSIS), 0)] + ELLIPSIS)[:limit]
    return _cut(passage.strip(), room) + ELLIPSIS + source


def _cut(text: str, room: int) -> str:
    head = text[: room + 1]
    sentences = [m.start() for m in _SENTENCE_END.finditer(head)]
    if sentences and sentences[-1] > room // 2:
        return text[: sentences[-1]].rstrip()
    space = head.rfind(" ", 0, room)
    if space > room // 2:
        return text[:space].rstrip()
    return text[:room]


def offer_text(titles: Sequence[str]) -> str:
    """The offer: numbered titles, so a reply with the number picks one on every channel."""
    if not titles:
        raise ValueError("an offer needs at least one title")
    if len(titles) == 1:
        return (
            f"I'm not sure I understood. Is it this article: {titles[0]}? "
            "Reply 1 to read it, or say 'agent' to reach a person."
        )
    lines = "\n".join(f"{n}. {title}" for n, title in enumerate(titles, start=1))
    return (
        "I'm not sure which of these you mean:\n"
        f"{lines}\n"
        "Reply with the number to read it, or say 'agent' to reach a person."
    )


def parse_choice(text: str, choices: int) -> int | None:
    """The 0-based choice a reply such as "2", "#2" or "2." picks among ``choices``, if any."""
    match = _CHOICE.fullmatch(text)
    if match is None:
        return None
    number = int(match.group(1))
    return number - 1 if 1 <= number <= choices else None
