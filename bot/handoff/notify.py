"""SLA alerts to people: a signed JSON webhook per alert, delivered in the background.

Receivers verify ``X-Promptly-Signature: v1=<hex>``, the HMAC-SHA256 of
``"<X-Promptly-Timestamp>.<raw body>"`` under the shared secret (``PROMPTLY_NOTIFY_SECRET``),
reject timestamps far from their clock, and use ``X-Promptly-Delivery`` to drop redeliveries.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)
ATTEMPTS = 5


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


class Notifier:
    """Posts alerts to ``url`` (when configured) with retries; never blocks the caller."""

    def __init__(self, session: aiohttp.ClientSession, url: str | None, secret: bytes) -> None:
        self._session = session
        self._url = url
        self._secret = secret
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, alert: dict[str, Any]) -> None:
        if self._url is None:
            return
        task = asyncio.create_task(self._deliver(self._url, alert))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _deliver(self, url: str, alert: dict[str, Any]) -> None:
        body = json.dumps(alert, separators=(",", ":")).encode()
        delivery = uuid.uuid4().hex
        for attempt in range(1, ATTEMPTS + 1):
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-Promptly-Delivery": delivery,
                "X-Promptly-Timestamp": timestamp,
                "X-Promptly-Signature": sign(self._secret, timestamp, body),
            }
            try:
                async with self._session.post(
                    url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
                ) as response:
                    if response.status < 300:
                        return
                    if 400 <= response.status < 500 and response.status != 429:
                        logger.warning("alert %s refused: HTTP %d", delivery, response.status)
                        return
            except (TimeoutError, aiohttp.ClientError) as e:
                logger.info("alert %s attempt %d failed: %s", delivery, attempt, e)
            await asyncio.sleep(min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0))
        logger.warning("alert %s (%s) not delivered after %d attempts", delivery, alert, ATTEMPTS)
