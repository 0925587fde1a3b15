"""Session fixtures that run real parts: a Rasa server with the trained model and the gateway,
as separate processes talking HTTP on loopback, the way `promptly run` runs them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from bot.rasa_server import RasaServer, stop_process_group, write_endpoints
from bot.settings import Settings, load_settings
from bot.training import model_path, rasa_executable, train

ROOT = Path(__file__).resolve().parent.parent
# Properties, not timings, are under test: no per-example deadline on a busy 2-core machine.
hypothesis_settings.register_profile("promptly", deadline=None, print_blob=True)
hypothesis_settings.load_profile("promptly")
AGENT_TOKEN = "integration-agent-token"
ACTION_TOKEN = "integration-action-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    url: str
    rasa: RasaServer
    database: Path
    agent_token: str
    gateway_log: Path
    gateway: subprocess.Popen[bytes]
    config: Path
    extra_env: dict[str, str] | None = None

    def restart_gateway(self) -> None:
        """Kill the gateway process (as a crash would) and start it again on the same port."""
        self.gateway.kill()
        self.gateway.wait()
        self.gateway = _start_gateway(self.config, self.gateway_log, self.extra_env)
        _wait_http(f"{self.url}/health", self.gateway, self.gateway_log, timeout=120)

    def health(self) -> dict[str, object]:
        with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
            return dict(json.loads(response.read()))

    def wait_rasa(self, up: bool, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            components = self.health()["components"]
            assert isinstance(components, dict)
            if (components["rasa"] == "up") == up:
                return
            time.sleep(0.2)
        raise AssertionError(f"gateway never saw Rasa {'up' if up else 'down'}")


def _write_config(tmp: Path, gateway_port: int, rasa_port: int, extra: str = "") -> Path:
    config = tmp / "promptly.toml"
    config.write_text(
        f"""
[server]
port = {gateway_port}
[storage]
database = "{tmp / "promptly.db"}"
[rasa]
url = "http://127.0.0.1:{rasa_port}"
manage = false
project = "{ROOT}"
venv = "{ROOT / ".venv-rasa"}"
model_dir = "{ROOT / "models"}"
probe_interval = "200ms"
[kb]
articles = "{ROOT / "kb" / "articles"}"
index_dir = "{tmp / "kb-index"}"
"""
        + extra,
        encoding="utf-8",
    )
    return config


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"gateway not up after {timeout}s:\n{log.read_text()[-3000:]}")


def _start_gateway(
    config: Path, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PROMPTLY_AGENT_TOKEN": AGENT_TOKEN,
        "PROMPTLY_ACTION_TOKEN": ACTION_TOKEN,
        "HF_HUB_OFFLINE": "1",
        **(extra_env or {}),
    }
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(config), "gateway"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def running_stack(
    tmp: Path, extra_config: str = "", extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """A gateway and a Rasa server (trained model) on free loopback ports, config + extra."""
    gateway_port, rasa_port = free_port(), free_port()
    config = _write_config(tmp, gateway_port, rasa_port, extra_config)
    settings: Settings = load_settings(config, env={})
    model = model_path(settings)
    if not model.exists():  # `make test` trains first; this keeps a bare pytest run honest
        train(settings)
    gateway_log = tmp / "gateway.log"
    gateway = _start_gateway(config, gateway_log, extra_env)
    url = f"http://127.0.0.1:{gateway_port}"
    endpoints = write_endpoints(tmp / "endpoints.yml", f"{url}/actions/webhook", ACTION_TOKEN)
    rasa = RasaServer(
        rasa_executable(settings), model, endpoints, rasa_port, tmp / "rasa.log", ROOT
    )
    rasa.start()
    result = Stack(
        url, rasa, tmp / "promptly.db", AGENT_TOKEN, gateway_log, gateway, config, extra_env
    )
    try:
        _wait_http(f"{url}/health", gateway, gateway_log, timeout=120)
        rasa.wait_ready()
        result.wait_rasa(up=True)
        yield result
    finally:
        rasa.stop()
        stop_process_group(result.gateway, timeout=20)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as result:
        yield result


@pytest.fixture(scope="session")
def promptly_url(stack: Stack) -> str:
    return stack.url
