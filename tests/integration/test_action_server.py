"""The actions also run in rasa-sdk's own standalone action server, built from settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bot.rasa_server import stop_process_group
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration


def call(port: int, action: str, text: str, intent: str) -> dict[str, object]:
    body = {
        "next_action": action,
        "sender_id": "standalone-test",
        "tracker": {
            "sender_id": "standalone-test",
            "slots": {},
            "events": [],
            "paused": False,
            "followup_action": None,
            "active_loop": {},
            "latest_action_name": None,
            "latest_message": {"text": text, "intent": {"name": intent}},
        },
        "domain": {"slots": {}, "responses": {}},
        "version": "3.6.21",
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def test_standalone_action_server_answers_from_the_kb(tmp_path: Path) -> None:
    config = tmp_path / "promptly.toml"
    config.write_text(
        f'[storage]\ndatabase = "{tmp_path / "promptly.db"}"\n'
        f'[kb]\narticles = "{ROOT / "kb" / "articles"}"\nindex_dir = "{tmp_path / "kb"}"\n',
        encoding="utf-8",
    )
    port = free_port()
    env = {**os.environ, "PROMPTLY_CONFIG": str(config), "HF_HUB_OFFLINE": "1"}
    log = (tmp_path / "actions.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "actions.log"
                ).read_text()
                time.sleep(0.3)
        result = call(port, "action_answer_from_kb", "how long does delivery take", "faq")
        custom = result["responses"][0]["custom"]  # type: ignore[index]
        assert custom["citations"][0]["url"] == "/kb/shipping-times"
        assert result["events"][0]["name"] == "offered_human"  # type: ignore[index]
    finally:
        stop_process_group(server)
        log.close()
