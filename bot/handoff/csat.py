"""Customer satisfaction: the 1–5 question sent on resolve, and the ratings customers give.

A rating is an event (``csat``) in the ticket's conversation, so analytics read it from the
log like everything else. A customer who taps again changes their mind: the newer rating
replaces the older one, and its event says which one it replaces.
"""

from __future__ import annotations

from typing import Any

from bot.clock import Clock
from bot.errors import Conflict, NotFound
from bot.locks import KeyedLocks
from bot.store.base import Conversation, Store, Ticket

SCALE = (1, 2, 3, 4, 5)
QUESTION = "How did we do? Rate the help you got from 1 (poor) to 5 (excellent)."


def question(ticket: Ticket) -> dict[str, Any]:
    """What a client needs to render the scale as buttons (the reply's ``extra``)."""
    return {
        "ticket_id": ticket.id,
        "reference": ticket.reference,
        "question": QUESTION,
        "scale": list(SCALE),
        "labels": {str(SCALE[0]): "Poor", str(SCALE[-1]): "Excellent"},
    }


class Ratings:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._locks = KeyedLocks()  # two quick taps must not both count as the first rating

    async def rate(
        self, conversation: Conversation, ticket_id: str, rating: int, comment: str | None
    ) -> dict[str, Any]:
        """Store the rating of a resolved ticket of this conversation's customer.

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
