"""Sign a test client in to the console (a real user, the real sign-in form)."""

from __future__ import annotations

import re
import secrets
from typing import Any

from aiohttp.test_utils import TestClient

from bot.console.access import ACCOUNTS
from bot.console.accounts import User

PASSWORD = "correct horse battery"
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


async def add_user(client: TestClient, role: str, username: str | None = None) -> User:
    name = username or f"{role}-{secrets.token_hex(3)}"
    return await client.app[ACCOUNTS].add(name, PASSWORD, role)


async def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the session's CSRF token for unsafe requests."""
    page = await client.get("/console/login")
    form_token = _CSRF_FIELD.search(await page.text())
    assert form_token is not None, "the sign-in form carries a CSRF token"
    response = await client.post(
        "/console/login",
        data={"username": username, "password": password, "csrf_token": form_token[1]},
        allow_redirects=False,
    )
    assert response.status == 302, await response.text()
    me = await client.get("/api/console/me")
    assert me.status == 200, await me.text()
    token: str = (await me.json())["csrf_token"]
    return token


async def signed_in(client: TestClient, role: str, username: str | None = None) -> str:
    """A new user with ``role``, signed in on the client's cookie jar; returns the CSRF token."""
    user = await add_user(client, role, username)
    return await sign_in(client, user.username)


async def call(
    client: TestClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    status: int = 200,
    csrf: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """A JSON request (with the CSRF header when ``csrf``); asserts the status, returns JSON."""
    sent = dict(headers or {})
    if csrf is not None:
        sent["X-CSRF-Token"] = csrf
    response = await client.request(method, path, json=body, headers=sent)
    assert response.status == status, await response.text()
    return await response.json()
