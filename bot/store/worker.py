"""One thread that owns a sqlite3 connection and commits the writes queued for it in groups.

Under load, ``BEGIN IMMEDIATE`` and ``COMMIT`` cost more than the statements of a typical
operation, and every result handed back to the event loop costs a wake-up. So the thread
takes everything queued (up to ``max_batch``) and runs it as one transaction, each write in
its own savepoint so a failing operation rolls back alone; results are released only after
the ``COMMIT``, with one wake-up per batch. An idle store still commits each write on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.errors import StorageUnavailable

T = TypeVar("T")


@dataclass(frozen=True)
class _Job:
    fn: Callable[[], Any]
    write: bool
    future: asyncio.Future[Any]


# A finished job: (future, result, exception)
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class SQLiteWorker:
    def __init__(
        self,
        db: sqlite3.Connection,
        max_batch: int = 64,
        when_idle: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self._db = db
        self._max_batch = max_batch
        self._when_idle = when_idle  # run on this thread whenever nothing is queued
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._main, name="sqlite", daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[[], T], *, write: bool) -> T:
        """Run ``fn`` on the database thread, inside a transaction when ``write``."""
        if self._closed:
            raise RuntimeError("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(fn, write, future))
        return await future

    async def close(self) -> None:
        """Finish what is queued, then close the connection and stop the thread."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)

    def _main(self) -> None:
        stopping = False
        while not stopping:
            job = self._jobs.get()
            batch: list[_Job] = []
            while job is not None:
                batch.append(job)
                if len(batch) >= self._max_batch:
                    break
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
            stopping = job is None
            _settle(self._run_batch([j for j in batch if not j.future.cancelled()]))
            if self._when_idle is not None and not stopping and self._jobs.empty():
                self._when_idle(self._db)
        self._db.close()

    def _run_batch(self, batch: list[_Job]) -> list[_Outcome]:
        if not any(job.write for job in batch):
            return [self._run_one(job) for job in batch]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            outcomes = [
                self._run_in_savepoint(job) if job.write else self._run_one(job) for job in batch
            ]
            self._db.execute("COMMIT")
        except BaseException as e:  # nothing of this batch is stored: every job fails
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            return [(job.future, None, e) for job in batch]
        return outcomes

    def _run_one(self, job: _Job) -> _Outcome:
        try:
            return (job.future, job.fn(), None)
        except Exception as e:
            return (job.future, None, e)

    def _run_in_savepoint(self, job: _Job) -> _Outcome:
        self._db.execute("SAVEPOINT job")
        try:
            result = job.fn()
        except Exception as e:
            if not self._db.in_transaction:
                # SQLite rolled the whole transaction back itself (a full disk, an I/O error):
                # the batch fails, with this job's error, not "no such savepoint".
                raise
            self._db.execute("ROLLBACK TO job")
            self._db.execute("RELEASE job")
            return (job.future, None, e)
        self._db.execute("RELEASE job")
        return (job.future, result, None)


def _settle(outcomes: list[_Outcome]) -> None:
    """Hand results back to their event loops, one wake-up per loop."""
    by_loop: defaultdict[asyncio.AbstractEventLoop, list[_Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_loop[outcome[0].get_loop()].append(outcome)
    for loop, results in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: no one waits any more
            loop.call_soon_threadsafe(_deliver, results)


def _deliver(outcomes: list[_Outcome]) -> None:
    for future, result, error in outcomes:
        if future.cancelled():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(_translated(error))


# SQLite's primary result codes for a database that cannot take the work now (as opposed to a
# bug in a statement): busy or locked past the timeout, read-only, an I/O error, full, unopenable.
_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
    }
)


def _translated(error: BaseException) -> BaseException:
    """``StorageUnavailable`` for a database that cannot take the work now, else ``error``."""
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(error, sqlite3.Error) and code is not None and code & 0xFF in _UNAVAILABLE:
        unavailable = StorageUnavailable(str(error))
        unavailable.__cause__ = error
        return unavailable
    return error
