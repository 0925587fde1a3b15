"""Run a Rasa server as a child process (used by ``promptly run``, the tests and benchmarks)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from bot.errors import PromptlyError
from bot.training import rasa_env

logger = logging.getLogger(__name__)


class RasaStartError(PromptlyError):
    pass


def write_endpoints(
    path: Path,
    action_url: str,
    token: str,
    *,
    redis_url: str | None = None,
    redis_prefix: str = "promptly:",
) -> Path:
    """Point Rasa's action endpoint at the gateway, with the shared token; with ``redis_url``
    (``[scale]``), Rasa's lock store and tracker store are in that Redis too
    (``rasa_stores``). The file holds secrets: only its owner may read it."""
    sections: dict[str, dict[str, str | int | bool]] = {
        "action_endpoint": {"url": action_url, "token": token}
    }
    if redis_url is not None:
        sections.update(rasa_stores(redis_url, redis_prefix))
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"{name}:")
        # JSON scalars are YAML scalars: strings quoted and escaped, numbers and booleans bare.
        lines += [f"  {key}: {json.dumps(value)}" for key, value in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# A tracker left alone this long is dropped from Redis (Rasa's ``record_exp``, renewed at every
# save), so Redis does not fill with every customer ever seen. Promptly keeps the conversation
# itself; Rasa starts a new session after an hour of silence anyway (domain.yml), so all a
# customer returning later loses is the slots it would have carried over.
TRACKER_EXPIRY_S = 30 * 24 * 3600


def rasa_stores(redis_url: str, prefix: str) -> dict[str, dict[str, str | int | bool]]:
    """Rasa 3.6's ``lock_store`` and ``tracker_store`` in the Redis of ``redis_url``, as its
    docs describe them (``type: redis``; ``url`` is the host; ``port``, ``db``, ``username``,
    ``password``, ``use_ssl``, ``key_prefix``). A conversation's lock and its tracker then
    outlive a Rasa restart and are the same for every Rasa sharing them.

    The tracker store stays in Redis when the database is PostgreSQL: Rasa's SQL tracker
    store creates a table named ``events``, the name of Promptly's event log.

    Rasa takes an alphanumeric ``key_prefix`` only (it ignores any other, with a warning):
    ``prefix`` without its other characters, so "promptly:" gives keys "promptly:lock:..."
    and "promptly:tracker:...".
    """
    parts = urlsplit(redis_url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("a Redis URL is redis://[user:password@]host[:port][/db]")
    db = parts.path.strip("/")
    store: dict[str, str | int | bool] = {
        "type": "redis",
        "url": parts.hostname,
        "port": parts.port or 6379,
        "db": int(db) if db else 0,
    }
    if parts.username:
        store["username"] = unquote(parts.username)
    if parts.password:
        store["password"] = unquote(parts.password)
    if parts.scheme == "rediss":
        store["use_ssl"] = True
    store["key_prefix"] = "".join(c for c in prefix if c.isalnum()) or "promptly"
    return {
        "lock_store": dict(store),
        "tracker_store": {**store, "record_exp": TRACKER_EXPIRY_S},
    }


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Stop a child started with ``start_new_session=True``, and its children: TERM, then KILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class RasaServer:
    def __init__(
        self,
        rasa: Path,
        model: Path,
        endpoints: Path,
        port: int,
        log: Path,
        cwd: Path,
        host: str = "127.0.0.1",
        nice: int = 0,
    ) -> None:
        self.url = f"http://{host}:{port}"
        # A positive niceness gives the gateway (the acks) the CPU first when both are busy.
        self._command = [
            *(["nice", "-n", str(nice)] if nice else []),
            str(rasa),
            "run",
            "--enable-api",
            "-m",
            str(model),
            "--endpoints",
            str(endpoints),
            "-p",
            str(port),
            "-i",
            host,
        ]
        self._log_path = log
        self._cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self._log_path.open("ab")
        # Own session: Ctrl-C reaches promptly, which stops Rasa in order.
        self._process = subprocess.Popen(
            self._command,
            cwd=self._cwd,
            env=rasa_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logger.info("started Rasa (pid %d), log in %s", self._process.pid, self._log_path)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if not self.running:
                raise RasaStartError(
                    f"Rasa exited while starting; see {self._log_path}:\n" + self.log_tail()
                )
            time.sleep(0.5)
        raise RasaStartError(f"Rasa was not ready after {timeout:.0f}s; see {self._log_path}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the server's process group, as a crash would (the fault suite)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self, timeout: float = 15) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
