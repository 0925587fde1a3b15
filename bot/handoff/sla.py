"""SLA deadlines from the priority x tier table. Pure.

Targets run in calendar time for now; business-hours calendars replace ``add_target``'s
arithmetic when the SLA engine lands, with the same call sites.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.settings import Priority, SLASettings, Tier


def add_target(start: datetime, target_seconds: float) -> datetime:
    if start.tzinfo is None:
        raise ValueError("SLA arithmetic needs a time-zone-aware start")
    return start + timedelta(seconds=target_seconds)


def first_response_due(
    created: datetime, priority: Priority, tier: Tier, sla: SLASettings
) -> datetime:
    return add_target(created, sla.target(priority, tier).first_response.total_seconds())


def next_response_due(
    customer_message_at: datetime, priority: Priority, tier: Tier, sla: SLASettings
) -> datetime:
    return add_target(customer_message_at, sla.target(priority, tier).next_response.total_seconds())
