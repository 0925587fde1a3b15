"""Delivery of stored replies through messaging platforms.

The outbox stores every reply first (``delivery_status = pending`` on a platform channel);
the dispatcher then sends it with the conversation's adapter: in order per conversation,
retrying 429/5xx/network errors with exponential backoff and full jitter, honouring
Retry-After. A reply that still cannot be sent (a permanent error, too many attempts, the
platform's messaging window closed, the channel disabled) is marked ``failed`` with the
reason and stays visible to agents; nothing is dropped. Pending deliveries survive a restart:
``start`` reloads them. A multi-part reply records how many parts went out, so a restart
re-sends at most the part that was in flight (at-least-once, like the platforms themselves).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from bot.channels.base import OutboundMessage, ReplyType
from bot.channels.platform import PlatformChannel, SendError, Window, backoff
from bot.frames import frame
from bot.hub import Hub
from bot.store.base import Conversation, DeliveryStatus, Route, Store, StoredMessage

logger = logging.getLogger(__name__)


def window_closed(
    window: Window, last_inbound_at: datetime | None, now: datetime, *, agent: bool
) -> bool:
    """Would a free-form message now break the platform's rule? Pure."""
    limit = window.agent if agent else window.automated
    if limit is None:
        return False
    return last_inbound_at is None or now - last_inbound_at > limit


