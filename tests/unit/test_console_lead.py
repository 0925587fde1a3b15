"""The `lead` role and the dashboard's CSAT comments, through the real app; and the schema
migration that lets the users table hold leads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

import bot.store
from bot.app import create_app
from bot.console.access import ACCOUNTS
from bot.console.accounts import ROLES, Accounts, User
from bot.errors import Conflict
from bot.store.base import Ticket
from bot.store.sqlite import SCHEMA_VERSION, SQLiteStore, _migrations
from tests.console_helpers import PASSWORD, call, sign_in, signed_in
from tests.unit.test_gateway import TOKEN, make_settings, open_ticket, post, wait_for_rasa

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOSTILE = '<script>alert("csat")</script><img src=x onerror=alert(1)> too slow'


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port)))


async def handoff(client: TestClient, tmp_path: Path, customer: str, queue: str) -> Ticket:
    await wait_for_rasa(client)
    accepted = await post(client, "a human please", mid=f"m-{customer}", customer=customer)
    return await open_ticket(tmp_path, (await accepted.json())["conversation_id"], queue=queue)


async def rated(
    client: TestClient, tmp_path: Path, customer: str, queue: str, *ratings: tuple[int, str | None]
) -> Ticket:
    """A ticket handed off, resolved (by the integration token) and rated by its customer."""
    ticket = await handoff(client, tmp_path, customer, queue)
    await call(client, "POST", f"/api/agent/tickets/{ticket.id}/resolve", headers=AUTH)
    for rating, comment in ratings:
        body = {"customer_id": customer, "ticket_id": ticket.id, "rating": rating}
        if comment is not None:
            body["comment"] = comment
        response = await client.post(f"/api/conversations/{ticket.conversation_id}/csat", json=body)
        assert response.status == 201, await response.text()
    return ticket


# -- what a lead may do -----------------------------------------------------------------------


def test_a_lead_passes_every_check_an_agent_passes_and_the_dashboards() -> None:
    assert ROLES == ("agent", "editor", "lead", "admin")
    lead = User("u1", "lee", "lead", "lee")
    assert lead.can("lead") and lead.can("agent") and lead.can("editor", "agent")
    assert not lead.can("admin") and not lead.can("editor")
    agent = User("u2", "sam", "agent", "sam")
    assert agent.can("agent") and not agent.can("lead")
    assert not User("u3", "erin", "editor", None).can("lead")
    assert User("u4", "ann", "admin", None).can("lead")
    assert not User("u5", "old", "lead", "old", disabled=True).can("lead")


async def test_a_lead_sees_the_dashboard_but_cannot_manage_users(client):
    csrf = await signed_in(client, "lead", "lee")
    page = await client.get("/console/dashboard")
    assert page.status == 200
    html = await page.text()
    for testid in ("nav-dashboard", "nav-console", "csat-comments", "csat-search", "key-figures"):
        assert f'data-testid="{testid}"' in html
    assert 'data-testid="nav-users"' not in html and 'data-testid="nav-editor"' not in html
    assert (await client.get("/api/console/report?period=7d")).status == 200
    assert (await client.get("/api/console/charts/stages.json")).status == 200
    assert (await client.get("/api/console/csat")).status == 200

    for path in ("/api/console/users", "/api/console/audit"):
        response = await client.get(path)
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "forbidden"
    body = {"username": "mallory", "password": PASSWORD, "role": "admin"}
    await call(client, "POST", "/api/console/users", body, csrf=csrf, status=403)
    me = await call(client, "GET", "/api/console/me")
    assert (me["role"], me["agent_id"]) == ("lead", "lee")
    await call(
        client, "PATCH", f"/api/console/users/{me['id']}", {"role": "admin"}, csrf=csrf, status=403
    )
    assert (await client.get("/console/users", allow_redirects=False)).status == 403
    assert (await client.get("/console/editor", allow_redirects=False)).status == 403
    assert (await client.get("/api/console/articles")).status == 403


async def test_a_lead_works_tickets_as_their_own_agent(client, tmp_path):
    ticket = await handoff(client, tmp_path, "c1", "support")
    csrf = await signed_in(client, "lead", "lee")
    console = await client.get("/console")
    assert console.status == 200 and 'data-agent-id="lee"' in await console.text()
    body = {"name": "Lee", "presence": "online", "capacity": 50, "queues": ["support"]}
    await call(client, "PUT", "/api/agent/agents/lee", body, csrf=csrf)
    [lee] = (await call(client, "GET", "/api/agent/agents"))["agents"]
    assert (lee["id"], lee["presence"], lee["capacity"]) == ("lee", "online", 3)  # not an admin
    await call(client, "PUT", "/api/agent/agents/sam", body, csrf=csrf, status=403)
    taken = await call(client, "POST", f"/api/agent/tickets/{ticket.id}/take", {}, csrf=csrf)
    assert taken["assignee"] == "lee"
    reply = {"text": "On it.", "agent": {"id": "someone-else", "name": "X"}}
    await call(
        client, "POST", f"/api/agent/tickets/{ticket.id}/replies", reply, csrf=csrf, status=201
    )
    got = await call(client, "GET", f"/api/agent/tickets/{ticket.id}")
    assert got["assignee"] == "lee"
    canned = {"title": "Hi", "text": "Hello!"}
    await call(client, "POST", "/api/agent/canned", canned, csrf=csrf, status=403)


async def test_admins_add_leads_and_a_lead_works_as_the_agents_row_of_their_name(client):
    csrf = await signed_in(client, "admin", "ann")
    users = await client.get("/console/users")
    assert '<option value="lead">lead</option>' in await users.text()
    body = {"username": "lee", "password": PASSWORD, "role": "lead"}
    lee = await call(client, "POST", "/api/console/users", body, csrf=csrf, status=201)
    assert (lee["role"], lee["agent_id"]) == ("lead", "lee")
    body = {"username": "erin", "password": PASSWORD, "role": "editor"}
    erin = await call(client, "POST", "/api/console/users", body, csrf=csrf, status=201)
    assert erin["agent_id"] is None
    promoted = await call(
        client, "PATCH", f"/api/console/users/{erin['id']}", {"role": "lead"}, csrf=csrf
    )
    assert (promoted["role"], promoted["agent_id"]) == ("lead", "erin")
    bad = {"username": "bob", "password": PASSWORD, "role": "boss"}
    refused = await call(client, "POST", "/api/console/users", bad, csrf=csrf, status=422)
    assert refused["error"]["code"] == "invalid_role" and "lead" in refused["error"]["message"]


# -- CSAT comments ----------------------------------------------------------------------------


async def test_csat_comments_are_listed_newest_first_and_searchable(client, tmp_path):
    first = await rated(client, tmp_path, "c1", "billing", (2, "Waited FOREVER for a reply"))
    second = await rated(client, tmp_path, "c2", "support", (5, None))
    third = await rated(
        client, tmp_path, "c3", "support", (1, "slow and rude"), (3, "better after the refund")
    )
    await signed_in(client, "lead")
    data = await call(client, "GET", "/api/console/csat?period=today")
    assert (data["period"], data["q"], data["total"], data["truncated"]) == ("today", "", 4, False)
    rows = data["ratings"]
    assert [(r["ticket_id"], r["rating"], r["current"]) for r in rows] == [
        (third.id, 3, True),
        (third.id, 1, False),  # changed later: listed, searchable, not counted
        (second.id, 5, True),
        (first.id, 2, True),
    ]
    newest = rows[0]
    assert newest["comment"] == "better after the refund"
    assert newest["reference"] == third.reference
    assert (newest["queue"], newest["channel"], newest["agent"]) == ("support", "web", "(none)")
    assert rows[2]["comment"] is None
    assert rows[0]["at"] >= rows[1]["at"] >= rows[2]["at"] >= rows[3]["at"]

    found = await call(client, "GET", "/api/console/csat?period=today&q=%20forever%20")
    assert found["q"] == "forever" and found["total"] == 1
    assert [(r["ticket_id"], r["comment"]) for r in found["ratings"]] == [
        (first.id, "Waited FOREVER for a reply")
    ]
    slow = await call(client, "GET", "/api/console/csat?period=7d&q=SLOW")
    assert [r["rating"] for r in slow["ratings"]] == [1]
    nothing = await call(client, "GET", "/api/console/csat?period=30d&q=excellent")
    assert (nothing["total"], nothing["ratings"]) == (0, [])
    # The figures count each ticket once, with its latest rating.
    report = await call(client, "GET", "/api/console/report?period=today")
    assert report["report"]["csat"]["all"]["count"] == 3


async def test_a_comment_with_markup_comes_back_as_json_text(client, tmp_path):
    ticket = await rated(client, tmp_path, "c1", "billing", (1, HOSTILE))
    await signed_in(client, "admin")
    response = await client.get("/api/console/csat", params={"period": "today", "q": "<script>"})
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    [row] = (await response.json())["ratings"]
    assert (row["ticket_id"], row["comment"]) == (ticket.id, HOSTILE)
    # The page builds its rows with textContent (dashboard.js); it carries no inline script.
    page = await (await client.get("/console/dashboard")).text()
    assert "<script>" not in page and HOSTILE not in page
    script = await (await client.get("/console/static/dashboard.js")).text()
    assert "innerHTML" not in script and "/api/console/csat" in script


@pytest.mark.parametrize("role", ["agent", "editor"])
async def test_agents_and_editors_cannot_see_comments(client, role):
    await signed_in(client, role)
    response = await client.get("/api/console/csat?period=today")
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"
    assert (await client.get("/console/dashboard")).status == 403
    page = await (await client.get("/console" if role == "agent" else "/console/editor")).text()
    assert 'data-testid="nav-dashboard"' not in page


async def test_bad_comment_queries_are_clear_errors(client):
    assert (await client.get("/api/console/csat")).status == 401
    await signed_in(client, "lead")
    for path, code in (
        ("/api/console/csat?period=1y", "invalid_period"),
        (f"/api/console/csat?q={'x' * 201}", "invalid_query"),
    ):
        response = await client.get(path)
        assert response.status == 422
        assert (await response.json())["error"]["code"] == code


async def test_a_disabled_lead_is_signed_out_of_the_dashboard(client):
    await signed_in(client, "lead", "lee")
    accounts = client.app[ACCOUNTS]
    [lee] = [u for u in await accounts.all() if u.username == "lee"]
    await accounts.update(lee.id, disabled=True)
    assert (await client.get("/api/console/csat")).status == 401
    await accounts.update(lee.id, disabled=False, role="agent")
    await sign_in(client, "lee")
    assert (await client.get("/api/console/csat")).status == 403


# -- the migration ----------------------------------------------------------------------------


def version_4_database(path: Path, users: list[tuple[str, str, str, str | None, int]]) -> str:
    """A database as schema version 4 left it, with ``users``; returns their password hash."""
    password_hash = PasswordHasher().hash(PASSWORD)
    schema = (Path(bot.store.__file__).parent / "schema_sqlite.sql").read_text()
    with sqlite3.connect(path) as db:
        db.executescript(schema)
        db.execute("INSERT INTO schema_version VALUES (1)")
        for version, script in _migrations():
            if version <= 4:
                db.executescript(script)
        db.execute("UPDATE schema_version SET version = 4")
        for user_id, username, role, agent_id, disabled in users:
            db.execute(
                "INSERT INTO users (id, username, password_hash, role, agent_id, created_at, "
                "disabled) VALUES (?, ?, ?, ?, ?, '2026-11-01T09:00:00+00:00', ?)",
                (user_id, username, password_hash, role, agent_id, disabled),
            )
        with pytest.raises(sqlite3.IntegrityError):  # version 4 knows no leads
            db.execute(
                "INSERT INTO users (id, username, password_hash, role, created_at) "
                "VALUES ('x', 'lee', 'h', 'lead', 'now')"
            )
    return password_hash


async def test_a_version_4_database_with_users_is_migrated_to_hold_leads(tmp_path):
    path = tmp_path / "v4.db"
    password_hash = version_4_database(
        path,
        [
            ("u1", "Ann", "admin", None, 0),
            ("u2", "sam", "agent", "sam", 0),
            ("u3", "erin", "editor", None, 1),
        ],
    )
    assert SCHEMA_VERSION >= 5  # the migration to 5 runs, then any later ones
    store = await SQLiteStore.open(path)
    try:
        accounts = Accounts(store)
        assert await accounts.all() == [
            User("u1", "Ann", "admin", None),
            User("u3", "erin", "editor", None, disabled=True),
            User("u2", "sam", "agent", "sam"),
        ]
        assert await accounts.verify("sam", PASSWORD) == User("u2", "sam", "agent", "sam")
        promoted = await accounts.update("u2", role="lead")
        assert (promoted.role, promoted.agent_id) == ("lead", "sam")
        lee = await accounts.add("lee", PASSWORD, "lead")
        assert await accounts.get(lee.id) == User(lee.id, "lee", "lead", "lee")
        with pytest.raises(Conflict):  # usernames stay unique whatever their case
            await accounts.add("ANN", PASSWORD, "agent")
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert db.execute("SELECT password_hash FROM users WHERE id = 'u1'").fetchone() == (
            password_hash,
        )
        assert db.execute("SELECT created_at FROM users WHERE id = 'u3'").fetchone() == (
            "2026-11-01T09:00:00+00:00",
        )
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "users" in tables and not [t for t in tables if t.startswith("users_")]
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(
                "INSERT INTO users (id, username, password_hash, role, created_at) "
                "VALUES ('x', 'bob', 'h', 'boss', 'now')"
            )
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # Opening again migrates nothing more.
    await (await SQLiteStore.open(path)).close()


async def test_a_new_database_holds_leads(tmp_path):
    store = await SQLiteStore.open(tmp_path / "new.db")
    try:
        lee = await Accounts(store).add("lee", PASSWORD, "lead")
        assert lee.agent_id == "lee"
    finally:
        await store.close()
