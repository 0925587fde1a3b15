"""``promptly run``: the gateway plus a supervised Rasa child process, stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import sys

from aiohttp import web
from pydantic import SecretStr

from bot.app import create_app
from bot.console.access import ACCOUNTS
from bot.console.accounts import Accounts
from bot.rasa_server import RasaServer, RasaStartError, write_endpoints
from bot.settings import Settings
from bot.training import TrainingError, model_path, rasa_executable

logger = logging.getLogger(__name__)
DEMO_ADMIN_FILE = "demo-admin.txt"


def with_tokens(settings: Settings) -> tuple[Settings, bool]:
    """Fill missing tokens with random per-run values; True when the agent token is new."""
    update: dict[str, SecretStr] = {}
    if settings.action_token is None:
        update["action_token"] = SecretStr(secrets.token_urlsafe(24))
    if settings.agent_token is None:
        update["agent_token"] = SecretStr(secrets.token_urlsafe(18))
    return settings.model_copy(update=update), "agent_token" in update


async def serve(settings: Settings, *, manage_rasa: bool) -> None:
    settings, generated_agent_token = with_tokens(settings)
    app = create_app(settings)
    runner = app_runner(app, settings)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    rasa = _rasa_server(settings) if manage_rasa else None
    supervisor = asyncio.create_task(_supervise(rasa, stop)) if rasa else None
    demo_login = await demo_admin(app[ACCOUNTS], settings) if manage_rasa else None
    _banner(settings, generated_agent_token, rasa, demo_login)
    try:
        await stop.wait()
        print("\nStopping Promptly...", file=sys.stderr)
    finally:
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        if rasa is not None:
            await asyncio.to_thread(rasa.stop)
        await runner.cleanup()


def app_runner(app: web.Application, settings: Settings) -> web.AppRunner:
    """The HTTP server's own defences against slow clients.

    aiohttp closes a connection that has no complete request ``keepalive_timeout`` after it
    opened or after its last response: that covers idle keep-alive connections and headers
    dripped a byte at a time (its default is an hour). Header lines, fields and counts keep
    aiohttp's limits (8190 bytes, 128 headers; a request past them is refused); the routes
    bound bodies (size, and ``limits.body_timeout``). Handlers are not cancelled when a
    client goes away: a message being stored is stored, and its retry is a duplicate.
    """
    return web.AppRunner(
        app, access_log=None, keepalive_timeout=settings.limits.idle_timeout.total_seconds()
    )


def _rasa_server(settings: Settings) -> RasaServer:
    model = model_path(settings)
    if not model.exists():
        raise TrainingError(f"no trained model {model.name}: run `promptly train` first")
    assert settings.action_token is not None
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::") else settings.server.host
    endpoints = write_endpoints(
        settings.path(settings.storage.database).parent / "endpoints.yml",
        f"http://{host}:{settings.server.port}/actions/webhook",
        settings.action_token.get_secret_value(),
        redis_url=settings.scale.redis(),
        redis_prefix=settings.scale.redis_prefix,
    )
    return RasaServer(
        rasa_executable(settings),
        model,
        endpoints,
        settings.rasa.port,
        settings.path(settings.storage.database).parent / "rasa.log",
        settings.path(settings.rasa.project),
        nice=settings.rasa.nice,
    )


async def _supervise(rasa: RasaServer, stop: asyncio.Event) -> None:
    """Keep Rasa running: the gateway acks without it, but answers need it back."""
    backoff = 1.0
    while not stop.is_set():
        rasa.start()
        try:
            await asyncio.to_thread(rasa.wait_ready)
            print(f"Rasa is ready at {rasa.url}", file=sys.stderr)
            backoff = 1.0
        except RasaStartError as e:
            logger.error("%s", e)
        while rasa.running:
            await asyncio.sleep(1)
        if stop.is_set():
            return
        logger.error("Rasa stopped; restarting in %.0fs:\n%s", backoff, rasa.log_tail())
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 60)


async def demo_admin(accounts: Accounts, settings: Settings) -> str | None:
    """On a database with no users, create ``admin`` with a random password, kept in a
    git-ignored file beside the database and shown at each start until that file is deleted."""
    path = settings.path(settings.storage.database).parent / DEMO_ADMIN_FILE
    if await accounts.count() == 0:
        password = secrets.token_urlsafe(12)
        await accounts.add("admin", password, "admin")
        path.touch(mode=0o600)
        path.write_text(f"admin\n{password}\n")
    if not path.exists():
        return None
    username, password = path.read_text().split()[:2]
    return f"{username} / {password}  (from {path}; delete it once you have changed it)"


def _banner(
    settings: Settings,
    generated_agent_token: bool,
    rasa: RasaServer | None,
    demo_login: str | None = None,
) -> None:
    base = settings.server.public_url or f"http://{settings.server.host}:{settings.server.port}"
    lines = [
        "",
        "Promptly is running.",
        f"  Widget demo:   {base}/",
        f'  Embed:         <script src="{base}/widget.js" async></script>',
        f"  Agent API:     {base}/api/agent/tickets  (Authorization: Bearer <token>)",
        f"  Health:        {base}/health",
        f"  Console:       {base}/console  (KB editor: {base}/console/editor)",
    ]
    if demo_login is not None:
        lines.append(f"  Console login: {demo_login}")
    if generated_agent_token and settings.agent_token is not None:
        lines.append(
            f"  Agent token:   {settings.agent_token.get_secret_value()}"
            "  (this run only; set PROMPTLY_AGENT_TOKEN to fix it)"
        )
    if rasa is not None:
        lines.append(
            f"  Rasa:          {rasa.url} (starting; log in "
            f"{settings.path(settings.storage.database).parent / 'rasa.log'})"
        )
    lines.append("Press Ctrl-C to stop.\n")
    print("\n".join(lines), file=sys.stderr, flush=True)
