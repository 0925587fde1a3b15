"""People who sign in to the console (argon2-hashed passwords, roles) and the audit log."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.errors import Conflict, NotFound, Unprocessable
from bot.handoff.assignment import DEFAULT_CAPACITY
from bot.store.postgres import PostgresStore
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
# A user who works tickets is an agent from the start (offline, the default capacity), so
# they can be given or take a ticket before they first set their presence; an agents row
# already there (made through the agent API) is kept as it is.
_AGENT_ROW = (
    "INSERT INTO agents (id, name, presence, capacity, updated_at) "
    "VALUES (?, ?, 'offline', ?, ?) ON CONFLICT (id) DO NOTHING"
)
_PG_AGENT_ROW = (
    "INSERT INTO agents (id, name, presence, capacity, updated_at) "
    "VALUES ($1, $2, 'offline', $3, $4) ON CONFLICT (id) DO NOTHING"
)
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

    def __init__(self, store: SQLiteStore | PostgresStore) -> None:
        self._queries = _queries(store)

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
        await self._queries.add_user(user, password_hash, _now())
        return user

    async def verify(self, username: str, password: str) -> User | None:
        """The user when the password is theirs and they are not disabled, else None."""
        found = await self._queries.user_by_name(username)
        stored_hash = found[1] if found else _DUMMY_HASH
        try:
            await asyncio.to_thread(_hasher.verify, stored_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if found is None or found[0].disabled:
            return None
        user = found[0]
        if _hasher.check_needs_rehash(stored_hash):  # parameters were raised since
            await self.set_password(user.id, password)
        return user

    async def get(self, user_id: str) -> User | None:
        return await self._queries.user(user_id)

    async def all(self) -> list[User]:
        return await self._queries.users()

    async def count(self) -> int:
        return await self._queries.user_count()

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
        changes = _Changes()
        if role is not None:
            changes.role = _valid_role(role)
        if disabled is not None:
            changes.disabled = disabled
        if password is not None:
            changes.password_hash = await asyncio.to_thread(_hasher.hash, _valid_password(password))
        await self._queries.update_user(user_id, changes)
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

    def __init__(self, store: SQLiteStore | PostgresStore) -> None:
        self._queries = _queries(store)

    async def record(
        self, actor: str, action: str, target: str | None, data: dict[str, Any] | None = None
    ) -> None:
        await self._queries.record_audit(_now(), actor, action, target, data or {})

    async def entries(self, target: str | None = None, limit: int = 200) -> list[AuditEntry]:
        """Newest first; only those about ``target`` when given."""
        return await self._queries.audit_entries(target, limit)


# -- queries, one object per backend ---------------------------------------------------------


@dataclass
class _Changes:
    """What ``Accounts.update`` saves: the fields that are not None."""

    role: Role | None = None
    disabled: bool | None = None
    password_hash: str | None = None


class _Queries(Protocol):
    async def add_user(self, user: User, password_hash: str, at: datetime) -> None:
        """Insert the user; ``Conflict`` when the name is taken (in any letter case)."""

    async def user_by_name(self, username: str) -> tuple[User, str] | None:
        """The user and their password hash, the name compared case-insensitively."""

    async def user(self, user_id: str) -> User | None: ...

    async def users(self) -> list[User]:
        """By username, case-insensitively."""

    async def user_count(self) -> int: ...

    async def update_user(self, user_id: str, changes: _Changes) -> None: ...

    async def record_audit(
        self, at: datetime, actor: str, action: str, target: str | None, data: dict[str, Any]
    ) -> None: ...

    async def audit_entries(self, target: str | None, limit: int) -> list[AuditEntry]: ...


def _queries(store: SQLiteStore | PostgresStore) -> _Queries:
    if isinstance(store, PostgresStore):
        return _PostgresQueries(store)
    return _SQLiteQueries(store)


class _SQLiteQueries:
    """``username`` is ``COLLATE NOCASE``: ``=`` and ``ORDER BY`` ignore (ASCII) case."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def add_user(self, user: User, password_hash: str, at: datetime) -> None:
        def insert(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    "INSERT INTO users (id, username, password_hash, role, agent_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (user.id, user.username, password_hash, user.role, user.agent_id, _iso(at)),
                )
            except sqlite3.IntegrityError:
                raise _taken(user.username) from None
            if user.agent_id is not None:
                db.execute(_AGENT_ROW, (user.agent_id, user.username, DEFAULT_CAPACITY, _iso(at)))

        await self._store.run(insert, write=True)

    async def user_by_name(self, username: str) -> tuple[User, str] | None:
        row = await self._store.run(
            lambda db: db.execute(
                f"SELECT {_COLUMNS}, password_hash FROM users WHERE username = ?", (username,)
            ).fetchone(),
            write=False,
        )
        return None if row is None else (_user(row), row[5])

    async def user(self, user_id: str) -> User | None:
        row = await self._store.run(
            lambda db: db.execute(
                f"SELECT {_COLUMNS} FROM users WHERE id = ?", (user_id,)
            ).fetchone(),
            write=False,
        )
        return None if row is None else _user(row)

    async def users(self) -> list[User]:
        rows = await self._store.run(
            lambda db: db.execute(f"SELECT {_COLUMNS} FROM users ORDER BY username").fetchall(),
            write=False,
        )
        return [_user(row) for row in rows]

    async def user_count(self) -> int:
        row = await self._store.run(
            lambda db: db.execute("SELECT count(*) FROM users").fetchone(), write=False
        )
        return int(row[0])

    async def update_user(self, user_id: str, changes: _Changes) -> None:
        def write(db: sqlite3.Connection) -> None:
            if changes.role is not None:
                db.execute("UPDATE users SET role = ? WHERE id = ?", (changes.role, user_id))
            if changes.disabled is not None:
                db.execute(
                    "UPDATE users SET disabled = ? WHERE id = ?", (int(changes.disabled), user_id)
                )
            if changes.password_hash is not None:
                db.execute(
                    "UPDATE users SET password_hash = ? WHERE id = ?",
                    (changes.password_hash, user_id),
                )
            if changes.role in TICKET_ROLES:
                db.execute(
                    "UPDATE users SET agent_id = coalesce(agent_id, username) WHERE id = ?",
                    (user_id,),
                )
                row = db.execute(
                    "SELECT agent_id, username FROM users WHERE id = ?", (user_id,)
                ).fetchone()
                if row is not None:
                    db.execute(_AGENT_ROW, (*row, DEFAULT_CAPACITY, _iso(_now())))

        await self._store.run(write, write=True)

    async def record_audit(
        self, at: datetime, actor: str, action: str, target: str | None, data: dict[str, Any]
    ) -> None:
        await self._store.run(
            lambda db: db.execute(
                "INSERT INTO audit (at, actor, action, target, data) VALUES (?, ?, ?, ?, ?)",
                (_iso(at), actor, action, target, json.dumps(data)),
            ),
            write=True,
        )

    async def audit_entries(self, target: str | None, limit: int) -> list[AuditEntry]:
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


