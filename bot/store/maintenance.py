"""Operator tasks on the SQLite database: status, upgrade, online backup, restore.

A backup uses SQLite's online backup API: a consistent copy of the whole database, WAL
included, taken while gateways keep reading and writing (each step copies a batch of pages and
lets writers in between). It is checked (``PRAGMA integrity_check``) before it is kept. A
restore checks the backup the same way, refuses one whose schema is newer than this code, and
replaces the database's content in one step; stop Promptly first (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.errors import StorageError
from bot.store.common import SCHEMA_VERSION

_PAGES_PER_STEP = 1024  # ~4 MB: writers wait at most one step's copy
COUNTED = ("messages", "conversations", "customers", "tickets", "events", "articles", "users")


@dataclass(frozen=True)
class Status:
    path: Path | str  # a SQLite file, or a PostgreSQL URL without its password
    schema_version: int
    code_version: int
    bytes: int
    rows: dict[str, int]

    def describe(self) -> str:
        state = (
            "current"
            if self.schema_version == self.code_version
            else "needs `promptly db upgrade`"
            if self.schema_version < self.code_version
            else "NEWER than this code"
        )
        counts = ", ".join(f"{n} {table}" for table, n in self.rows.items())
        return (
            f"{self.path}: schema version {self.schema_version} ({state}; this code: "
            f"{self.code_version}), {self.bytes / 1e6:.1f} MB\n{counts}"
        )


def status(path: Path) -> Status:
    """What a database file holds; raises ``StorageError`` when it is missing or not one."""
    with _open(path, must_exist=True) as db:
        version = _schema_version(db)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        rows = {
            table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in COUNTED
            if table in tables
        }
    size = sum(p.stat().st_size for p in (path, _wal(path)) if p.exists())
    return Status(path, version, SCHEMA_VERSION, size, rows)


def backup(path: Path, dest: Path, *, overwrite: bool = False) -> Status:
    """Copy the live database at ``path`` to ``dest`` and check the copy."""
    if dest.exists() and not overwrite:
        raise StorageError(f"{dest} exists; pass --force to replace it")
    if dest.resolve() == path.resolve():
        raise StorageError("a backup cannot replace the database it copies")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)
    with _open(path, must_exist=True) as source, _open(partial) as copy:
        source.backup(copy, pages=_PAGES_PER_STEP)
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        _check(copy, partial)
    partial.replace(dest)
    return status(dest)


def restore(backup_file: Path, path: Path) -> Status:
    """Replace the database at ``path`` with ``backup_file``'s content, after checking it."""
    with _open(backup_file, must_exist=True) as source:
        _check(source, backup_file)
        version = _schema_version(source)
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{backup_file} has schema version {version}, newer than this code "
                f"({SCHEMA_VERSION}): restore it with the release that made it"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with _open(path) as target:
            source.backup(target)
    return status(path)


@contextlib.contextmanager
def _open(path: Path, *, must_exist: bool = False) -> Iterator[sqlite3.Connection]:
    if must_exist and not path.is_file():
        raise StorageError(f"{path}: no database file there")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        try:
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"{path}: not a usable SQLite database ({exc})") from exc
        yield db
    finally:
        db.close()


def _schema_version(db: sqlite3.Connection) -> int:
    try:
        row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError as exc:
        raise StorageError(f"not a Promptly database: {exc}") from exc
    return int(row[0] or 1)


def _check(db: sqlite3.Connection, path: Path) -> None:
    result = db.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise StorageError(f"{path} failed its integrity check: {result}")
    _schema_version(db)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")
