"""Run a Rasa server as a child process (used by ``promptly run``, the tests and benchmarks)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from bot.errors import PromptlyError
from bot.training import rasa_env

logger = logging.getLogger(__name__)


class RasaStartError(PromptlyError):
    pass


def write_endpoints(path: Path, action_url: str, token: str) -> Path:
    """Point Rasa's action endpoint at the gateway, with the shared token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'action_endpoint:\n  url: "{action_url}"\n  token: "{token}"\n', encoding="utf-8"
    )
    path.chmod(0o600)
    return path


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
