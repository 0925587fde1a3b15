"""Human-friendly durations in config: "2s", "250ms", "30m", "4h", "1d"."""

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: object) -> timedelta:
    """Parse "2s", "1.5h", "250ms" (or a number of seconds) into a non-negative timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _PATTERN.match(value)):
        seconds = float(match[1]) * _UNITS[match[2]]
    else:
        raise ValueError(
            f"invalid duration {value!r}: use a number with a unit, e.g. 2s, 250ms, 30m"
        )
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest exact form, in whole units (integer arithmetic: no float rounding)."""
    total_ms = delta // timedelta(milliseconds=1)
    for unit in ("d", "h", "m", "s"):
        size = round(_UNITS[unit] * 1000)
        if total_ms >= size and total_ms % size == 0:
            return f"{total_ms // size}{unit}"
    return f"{total_ms}ms"
