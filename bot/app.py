"""The aiohttp application factory: resources in cleanup contexts, one route table."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web
from rasa_sdk.executor import ActionExecutor
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import actions
from actions import services
from actions.orderbook import OrderBook
from bot import claims, fastpath, keys
from bot.action_endpoint import ActionEndpoint
from bot.agent_api import AgentAPI
from bot.channels.platform import ListeningChannel, WebhookChannel
from bot.channels.registry import build_channels, platform_settings
from bot.channels.web import WebChannel
from bot.channels.webhooks import WebhookEndpoint
from bot.clock import clock_from
from bot.console.access import (
    ACCOUNTS,
    AUDIT,
    THROTTLE,
    Access,
    home_of,
    login_throttle,
    setup_sessions,
)
from bot.console.account import Account
from bot.console.accounts import Accounts, Audit
from bot.console.agent import Console
from bot.console.articles import ArticleStore
from bot.console.canned import CannedReplies
from bot.console.dashboard import Dashboard
from bot.console.editor import Editor
from bot.console.emergency import EmergencyAPI
from bot.console.feed import Feed
from bot.delivery import Dispatcher
from bot.emergency import EmergencySwitch, Switch
from bot.handoff.notify import Notifier
from bot.handoff.tickets import TicketService
from bot.http import (
    ProxiedOnly,
    console_headers_middleware,
    cors_middleware,
    errors_middleware,
)
from bot.hub import Hub
from bot.hub_redis import RedisHub
from bot.journal import Journal
from bot.kb_api import KnowledgeAPI
from bot.knowledge import embedder_for, load_live_knowledge_base
from bot.latency import LoopLag
from bot.limits import ClientLimits, local_windows, redis_windows
from bot.metrics import Metrics, MetricsEndpoint
from bot.nlu import RasaClient
from bot.outbox import Outbox
from bot.overload_watch import OverloadWatch, Sources, overload_thresholds
from bot.pages import Pages
from bot.pipeline import Pipeline
from bot.settings import WORKER_ENV, Settings
from bot.store.base import Conversation
from bot.store.open import AnyStore, describe, open_store
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from bot.turns import LocalTurns, SharedTurns
from knowledge_base.isolated import IsolatedEmbedder

logger = logging.getLogger(__name__)
# How often a gateway sharing its database re-reads the open tickets, to time the SLA of those
# another gateway created or changed (a timer re-checks its ticket before it fires, and fires
# once across gateways, so an extra or stale one is harmless; a missing one would not be).
SLA_RESYNC_SECONDS = 10.0
# Reached without the reverse proxy: Rasa calling the actions, probes and Prometheus.
DIRECT_PATHS = ("/actions/webhook", "/health", "/metrics")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Middle-generation collections per full collection (CPython's default is 10).
FULL_COLLECTION_EVERY = 1000


def create_app(settings: Settings) -> web.Application:
    middlewares = [errors_middleware]
    if settings.server.trusted_proxies:
        # aiohttp-remotes: the client's address from X-Forwarded-For, set by that proxy only.
        proxy = ProxiedOnly(
            [[str(network) for network in settings.server.trusted_proxies]],
            white_paths=DIRECT_PATHS,
        )
        middlewares.append(proxy.middleware)
    app = web.Application(
        middlewares=[
            *middlewares,
            console_headers_middleware,
            cors_middleware(settings.channels.web.allowed_origins),
        ],
        client_max_size=settings.channels.web.max_body_bytes,
    )
    app[keys.SETTINGS] = settings
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.PackageLoader("bot", "templates"), autoescape=True
    )
    env.globals["home_of"] = home_of  # the console's brand link: each user's own home page
    setup_sessions(app, settings)
    app.cleanup_ctx.extend([_store, _http_client, _scale, _knowledge_base, _accounts, _core])
    app.on_startup.append(_freeze_heap)  # runs after the cleanup contexts have started
    # The console's scripts and styles (pages allow no inline script: see CONSOLE_CSP).
    app.router.add_static("/console/static/", Path(str(resources.files("bot") / "static")))
    for key, routes in (
        (keys.WEB, WebChannel.ROUTES),
        (keys.AGENT_API, AgentAPI.ROUTES),
        (keys.ACTIONS, ActionEndpoint.ROUTES),
        (keys.PAGES, Pages.ROUTES),
        (keys.METRICS, MetricsEndpoint.ROUTES),
        (keys.WEBHOOKS, WebhookEndpoint.ROUTES),
        (keys.ACCESS, Access.ROUTES),
        (keys.ACCOUNT, Account.ROUTES),
        (keys.CONSOLE, Console.ROUTES),
        (keys.EDITOR, Editor.ROUTES),
        (keys.DASHBOARD, Dashboard.ROUTES),
        (keys.KB_API, KnowledgeAPI.ROUTES),
        (keys.EMERGENCY, EmergencyAPI.ROUTES),
    ):
        for method, path, name in routes:
            app.router.add_route(method, path, _delegate(key, name))
    return app


def _delegate(key: web.AppKey[Any], name: str) -> Handler:
    """Route to a method of a handler object that a cleanup context creates at start."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await getattr(request.app[key], name)(request)
        return response

    return handler


