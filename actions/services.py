"""What actions need, injected once: by the gateway at start, or built from settings when the
actions run in a standalone ``python -m rasa_sdk --actions actions`` server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from actions.orderbook import OrderBook
from bot.handoff.tickets import TicketService


class KnowledgeSource(Protocol):
    async def asearch(self, question: str, k: int = 3) -> list[Any]: ...


@dataclass(frozen=True)
class Services:
    kb: KnowledgeSource | None
    tickets: TicketService
    orders: OrderBook
    kb_floor: float  # answer at or above (knowledge_base/bands.py)
    kb_offer_floor: float  # offer the top titles at or above


_services: Services | None = None
_building = asyncio.Lock()


def configure(services: Services | None) -> None:
    global _services
    _services = services


async def get() -> Services:
    global _services
    if _services is None:
        async with _building:
            if _services is None:
                from actions.standalone import build_services

                _services = await build_services()
    return _services
