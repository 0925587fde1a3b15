"""A real Rasa 3.6 started with the endpoints.yml of ``[scale] redis_url`` keeps its trackers
in the real Redis (127.0.0.1:6379, a fresh prefix; ``tests.services``)."""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis

from bot.rasa_server import RasaServer, write_endpoints
from bot.settings import load_settings
from bot.training import model_path, rasa_executable, train
from tests.conftest import ROOT, free_port
from tests.services import REDIS_URL, require_redis

pytestmark = pytest.mark.integration


def test_rasa_keeps_its_trackers_in_redis(tmp_path: Path) -> None:
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
    port = free_port()
    rasa = RasaServer(
        rasa_executable(settings), model, endpoints, port, tmp_path / "rasa.log", ROOT
    )
    client = redis.Redis.from_url(REDIS_URL)
    rasa.start()
    try:
        rasa.wait_ready(timeout=110)
        body = json.dumps({"sender": "redis-test", "message": "hello"}).encode()
        request = urllib.request.Request(
            f"{rasa.url}/webhooks/rest/webhook",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        key = prefix.rstrip(":") + ":tracker:redis-test"
        stored = client.get(key)
        assert stored is not None, f"no {key} in Redis; Rasa log:\n{rasa.log_tail()}"
        events = json.loads(stored)["events"]
        assert any(e.get("event") == "user" and e.get("text") == "hello" for e in events)
        assert "Omitting provided non-alphanumeric" not in rasa.log_tail(200)
    finally:
        rasa.stop()
        for found in client.scan_iter(match=prefix.rstrip(":") + ":*"):
            client.delete(found)
        client.close()