async def _freeze_heap(app: web.Application) -> None:
    """Hide start-up objects from the cyclic garbage collector.

    Start-up leaves hundreds of thousands of long-lived objects (libraries, settings, the KB
    index metadata); each full collection over them (measured when the embedding model still
    ran in this process: ~480k objects) stopped every thread for ~0.3 s, so the messages
    arriving meanwhile were acked that much later. Full collections stay rare afterwards
    too: while Rasa is saturated the backlog of waiting turns grows, and collecting it every
    few seconds tripled the ack p99 of a 60 s run (with the collector off as a check: 18 ms
    against 98 ms). Young collections, which free almost everything, run as before.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    logger.info("moved %d start-up objects out of the garbage collector", gc.get_freeze_count())


def gateway_id(settings: Settings) -> str:
    """This gateway process among those sharing a database: host, port and worker slot, the
    same after a restart, so a restarted worker finishes its own claimed work at once."""
    worker = os.environ.get(WORKER_ENV, "0")
    return f"{socket.gethostname()}:{settings.server.port}:{worker}"


def journal_for(settings: Settings, path: Path) -> Path:
    """The journal file of this process: one per ``--workers`` slot."""
    path = settings.path(path)
    worker = os.environ.get(WORKER_ENV)
    return path if worker is None else path.with_name(f"{path.stem}.{worker}{path.suffix}")


async def _store(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    store = await open_store(settings, owner=gateway_id(settings))
    app[keys.STORE] = store
    logger.info("database: %s", describe(settings))
    yield
    await store.close()


def _any_store(app: web.Application) -> AnyStore:
    store = app[keys.STORE]
    if not isinstance(store, SQLiteStore | PostgresStore):
        raise TypeError(f"not a Promptly store: {type(store).__name__}")
    return store


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[keys.HTTP] = session
        yield


async def _scale(app: web.Application) -> AsyncIterator[None]:
    """What gateway processes share through Redis when ``[scale] redis_url`` is set: the
    conversation frames (``RedisHub``) and the rate-limit windows (one client with short
    timeouts; a check Redis does not answer in time is made in this process). Cleaned up
    after ``_core``, so the outbox and the dispatcher have stopped publishing."""
    scale = app[keys.SETTINGS].scale
    url = scale.redis()
    if url is None:
        app[keys.HUB] = Hub()
        app[keys.RATE_WINDOWS] = local_windows()
        app[keys.TURNS] = LocalTurns()
        yield
        return
    hub = RedisHub(url, prefix=scale.redis_prefix)
    timeout = scale.redis_timeout.total_seconds()
    client = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),  # a request must not wait for retries: it limits locally
        client_name=f"promptly-limits-{hub.origin}",
    )
    try:
        await hub.start()
        app[keys.HUB] = hub
        app[keys.RATE_WINDOWS] = redis_windows(client, scale.redis_prefix)
        rasa_timeout = app[keys.SETTINGS].rasa.timeout.total_seconds()
        app[keys.TURNS] = SharedTurns(
            client, scale.redis_prefix, hold=rasa_timeout + 5, wait=rasa_timeout
        )
        logger.info("sharing frames and rate limits through Redis (prefix %r)", scale.redis_prefix)
        yield
    finally:
        await hub.close()
        await client.aclose()


async def _accounts(app: web.Application) -> AsyncIterator[None]:
    store = _any_store(app)
    app[ACCOUNTS] = Accounts(store)
    app[AUDIT] = Audit(store)
    app[THROTTLE] = login_throttle(app[keys.SETTINGS].console, app[keys.RATE_WINDOWS])
    app[keys.ACCESS] = Access(app[ACCOUNTS], app[AUDIT], app[THROTTLE])
    app[keys.ACCOUNT] = Account(app[ACCOUNTS], app[AUDIT], app[THROTTLE])
    settings = app[keys.SETTINGS]
    app[keys.EDITOR] = Editor(app[keys.ARTICLES], app.get(keys.KB), app[AUDIT], settings.kb)
    yield


async def _knowledge_base(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    articles = app[keys.ARTICLES] = ArticleStore(_any_store(app), hub=app[keys.HUB])
    if not settings.kb.enabled:
        yield
        return
    report = await articles.import_markdown_dir(settings.path(settings.kb.articles))
    logger.info(
        "articles imported: %d new, %d changed, %d unchanged",
        len(report.added),
        len(report.updated),
        report.unchanged,
    )
    loop = asyncio.get_running_loop()
    embedder = None
    try:
        embedder = await loop.run_in_executor(None, embedder_for, settings)
        published = await articles.published()
        app[keys.KB] = await load_live_knowledge_base(settings, embedder, published)
    except Exception:
        # Degraded, not down: acks, Rasa's replies and handoffs need no KB.
        logger.exception(
            "the knowledge base could not be loaded; serving without it (Rasa-only replies "
            "and handoffs, /health shows kb down) until the next start"
        )
    try:
        yield
    finally:
        if isinstance(embedder, IsolatedEmbedder):
            await loop.run_in_executor(None, embedder.close)


async def _core(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    store = app[keys.STORE]
    kb = app.get(keys.KB)
    hub = app[keys.HUB]
    debug = settings.debug
    clock = clock_from(debug.clock_start, debug.clock_start_at, debug.clock_speed)
    channels = build_channels(settings, app[keys.HTTP])
    dispatcher = Dispatcher(store, hub, channels, clock)
    metrics = Metrics(settings.channels)
    outbox = Outbox(store, hub, dispatcher, metrics)
    secret = settings.notify_secret.get_secret_value().encode() if settings.notify_secret else b""
    notifier = Notifier(app[keys.HTTP], settings.sla.notify_url, secret)
    if settings.debug.clock_start is not None:
        logger.warning("debug.clock_start: the clock starts at %s", settings.debug.clock_start)
    if debug.clock_speed != 1:
        logger.warning("debug.clock_speed: the clock runs %g times real time", debug.clock_speed)
    store = _any_store(app)
    pausable = sorted({"web", *platform_settings(settings)})
    switch = EmergencySwitch(store, clock, set(pausable))
    await switch.load()
    tickets = TicketService(
        store, outbox, settings, clock, notifier, lambda: switch.current, lambda: watch.overloaded
    )
    await tickets.rebuild()
    rasa = RasaClient(
        app[keys.HTTP],
        settings.rasa.url,
        timeout=settings.rasa.timeout.total_seconds(),
        concurrency=settings.rasa.concurrency,
        breaker_failures=settings.rasa.breaker_failures,
        probe_interval=settings.rasa.probe_interval.total_seconds(),
    )

    def answer_limit(conversation: Conversation) -> int | None:
        channel = channels.get(conversation.channel)
        return None if channel is None else channel.max_chars_for(conversation.reply_to)

    journal_path = settings.storage.journal
    fast = None
    if kb is not None and settings.kb.fast_path:
        project = settings.path(settings.rasa.project)
        fast = await fastpath.build(project, kb.embed, gate_floor=settings.kb.fast_gate)
    loop_lag = LoopLag()
    pipeline = Pipeline(
        store,
        outbox,
        rasa,
        kb,
        tickets,
        settings,
        clock,
        metrics,
        answer_limit=answer_limit,
        switch=lambda: switch.current,
        overloaded=lambda: watch.overloaded,
        fast=fast,
        journal=None if journal_path is None else Journal(journal_for(settings, journal_path)),
        turns=app[keys.TURNS],
        loop_lag=loop_lag,
    )
    watch = OverloadWatch(
        store,
        Sources(
            accepted=lambda: pipeline.accepted,
            backlog=lambda: pipeline.backlog,
            latency=rasa.expected_latency,
            window=settings.channels.web.promise.total_seconds(),
            kb_latency=pipeline.kb_latency,
            queue_eta=tickets.queues.pressure,
        ),
        overload_thresholds(settings.overload),
        clock,
        notifier=notifier,
        leads=tuple(sorted({q.lead for q in settings.queues.values() if q.lead})),
    )
    rasa.on_recovery(pipeline.resume)

    async def unpaused(before: Switch, after: Switch) -> None:
        if before.paused - after.paused:  # what waited on those channels is answered now
            await pipeline.resume()

    switch.on_change(unpaused)
    orders = OrderBook.from_csv(settings.path(settings.kb.articles).parent / "demo_orders.csv")
    services.configure(
        services.Services(
            kb=kb,
            tickets=tickets,
            orders=orders,
            kb_floor=settings.kb.floor,
            kb_offer_floor=settings.kb.offer_floor,
        )
    )
    executor = ActionExecutor()
    executor.register_package(actions)
    agent_token = settings.agent_token.get_secret_value() if settings.agent_token else None
    if agent_token is None:
        agent_token = secrets.token_urlsafe(24)
        logger.warning(
            "PROMPTLY_AGENT_TOKEN is not set; this run's agent API token: %s", agent_token
        )
    action_token = settings.action_token.get_secret_value() if settings.action_token else None
    app[keys.RASA] = rasa
    app[keys.PIPELINE] = pipeline
    limits = ClientLimits(settings.limits, windows=app[keys.RATE_WINDOWS])
    app[keys.WEB] = WebChannel(pipeline, store, hub, settings.channels.web, limits, clock)
    canned = CannedReplies(store)
    await canned.seed()
    feed = Feed(store, clock)
    await feed.start()
    agent_api = AgentAPI(store, tickets, agent_token, dispatcher, clock, canned=canned, feed=feed)
    app[keys.AGENT_API] = agent_api
    app[keys.CONSOLE] = Console()
    app[keys.DASHBOARD] = Dashboard(store, settings, clock)
    app[keys.KB_API] = KnowledgeAPI(store, kb, settings.kb, agent_token, clock)
    app[keys.ACTIONS] = ActionEndpoint(
        executor, action_token, observe=None if fast is None else fast.observe_action
    )
    hub = app[keys.HUB]

    def components() -> dict[str, bool]:
        """Up or not, for /health, /metrics and the console's banner (each reads the
        database its own way): Redis only when gateways share it."""
        up = {"rasa": rasa.up, "kb": kb is not None and kb.up}
        if isinstance(hub, RedisHub):
            up["redis"] = hub.subscribed
        return up

    app[keys.PAGES] = Pages(
        store,
        components,
        kb,
        {name: name in channels for name in platform_settings(settings)},
        lambda: switch.current,
        watch.to_json,
        journaled=lambda: pipeline.journaled,
    )

    def status() -> dict[str, Any]:
        up = {**components(), "database": pipeline.journaled == 0}
        return {
            "overload": watch.to_json(),
            "components": {name: "up" if ok else "down" for name, ok in up.items()},
        }

    # The console offers only the channels this gateway serves (the CLI may pause any).
    app[keys.EMERGENCY] = EmergencyAPI(switch, sorted({"web", *channels}), status)
    app[keys.METRICS] = MetricsEndpoint(
        metrics,
        store,
        tickets,
        components=components,
        queues=settings.queues,
        clock=clock,
    )
    await app[keys.METRICS].start()
    app[keys.DISPATCHER] = dispatcher
    app[keys.WEBHOOKS] = WebhookEndpoint(
        pipeline,
        {name: c for name, c in channels.items() if isinstance(c, WebhookChannel)},
        platform_settings(settings),
        settings.server.public_url,
        limits,
        clock,
    )
    await dispatcher.start()
    listeners = [c for c in channels.values() if isinstance(c, ListeningChannel)]
    for listener in listeners:
        await listener.start_listener(pipeline.accept_all)
    background = [
        asyncio.create_task(rasa.watch()),
        asyncio.create_task(tickets.monitor.run()),
        asyncio.create_task(feed.run(agent_api.views.by_id)),
        asyncio.create_task(switch.watch()),
        asyncio.create_task(watch.run()),
        asyncio.create_task(loop_lag.run()),
    ]
    if kb is not None:
        background.append(asyncio.create_task(app[keys.ARTICLES].watch(kb)))
    if isinstance(store, PostgresStore):  # other gateways may share the database
        lease = store.lease.total_seconds()
        background.append(asyncio.create_task(claims.keep(store, pipeline, dispatcher, lease / 3)))
        background.append(asyncio.create_task(tickets.resync(SLA_RESYNC_SECONDS)))
    yield
    feed.close()  # connected consoles are told to go; they reconnect to the next run
    for listener in listeners:
        await listener.stop_listener()
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await notifier.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pipeline.drain(), timeout=5)
    await dispatcher.close()  # what is still pending is resumed from the store at next start
    services.configure(None)
