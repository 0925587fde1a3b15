"""Rasa scaled the way Rasa documents it: two real Rasa 3.6 servers started with the
endpoints.yml of ``[scale] redis_url`` share their trackers and their lock store in the real
Redis (127.0.0.1:6379, a fresh prefix; ``tests.services``), so they serve one conversation
together, turn by turn. (Two messages of one conversation sent to both servers at the same
instant can still lose one: Rasa's Redis lock store does not prevent it, rasa#9213, and a run
of ten here lost one. The gateways never do that: bot/turns.py, tests/unit/test_scale.py.)"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from bot.rasa_server import RasaServer, write_endpoints
from bot.settings import load_settings
from bot.training import model_path, rasa_executable, train
from tests.conftest import ROOT, free_port
from tests.services import REDIS_URL, require_redis

pytestmark = pytest.mark.integration
# Rules with no custom action (domain.yml): each answers with a response.
GREET, THANKS = "hello", "thank you"


def say(rasa: RasaServer, sender: str, text: str) -> list[dict[str, Any]]:
    body = json.dumps({"sender": sender, "message": text}).encode()
    request = urllib.request.Request(
        f"{rasa.url}/webhooks/rest/webhook",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        answer: list[dict[str, Any]] = json.loads(response.read())
        return answer


def test_two_rasa_servers_serve_one_conversation_through_redis(tmp_path: Path) -> None:
    require_redis()
    settings = load_settings(ROOT / "promptly.toml", env={})
    model = model_path(settings)
    if not model.exists():
        train(settings)
    prefix = f"test{uuid.uuid4().hex[:12]}:"
    endpoints = write_endpoints(
        tmp_path / "endpoints.yml",
        f"http://127.0.0.1:{free_port()}/actions/webhook",  # nothing listens: no action runs
        "token",
        redis_url=REDIS_URL,
        redis_prefix=prefix,
    )
    servers = [
        RasaServer(
            rasa_executable(settings),
            model,
            endpoints,
            free_port(),
            tmp_path / f"rasa{i}.log",
            ROOT,
        )
        for i in (1, 2)
    ]
    client = redis.Redis.from_url(REDIS_URL)
    for rasa in servers:
        rasa.start()
    try:
        for rasa in servers:
            rasa.wait_ready(timeout=170)
        one, two = servers
        # Turn by turn, alternating servers: each sees what the other stored.
        assert say(one, "alternating", GREET) and say(two, "alternating", THANKS)
        key = prefix.rstrip(":") + ":tracker:alternating"
        stored = client.get(key)
        assert stored is not None, f"no {key} in Redis; Rasa log:\n{one.log_tail()}"
        users = [e["text"] for e in json.loads(stored)["events"] if e.get("event") == "user"]
        assert users == [GREET, THANKS]
        assert "Omitting provided non-alphanumeric" not in one.log_tail(200)

    finally:
        for rasa in servers:
            rasa.stop()
        for found in client.scan_iter(match=prefix.rstrip(":") + ":*"):
            client.delete(found)
        client.close()
