"""Fixtures shared by the unit tests that run the gateway in-process."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class FakeRasa:
    delay: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    # Runs inside the webhook before it answers, like a custom action would.
    action: Callable[[dict[str, Any]], Awaitable[list[dict[str, Any]] | None]] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.root)
        app.router.add_post("/webhooks/rest/webhook", self.webhook)
        return app

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(text="Hello from Rasa: 3.6.21")

    async def webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(body)
        await asyncio.sleep(self.delay)
        if self.action is not None and (custom := await self.action(body)) is not None:
            return web.json_response(custom)
        return web.json_response(
            [
                {"recipient_id": body["sender"], "text": f"echo: {body['message']}"},
            ]
        )


@pytest.fixture
def fake_rasa() -> FakeRasa:
    return FakeRasa()


@pytest.fixture
async def rasa_server(fake_rasa, unused_tcp_port) -> AsyncIterator[TestServer]:
    server = TestServer(fake_rasa.app(), port=unused_tcp_port)
    await server.start_server()
    yield server
    await server.close()
