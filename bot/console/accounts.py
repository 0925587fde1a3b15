"""People who sign in to the console (argon2-hashed passwords, roles) and the audit log."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.errors import Conflict, NotFound, Unprocessable
from bot.store.sqlite import SQLiteStore

Role = Literal["agent", "editor", "lead", "admin"]
ROLES: tuple[Role, ...] = ("agent", "editor", "lead", "admin")
# The roles each role passes as in ``User.can``: a lead is an agent who also sees the
# dashboard; an admin passes every check.
GRANTS: dict[Role, frozenset[str]] = {
    "agent": frozenset({"agent"}),
    "editor": frozenset({"editor"}),
    "lead": frozenset({"lead", "agent"}),
    "admin": frozenset(ROLES),
}
# The roles that work tickets as an agents row (their ``agent_id``).
TICKET_ROLES: frozenset[Role] = frozenset({"agent", "lead"})
MIN_PASSWORD = 10
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{1,63}$")
_COLUMNS = "id, username, role, agent_id, disabled"
# Verified when the name is unknown, so a wrong name costs the same time as a wrong password.
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password anyone has")


@dataclass(frozen=True)
class User:
    id: str
    username: str
    role: Role
    agent_id: str | None  # the agents row a console agent (or lead) works as
    disabled: bool = False

    def can(self, *roles: str) -> bool:
        """Admins can do everything; others what their role grants (a lead: lead and agent)."""
        if self.disabled:
            return False
        return self.role == "admin" or not GRANTS.get(self.role, frozenset()).isdisjoint(roles)


class Accounts:
    """Users in the shared database; hashing runs off the event loop (it is slow on purpose)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def add(self, username: str, password: str, role: str) -> User:
        """Create a user; roles ``agent`` and ``lead`` work as the agents row of the same name."""
        username = _valid_username(username)
        role = _valid_role(role)
        password_hash = await asyncio.to_thread(_hasher.hash, _valid_password(password))
        user = User(
            id=uuid.uuid4().hex,
            username=username,
            role=role,
            agent_id=username if role in TICKET_ROLES else None,
        )

        def insert(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO users (id, username, password_hash, role, agent_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (user.id, user.username, password_hash, role, user.agent_id, _now()),
                )
            except sqlite3.IntegrityError:
                raise Conflict(
                    "username_taken", f"there is already a user {username!r}", field="username"
                ) from None

        await self._store.run(insert, write=True)
        return user

    async def verify(self, username: str, password: str) -> User | None:
        """The user when the password is theirs and they are not disabled, else None."""
        row = await self._store.run(
            lambda db: db.execute(
                f"SELECT {_COLUMNS}, password_hash FROM users WHERE username = ?", (username,)
            ).fetchone(),
            write=False,
        )
        stored_hash = row[5] if row else _DUMMY_HASH
        try:
            await asyncio.to_thread(_hasher.verify, stored_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row[4]:
            return None
        user = _user(row)
        if _hasher.check_needs_rehash(stored_hash):  # parameters were raised since
            await self.set_password(user.id, password)
        return user

    async def get(self, user_id: str) -> User | None:
        row = await self._store.run(
            lambda db: db.execute(
                f"SELECT {_COLUMNS} FROM users WHERE id = ?", (user_id,)
            ).fetchone(),
            write=False,
        )
        return None if row is None else _user(row)

    async def all(self) -> list[User]:
        rows = await self._store.run(
            lambda db: db.execute(f"SELECT {_COLUMNS} FROM users ORDER BY username").fetchall(),
            write=False,
        )
        return [_user(row) for row in rows]

    async def count(self) -> int:
        row = await self._store.run(
            lambda db: db.execute("SELECT count(*) FROM users").fetchone(), write=False
        )
        return int(row[0])

    async def update(
        self,
        user_id: str,
        *,
        role: str | None = None,
        disabled: bool | None = None,
        password: str | None = None,
    ) -> User:
        """Change what is given, all or nothing: every value is checked before any is saved.

        A user made an agent or a lead works as the agents row of their username unless they
        already had one.
        """
        changes: dict[str, Any] = {}
        if role is not None:
            changes["role"] = _valid_role(role)
        if disabled is not None:
            changes["disabled"] = int(disabled)
        if password is not None:
            changes["password_hash"] = await asyncio.to_thread(
                _hasher.hash, _valid_password(password)
            )

        def write(db: sqlite3.Connection) -> None:
            for column, value in changes.items():  # column names are ours, not the client's
                db.execute(f"UPDATE users SET {column} = ? WHERE id = ?", (value, user_id))
            if changes.get("role") in TICKET_ROLES:
                db.execute(
                    "UPDATE users SET agent_id = coalesce(agent_id, username) WHERE id = ?",
                    (user_id,),
                )

        await self._store.run(write, write=True)
        user = await self.get(user_id)
        if user is None:
            raise NotFound("unknown_user", "no user with that id")
        return user

    async def set_password(self, user_id: str, password: str) -> None:
        await self.update(user_id, password=password)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str | None
    data: dict[str, Any]


class Audit:
    """Who changed what: every write made through the console, the agent API or the CLI."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def record(
        self, actor: str, action: str, target: str | None, data: dict[str, Any] | None = None
    ) -> None:
        await self._store.run(
            lambda db: db.execute(
                "INSERT INTO audit (at, actor, action, target, data) VALUES (?, ?, ?, ?, ?)",
                (_now(), actor, action, target, json.dumps(data or {})),
            ),
            write=True,
        )

    async def entries(self, target: str | None = None, limit: int = 200) -> list[AuditEntry]:
        where, args = ("WHERE target = ?", (target, limit)) if target else ("", (limit,))
        rows = await self._store.run(
            lambda db: db.execute(
                f"SELECT seq, at, actor, action, target, data FROM audit {where} "
                "ORDER BY seq DESC LIMIT ?",
                args,
            ).fetchall(),
            write=False,
        )
        return [
            AuditEntry(r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4], json.loads(r[5]))
            for r in rows
        ]


def _user(row: Any) -> User:
    return User(
        id=row[0], username=row[1], role=cast(Role, row[2]), agent_id=row[3], disabled=bool(row[4])
    )


def _valid_username(username: str) -> str:
    if not _USERNAME.match(username):
        raise Unprocessable(
            "invalid_username",
            "a username is 2–64 letters, digits, '.', '_', '@' or '-', starting with a letter "
            "or digit",
            field="username",
        )
    return username


def _valid_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise Unprocessable("invalid_role", f"role must be one of {', '.join(ROLES)}", field="role")


def _valid_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise Unprocessable(
            "weak_password",
            f"a password needs at least {MIN_PASSWORD} characters",
            field="password",
        )
    return password


def _now() -> str:
    return datetime.now(UTC).isoformat()
