"""Console sign-in through the real app: sessions, roles, CSRF, throttling, audit, the CLI."""

from __future__ import annotations

import io
import os
import stat

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot import cli
from bot.app import create_app
from bot.console.access import ACCOUNTS, AUDIT, session_key
from bot.console.throttle import Limit, LoginThrottle
from tests.console_helpers import PASSWORD, add_user, signed_in
from tests.unit.test_gateway import make_settings


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client) -> TestClient:
    return await aiohttp_client(create_app(make_settings(tmp_path, rasa_server.port)))


async def form_token(client: TestClient) -> str:
    text = await (await client.get("/console/login")).text()
    return text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


async def try_sign_in(client: TestClient, username: str, password: str, **extra: str):
    data = {"username": username, "password": password, "csrf_token": await form_token(client)}
    return await client.post("/console/login", data={**data, **extra}, allow_redirects=False)


# -- throttle policy -------------------------------------------------------------------------


@settings(max_examples=200)
@example(gaps=[1.611017354258492e-61, 100.0, 400.0, 400.0, 0.0])  # float rounding at the edge
@given(
    gaps=st.lists(st.floats(min_value=0, max_value=400, allow_nan=False), min_size=1, max_size=40)
)
async def test_throttle_never_allows_more_failures_than_the_limit_inside_a_window(gaps):
    limit = Limit(events=3, window=900)
    throttle = LoginThrottle.local(account=limit, address=Limit(100, 900))
    now, allowed = 0.0, []
    for gap in gaps:
        now += gap
        if await throttle.retry_after("ann", "10.0.0.1", now) == 0:
            await throttle.failed("ann", "10.0.0.1", now)
            allowed.append(now)
    for t in allowed:  # any window holds at most ``failures`` attempts that were let through
        assert sum(t <= u < t + limit.window for u in allowed) <= limit.events


async def test_throttle_waits_until_the_oldest_failure_leaves_the_window():
    throttle = LoginThrottle.local(account=Limit(2, 60), address=Limit(100, 60))
    await throttle.failed("ann", "a", 0)
    await throttle.failed("ann", "a", 10)
    assert await throttle.retry_after("ann", "a", 20) == pytest.approx(40)
    assert await throttle.retry_after("ANN", "b", 20) == pytest.approx(
        40
    )  # per account, any address
    assert await throttle.retry_after("bob", "a", 20) == 0
    assert await throttle.retry_after("ann", "a", 60.5) == 0


async def test_a_success_clears_the_account_but_not_the_address():
    throttle = LoginThrottle.local(account=Limit(2, 60), address=Limit(2, 60))
    await throttle.failed("ann", "a", 0)
    await throttle.failed("bob", "a", 1)
    await throttle.succeeded("ann")
    assert await throttle.retry_after("carl", "a", 2) > 0  # the address guessed twice
    assert await throttle.retry_after("ann", "b", 2) == 0


# -- sign-in -------------------------------------------------------------------------------


