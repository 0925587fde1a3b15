"""The WAL checkpointer: the store's own connection never checkpoints; this thread does."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.store.checkpoint import Checkpointer
from bot.store.sqlite import SQLiteStore


def _writer(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE IF NOT EXISTS t (x BLOB)")
    return db


def _write_pages(db: sqlite3.Connection, rows: int) -> None:
    db.execute("BEGIN")
    db.executemany("INSERT INTO t VALUES (randomblob(4000))", [()] * rows)
    db.execute("COMMIT")


def _in_main_file(path: Path) -> int:
    """Rows the database file itself holds, ignoring the WAL (immutable: no WAL read)."""
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.OperationalError:  # the table's creation is still only in the WAL
        return 0
    finally:
        db.close()


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_the_log_reaches_the_database_file_without_the_writer_checkpointing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite"
    db = _writer(path)
    _write_pages(db, 50)
    assert _in_main_file(path) == 0  # autocheckpoint off: everything is still in the WAL
    checkpointer = Checkpointer(path, interval=0.02)
    try:
        assert _eventually(lambda: _in_main_file(path) == 50)
    finally:
        checkpointer.close()
        db.close()


def test_the_log_stays_short_under_steady_writes(tmp_path: Path) -> None:
    """Commits a few ms apart, as under load: a passive checkpoint rarely finishes in a gap
    between two, so the writer never starts the log over; the writer's own truncation between
    its writes (the store's thread when nothing is queued) bounds it."""
    path = tmp_path / "db.sqlite"
    db = _writer(path)
    checkpointer = Checkpointer(path, interval=0.02, restart_pages=50)
    longest = 0
    try:
        for _ in range(300):  # about 1.2 MB of log unchecked
            db.execute("INSERT INTO t VALUES (randomblob(3000))")
            checkpointer.when_idle(db)
            longest = max(longest, (tmp_path / "db.sqlite-wal").stat().st_size)
            time.sleep(0.002)
    finally:
        checkpointer.close()
        db.close()
    assert longest < 100 * 4096


def test_a_failing_checkpoint_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "not-a-database"
    path.write_bytes(b"this is not SQLite " * 100)
    with caplog.at_level(logging.WARNING, logger="bot.store.checkpoint"):
        checkpointer = Checkpointer(path, interval=0.01)
        time.sleep(0.2)
        checkpointer.close()
    failures = [r for r in caplog.records if "checkpoint failed" in r.getMessage()]
    assert len(failures) == 1


async def test_the_store_leaves_checkpoints_to_its_checkpointer(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "promptly.db")
    try:
        autocheckpoint = await store.run(
            lambda db: db.execute("PRAGMA wal_autocheckpoint").fetchone()[0], write=False
        )
        assert autocheckpoint == 0
        assert store._checkpointer is not None
    finally:
        await store.close()
    # The last connection's close checkpointed and removed the log.
    assert not (tmp_path / "promptly.db-wal").exists()
