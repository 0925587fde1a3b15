"""What every backend encodes the same way: ticket SLA snapshots, references, identities."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from bot.channels.base import InboundMessage, OutboundMessage
from bot.errors import Conflict, NotFound
from bot.store.base import TicketSLA

TIER_RANK = {"consumer": 0, "business": 1, "enterprise": 2}  # bot.handoff.config.Tier
# Crockford-style alphabet without look-alikes, for references customers read out loud.
_REF_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"


def aware(value: datetime) -> datetime:
    """``value``, refused when naive: every stored time is an instant."""
    if value.tzinfo is None:
        raise ValueError("timestamps must be time-zone aware")
    return value


def iso(value: datetime) -> str:
    return aware(value).astimezone(UTC).isoformat(timespec="microseconds")


def opt_iso(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


def opt_dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def stale_ticket(exists: bool) -> Conflict | NotFound:
    """The error for a versioned ticket write that matched no row."""
    if not exists:
        return NotFound("not_found", "no ticket with that id")
    return Conflict(
        "ticket_changed", "the ticket was changed since it was read: read it again and retry"
    )


def check_capacity(agent_id: str, presence: str, capacity: int, load: int) -> None:
    """Automatic assignment, checked with the agent's row held: online and below capacity
    (``load``: the agent's open tickets other than the one being assigned)."""
    if presence != "online":  # bot.handoff.assignment.Presence.ONLINE
        raise Conflict("agent_away", f"agent {agent_id!r} is {presence}", field="agent")
    if load >= capacity:
        raise Conflict(
            "agent_full", f"agent {agent_id!r} holds {load} of {capacity} tickets", field="agent"
        )


def new_reference() -> str:
    return "PR-" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(5))


def better_tier(a: str, b: str) -> str:
    """The higher of two tiers: a merge never demotes anyone."""
    return max(a, b, key=lambda t: TIER_RANK.get(t, -1))


def sla_to_dict(sla: TicketSLA) -> dict[str, Any]:
    return {
        "policy": sla.policy,
        "calendar": sla.calendar,
        "pauses": [[iso(a), opt_iso(b)] for a, b in sla.pauses],
        "next_response_from": opt_iso(sla.next_response_from),
        "last_agent_reply_at": opt_iso(sla.last_agent_reply_at),
    }


def sla_from_dict(data: dict[str, Any]) -> TicketSLA:
    return TicketSLA(
        policy=data.get("policy", {}),
        calendar=data.get("calendar", "default"),
        pauses=tuple((datetime.fromisoformat(a), opt_dt(b)) for a, b in data.get("pauses", [])),
        next_response_from=opt_dt(data.get("next_response_from")),
        last_agent_reply_at=opt_dt(data.get("last_agent_reply_at")),
    )


def identities(msg: InboundMessage) -> list[tuple[str, str]]:
    """The verified email/phone a platform vouched for, normalised."""
    if not msg.customer.verified:
        return []
    found = []
    if msg.customer.email:
        found.append(("email", msg.customer.email.strip().lower()))
    if msg.customer.phone:
        found.append(("phone", "+" + "".join(c for c in msg.customer.phone if c.isdigit())))
    return found


def reply_payload(reply: OutboundMessage) -> dict[str, Any]:
    payload: dict[str, Any] = dict(reply.extra)
    if reply.citations:
        payload["citations"] = [{"title": c.title, "url": c.url} for c in reply.citations]
    return payload
