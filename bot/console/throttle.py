"""How many failed sign-ins an account or an address may make before it must wait (pure)."""

from __future__ import annotations

from bot.ratelimit import Limit, SlidingWindow

__all__ = ["Limit", "LoginThrottle"]


class LoginThrottle:
    """Sliding-window counts of failed sign-ins per account and per address.

    A key that reached its limit waits until its oldest counted failure leaves the window.
    A success clears the account's failures, not the address's: one right password must
    not reset a guessing run from that address against other accounts.
    """

    def __init__(self, account: Limit, address: Limit) -> None:
        self._account = SlidingWindow(account)
        self._address = SlidingWindow(address)

    def retry_after(self, account: str, address: str, now: float) -> float:
        """Seconds before this account may try again from this address (0: now)."""
        return max(self._account.wait(_account_key(account), now), self._address.wait(address, now))

    def failed(self, account: str, address: str, now: float) -> None:
        self._account.record(_account_key(account), now)
        self._address.record(address, now)

    def succeeded(self, account: str) -> None:
        self._account.forget(_account_key(account))


def _account_key(account: str) -> str:
    return account.casefold()
