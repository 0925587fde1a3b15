"""What every fake platform shares: an aiohttp server on a free loopback port that records
the calls made to its send API and can be told to fail the next ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    """One request the adapter made to the fake's API."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class Failure:
    status: int
    body: str = '{"ok":false}'
    headers: dict[str, str] = field(default_factory=dict)


class FakePlatform:
    """Subclasses add their routes in ``routes()`` and answer successful calls themselves;
    ``fail_next`` makes the next calls fail first (e.g. a 429 with Retry-After)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._failures: list[Failure] = []
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.changed = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def fail_next(self, status: int, times: int = 1, **kwargs: Any) -> None:
        self._failures.extend(Failure(status, **kwargs) for _ in range(times))

    async def start(self) -> FakePlatform:
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakePlatform:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def record(
        self, request: web.Request, answer: Callable[[Call], Awaitable[web.Response]]
    ) -> web.Response:
        """Record the call, then fail it if told to, else ``answer`` it."""
        body = await request.read()
        call = Call(request.method, request.path, dict(request.headers), body)
        content_type = request.headers.get("Content-Type", "")
        if "json" in content_type and body:
            call.json = await request.json()
        elif "form" in content_type:
            call.form = {k: str(v) for k, v in (await request.post()).items()}
        self.calls.append(call)
        self.changed.set()
        if self._failures:
            failure = self._failures.pop(0)
            return web.Response(
                status=failure.status,
                text=failure.body,
                headers=failure.headers,
                content_type="application/json",
            )
        return await answer(call)

    async def wait_for_calls(self, count: int, timeout: float = 10.0) -> list[Call]:
        """Wait until at least ``count`` calls were recorded; returns them all."""

        async def until() -> None:
            while len(self.calls) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return list(self.calls)
