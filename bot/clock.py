"""The one clock the gateway reads. Tests and demos can start it at a chosen instant
(``[debug] clock_start``) so a Friday-evening handoff can be tried on a Tuesday morning."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def clock_from(start: datetime | None, real_start: datetime | None = None) -> Clock:
    """Real time; or ``start`` plus the real time elapsed since ``real_start`` (default: now),
    so several processes, or one restarted, share one shifted clock."""
    if start is None:
        return utc_now
    offset = start - (real_start or utc_now())
    return lambda: utc_now() + offset
