"""``bot.ratelimit``'s sliding windows kept in Redis, so a limit holds across gateway processes.

Same policy and the same answers as ``SlidingWindow`` (at most ``limit.events`` per key inside
any ``limit.window``; the wait is until the oldest counted event leaves the window; a refused
event costs nothing), awaited instead of called: each check is one Lua script, so checking and
recording are one atomic step however many processes ask at once. A key holds a Redis list of
its latest ``events`` times, in integer microseconds, and expires a window after its last
event: memory follows the keys seen in the last window, as in memory.

The time is Redis's own (``TIME``) unless the caller passes ``now``: processes on different
hosts share no monotonic clock, and the window must be measured on one. (``now`` is for tests
and for callers that already share a clock; do not mix the two on one window.)

When Redis cannot be reached, each window falls back to an in-memory ``SlidingWindow`` of this
process (logged at most once per ``_LOG_EVERY``): limits then hold per process, as they did
before Redis, instead of failing every request or letting every request through.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.ratelimit import MIN_WAIT, AsyncWindow, Limit, SlidingWindow
from bot.ratelimit import take_all as take_all_local

logger = logging.getLogger(__name__)

_US = 1_000_000
_LOG_EVERY = 10.0  # seconds between two warnings that Redis is unreachable

# KEYS: one list per (window, key). ARGV[1]: "wait", "record" or "take"; ARGV[2]: now in
# microseconds, or "" for Redis's clock; then for each key its events and window (us).
# Returns the wait in microseconds (0: allowed, and recorded unless only asked).
_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local mode = ARGV[1]
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[2])
end
local wait = 0
if mode ~= 'record' then
  for i, key in ipairs(KEYS) do
    local events = tonumber(ARGV[1 + 2 * i])
    local window = tonumber(ARGV[2 + 2 * i])
    if redis.call('LLEN', key) >= events then
      local oldest = tonumber(redis.call('LINDEX', key, -events))
      local left = oldest + window - now
      if left > wait then wait = left end
    end
  end
end
if mode == 'wait' or wait > 0 then return wait end
local stamp = string.format('%d', now)
for i, key in ipairs(KEYS) do
  local events = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('RPUSH', key, stamp)
  redis.call('LTRIM', key, -events, -1)
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
end
return 0
"""


class RedisSlidingWindow:
    """``SlidingWindow`` shared through Redis: ``await window.take(key)`` and so on.

    ``name`` tells this limit's keys from another's (``sender``, ``address``...); every
    process must use the same ``prefix`` and ``name`` for a limit to be shared.
    """

    def __init__(
        self, redis: Redis, limit: Limit, name: str, *, prefix: str = "promptly:rl:"
    ) -> None:
        self.limit = limit
        self.redis = redis
        self._prefix = f"{prefix}{name}:"
        self._script = redis.register_script(_SCRIPT)
        self._window_us = math.ceil(limit.window * _US)
        self.fallback = SlidingWindow(limit)  # used only while Redis cannot be reached
        self._warned_at = -math.inf

    def redis_key(self, key: str) -> str:
        return self._prefix + key

    async def wait(self, key: str, now: float | None = None) -> float:
        """Seconds before ``key`` may have another event (0: now)."""
        return await _run("wait", [(self, key)], now)

    async def record(self, key: str, now: float | None = None) -> None:
        await _run("record", [(self, key)], now)

    async def take(self, key: str, now: float | None = None) -> float:
        """Record an event for ``key`` if it is allowed now; else the seconds to wait."""
        return await _run("take", [(self, key)], now)

    async def forget(self, key: str) -> None:
        self.fallback.forget(key)
        try:
            await self.redis.delete(self.redis_key(key))
        except (RedisError, OSError) as e:
            self._unreachable(e)

    def _unreachable(self, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _LOG_EVERY:
            self._warned_at = now
            logger.warning(
                "rate limit %s: Redis unreachable (%s: %s); limiting per process meanwhile",
                self._prefix,
                type(error).__name__,
                error,
            )


async def take_all(
    checks: Iterable[tuple[RedisSlidingWindow, str]], now: float | None = None
) -> float:
    """Record one event in every (window, key) if all allow it now; else record nothing and
    return the longest wait: ``bot.ratelimit.take_all``, in one atomic script. The windows
    must share one Redis client."""
    return await _run("take", list(checks), now)


async def _run(
    mode: str, checks: Sequence[tuple[RedisSlidingWindow, str]], now: float | None
) -> float:
    if not checks:
        return 0.0
    first = checks[0][0]
    if any(window.redis is not first.redis for window, _ in checks):
        raise ValueError("windows checked together must share one Redis client")
    keys = [window.redis_key(key) for window, key in checks]
    args: list[str | int] = [mode, "" if now is None else round(now * _US)]
    for window, _ in checks:
        args += [window.limit.events, window._window_us]
    try:
        wait_us = int(await first._script(keys=keys, args=args))
    except (RedisError, OSError) as e:
        first._unreachable(e)
        return _fallback(mode, checks)
    return max(wait_us / _US, MIN_WAIT) if wait_us > 0 else 0.0


def _fallback(mode: str, checks: Sequence[tuple[RedisSlidingWindow, str]]) -> float:
    local = [(window.fallback, key) for window, key in checks]
    now = time.monotonic()  # the fallback windows live in this process: its clock
    if mode == "take":
        return take_all_local(local, now)
    if mode == "record":
        for window, key in local:
            window.record(key, now)
        return 0.0
    return max(window.wait(key, now) for window, key in local)


if TYPE_CHECKING:  # mypy checks that the shared window is one that callers can take

    def _is_async_window(window: RedisSlidingWindow) -> AsyncWindow:
        return window
