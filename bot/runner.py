"""``promptly run``: the gateway plus a supervised Rasa child process, stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from aiohttp import web
from pydantic import SecretStr

from bot.app import create_app
from bot.console.access import ACCOUNTS
from bot.console.accounts import Accounts
from bot.errors import ConfigError
from bot.rasa_server import RasaServer, RasaStartError, write_endpoints
from bot.settings import ACTION_TOKEN_ENV, AGENT_TOKEN_ENV, WORKER_ENV, Settings
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


def workers_refusal(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` gateway processes cannot serve this configuration (None: they can).

    The processes share only the database and Redis, so both must be ones several processes
    can share: PostgreSQL (``[storage] database_url``; a SQLite file belongs to one process)
    and ``[scale] redis_url`` (frames, rate limits). Each worker keeps its own journal of
    messages taken while the database is away (``journal.<slot>.jsonl``).
    """
    if workers <= 1:
        return None
    missing = []
    if settings.storage.database_dsn() is None:
        missing.append('[storage] database_url = "postgresql://…"')
    if settings.scale.redis() is None:
        missing.append('[scale] redis_url = "redis://…"')
    if missing:
        return (
            f"--workers {workers} needs every gateway process to share one PostgreSQL database "
            f"and Redis: set {' and '.join(missing)} (or PROMPTLY_DATABASE_URL, "
            'PROMPTLY_REDIS_URL; docs/deploy.md, "Scaling out"), or run one gateway process '
            "(--workers 1) on the SQLite file."
        )
    return None


async def serve(
    settings: Settings,
    *,
    manage_rasa: bool,
    workers: int = 1,
    config: Path | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve until Ctrl-C: one gateway in this process, or (``workers`` > 1) that many
    gateway child processes on one port (SO_REUSEPORT), supervised; Rasa once, here."""
    refusal = workers_refusal(settings, workers)
    if refusal is not None:
        raise ConfigError(refusal)
    settings, generated_agent_token = with_tokens(settings)
    if workers > 1:
        await _serve_workers(settings, workers, config, manage_rasa, generated_agent_token)
        return
    app = create_app(settings)
    runner = app_runner(app, settings)
    await runner.setup()
    # reuse_port: one of several gateway processes sharing the port (`--workers`).
    site = web.TCPSite(
        runner, settings.server.host, settings.server.port, reuse_port=reuse_port or None
    )
    try:
        await site.start()
    except OSError:  # the port is taken (the CLI says so): the app's cleanup still runs
        await runner.cleanup()
        raise
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


async def _serve_workers(
    settings: Settings,
    workers: int,
    config: Path | None,
    manage_rasa: bool,
    generated_agent_token: bool,
) -> None:
    assert settings.action_token is not None and settings.agent_token is not None
    # The children read the same config and use this run's tokens (Rasa calls any of them).
    env = {
        **os.environ,
        ACTION_TOKEN_ENV: settings.action_token.get_secret_value(),
        AGENT_TOKEN_ENV: settings.agent_token.get_secret_value(),
    }
    command = [sys.executable, "-m", "bot"]
    if config is not None:
        command += ["--config", str(config)]
    command += ["gateway", "--reuse-port"]
    pool = Workers(command, workers, env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    rasa = _rasa_server(settings) if manage_rasa else None
    supervisor = asyncio.create_task(_supervise(rasa, stop)) if rasa else None
    _banner(settings, generated_agent_token, rasa, workers=workers)
    try:
        await pool.run(stop)
        print("\nStopping Promptly...", file=sys.stderr)
    finally:
        stop.set()
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        if rasa is not None:
            await asyncio.to_thread(rasa.stop)


class Workers:
    """``count`` copies of ``command`` kept running until ``stop``: one that exits is
    started again (after a backoff that doubles, up to a minute, while they keep dying
    quickly); at ``stop`` each gets SIGTERM, then SIGKILL after ``grace`` seconds."""

    def __init__(
        self,
        command: list[str],
        count: int,
        env: dict[str, str] | None = None,
        *,
        grace: float = 20.0,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        self.command, self.count, self.env = command, count, env
        self.grace, self.backoff = grace, backoff
        self.processes: list[asyncio.subprocess.Process | None] = [None] * count
        self.restarts = 0

    async def run(self, stop: asyncio.Event) -> None:
        slots = [asyncio.create_task(self._slot(i, stop)) for i in range(self.count)]
        try:
            await stop.wait()
        finally:
            stop.set()
            await asyncio.gather(*(self._stop(p) for p in self.processes if p is not None))
            for slot in slots:
                slot.cancel()
            await asyncio.gather(*slots, return_exceptions=True)

    async def _slot(self, index: int, stop: asyncio.Event) -> None:
        delay = self.backoff[0]
        while not stop.is_set():
            started = time.monotonic()
            # Own session: Ctrl-C reaches this process, which stops the workers in order.
            # The slot is the worker's identity: its journal file, and the name its claimed
            # work goes by, so a restarted worker finishes what its predecessor claimed.
            env = {**(self.env or os.environ), WORKER_ENV: str(index)}
            process = await asyncio.create_subprocess_exec(
                *self.command, env=env, start_new_session=True
            )
            self.processes[index] = process
            logger.info("gateway worker %d started (pid %d)", index + 1, process.pid)
            code = await process.wait()
            if stop.is_set():
                return
            if time.monotonic() - started > 2 * self.backoff[1]:
                delay = self.backoff[0]  # it ran a good while: not a crash loop
            logger.error(
                "gateway worker %d (pid %d) exited with %s; restarting in %.0f s",
                index + 1,
                process.pid,
                code,
                delay,
            )
            self.restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, self.backoff[1])

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), self.grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


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
    return (
        f"{username} / {password}  (from {path}; change it at /console/account or with "
        f"`promptly users passwd {username}`, then delete that file)"
    )


def _banner(
    settings: Settings,
    generated_agent_token: bool,
    rasa: RasaServer | None,
    demo_login: str | None = None,
    workers: int = 1,
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
    if workers > 1:
        lines.append(f"  Workers:       {workers} gateway processes on port {settings.server.port}")
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