class Dispatcher:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        channels: Mapping[str, PlatformChannel],
        clock: Callable[[], datetime],
        *,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        max_attempts: int = 8,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._hub = hub
        self.channels = channels
        self._clock = clock
        self._base = base_delay
        self._cap = max_delay
        self._max_attempts = max_attempts
        self._rng = rng or random.Random()
        self._queues: dict[str, deque[StoredMessage]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        pending = await self._store.claim_deliveries()
        if pending:
            logger.info("resuming %d pending deliveries", len(pending))
        for message in pending:
            self.enqueue(message)

    async def close(self) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def refusal(self, conversation: Conversation, *, agent: bool) -> tuple[str, str] | None:
        """(code, reason) why a free-form reply cannot go out in this conversation now."""
        route = await self._store.route(conversation.id)
        return None if route is None else self._refusal(route, agent=agent)

    def _refusal(self, route: Route, *, agent: bool) -> tuple[str, str] | None:
        adapter = self.channels.get(route.channel)
        if adapter is None:
            if route.channel == "web":
                return None
            return "channel_disabled", f"the {route.channel} channel is not enabled"
        window = adapter.window_for(route.reply_to)
        if not window_closed(window, route.last_inbound_at, self._clock(), agent=agent):
            return None
        limit = window.agent if agent else window.automated
        return "outside_messaging_window", (
            f"{route.channel} allows free-form replies only {_hours(limit)} after the "
            "customer's last message; the customer has to write first"
        )

    def enqueue(self, message: StoredMessage) -> None:
        queue = self._queues.setdefault(message.conversation_id, deque())
        queue.append(message)
        worker = self._workers.get(message.conversation_id)
        if worker is None or worker.done():
            self._workers[message.conversation_id] = asyncio.create_task(
                self._run(message.conversation_id)
            )

    async def send_now(
        self, channel: str, reply_to: Mapping[str, Any], reply: OutboundMessage
    ) -> dict[str, Any] | None:
        """Send a reply that is not stored, retrying like any other, and return what the
        platform confirmed; None for a channel without an adapter (web) or when it failed."""
        adapter = self.channels.get(channel)
        if adapter is None:
            return None
        platform_ids: list[str | None] = []
        first_call_at = self._clock().isoformat()
        for part in adapter.render_for(reply, reply_to):
            attempt = 0
            while True:
                try:
                    sent = await adapter.send(reply_to, part, agent=False)
                except SendError as e:
                    attempt += 1
                    if not e.retryable or attempt >= self._max_attempts:
                        logger.warning("unstored reply on %s not sent: %s", channel, e)
                        return None
                    delay = backoff(attempt, self._base, self._cap, self._rng)
                    await asyncio.sleep(max(e.retry_after or 0.0, delay))
                    continue
                platform_ids.append(sent.platform_message_id)
                break
        return {
            "parts_sent": len(platform_ids),
            "parts": len(platform_ids),
            "platform_ids": platform_ids,
            "first_call_at": first_call_at,
            "sent_at": self._clock().isoformat(),
        }

    async def idle(self) -> None:
        """Wait until nothing is queued (tests and shutdown)."""
        while self._workers:
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    async def _run(self, conversation_id: str) -> None:
        queue = self._queues[conversation_id]
        try:
            while queue:
                try:
                    await self._deliver(queue[0])
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Stays pending in the store; the next start retries it.
                    logger.exception("delivery of %s crashed", queue[0].id)
                queue.popleft()
        finally:
            if not queue:
                self._queues.pop(conversation_id, None)
            self._workers.pop(conversation_id, None)

    async def _deliver(self, message: StoredMessage) -> None:
        route = message.route or await self._store.route(message.conversation_id)
        if route is None:
            await self._fail(message, "unknown_conversation", "conversation is gone")
            return
        refusal = self._refusal(route, agent=message.type == ReplyType.AGENT)
        adapter = self.channels.get(route.channel)
        if refusal is not None or adapter is None:
            code, reason = refusal or ("channel_disabled", "no adapter")
            await self._fail(message, code, reason)
            return
        parts = adapter.render_for(_outbound(message), route.reply_to)
        info = dict(message.delivery)  # survives restarts: attempts, parts sent, their ids
        info.setdefault("parts_sent", 0)
        info.setdefault("platform_ids", [])
        for part in parts[info["parts_sent"] :]:
            if not await self._send_part(message, info, adapter, route.reply_to, part):
                return
            if info["parts_sent"] < len(parts):
                await self._store.set_delivery(message.id, DeliveryStatus.PENDING, info)
        info.update(sent_at=self._clock().isoformat(), parts=len(parts))
        await self._store.set_delivery(message.id, DeliveryStatus.SENT, info)

    async def _send_part(
        self,
        message: StoredMessage,
        info: dict[str, Any],
        adapter: PlatformChannel,
        reply_to: Mapping[str, Any],
        text: str,
    ) -> bool:
        """Send one part, retrying what is worth retrying; False once the reply failed."""
        agent = message.type == ReplyType.AGENT
        # When the platform was first called for this reply: what "the ack's send call" means
        # in the channel benchmark, measured where it happens.
        info.setdefault("first_call_at", self._clock().isoformat())
        while True:
            try:
                sent = await adapter.send(reply_to, text, agent=agent)
            except SendError as e:
                info["attempts"] = failed = info.get("attempts", 0) + 1
                info["last_error"] = str(e)
                if not e.retryable or failed >= self._max_attempts:
                    code = "retries_exhausted" if e.retryable else "send_failed"
                    await self._fail(message, code, str(e), info)
                    return False
                # Never sooner than the platform asked; jitter spreads a burst of retries.
                delay = max(e.retry_after or 0.0, backoff(failed, self._base, self._cap, self._rng))
                logger.info(
                    "delivery of %s: attempt %d failed (%s); retrying in %.2fs",
                    message.id,
                    failed,
                    e,
                    delay,
                )
                await self._store.set_delivery(message.id, DeliveryStatus.PENDING, info)
                await asyncio.sleep(delay)
                continue
            info["parts_sent"] += 1
            info["platform_ids"].append(sent.platform_message_id)
            return True

    async def _fail(
        self,
        message: StoredMessage,
        code: str,
        reason: str,
        info: dict[str, Any] | None = None,
    ) -> None:
        logger.warning("delivery of %s failed: %s (%s)", message.id, code, reason)
        info = {**(message.delivery if info is None else info), "error": code, "reason": reason}
        updated = await self._store.set_delivery(message.id, DeliveryStatus.FAILED, info)
        await self._store.log_event(
            "delivery_failed",
            conversation_id=message.conversation_id,
            message_id=message.id,
            data={"error": code, "reason": reason},
        )
        if updated is not None:  # agents following the conversation see it fail
            self._hub.publish(updated.conversation_id, frame(updated))


def _outbound(message: StoredMessage) -> OutboundMessage:
    return OutboundMessage(type=ReplyType(message.type), text=message.text)


def _hours(limit: timedelta | None) -> str:
    if limit is None:
        return "any time"
    hours = limit.total_seconds() / 3600
    return f"{hours:g} hours" if hours < 48 else f"{hours / 24:g} days"
