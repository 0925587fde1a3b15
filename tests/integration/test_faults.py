"""The fault suite's short cases (bench/faults.py) against a real Rasa and real gateways.

Every accepted web message (a 202) must be answered exactly once and acked inside the web
window while Rasa is slow or dead, the database is locked, or (on PostgreSQL and Redis of the
test's own) PostgreSQL and then Redis are down; a kill -9 of the gateway must lose and double
nothing.
Answers get generous waits (a loaded 2-core machine); the ack window is the assertion.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import missing

pytestmark = pytest.mark.integration
BENCH = Path(__file__).resolve().parents[2] / "bench"
WINDOW = 2.0  # channels.web.promise, the default the gateways run with


def _faults() -> Any:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the bench modules import each other as scripts
    return importlib.import_module("faults")


faults = _faults()


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    result = faults.Suite(tmp_path_factory.mktemp("faults"))
    try:
        result.start_rasa()
        yield result
    finally:
        result.close()


def _options(**changes: Any) -> Any:
    return faults.Options(rate=5, window=WINDOW, grace=120, **changes)


def _assert_kept(row: Any) -> None:
    assert row.sent > 0 and row.accepted == row.sent, row
    assert row.lost == 0, row
    assert row.duplicated == 0, row
    assert not row.failures, row


async def test_a_slow_rasa_does_not_slow_the_acks(suite: Any) -> None:
    row = await faults.slow_rasa(suite, _options(slow_delay=5, slow_seconds=8))
    _assert_kept(row)
    assert row.in_window == row.accepted and row.max_ack_ms <= WINDOW * 1000, row


async def test_with_rasa_killed_every_message_is_acked_in_time_and_answered_after(
    suite: Any,
) -> None:
    row = await faults.rasa_kill(suite, _options(before=3, rasa_down=5, after=3))
    assert suite.rasa.running
    _assert_kept(row)
    assert row.in_window == row.accepted and row.max_ack_ms <= WINDOW * 1000, row


async def test_a_gateway_kill_loses_and_doubles_nothing(suite: Any) -> None:
    row = await faults.gateway_kill(
        suite, _options(kills=1, kill_gap=(2.0, 4.0), after=3, sla_target=4)
    )
    _assert_kept(row)
    assert any(note.startswith("SLA:") for note in row.notes), row.notes


async def test_a_locked_database_journals_acks_from_memory_and_answers_once_after(
    suite: Any,
) -> None:
    row = await faults.db_locked(suite, _options(before=3, db_locked_seconds=6, after=3))
    _assert_kept(row)
    assert row.in_window == row.accepted and row.max_ack_ms <= WINDOW * 1000, row
    assert "messages journaled" in row.notes[0], row.notes


async def test_with_postgres_then_redis_down_every_message_is_acked_in_time_and_answered_after(
    suite: Any,
) -> None:
    if lacking := faults.missing_servers():
        missing("nothing to start a private PostgreSQL and Redis with: " + ", ".join(lacking))
    row = await faults.postgres_redis(suite, _options(before=3, pg_down=5, redis_down=5, after=3))
    # A message stored just before PostgreSQL went away, whose turn had not stored its ack
    # yet, gets its receipt from memory too (Pipeline._receipt_from_memory): no late acks.
    _assert_kept(row)
    assert row.in_window == row.accepted and row.max_ack_ms <= WINDOW * 1000, row
    assert any("messages journaled and acked" in note for note in row.notes), row.notes
