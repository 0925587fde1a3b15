"""Who may use the console: encrypted cookie sessions, roles, CSRF, throttled sign-in.

Every console request loads its user from the database, so disabling a user or changing a
role takes effect on their next click, not when their cookie expires. Every state-changing
request made with a session carries the session's CSRF token in ``X-CSRF-Token`` (forms: a
``csrf_token`` field); the cookie alone, which a browser attaches to any site's request,
never suffices.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp_jinja2
import aiohttp_session
from aiohttp import web
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from pydantic import BaseModel, ConfigDict, Field

from bot.console.accounts import ROLES, Accounts, Audit, User
from bot.console.throttle import Limit, LoginThrottle
from bot.errors import Forbidden, NotFound, Unauthorized
from bot.http import read_form, read_json, validate
from bot.limits import WindowFactory, local_windows
from bot.settings import ConsoleSettings, Settings

logger = logging.getLogger(__name__)

ACCOUNTS = web.AppKey("accounts", Accounts)
AUDIT = web.AppKey("audit", Audit)
THROTTLE = web.AppKey("login_throttle", LoginThrottle)
COOKIE = "promptly_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_USER = web.RequestKey("promptly_user", object)  # request-scoped cache: User | None


class _Cookies(EncryptedCookieStorage):
    """A cookie that is not even text (bytes no browser sends, a proxy's mangling) is no
    session, as an undecryptable one already is, rather than a 500 on every console page."""

    def load_cookie(self, request: web.Request) -> Any:
        cookie = super().load_cookie(request)
        if isinstance(cookie, str) and not cookie.isascii():
            return None  # Fernet tokens are ASCII: this one was never ours
        return cookie


def setup_sessions(app: web.Application, settings: Settings) -> None:
    """Encrypted (Fernet) cookie sessions; the key comes from the environment or a local file."""
    console = settings.console
    storage = _Cookies(
        session_key(settings),
        cookie_name=COOKIE,
        max_age=int(console.session_max_age.total_seconds()),
        httponly=True,
        secure=console.secure_cookie,
        samesite="Strict",
    )
    aiohttp_session.setup(app, storage)


def session_key(settings: Settings) -> bytes:
    """32 bytes: derived from PROMPTLY_SESSION_KEY, else kept in a git-ignored file beside the
    database (created on first start), so sessions survive a restart."""
    if settings.session_key is not None:
        return hashlib.sha256(settings.session_key.get_secret_value().encode()).digest()
    path = settings.path(settings.storage.database).parent / "session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
        logger.info("created the console session key in %s", path)
    return base64.urlsafe_b64decode(Path(path).read_text().strip())


def login_throttle(console: ConsoleSettings, windows: WindowFactory | None = None) -> LoginThrottle:
    """The sign-in throttle of ``[console]``; ``windows``: shared ones (``[scale]``)."""
    window = console.failure_window.total_seconds()
    make = windows or local_windows()
    return LoginThrottle(
        account=make("login-account", Limit(console.max_failures_per_account, window)),
        address=make("login-address", Limit(console.max_failures_per_address, window)),
    )


async def signed_in_user(request: web.Request) -> User | None:
    """The session's user, if there is one and they are still enabled."""
    if _USER in request:
        cached = request[_USER]
        return cached if isinstance(cached, User) else None
    session = await aiohttp_session.get_session(request)
    user_id = session.get("uid")
    user = await request.app[ACCOUNTS].get(user_id) if isinstance(user_id, str) else None
    if user is not None and user.disabled:
        user = None
    request[_USER] = user
    return user


async def require(request: web.Request, *roles: str) -> User:
    """The signed-in user allowed one of ``roles`` (admin always is), for JSON APIs.

    Unsafe methods also need the session's CSRF token in the ``X-CSRF-Token`` header.
    """
    user = await signed_in_user(request)
    if user is None:
        raise Unauthorized("signed_out", "sign in to the console first")
    if not user.can(*roles):
        raise Forbidden("forbidden", f"this needs the {' or '.join(roles)} role")
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, request.headers.get(CSRF_HEADER))
    return user


async def require_page(request: web.Request, *roles: str) -> tuple[User, str]:
    """For pages: the user and the CSRF token to embed, or a redirect to the sign-in page."""
    user = await signed_in_user(request)
    if user is None:
        raise web.HTTPFound(f"/console/login?next={quote(request.path_qs, safe='')}")
    if not user.can(*roles):
        raise await _forbidden_page(request, user, roles)
    return user, await csrf_token(request)


async def _forbidden_page(
    request: web.Request, user: User, roles: tuple[str, ...]
) -> web.HTTPForbidden:
    """A page in the console's layout naming the role needed and the page this user can use
    (the JSON APIs answer ``403 forbidden`` instead)."""
    context = {
        "user": user,
        "csrf_token": await csrf_token(request),
        "title": "Not available for your role",
        "needed": " or ".join(roles),
        "page": None,
    }
    html = aiohttp_jinja2.render_string("forbidden.html", request, context)
    return web.HTTPForbidden(text=html, content_type="text/html")


async def csrf_token(request: web.Request) -> str:
    session = await aiohttp_session.get_session(request)
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def _check_csrf(request: web.Request, sent: str | None) -> None:
    session = await aiohttp_session.get_session(request)
    expected = session.get("csrf")
    if not (
        isinstance(expected, str) and sent and hmac.compare_digest(_raw(sent), expected.encode())
    ):
        raise Forbidden("csrf", f"missing or wrong {CSRF_HEADER}; reload the page")


def _raw(header: str) -> bytes:
    """A header's bytes as sent (aiohttp keeps bytes that are not UTF-8 as surrogates)."""
    return header.encode("utf-8", "surrogateescape")