async def test_sign_in_gives_a_session_and_the_right_home(client):
    await add_user(client, "editor", "erin")
    response = await try_sign_in(client, "erin", PASSWORD)
    assert response.status == 302 and response.headers["Location"] == "/console/editor"
    me = await (await client.get("/api/console/me")).json()
    assert (me["username"], me["role"]) == ("erin", "editor") and me["csrf_token"]
    cookie = response.cookies["promptly_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert PASSWORD not in cookie.value and "erin" not in cookie.value  # encrypted


async def test_a_wrong_password_is_refused_and_recorded(client):
    await add_user(client, "agent", "alex")
    response = await try_sign_in(client, "alex", "not the password")
    assert response.status == 401
    assert "Wrong username or password" in await response.text()
    assert (await client.get("/api/console/me")).status == 401
    [entry] = await client.app[AUDIT].entries()
    assert (entry.actor, entry.action) == ("alex", "login.failed")


async def test_repeated_failures_lock_the_account_even_for_the_right_password(client):
    await add_user(client, "agent", "alex")
    for _ in range(5):
        assert (await try_sign_in(client, "alex", "guess-guess-guess")).status == 401
    locked = await try_sign_in(client, "alex", PASSWORD)
    assert locked.status == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in await locked.text()


async def test_the_sign_in_form_needs_its_csrf_token(client):
    await add_user(client, "agent", "alex")
    response = await client.post(
        "/console/login",
        data={"username": "alex", "password": PASSWORD, "csrf_token": "forged"},
        allow_redirects=False,
    )
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "csrf"


@pytest.mark.parametrize("path", ["/console/login", "/console/logout"])
async def test_a_form_that_cannot_be_parsed_is_a_400_not_a_crash(client, path):
    """Found by schemathesis: a multipart part header with raw non-ASCII bytes was a 500."""
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="\xf1\x92\x84\x9a\x08"\r\n\r\nx\r\n'
        + f"--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = await client.post(path, data=body, headers=headers)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_form"


async def test_next_is_followed_only_on_this_site(client):
    await add_user(client, "agent", "alex")
    response = await try_sign_in(client, "alex", PASSWORD, next="//evil.example/steal")
    assert response.headers["Location"] == "/console"
    client.session.cookie_jar.clear()
    response = await try_sign_in(client, "alex", PASSWORD, next="/console?queue=vip")
    assert response.headers["Location"] == "/console?queue=vip"


async def test_the_api_refuses_signed_out_requests(client):
    response = await client.get("/api/console/users")
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "signed_out"


# -- roles and CSRF on the API --------------------------------------------------------------


async def test_only_admins_manage_users_and_every_write_needs_the_csrf_header(client):
    csrf = await signed_in(client, "admin", "root")
    body = {"username": "sam", "password": "a long enough pw", "role": "agent"}
    refused = await client.post("/api/console/users", json=body)
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "csrf"
    created = await client.post("/api/console/users", json=body, headers={"X-CSRF-Token": csrf})
    assert created.status == 201
    sam = await created.json()
    assert (sam["role"], sam["agent_id"]) == ("agent", "sam")
    duplicate = await client.post("/api/console/users", json=body, headers={"X-CSRF-Token": csrf})
    assert duplicate.status == 409
    weak = await client.post(
        "/api/console/users",
        json={**body, "username": "tim", "password": "short"},
        headers={"X-CSRF-Token": csrf},
    )
    assert weak.status == 422 and (await weak.json())["error"]["field"] == "password"
    entries = await client.app[AUDIT].entries(target=sam["id"])
    assert [(e.actor, e.action) for e in entries] == [("root", "user.add")]


async def test_a_user_change_is_all_or_nothing(client):
    csrf = await signed_in(client, "admin", "root")
    alex = await add_user(client, "agent", "alex")
    response = await client.patch(
        f"/api/console/users/{alex.id}",
        json={"role": "admin", "password": "short"},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status == 422
    assert (await client.app[ACCOUNTS].get(alex.id)).role == "agent"


async def test_an_editor_cannot_manage_users(client):
    await signed_in(client, "editor")
    response = await client.get("/api/console/users")
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"


async def test_a_disabled_user_is_signed_out_at_the_next_request(client):
    csrf = await signed_in(client, "admin", "root")
    alex = await add_user(client, "agent", "alex")
    other = await client.app[ACCOUNTS].add("other-admin", PASSWORD, "admin")
    response = await client.patch(
        f"/api/console/users/{alex.id}", json={"disabled": True}, headers={"X-CSRF-Token": csrf}
    )
    assert (await response.json())["disabled"] is True
    assert await client.app[ACCOUNTS].verify("alex", PASSWORD) is None
    # An admin cannot lock themselves out; another admin can disable them.
    me = await (await client.get("/api/console/me")).json()
    refused = await client.patch(
        f"/api/console/users/{me['id']}", json={"disabled": True}, headers={"X-CSRF-Token": csrf}
    )
    assert refused.status == 403
    await client.app[ACCOUNTS].update(me["id"], disabled=True)
    assert (await client.get("/api/console/me")).status == 401
    assert other.role == "admin"


async def test_logout_ends_the_session(client):
    csrf = await signed_in(client, "agent")
    response = await client.post(
        "/console/logout", headers={"X-CSRF-Token": csrf}, allow_redirects=False
    )
    assert response.status == 302
    assert (await client.get("/api/console/me")).status == 401


async def test_the_sign_in_page_keeps_where_to_go_next(client):
    response = await client.get("/console/login?next=/console")
    assert response.status == 200
    assert 'name="next" value="/console"' in await response.text()


# -- key and CLI -----------------------------------------------------------------------------


def test_the_session_key_is_kept_in_a_private_file_when_not_in_the_environment(tmp_path):
    settings = make_settings(tmp_path, 1)
    first = session_key(settings)
    assert len(first) == 32 and session_key(settings) == first
    key_file = tmp_path / "session.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_cli_adds_a_user_with_the_password_from_stdin(tmp_path, monkeypatch, capsys):
    settings_path = make_settings(tmp_path, 1).root / "promptly.toml"
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough pw\n"))
    assert cli.main(["--config", str(settings_path), "users", "add", "ann", "--role", "admin"]) == 0
    assert "added admin ann" in capsys.readouterr().out
    assert cli.main(["--config", str(settings_path), "users", "list"]) == 0
    assert "ann\tadmin" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["--config", str(settings_path), "users", "add", "bo", "--role", "agent"]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
