"""The console's small pages: the wrong-role page, each user's home link, changing a password
(the account page, an admin's reset, the CLI), and the help centre's missing-article page."""

from __future__ import annotations

import asyncio
import io
import re

import pytest
from aiohttp.test_utils import TestClient

from bot import cli, keys
from bot.app import create_app
from bot.console.access import ACCOUNTS, AUDIT
from knowledge_base import HashingEmbedder, KnowledgeBase, LiveKnowledgeBase
from knowledge_base.articles import Article
from tests.console_helpers import PASSWORD, add_user, call, sign_in, signed_in
from tests.unit.test_gateway import make_settings

NEW_PASSWORD = "a brand new passphrase"
_BRAND = re.compile(r'class="brand" href="([^"]+)"')


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client) -> TestClient:
    app = create_app(make_settings(tmp_path, rasa_server.port))
    internal = Article("overrides", "Overrides", "Leads only.", None, (), (), audience="internal")
    live = Article("returns", "Returns", "Within 60 days.", None, (), ())
    app[keys.KB] = LiveKnowledgeBase(KnowledgeBase.build([live, internal], HashingEmbedder(64)))
    return await aiohttp_client(app)


# -- the wrong role --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "path", "home"),
    [
        ("agent", "/console/editor", "/console"),
        ("editor", "/console", "/console/editor"),
        ("lead", "/console/users", "/console"),
    ],
)
async def test_a_page_for_another_role_is_a_page_with_a_way_back(client, role, path, home):
    await signed_in(client, role, "pat")
    response = await client.get(path, allow_redirects=False)
    assert response.status == 403 and response.content_type == "text/html"
    page = await response.text()
    assert "Not available for your role" in page and "signed in as pat" in page
    assert f'href="{home}" data-testid="forbidden-home"' in page
    assert 'action="/console/logout"' in page and 'name="csrf_token"' in page
    assert _BRAND.search(page)[1] == home  # type: ignore[index]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


async def test_the_apis_keep_their_json_403(client):
    await signed_in(client, "agent")
    response = await client.get("/api/console/articles")
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("role", "home"), [("editor", "/console/editor"), ("admin", "/console")])
async def test_the_brand_links_to_each_users_home(client, role, home):
    await signed_in(client, role)
    page = await (await client.get("/console/account")).text()
    assert _BRAND.search(page)[1] == home  # type: ignore[index]
    assert 'href="/console/account"' in page  # the name in the top bar leads to the account


# -- passwords --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["agent", "editor", "lead", "admin"])
async def test_everyone_changes_their_own_password_with_the_current_one(client, role):
    csrf = await signed_in(client, role, "pat")
    page = await client.get("/console/account")
    assert page.status == 200 and 'data-testid="password-form"' in await page.text()
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    path = "/api/console/me/password"
    await call(client, "POST", path, body, status=403)  # no CSRF token
    assert (await call(client, "POST", path, body, csrf=csrf)) == {"changed": True}
    assert await client.app[ACCOUNTS].verify("pat", NEW_PASSWORD) is not None
    assert await client.app[ACCOUNTS].verify("pat", PASSWORD) is None
    [entry, *_] = await client.app[AUDIT].entries()
    assert (entry.actor, entry.action) == ("pat", "password.change")
    assert NEW_PASSWORD not in str(entry.data)


async def test_a_wrong_current_password_changes_nothing_and_is_throttled(client):
    csrf = await signed_in(client, "agent", "pat")
    path = "/api/console/me/password"
    wrong = {"current_password": "not my password", "new_password": NEW_PASSWORD}
    for _ in range(5):
        refused = await call(client, "POST", path, wrong, csrf=csrf, status=403)
        assert refused["error"]["code"] == "wrong_password"
    right = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    locked = await call(client, "POST", path, right, csrf=csrf, status=429)
    assert locked["error"]["code"] == "rate_limited"
    assert await client.app[ACCOUNTS].verify("pat", PASSWORD) is not None
    actions = [e.action for e in await client.app[AUDIT].entries()]
    assert actions.count("password.failed") == 5


async def test_a_short_new_password_is_refused(client):
    csrf = await signed_in(client, "editor", "pat")
    short = {"current_password": PASSWORD, "new_password": "short"}
    refused = await call(client, "POST", "/api/console/me/password", short, csrf=csrf, status=422)
    assert refused["error"]["code"] == "weak_password"
    assert await client.app[ACCOUNTS].verify("pat", PASSWORD) is not None


async def test_signed_out_people_get_the_sign_in_page(client):
    response = await client.get("/console/account", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"].startswith("/console/login")
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    await call(client, "POST", "/api/console/me/password", body, status=401)


async def test_an_admin_sets_someone_elses_password_from_the_users_page(client):
    csrf = await signed_in(client, "admin", "root")
    alex = await add_user(client, "agent", "alex")
    page = await (await client.get("/console/users")).text()
    assert "<th>Password</th>" in page
    path = f"/api/console/users/{alex.id}"
    await call(client, "PATCH", path, {"password": NEW_PASSWORD}, csrf=csrf)
    client.session.cookie_jar.clear()
    await sign_in(client, "alex", NEW_PASSWORD)


def test_cli_sets_a_password_from_stdin(tmp_path, monkeypatch, capsys):
    config = str(make_settings(tmp_path, 1).root / "promptly.toml")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PASSWORD}\n"))
    assert cli.main(["--config", config, "users", "add", "ann", "--role", "admin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{NEW_PASSWORD}\n"))
    assert cli.main(["--config", config, "users", "passwd", "ann"]) == 0
    assert "changed the password of ann" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["--config", config, "users", "passwd", "ann"]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{NEW_PASSWORD}\n"))
    assert cli.main(["--config", config, "users", "passwd", "nobody"]) == 2
    assert "no console user 'nobody'" in capsys.readouterr().err


async def test_the_cli_password_is_the_one_that_signs_in(tmp_path, rasa_server, aiohttp_client):
    settings = make_settings(tmp_path, rasa_server.port)
    client = await aiohttp_client(create_app(settings))
    await add_user(client, "lead", "lee")
    config = str(settings.root / "promptly.toml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.StringIO(f"{NEW_PASSWORD}\n"))
        argv = ["--config", config, "users", "passwd", "lee"]
        assert await asyncio.to_thread(cli.main, argv) == 0
    await sign_in(client, "lee", NEW_PASSWORD)
    entries = [(e.actor, e.action, e.data) for e in await client.app[AUDIT].entries()]
    assert ("cli", "user.update", {"password": "changed"}) in entries


# -- the help centre ------------------------------------------------------------------------


@pytest.mark.parametrize("article_id", ["no-such-article", "overrides"])
async def test_a_missing_or_internal_article_is_an_html_404_with_a_way_home(client, article_id):
    response = await client.get(f"/kb/{article_id}")
    assert response.status == 404 and response.content_type == "text/html"
    page = await response.text()
    assert "Article not found" in page and 'href="/" data-testid="help-home"' in page
    assert "Leads only" not in page
    assert (await client.get("/kb/returns")).status == 200