def home_of(user: User) -> str:
    """Where signing in lands: editors in the editor, everyone else (leads too) in the console."""
    return "/console/editor" if user.role == "editor" else "/console"


def _safe_next(target: str | None, user: User) -> str:
    """Only a path on this site: never an absolute or scheme-relative URL (open redirect).
    URL parsers (browsers, yarl) drop tabs and line breaks, so "/<tab>/evil.example" would
    become "//evil.example": a target with any control character or space is refused."""
    if (
        target
        and target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and target.isprintable()
        and " " not in target
    ):
        return target
    return home_of(user)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserIn(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: str


class UserPatch(_In):
    role: str | None = None
    disabled: bool | None = None
    password: str | None = Field(None, min_length=1, max_length=1024)


class Access:
    """Sign-in pages, and user management and the audit log for admins (not leads)."""

    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/console/login", "login_page"),
        ("POST", "/console/login", "login"),
        ("POST", "/console/logout", "logout"),
        ("GET", "/console/users", "users_page"),
        ("GET", "/api/console/me", "me"),
        ("GET", "/api/console/users", "list_users"),
        ("POST", "/api/console/users", "add_user"),
        ("PATCH", "/api/console/users/{user_id}", "update_user"),
        ("GET", "/api/console/audit", "audit_log"),
    ]

    def __init__(self, accounts: Accounts, audit: Audit, throttle: LoginThrottle) -> None:
        self._accounts = accounts
        self._audit = audit
        self._throttle = throttle

    async def login_page(self, request: web.Request) -> web.Response:
        user = await signed_in_user(request)
        if user is not None:
            raise web.HTTPFound(_safe_next(request.query.get("next"), user))
        return await self._form(request, error=None, status=200)

    async def _form(
        self, request: web.Request, *, error: str | None, status: int, username: str = ""
    ) -> web.Response:
        context = {
            "csrf_token": await csrf_token(request),
            "next": request.query.get("next", ""),
            "error": error,
            "username": username,
        }
        response = aiohttp_jinja2.render_template("login.html", request, context, status=status)
        response.headers["Cache-Control"] = "no-store"
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        username = str(form.get("username", "")).strip()
        password = str(form.get("password", ""))
        await _check_csrf(request, str(form.get("csrf_token", "")))
        address = request.remote or "unknown"
        wait = await self._throttle.retry_after(username, address)
        if wait > 0:
            response = await self._form(
                request,
                error=f"Too many failed sign-ins. Try again in {int(wait) + 1} seconds.",
                status=429,
                username=username,
            )
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        user = await self._accounts.verify(username, password) if username else None
        if user is None:
            await self._throttle.failed(username, address)
            await self._audit.record(username or "-", "login.failed", None, {"address": address})
            return await self._form(
                request, error="Wrong username or password.", status=401, username=username
            )
        await self._throttle.succeeded(username)
        session = await aiohttp_session.new_session(request)  # a fresh id: no fixation
        session["uid"] = user.id
        session["csrf"] = secrets.token_urlsafe(32)
        await self._audit.record(user.username, "login", user.id, {"address": address})
        raise web.HTTPFound(_safe_next(str(form.get("next", "")), user))

    async def logout(self, request: web.Request) -> web.StreamResponse:
        form = await read_form(request)
        await _check_csrf(
            request, request.headers.get(CSRF_HEADER) or str(form.get("csrf_token", ""))
        )
        user = await signed_in_user(request)
        session = await aiohttp_session.get_session(request)
        session.invalidate()
        if user is not None:
            await self._audit.record(user.username, "logout", user.id)
        raise web.HTTPFound("/console/login")

    async def users_page(self, request: web.Request) -> web.Response:
        user, token = await require_page(request, "admin")
        context = {"user": user, "csrf_token": token, "page": "users", "roles": ROLES}
        return aiohttp_jinja2.render_template("users.html", request, context)

    async def me(self, request: web.Request) -> web.Response:
        user = await require(request, *ROLES)
        return web.json_response({**_user_json(user), "csrf_token": await csrf_token(request)})

    async def list_users(self, request: web.Request) -> web.Response:
        await require(request, "admin")
        return web.json_response({"users": [_user_json(u) for u in await self._accounts.all()]})

    async def add_user(self, request: web.Request) -> web.Response:
        admin = await require(request, "admin")
        body = validate(UserIn, await read_json(request, 8192))
        user = await self._accounts.add(body.username, body.password, body.role)
        await self._audit.record(admin.username, "user.add", user.id, {"role": user.role})
        return web.json_response(_user_json(user), status=201)

    async def update_user(self, request: web.Request) -> web.Response:
        admin = await require(request, "admin")
        body = validate(UserPatch, await read_json(request, 8192))
        user_id = request.match_info["user_id"]
        if await self._accounts.get(user_id) is None:
            raise NotFound("unknown_user", "no user with that id")
        if user_id == admin.id and (body.disabled or (body.role and body.role != "admin")):
            raise Forbidden("self_lockout", "an admin cannot disable or demote themselves")
        user = await self._accounts.update(
            user_id, role=body.role, disabled=body.disabled, password=body.password
        )
        changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"password"})
        if body.password is not None:
            changes["password"] = "changed"
        await self._audit.record(admin.username, "user.update", user_id, changes)
        return web.json_response(_user_json(user))

    async def audit_log(self, request: web.Request) -> web.Response:
        await require(request, "admin")
        entries = await self._audit.entries(request.query.get("target"))
        return web.json_response(
            {
                "entries": [
                    {
                        "seq": e.seq,
                        "at": e.at.isoformat(),
                        "actor": e.actor,
                        "action": e.action,
                        "target": e.target,
                        "data": e.data,
                    }
                    for e in entries
                ]
            }
        )


def _user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "agent_id": user.agent_id,
        "disabled": user.disabled,
    }
