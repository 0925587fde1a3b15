"""Customer satisfaction: the 1–5 question sent on resolve, and the ratings customers give.

A rating is an event (``csat``) in the ticket's conversation, so analytics read it from the
log like everything else. A customer who taps again changes their mind: the newer rating
replaces the older one, and its event says which one it replaces.

The web widget taps ``POST /api/conversations/{id}/csat``; on every channel (the widget
included) the customer can also just write the rating back (``parse``), and the pipeline
records it when the question is still outstanding (``Ratings.outstanding``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.clock import Clock
from bot.errors import Conflict, NotFound
from bot.locks import KeyedLocks
from bot.store.base import Conversation, Store, Ticket

SCALE = (1, 2, 3, 4, 5)
MAX_COMMENT = 1000  # as the web API allows
QUESTION = "How did we do? Reply with a number from 1 (poor) to 5 (excellent)."
# How long a written reply can still be the rating. Later, "5" is far more likely an answer to
# something else (a quantity, a menu choice) than to a question asked a week ago; the widget's
# buttons still rate a resolved ticket at any time.
ANSWER_WINDOW = timedelta(days=7)
# After a ticket's resolve, a handoff (or a ticket following the customer here) means a newer
# request: its own question will come when it is resolved.
NEWER_REQUEST = ("handed_off", "ticket_followed")


def question(ticket: Ticket) -> dict[str, Any]:
    """What a client needs to render the scale as buttons (the reply's ``extra``)."""
    return {
        "ticket_id": ticket.id,
        "reference": ticket.reference,
        "question": QUESTION,
        "scale": list(SCALE),
        "labels": {str(SCALE[0]): "Poor", str(SCALE[-1]): "Excellent"},
    }


@dataclass(frozen=True)
class Written:
    rating: int
    comment: str | None


_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_NUMBER = re.compile(
    r"\s*(?:(?P<digit>[1-5])(?:\ufe0f?\u20e3)?(?![0-9.,]?[0-9])"  # 5, 5️⃣ (not 10, 5.5, 4,5)
    r"|(?P<word>one|two|three|four|five)\b"
    r"|(?P<stars>(?:[\u2b50\u2605]\ufe0f?\s?){1,5})(?![\u2b50\u2605]))",  # ⭐⭐⭐⭐, ★★★★★
    re.IGNORECASE,
)
_SCALE = re.compile(r"\s*(?:(?:/|out of|of)\s*5\b|stars?\b)?", re.IGNORECASE)
_SEPARATOR = re.compile(r"\s*[-–—:,.!]+(?:\s+|$)")


def parse(text: str) -> Written | None:
    """The rating in a customer's written reply to ``QUESTION``, or None.

    The grammar is small on purpose, since anything else must reach the bot::

        reply  = number [scale] [separator comment]   "5", "4/5", "5 - great service"
               | stars [comment]                      "⭐⭐⭐⭐", "★★★★★ quick and kind"
        number = 1 … 5 (also the keycap emoji 5️⃣) | one … five (any case)
        scale  = "/5" | "of 5" | "out of 5" | "star" | "stars"
        separator = one or more of - – — : , . ! followed by a space or the end

    A number needs the separator before a comment ("5 items are missing" is not a rating);
    stars cannot be read as anything else, so a space will do.
    """
    head = _NUMBER.match(text)
    if head is None:
        return None
    if head["stars"]:
        rating = sum(1 for c in head["stars"] if c in "\u2b50\u2605")
        return Written(rating, _comment(text[head.end() :]))
    rating = int(head["digit"]) if head["digit"] else _WORDS[head["word"].lower()]
    scale = _SCALE.match(text, head.end())
    rest = text[scale.end() if scale else head.end() :]
    if not rest.strip():
        return Written(rating, None)
    separator = _SEPARATOR.match(rest)
    if separator is None:
        return None
    return Written(rating, _comment(rest[separator.end() :]))


def _comment(text: str) -> str | None:
    return text.strip()[:MAX_COMMENT] or None


def thanks(rating: int) -> str:
    if rating >= 4:
        return f"Thank you for rating us {rating}/5!"
    return f"Thank you for rating us {rating}/5. We're sorry it wasn't better; we'll learn from it."


class Ratings:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._locks = KeyedLocks()  # two quick taps must not both count as the first rating

    async def outstanding(self, conversation_id: str, now: datetime) -> str | None:
        """The ticket whose rating question this conversation still waits for, if any.

        That is the conversation's latest resolved ticket when it was resolved less than
        ``ANSWER_WINDOW`` ago, no newer request was handed off here since, and it has no
        rating yet. So a written rating counts once: a second "5" (or one after a newer
        request opened, or a week late) goes to the bot like any other message: by then a
        number is more likely an answer to the bot. On the web a customer who changes their
        mind taps again, which replaces the rating; on a platform the first written one stands.
        """
        ticket_id: str | None = None
        asked: datetime | None = None
        for event in await self._store.events(conversation_id):
            if event.type == "resolved" and event.ticket_id:
                ticket_id, asked = event.ticket_id, event.at
            elif event.type in NEWER_REQUEST or (
                event.type == "csat" and event.ticket_id == ticket_id
            ):
                ticket_id = None
        if ticket_id is None or asked is None or now - asked >= ANSWER_WINDOW:
            return None
        return ticket_id

    async def rate(
        self,
        conversation: Conversation,
        ticket_id: str,
        rating: int,
        comment: str | None,
        *,
        message_id: str | None = None,
    ) -> dict[str, Any]:
        """Store the rating of a resolved ticket of this conversation's customer.

        ``message_id`` is the customer's message when the rating was written rather than
        tapped; its event names it, so analytics can tell a rating from a question.
        An unknown ticket and another customer's look the same (``unknown_ticket``), so the
        answer reveals nothing about tickets that are not the caller's.
        """
        ticket = await self._store.ticket(ticket_id)
        if ticket is None or ticket.customer_id != conversation.customer_id:
            raise NotFound("unknown_ticket", "no such request of yours", field="ticket_id")
        if ticket.is_open:
            raise Conflict(
                "ticket_open", "a request can be rated once it is resolved", field="ticket_id"
            )
        async with self._locks.hold(ticket.id):
            previous = await self._latest(ticket)
            data: dict[str, Any] = {
                "ticket_id": ticket.id,
                "rating": rating,
                "comment": comment,
                # Analytics count the latest rating per ticket; this names the one it replaces.
                "replaces": previous,
            }
            await self._store.log_event(
                "csat",
                conversation_id=ticket.conversation_id,
                message_id=message_id,
                ticket_id=ticket.id,
                data=data,
                at=self._clock(),
            )
        return data

    async def _latest(self, ticket: Ticket) -> dict[str, Any] | None:
        ratings = [
            e
            for e in await self._store.events(ticket.conversation_id)
            if e.type == "csat" and e.ticket_id == ticket.id
        ]
        if not ratings:
            return None
        last = ratings[-1]
        return {"seq": last.seq, "rating": last.data.get("rating"), "at": last.at.isoformat()}
