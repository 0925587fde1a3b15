"""`promptly run --workers N`: refused until the database can be shared; the supervisor of
the gateway processes restarts one that dies and stops them all at Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from bot import cli, runner
from bot.app import gateway_id, journal_for
from bot.runner import Workers, workers_refusal
from bot.settings import WORKER_ENV, load_settings


def settings_with(tmp_path: Path, text: str = "") -> Any:
    path = tmp_path / "promptly.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_more_than_one_worker_is_refused_with_what_it_needs(tmp_path, monkeypatch, capsys):
    config = settings_with(tmp_path)
    served: list[Any] = []
    monkeypatch.setattr(runner, "serve", lambda *a, **k: served.append(k))
    assert cli.main(["--config", str(config), "run", "--workers", "3"]) == 2
    error = capsys.readouterr().err
    assert "--workers 3" in error and "database_url" in error and "redis_url" in error
    assert not served  # refused before training or starting anything


def test_with_redis_the_refusal_names_the_database_only(tmp_path):
    settings = load_settings(
        settings_with(tmp_path, '[scale]\nredis_url = "redis://127.0.0.1:6379/0"\n'), env={}
    )
    refusal = workers_refusal(settings, 2)
    assert refusal is not None and "database_url" in refusal and "redis_url =" not in refusal
    assert workers_refusal(settings, 1) is None


def test_with_postgresql_and_redis_workers_may_run_each_with_its_journal(tmp_path, monkeypatch):
    shared = (
        '[storage]\ndatabase_url = "postgresql://promptly@db.internal/promptly"\n'
        '[scale]\nredis_url = "redis://127.0.0.1:6379/0"\n'
    )
    settings = load_settings(settings_with(tmp_path, shared), env={})
    assert workers_refusal(settings, 2) is None
    journal = settings.storage.journal
    assert journal is not None
    monkeypatch.delenv(WORKER_ENV, raising=False)
    assert journal_for(settings, journal).name == "journal.jsonl"
    monkeypatch.setenv(WORKER_ENV, "1")
    assert journal_for(settings, journal).name == "journal.1.jsonl"
    assert gateway_id(settings).endswith(":8080:1")


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_a_worker_count_is_a_positive_number(tmp_path, bad, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--config", str(settings_with(tmp_path)), "gateway", "--workers", bad])
    assert "--workers" in capsys.readouterr().err


def test_one_worker_serves_as_before(tmp_path, monkeypatch):
    config = settings_with(tmp_path, "[rasa]\nmanage = false\n")
    calls: list[dict[str, Any]] = []

    async def serve(settings: Any, **options: Any) -> None:
        calls.append(options)

    monkeypatch.setattr(runner, "serve", serve)
    assert cli.main(["--config", str(config), "run"]) == 0
    assert cli.main(["--config", str(config), "gateway", "--workers", "1"]) == 0
    expected = {"manage_rasa": False, "workers": 1, "config": config, "reuse_port": False}
    assert calls == [expected, expected]


async def until(condition: Any, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_worker_that_dies_is_restarted_and_stop_ends_them_all():
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    pool = Workers(command, 2, dict(os.environ), grace=5, backoff=(0.05, 0.2))
    stop = asyncio.Event()
    running = asyncio.create_task(pool.run(stop))
    await until(lambda: all(p is not None for p in pool.processes))
    first = pool.processes[0]
    assert first is not None
    os.kill(first.pid, signal.SIGKILL)
    await until(lambda: pool.restarts == 1 and pool.processes[0] is not first)
    alive = [p for p in pool.processes if p is not None]
    assert all(p.returncode is None for p in alive) and len(alive) == 2
    stop.set()
    await asyncio.wait_for(running, 10)
    assert all(p.returncode is not None for p in alive)
