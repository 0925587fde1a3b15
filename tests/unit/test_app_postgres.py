"""The whole gateway on PostgreSQL (``storage.database_url``), with the fake Rasa of
``test_gateway``; and the setting that selects it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot import cli, keys
from bot.app import create_app
from bot.errors import ConfigError
from bot.settings import Settings, load_settings
from bot.store.base import MessageStatus
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SCHEMA_VERSION
from tests.unit.test_gateway import TOKEN, frames, make_settings, post, wait_for_rasa
from tests.unit.test_store import pg_database


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_database() as url:
        yield url


def pg_settings(tmp_path: Path, rasa_port: int, url: str) -> Settings:
    make_settings(tmp_path, rasa_port)  # writes promptly.toml (SQLite file configured)
    env = {"PROMPTLY_AGENT_TOKEN": TOKEN, "PROMPTLY_DATABASE_URL": url}
    return load_settings(tmp_path / "promptly.toml", env=env)


async def test_a_web_message_is_stored_acked_and_answered_on_postgresql(
    tmp_path: Path,
    rasa_server: Any,
    aiohttp_client: Any,
    fake_rasa: Any,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = pg_settings(tmp_path, rasa_server.port, pg_url)
    client: TestClient = await aiohttp_client(create_app(settings))
    await wait_for_rasa(client)
    health = await (await client.get("/health")).json()
    assert health["components"]["database"] == "up"
    response = await post(client, "where is my order")
    assert response.status == 202
    accepted = await response.json()
    replies = await frames(client, accepted["conversation_id"])
    assert [(r["type"], r.get("kind")) for r in replies] == [("ack", "solution")]
    assert replies[0]["text"] == "echo: where is my order"
    assert not (tmp_path / "promptly.db").exists()  # nothing went to the SQLite file
    store = await PostgresStore.open(pg_url)
    try:
        stored = await store.messages(accepted["conversation_id"])
        inbound = [m for m in stored if m.direction == "in"]
        assert [(m.text, m.status) for m in inbound] == [("where is my order", MessageStatus.DONE)]
        assert inbound[0].acked_at is not None
        assert "acked" in {e.type for e in await store.events(accepted["conversation_id"])}
    finally:
        await store.close()


async def test_the_lead_dashboard_counts_what_a_postgresql_gateway_handled(
    tmp_path: Path, rasa_server: Any, aiohttp_client: Any, fake_rasa: Any, pg_url: str
) -> None:
    client: TestClient = await aiohttp_client(
        create_app(pg_settings(tmp_path, rasa_server.port, pg_url))
    )
    await wait_for_rasa(client)
    accepted = await (await post(client, "where is my order")).json()
    await frames(client, accepted["conversation_id"])
    view = await client.server.app[keys.DASHBOARD].view("today")
    assert view.report.acks.all.distribution.count == 1


def write(tmp_path: Path, storage: str) -> Path:
    path = tmp_path / "promptly.toml"
    path.write_text(f"[storage]\n{storage}\n", encoding="utf-8")
    return path


def test_database_url_selects_postgresql_and_is_checked(tmp_path: Path) -> None:
    assert (
        load_settings(write(tmp_path, 'database_url = ""'), env={}).storage.database_dsn() is None
    )
    url = "postgresql://promptly@db:5432/promptly"
    assert (
        load_settings(write(tmp_path, f'database_url = "{url}"'), env={}).storage.database_dsn()
        == url
    )
    with pytest.raises(ConfigError, match="postgresql:// or postgres://"):
        load_settings(write(tmp_path, 'database_url = "mysql://db/x"'), env={})
    with pytest.raises(ConfigError, match="PROMPTLY_DATABASE_URL"):
        load_settings(write(tmp_path, 'database_url = "postgres://u:secret@db/x"'), env={})
    secret = "postgres://u:secret@db/x"
    from_env = load_settings(write(tmp_path, ""), env={"PROMPTLY_DATABASE_URL": secret})
    assert from_env.storage.database_dsn() == secret
    assert "secret" not in repr(from_env.storage)


@pytest.fixture
def pg_url_outside_a_loop() -> Iterator[str]:
    """A fresh database's URL for a synchronous test (the CLI runs its own event loop)."""
    database = pg_database()
    loop = asyncio.new_event_loop()
    try:
        yield loop.run_until_complete(database.__aenter__())
        loop.run_until_complete(database.__aexit__(None, None, None))
    finally:
        loop.close()


def test_db_commands_on_postgresql(
    tmp_path: Path, pg_url_outside_a_loop: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = write(tmp_path, f'database_url = "{pg_url_outside_a_loop}"')
    argv = ["--config", str(conf), "db"]
    assert cli.main([*argv, "status"]) == 2
    assert "not a Promptly database" in capsys.readouterr().err
    assert cli.main([*argv, "upgrade"]) == 0
    assert f"upgraded a new database to {SCHEMA_VERSION}" in capsys.readouterr().out
    assert cli.main([*argv, "status"]) == 0
    out = capsys.readouterr().out
    assert "current" in out and pg_url_outside_a_loop in out
    assert cli.main([*argv, "backup", str(tmp_path / "x.dump")]) == 2
    assert "pg_dump --format=custom" in capsys.readouterr().err
    assert cli.main([*argv, "restore", str(tmp_path / "x.dump"), "--yes"]) == 2
    assert "pg_restore" in capsys.readouterr().err
    assert not (tmp_path / "x.dump").exists()
