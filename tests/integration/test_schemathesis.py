"""Schemathesis against the real gateway: every operation of the served OpenAPI document,
with valid and invalid requests, must never get a 5xx.

The gateway is the real app factory and HTTP server (``bot.runner.app_runner``) on a loopback
port, in a thread with its own event loop, with the demo knowledge base; Rasa is down
(nothing listens on its port), which the gateway must handle anyway. Rate limits are off, or
they would answer most of the requests. Requests carry the agent token and
a signed-in admin's session and CSRF token, so they reach the handlers behind both.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode

from bot.app import create_app
from bot.console.access import ACCOUNTS
from bot.runner import app_runner
from bot.settings import load_settings
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration
TOKEN = "schemathesis-agent-token"
PASSWORD = "correct horse battery"
EXAMPLES = 15  # per operation and generation mode: ~60 operations, ~1500 requests
# Ending the session would sign the rest of the run out.
SKIPPED = {"POST /console/logout"}


class Gateway:
    """The app on a real port, served from a thread that owns its event loop."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "promptly.toml"
        config.write_text(
            f"""
[server]
port = {self.port}
[storage]
database = "{tmp / "promptly.db"}"
[rasa]
url = "http://127.0.0.1:{free_port()}"
manage = false
timeout = "1s"
[kb]
articles = "{ROOT / "kb" / "articles"}"
index_dir = "{tmp / "kb-index"}"
isolate = false
[limits]
messages_per_sender = 0
requests_per_address = 0
messages_per_socket = 0
webhooks_per_address = 0
""",
            encoding="utf-8",
        )
        self.settings = load_settings(config, env={"PROMPTLY_AGENT_TOKEN": TOKEN})
        self.loop = asyncio.new_event_loop()
        self.app = create_app(self.settings)
        self.runner = app_runner(self.app, self.settings)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def start(self) -> None:
        self._thread.start()
        self.run(self.runner.setup())
        self.run(web.TCPSite(self.runner, "127.0.0.1", self.port).start())

    def stop(self) -> None:
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def admin_session(gateway: Gateway) -> tuple[requests.Session, str]:
    """A session signed in as an admin through the real form; returns it and its CSRF token."""
    gateway.run(gateway.app[ACCOUNTS].add("fuzz-admin", PASSWORD, "admin"))
    session = requests.Session()
    page = session.get(f"{gateway.url}/console/login", timeout=10).text
    form_token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert form_token is not None
    signed_in = session.post(
        f"{gateway.url}/console/login",
        data={"username": "fuzz-admin", "password": PASSWORD, "csrf_token": form_token[1]},
        allow_redirects=False,
        timeout=10,
    )
    assert signed_in.status_code == 302
    me = session.get(f"{gateway.url}/api/console/me", timeout=10)
    return session, str(me.json()["csrf_token"])


def test_no_request_the_spec_allows_or_forbids_gets_a_server_error(gateway):
    spec = requests.get(f"{gateway.url}/api/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    session, csrf = admin_session(gateway)
    headers = {"Authorization": f"Bearer {TOKEN}", "X-CSRF-Token": csrf}
    # Given explicitly: the spec's cookie security scheme makes schemathesis invent one.
    cookies = {"promptly_session": session.cookies["promptly_session"]}
    errors: list[str] = []
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in SKIPPED:
            continue
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @hypothesis.settings(
            max_examples=2 * EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],  # a 5xx is recorded, not shrunk
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def exercise(case: schemathesis.Case) -> None:
            response = case.call(base_url=gateway.url, headers=headers, cookies=cookies, timeout=10)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                errors.append(f"{response.status_code} {case.as_curl_command()}")

        exercise()
    elapsed = time.monotonic() - started
    calls = sum(statuses.values())
    print(f"schemathesis: {calls} requests in {elapsed:.1f} s: {sorted(statuses.items())}")  # noqa: T201
    assert sum(n for status, n in statuses.items() if status < 300) > calls // 10  # not all refused
    assert not errors, "server errors:\n" + "\n".join(sorted(set(errors))[:20])
