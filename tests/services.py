"""The machine's own services the suite runs against (PostgreSQL, Redis), and what a test
does when one is not there: it fails, so a green run has tested both backends. A machine
that does not run them sets ``PROMPTLY_ALLOW_MISSING_SERVICES=1`` to skip those tests instead
(they are listed, with the reason, at the end of the run)."""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest

REDIS_URL = "redis://127.0.0.1:6379/0"
ALLOW_MISSING = "PROMPTLY_ALLOW_MISSING_SERVICES"


def reachable(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def missing(what: str) -> NoReturn:
    if os.environ.get(ALLOW_MISSING) == "1":
        pytest.skip(what)
    pytest.fail(f"{what} (on a machine without it, set {ALLOW_MISSING}=1 to skip)", pytrace=False)


def require_redis() -> None:
    if not reachable():
        missing("no Redis at 127.0.0.1:6379 (this machine's Redis service is not running)")