class _PostgresQueries:
    """Unique on ``lower(username)``, so lookups compare ``lower(username)`` (that index);
    ``disabled`` is boolean, ``at`` timestamptz and ``data`` jsonb (decoded by the pool)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def add_user(self, user: User, password_hash: str, at: datetime) -> None:
        async def insert(db: Any) -> None:
            try:
                await db.execute(
                    "INSERT INTO users (id, username, password_hash, role, agent_id, created_at) "
                    "VALUES ($1, $2, $3, $4, $5, $6)",
                    user.id,
                    user.username,
                    password_hash,
                    user.role,
                    user.agent_id,
                    at,
                )
            except asyncpg.UniqueViolationError:
                raise _taken(user.username) from None
            if user.agent_id is not None:
                await db.execute(_PG_AGENT_ROW, user.agent_id, user.username, DEFAULT_CAPACITY, at)

        await self._store.run(insert, write=True)

    async def user_by_name(self, username: str) -> tuple[User, str] | None:
        async def read(db: Any) -> Any:
            return await db.fetchrow(
                f"SELECT {_COLUMNS}, password_hash FROM users WHERE lower(username) = lower($1)",
                username,
            )

        row = await self._store.run(read, write=False)
        return None if row is None else (_user(row), row[5])

    async def user(self, user_id: str) -> User | None:
        async def read(db: Any) -> Any:
            return await db.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)

        row = await self._store.run(read, write=False)
        return None if row is None else _user(row)

    async def users(self) -> list[User]:
        async def read(db: Any) -> Any:
            # As SQLite's NOCASE orders: ASCII letters folded, then byte order.
            return await db.fetch(
                f'SELECT {_COLUMNS} FROM users ORDER BY lower(username COLLATE "C")'
            )

        return [_user(row) for row in await self._store.run(read, write=False)]

    async def user_count(self) -> int:
        async def read(db: Any) -> Any:
            return await db.fetchval("SELECT count(*) FROM users")

        return int(await self._store.run(read, write=False))

    async def update_user(self, user_id: str, changes: _Changes) -> None:
        async def write(db: Any) -> None:
            if changes.role is not None:
                await db.execute("UPDATE users SET role = $1 WHERE id = $2", changes.role, user_id)
            if changes.disabled is not None:
                await db.execute(
                    "UPDATE users SET disabled = $1 WHERE id = $2", changes.disabled, user_id
                )
            if changes.password_hash is not None:
                await db.execute(
                    "UPDATE users SET password_hash = $1 WHERE id = $2",
                    changes.password_hash,
                    user_id,
                )
            if changes.role in TICKET_ROLES:
                row = await db.fetchrow(
                    "UPDATE users SET agent_id = coalesce(agent_id, username) WHERE id = $1 "
                    "RETURNING agent_id, username",
                    user_id,
                )
                if row is not None:
                    await db.execute(_PG_AGENT_ROW, *row, DEFAULT_CAPACITY, _now())

        await self._store.run(write, write=True)

    async def record_audit(
        self, at: datetime, actor: str, action: str, target: str | None, data: dict[str, Any]
    ) -> None:
        async def write(db: Any) -> None:
            await db.execute(
                "INSERT INTO audit (at, actor, action, target, data) VALUES ($1, $2, $3, $4, $5)",
                at,
                actor,
                action,
                target,
                data,
            )

        await self._store.run(write, write=True)

    async def audit_entries(self, target: str | None, limit: int) -> list[AuditEntry]:
        where, args = ("WHERE target = $1", (target, limit)) if target else ("", (limit,))

        async def read(db: Any) -> Any:
            return await db.fetch(
                f"SELECT seq, at, actor, action, target, data FROM audit {where} "
                f"ORDER BY seq DESC LIMIT ${len(args)}",
                *args,
            )

        rows = await self._store.run(read, write=False)
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


def _taken(username: str) -> Conflict:
    return Conflict("username_taken", f"there is already a user {username!r}", field="username")


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


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime) -> str:
    return at.isoformat()
