"""The event-loop lag the answer fast path yields to."""

from __future__ import annotations

import asyncio
import time

from bot.latency import LoopLag


async def test_a_blocked_loop_shows_as_lag_that_fades_when_it_is_free() -> None:
    lag = LoopLag(interval=0.01, weight=0.5)
    watcher = asyncio.create_task(lag.run())
    try:
        await asyncio.sleep(0.1)
        assert lag.lag < 0.02  # an idle loop runs its timers on time
        for _ in range(5):
            time.sleep(0.05)  # a callback holding the loop 50 ms at a time
            await asyncio.sleep(0)
        assert lag.lag > 0.02
        await asyncio.sleep(0.3)
        assert lag.lag < 0.02
    finally:
        watcher.cancel()


def test_early_wakeups_count_as_no_lag() -> None:
    lag = LoopLag(weight=1.0)
    lag.observe(-0.003)
    assert lag.lag == 0.0
    lag.observe(0.04)
    assert lag.lag == 0.04
