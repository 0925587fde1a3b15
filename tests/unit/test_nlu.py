"""The Rasa client's circuit: only the probe closes it, so recovery always answers what waited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.nlu import RasaClient
from tests.unit.conftest import FakeRasa


@dataclass
class FlakyProbe(FakeRasa):
    probe_ok: bool = True

    async def root(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.probe_ok else 503, text="Hello from Rasa")


async def _until(condition: Callable[[], bool], poke: Callable[[], None]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        poke()  # wake the watcher for another probe now
        await asyncio.sleep(0.01)


async def test_an_answer_arriving_after_the_probe_opened_the_circuit_keeps_it_open(
    unused_tcp_port: int,
) -> None:
    # Found by bench/faults.py (slow Rasa): a call sent before the probe timed out answered
    # after it and closed the circuit, so the next good probe ran no recovery hooks and the
    # messages pended meanwhile were never answered.
    fake = FlakyProbe(delay=0.3)
    server = TestServer(fake.app(), port=unused_tcp_port)
    await server.start_server()
    recoveries = 0

    async def recovered() -> None:
        nonlocal recoveries
        recoveries += 1

    try:
        async with aiohttp.ClientSession() as session:
            client = RasaClient(
                session,
                str(server.make_url("/")),
                timeout=5,
                concurrency=2,
                breaker_failures=3,
                probe_interval=60,  # probes only when poked
            )
            client.on_recovery(recovered)
            watcher = asyncio.create_task(client.watch())
            poke = client._wake.set
            try:
                await _until(lambda: recoveries == 1, poke)  # the start
                late = asyncio.create_task(client.send("c1", "hello", {}))
                await _until(lambda: len(fake.calls) == 1, lambda: None)
                fake.probe_ok = False
                await _until(lambda: not client.up, poke)
                assert (await late)[0]["text"] == "echo: hello"
                assert not client.up  # the late answer did not close the circuit
                fake.probe_ok = True
                await _until(lambda: recoveries == 2, poke)
                assert client.up
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
    finally:
        await server.close()
