"""Several gateways on one database: keep this one's claims alive, take over a dead one's.

Each gateway stores the work it must finish (messages to answer, replies to deliver) claimed
for itself with a lease (``Store.claim_*``). While it runs it renews them; when it dies they
lapse, and the first live gateway to look claims them (``FOR UPDATE SKIP LOCKED``, so two
never take the same) and finishes the work: answers the messages, delivers the replies. On
SQLite (one gateway) both steps are no-ops.
"""

from __future__ import annotations

import asyncio
import logging

from bot.delivery import Dispatcher
from bot.errors import StorageUnavailable
from bot.pipeline import Pipeline
from bot.store.base import Store

logger = logging.getLogger(__name__)


async def keep(store: Store, pipeline: Pipeline, dispatcher: Dispatcher, interval: float) -> None:
    """Every ``interval`` (a third of the lease): renew, then take over what lapsed."""
    while True:
        await asyncio.sleep(interval)
        try:
            await store.renew_claims()
            unanswered, deliveries = await store.take_over()
        except StorageUnavailable as e:
            # Renewal failed: our claims may lapse and be taken over, which is the point.
            logger.warning("claims not renewed: %s", e)
            continue
        if unanswered or deliveries:
            logger.warning(
                "taking over %d unanswered messages and %d replies to deliver from a gateway "
                "whose claims lapsed",
                len(unanswered),
                len(deliveries),
            )
        pipeline.answer_waiting(unanswered)
        for reply in deliveries:
            dispatcher.enqueue(reply)
