"""The handoff sections of ``promptly.toml``: queues, calendars, routing rules and SLA policies.

Validated once at start; every error names the key (``sla.policies.2: can never match ...``).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from bot.durations import parse_duration
from bot.handoff.calendar import Calendar

ALWAYS_OPEN = "24x7"  # built-in calendar name: calendar time, every day around the clock


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


PRIORITIES = (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT)


class Tier(StrEnum):
    CONSUMER = "consumer"
    BUSINESS = "business"
    ENTERPRISE = "enterprise"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_WHOLE_DAYS = re.compile(r"^\s*(\d+)\s*d\s*$")


class Target(Section):
    """An SLA target as written: "30m", "4h", or "2d" (whole days count business days)."""

    text: str
    span: timedelta
    days: int | None = None

    @classmethod
    def parse(cls, value: object) -> object:
        if isinstance(value, Target | dict):
            return value
        span = parse_duration(value)  # raises a clear ValueError for junk and negatives
        if span <= timedelta(0):
            raise ValueError(f"invalid target {value!r}: must be longer than zero")
        match = _WHOLE_DAYS.match(value) if isinstance(value, str) else None
        return cls(text=str(value), span=span, days=int(match[1]) if match else None)


TargetValue = Annotated[Target, BeforeValidator(Target.parse)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _as_tuple(value: object) -> object:
    return (value,) if isinstance(value, str) else value


class Conditions(Section):
    """Facts a policy or rule matches on; an empty field matches anything."""

    priority: Annotated[tuple[Priority, ...], BeforeValidator(_as_tuple)] = ()
    tier: Annotated[tuple[Tier, ...], BeforeValidator(_as_tuple)] = ()
    channel: Annotated[tuple[str, ...], BeforeValidator(_as_tuple)] = ()
    queue: Annotated[tuple[str, ...], BeforeValidator(_as_tuple)] = ()
    intent: Annotated[tuple[str, ...], BeforeValidator(_as_tuple)] = ()
    language: Annotated[tuple[str, ...], BeforeValidator(_as_tuple)] = ()

    def matches(self, facts: dict[str, str | None]) -> bool:
        return all(not allowed or facts.get(key) in allowed for key, allowed in self._items())

    def covers(self, other: Conditions) -> bool:
        """Does every ticket ``other`` matches also match this?: then ``other`` after it is dead."""
        theirs = dict(other._items())
        return all(
            theirs[key] and set(theirs[key]) <= set(allowed)
            for key, allowed in self._items()
            if allowed
        )

    def _items(self) -> list[tuple[str, tuple[str, ...]]]:
        return [(key, tuple(getattr(self, key))) for key in type(self).model_fields]


class Policy(Section):
    name: str = Field(min_length=1)
    when: Conditions = Conditions()
    first_response: TargetValue
    next_response: TargetValue | None = None
    resolution: TargetValue | None = None
    business_hours: bool = True

    @field_validator("when")
    @classmethod
    def _ticket_facts_only(cls, when: Conditions) -> Conditions:
        if when.intent or when.language:
            raise ValueError("policies match on priority, tier, channel and queue only")
        return when


def _default_policies() -> list[Policy]:
    rows: list[dict[str, Any]] = [
        {
            "name": "urgent",
            "when": {"priority": "urgent"},
            "first_response": "30m",
            "next_response": "30m",
            "resolution": "8h",
            "business_hours": False,
        },
        {
            "name": "enterprise",
            "when": {"tier": "enterprise"},
            "first_response": "1h",
            "next_response": "2h",
            "resolution": "2d",
        },
        {
            "name": "high",
            "when": {"priority": "high"},
            "first_response": "2h",
            "next_response": "4h",
            "resolution": "3d",
        },
        {
            "name": "default",
            "first_response": "4h",
            "next_response": "8h",
            "resolution": "5d",
        },
    ]
    return [Policy.model_validate(row) for row in rows]


class Holidays(Section):
    country: str
    subdivision: str | None = None


class CalendarSettings(Section):
    timezone: str = "UTC"
    hours: dict[str, str] = Field(default_factory=lambda: {"mon-fri": "09:00-18:00"})
    holidays: Holidays | None = None
    closed: tuple[date, ...] = ()
    open: tuple[date, ...] = ()
    open_hours: str = "09:00-17:00"

    def build(self) -> Calendar:
        return Calendar.build(
            self.timezone,
            self.hours,
            country=self.holidays.country if self.holidays else None,
            subdivision=self.holidays.subdivision if self.holidays else None,
            closed=self.closed,
            opened=self.open,
            opened_hours=self.open_hours,
        )


class QueueSettings(Section):
    name: str
    calendar: str = "default"
    lead: str | None = None  # who breaches escalate to (a name, address or id)
    skills: tuple[str, ...] = ()  # an agent needs all of them to be assigned this queue's tickets


def default_queues() -> dict[str, QueueSettings]:
    names = {
        "support": "Customer Support",
        "billing": "Billing",
        "urgent": "Urgent Response",
        "orders": "Orders",
    }
    return {
        key: QueueSettings(name=name, calendar=ALWAYS_OPEN if key == "urgent" else "default")
        for key, name in names.items()
    }


class RoutingRule(Section):
    when: Conditions
    queue: str

    @field_validator("when")
    @classmethod
    def _message_facts_only(cls, when: Conditions) -> Conditions:
        if when.priority or when.queue:
            raise ValueError("routing rules match on intent, language, tier and channel only")
        return when


def _default_rules() -> list[RoutingRule]:
    pairs = {
        "refund_request": "billing",
        "urgent_outage": "urgent",
        "order_status": "orders",
    }
    return [
        RoutingRule.model_validate({"when": {"intent": intent}, "queue": queue})
        for intent, queue in pairs.items()
    ]


class RoutingSettings(Section):
    default_queue: str = "support"
    rules: list[RoutingRule] = Field(default_factory=_default_rules)


EscalationStep = Literal["notify_lead", "raise_priority", "reassign"]


class SLASettings(Section):
    """Policies (first match wins, the last must match everything) and the alarms around them."""

    policies: list[Policy] = Field(default_factory=_default_policies)
    warn_fraction: float = Field(0.25, gt=0, lt=1)  # warn this share of the target ahead ...
    warn_at_most: Duration = timedelta(minutes=15)  # ... but never earlier than this
    on_breach: tuple[EscalationStep, ...] = ("notify_lead", "raise_priority", "reassign")
    assignment_timeout: Duration = timedelta(minutes=10)  # 0s: an assignee keeps the ticket
    handling_time: Duration = timedelta(minutes=10)  # per ticket, until measured
    notify_url: str | None = None  # signed JSON webhooks for warnings, breaches, escalations

    @field_validator("policies")
    @classmethod
    def _reachable(cls, policies: list[Policy]) -> list[Policy]:
        if not policies:
            raise ValueError("at least one policy is needed")
        for index, policy in enumerate(policies):
            for earlier in policies[:index]:
                if earlier.when.covers(policy.when):
                    raise ValueError(
                        f"policy {index} ({policy.name!r}) can never match: "
                        f"policy {earlier.name!r} before it matches every ticket it would"
                    )
        if policies[-1].when != Conditions():
            raise ValueError(
                f"the last policy ({policies[-1].name!r}) must match every ticket: give it "
                "no `when`, so no ticket is left without a deadline"
            )
        return policies
