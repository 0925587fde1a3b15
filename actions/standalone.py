"""Build action services from ``promptly.toml`` for a standalone rasa-sdk action server."""

from __future__ import annotations

from actions.orderbook import OrderBook
from actions.services import Services
from bot.clock import clock_from
from bot.console.articles import ArticleStore
from bot.handoff.tickets import TicketService
from bot.hub import Hub
from bot.knowledge import load_live_knowledge_base, local_embedder
from bot.outbox import Outbox
from bot.settings import load_settings
from bot.store.open import open_store


async def build_services() -> Services:
    settings = load_settings()
    store = await open_store(settings)  # the gateway's database: SQLite file or PostgreSQL
    # The gateway publishes the plan ack when Rasa returns, so no one listens to this hub.
    clock = clock_from(settings.debug.clock_start, settings.debug.clock_start_at)
    tickets = TicketService(store, Outbox(store, Hub()), settings, clock)
    kb = None
    if settings.kb.enabled:  # this process answers no acks: the model may share its GIL
        # The articles as published when this server started (the gateway keeps them live);
        # the Markdown folder is imported as the gateway does, in case this one starts first.
        articles = ArticleStore(store)
        await articles.import_markdown_dir(settings.path(settings.kb.articles))
        published = await articles.published()
        kb = await load_live_knowledge_base(settings, local_embedder(settings), published)
    orders = OrderBook.from_csv(settings.path(settings.kb.articles).parent / "demo_orders.csv")
    return Services(
        kb=kb,
        tickets=tickets,
        orders=orders,
        kb_floor=settings.kb.floor,
        kb_offer_floor=settings.kb.offer_floor,
    )
