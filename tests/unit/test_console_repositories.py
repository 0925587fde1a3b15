"""The console's repositories (accounts, audit, canned replies, ticket references) on both
backends, with the same assertions: SQLite, and PostgreSQL on a fresh database per test
(skipped where no server answers; see ``tests/unit/test_store.py``)."""

from __future__ import annotations

from datetime import datetime

import pytest

from bot.console.accounts import Accounts, Audit, User
from bot.console.canned import DEFAULTS, CannedReplies
from bot.console.dashboard import ticket_references
from bot.errors import Conflict, NotFound
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from tests.console_helpers import PASSWORD
from tests.unit.test_store import (
    inbound,
    new_ticket,
    store,  # noqa: F401  (the fixture: both backends)
)

Backend = SQLiteStore | PostgresStore


@pytest.fixture
def backend(store: Backend) -> Backend:  # noqa: F811  (test_store's fixture, imported above)
    return store


# -- accounts --------------------------------------------------------------------------------


async def test_usernames_are_unique_and_found_whatever_their_letter_case(backend: Backend) -> None:
    accounts = Accounts(backend)
    ann = await accounts.add("Ann", PASSWORD, "admin")
    with pytest.raises(Conflict) as taken:
        await accounts.add("ANN", PASSWORD, "agent")
    assert (taken.value.code, taken.value.field) == ("username_taken", "username")
    assert await accounts.count() == 1  # the refused insert left nothing behind

    assert await accounts.verify("ann", PASSWORD) == ann
    assert await accounts.verify("aNN", PASSWORD) == ann
    assert await accounts.verify("ann", PASSWORD + "x") is None
    assert await accounts.verify("nobody", PASSWORD) is None


async def test_users_are_listed_by_name_ignoring_case_and_read_by_id(backend: Backend) -> None:
    accounts = Accounts(backend)
    assert (await accounts.count(), await accounts.all()) == (0, [])
    sam = await accounts.add("sam", PASSWORD, "agent")
    erin = await accounts.add("Erin", PASSWORD, "editor")
    bob = await accounts.add("bob_2", PASSWORD, "lead")
    zed = await accounts.add("Zed", PASSWORD, "admin")
    assert await accounts.all() == [bob, erin, sam, zed]
    assert await accounts.count() == 4
    assert await accounts.get(sam.id) == User(sam.id, "sam", "agent", "sam")
    assert await accounts.get(bob.id) == User(bob.id, "bob_2", "lead", "bob_2")
    assert await accounts.get(erin.id) == User(erin.id, "Erin", "editor", None)
    assert await accounts.get("nope") is None


async def test_update_changes_role_disabled_and_password(backend: Backend) -> None:
    accounts = Accounts(backend)
    erin = await accounts.add("erin", PASSWORD, "editor")

    promoted = await accounts.update(erin.id, role="lead")
    assert (promoted.role, promoted.agent_id, promoted.disabled) == ("lead", "erin", False)
    disabled = await accounts.update(erin.id, disabled=True)
    assert disabled == User(erin.id, "erin", "lead", "erin", disabled=True)
    assert await accounts.verify("erin", PASSWORD) is None  # disabled
    assert (await accounts.update(erin.id, disabled=False)).disabled is False

    await accounts.set_password(erin.id, "another password")
    assert await accounts.verify("erin", PASSWORD) is None
    assert await accounts.verify("ERIN", "another password") == promoted
    demoted = await accounts.update(erin.id, role="editor")
    assert (demoted.role, demoted.agent_id) == ("editor", "erin")  # keeps its agents row
    with pytest.raises(NotFound):
        await accounts.update("nope", role="agent")


# -- audit -----------------------------------------------------------------------------------


async def test_audit_entries_newest_first_by_target_and_limit(backend: Backend) -> None:
    audit = Audit(backend)
    assert await audit.entries() == []
    await audit.record("root", "user.add", "u1", {"role": "agent", "names": ["é", 1]})
    await audit.record("cli", "kb.import", None)
    await audit.record("root", "user.update", "u1", {"disabled": True})

    entries = await audit.entries()
    assert [(e.actor, e.action, e.target, e.data) for e in entries] == [
        ("root", "user.update", "u1", {"disabled": True}),
        ("cli", "kb.import", None, {}),
        ("root", "user.add", "u1", {"role": "agent", "names": ["é", 1]}),
    ]
    assert entries[0].seq > entries[1].seq > entries[2].seq
    assert all(isinstance(e.at, datetime) and e.at.tzinfo is not None for e in entries)
    assert entries[0].at >= entries[2].at
    assert [e.action for e in await audit.entries("u1")] == ["user.update", "user.add"]
    assert [e.action for e in await audit.entries("u1", limit=1)] == ["user.update"]
    assert [e.action for e in await audit.entries(limit=2)] == ["user.update", "kb.import"]
    assert await audit.entries("u2") == []


# -- canned replies --------------------------------------------------------------------------


async def test_canned_replies_are_seeded_once_even_when_emptied(backend: Backend) -> None:
    canned = CannedReplies(backend)
    assert await canned.seed()
    seeded = await canned.all()
    assert [r.title for r in seeded] == sorted((t for t, _ in DEFAULTS), key=str.lower)
    assert not await canned.seed()  # seeded already
    for reply in seeded:
        assert await canned.delete(reply.id)
    assert not await canned.delete(seeded[0].id)
    assert not await canned.seed()  # emptied on purpose: no defaults return
    assert await canned.all() == []


async def test_canned_replies_are_listed_by_title_ignoring_case(backend: Backend) -> None:
    canned = CannedReplies(backend)
    b = await canned.add("beta", "B")
    a = await canned.add("Alpha", "A")
    c = await canned.add("Ça va", "C")  # non-ASCII sorts after ASCII, as bytes
    z = await canned.add("ZULU", "Z")
    assert await canned.all() == [a, b, z, c]
    assert await canned.delete(b.id)
    assert await canned.all() == [a, z, c]


# -- ticket references (the dashboard's ratings) ---------------------------------------------


async def test_ticket_references_by_id_leave_unknown_ids_out(backend: Backend) -> None:
    assert await ticket_references(backend, []) == {}
    tickets = []
    for n in range(3):
        received = await backend.receive(inbound(mid=str(n), customer=f"c{n}"))
        tickets.append(await backend.create_ticket(new_ticket(received.conversation.id)))
    wanted = [tickets[2].id, tickets[0].id, tickets[2].id, "nope"]
    assert await ticket_references(backend, wanted) == {
        tickets[0].id: tickets[0].reference,
        tickets[2].id: tickets[2].reference,
    }
    assert await ticket_references(backend, ["nope"]) == {}
