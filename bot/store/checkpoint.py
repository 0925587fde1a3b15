"""Copy the SQLite write-ahead log into the database file on a thread of its own.

By default the connection that commits runs the checkpoint itself every 1000 WAL pages, and a
checkpoint syncs the log and the database file: measured at 200 msg/s, 2–3 times a second the
store's thread stalled 10–30 ms in ``COMMIT`` while every ack queued behind it. Here the store's
connection never checkpoints (``wal_autocheckpoint=0``); this thread's own connection runs a
PASSIVE checkpoint every ``interval``, which never blocks the writer.

Under steady writes a passive checkpoint rarely ends in a gap between two commits, and only
then does the writer start the log over (measured: commits 2 ms apart grew it 2 MB/s). So once
the log passes ``restart_pages``, the store's own thread runs a RESTART checkpoint
(``when_idle``) the next time it has nothing queued: little is left to copy by then, and the
next write starts the log from its beginning, so the file stops growing. Measured at 200 msg/s
with Rasa stopped (ack p99, 30 s): 13 ms with this, 17–20 ms with restarts every few seconds
(an 8 MB threshold, the log's file staying at 17 MB); 100–120 ms when this thread ran a TRUNCATE
itself (pending, it blocks new writes while it waits for a gap), 76 ms with a TRUNCATE on the
store's thread (the file is cut and grown again).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

logger = logging.getLogger(__name__)


class Checkpointer:
    def __init__(
        self, path: Path, interval: float = 0.5, restart_pages: int = 16_384, timeout: float = 5.0
    ) -> None:
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=timeout
        )
        self._interval = interval
        self._restart_pages = restart_pages
        self._failing = False
        self._pages = 0  # the log's length at the last passive checkpoint
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (the store's own close checkpoints what is left)."""
        self._stop.set()
        self._thread.join()

    def _main(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                self._checkpoint()
        finally:
            self._db.close()

    def when_idle(self, db: sqlite3.Connection) -> None:
        """On the store's thread, with nothing queued: start a log past ``restart_pages`` over."""
        if self._pages < self._restart_pages:
            return
        self._pages = 0
        try:
            db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error as e:
            logger.warning("WAL restart failed: %s", e)

    def _checkpoint(self) -> None:
        try:
            _, self._pages, _ = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as e:  # a full disk, say: the WAL keeps the data meanwhile
            if not self._failing:
                logger.warning(
                    "WAL checkpoint failed (retrying every %.1f s): %s", self._interval, e
                )
            self._failing = True
        else:
            if self._failing:
                logger.info("WAL checkpoints work again")
            self._failing = False
