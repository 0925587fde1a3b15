"""promptly db: status, upgrade, and backups taken while the gateway writes."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import cli
from bot.channels.base import Customer, InboundMessage
from bot.errors import StorageError
from bot.store import maintenance
from bot.store.sqlite import SCHEMA_VERSION, SQLiteStore


def inbound(n: int) -> InboundMessage:
    return InboundMessage(
        channel="web",
        customer=Customer(f"c{n % 7}"),
        platform_message_id=f"m{n}",
        text=f"message {n}",
        received_at=datetime.now(UTC),
    )


async def test_a_backup_taken_while_messages_arrive_is_consistent_and_restores(
    tmp_path: Path,
) -> None:
    live = tmp_path / "promptly.db"
    store = await SQLiteStore.open(live)
    try:
        for n in range(50):
            await store.receive(inbound(n))

        async def keep_writing() -> None:
            for n in range(50, 400):
                await store.receive(inbound(n))

        writer = asyncio.create_task(keep_writing())
        copy = await asyncio.to_thread(maintenance.backup, live, tmp_path / "b" / "copy.db")
        await writer
    finally:
        await store.close()
    assert 50 <= copy.rows["messages"] <= 400
    # Every message in the copy has its conversation and customer: no torn transaction.
    with sqlite3.connect(tmp_path / "b" / "copy.db") as db:
        orphans = db.execute(
            "SELECT count(*) FROM messages m LEFT JOIN conversations c "
            "ON c.id = m.conversation_id WHERE c.id IS NULL"
        ).fetchone()[0]
    assert orphans == 0

    restored = maintenance.restore(tmp_path / "b" / "copy.db", live)
    assert restored.rows["messages"] == copy.rows["messages"]
    store = await SQLiteStore.open(live)
    try:
        again = await store.receive(inbound(0))
        assert again.duplicate  # the restored inbox still knows its messages
    finally:
        await store.close()


async def test_backups_refuse_to_overwrite_and_restores_refuse_bad_files(tmp_path: Path) -> None:
    live = tmp_path / "promptly.db"
    await (await SQLiteStore.open(live)).close()
    maintenance.backup(live, tmp_path / "copy.db")
    with pytest.raises(StorageError, match="exists; pass --force"):
        maintenance.backup(live, tmp_path / "copy.db")
    maintenance.backup(live, tmp_path / "copy.db", overwrite=True)
    with pytest.raises(StorageError, match="cannot replace the database it copies"):
        maintenance.backup(live, live, overwrite=True)

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StorageError, match="not a usable SQLite database"):
        maintenance.restore(garbage, live)
    with sqlite3.connect(tmp_path / "copy.db") as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StorageError, match="schema version 99, newer than this code"):
        maintenance.restore(tmp_path / "copy.db", live)
    assert maintenance.status(live).schema_version == SCHEMA_VERSION  # untouched


def test_status_and_upgrade_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "promptly.toml"
    conf.write_text('[storage]\ndatabase = "promptly.db"\n', encoding="utf-8")
    argv = ["--config", str(conf), "db"]
    assert cli.main([*argv, "status"]) == 2
    assert "no database file there" in capsys.readouterr().err
    assert cli.main([*argv, "upgrade"]) == 2  # a mistyped path must not become a new database
    assert "no database file there" in capsys.readouterr().err
    assert not (tmp_path / "promptly.db").exists()
    asyncio.run(_create(tmp_path / "promptly.db"))  # as the first start does
    with sqlite3.connect(tmp_path / "promptly.db") as db:  # as a release one schema older left it
        db.execute("ALTER TABLE tickets DROP COLUMN version")
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION - 1,))
    assert cli.main([*argv, "status"]) == 0
    assert "needs `promptly db upgrade`" in capsys.readouterr().out
    assert cli.main([*argv, "upgrade"]) == 0
    assert f"schema version {SCHEMA_VERSION - 1} to {SCHEMA_VERSION}" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "promptly.db") as db:
        assert db.execute("SELECT count(*) FROM emergency").fetchone() == (0,)
        columns = [row[1] for row in db.execute("PRAGMA table_info(tickets)")]
        assert columns[-1] == "version"
    assert cli.main([*argv, "restore", str(tmp_path / "x.db")]) == 2
    assert "stop Promptly, then add --yes" in capsys.readouterr().err


async def _create(path: Path) -> None:
    await (await SQLiteStore.open(path)).close()
