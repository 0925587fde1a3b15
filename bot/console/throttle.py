"""How many failed sign-ins an account or an address may make before it must wait (pure)."""

from __future__ import annotations

from dataclasses import dataclass

MIN_WAIT = 0.001  # seconds


@dataclass(frozen=True)
class Limit:
    failures: int  # allowed inside ``window``; the next attempt waits
    window: float  # seconds


class LoginThrottle:
    """Sliding-window counts of failed sign-ins per key (``account:…``, ``address:…``).

    A key that reached its limit waits until its oldest counted failure leaves the window.
    A success clears the account's failures, not the address's: one right password must
    not reset a guessing run from that address against other accounts.
    """

    def __init__(self, account: Limit, address: Limit) -> None:
        self._account = account
        self._address = address
        self._failures: dict[str, tuple[float, ...]] = {}

    def retry_after(self, account: str, address: str, now: float) -> float:
        """Seconds before this account may try again from this address (0: now)."""
        wait = 0.0
        for key, limit in self._keys(account, address):
            times = self._recent(key, limit, now)
            if len(times) >= limit.failures:
                # At least a moment: rounding can put the oldest failure's exit at ``now``
                # while it still counts (found by hypothesis with a failure at 1e-61 s).
                wait = max(wait, times[0] + limit.window - now, MIN_WAIT)
        return wait

    def failed(self, account: str, address: str, now: float) -> None:
        for key, limit in self._keys(account, address):
            self._failures[key] = self._recent(key, limit, now) + (now,)

    def succeeded(self, account: str) -> None:
        self._failures.pop(_account_key(account), None)

    def _keys(self, account: str, address: str) -> list[tuple[str, Limit]]:
        return [(_account_key(account), self._account), (f"address:{address}", self._address)]

    def _recent(self, key: str, limit: Limit, now: float) -> tuple[float, ...]:
        times = tuple(t for t in self._failures.get(key, ()) if t > now - limit.window)
        if not times:
            # Memory stays bounded under a spray of distinct keys: old windows are forgotten.
            self._failures.pop(key, None)
        return times


def _account_key(account: str) -> str:
    return f"account:{account.casefold()}"
