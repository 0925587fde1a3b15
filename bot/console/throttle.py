"""How many failed sign-ins an account or an address may make before it must wait."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.ratelimit import AsyncWindow, Limit, LocalWindow

__all__ = ["Limit", "LoginThrottle"]


class LoginThrottle:
    """Sliding-window counts of failed sign-ins per account and per address.

    A key that reached its limit waits until its oldest counted failure leaves the window.
    A success clears the account's failures, not the address's: one right password must
    not reset a guessing run from that address against other accounts.

    The windows are this process's (``local``) or shared by every gateway process through
    Redis (``bot.ratelimit_redis.RedisSlidingWindow``, named "login-account" and
    "login-address"). ``now`` is for tests; by default each window reads its own clock.
    """

    def __init__(self, account: AsyncWindow, address: AsyncWindow) -> None:
        self._account = account
        self._address = address

    @classmethod
    def local(
        cls, account: Limit, address: Limit, clock: Callable[[], float] = time.monotonic
    ) -> LoginThrottle:
        return cls(LocalWindow(account, clock), LocalWindow(address, clock))

    async def retry_after(self, account: str, address: str, now: float | None = None) -> float:
        """Seconds before this account may try again from this address (0: now)."""
        return max(
            await self._account.wait(_account_key(account), now),
            await self._address.wait(address, now),
        )

    async def failed(self, account: str, address: str, now: float | None = None) -> None:
        await self._account.record(_account_key(account), now)
        await self._address.record(address, now)

    async def succeeded(self, account: str) -> None:
        await self._account.forget(_account_key(account))


def _account_key(account: str) -> str:
    return account.casefold()
