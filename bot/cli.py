"""The ``promptly`` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.console.accounts import ROLES
from bot.customers import ImportSummary, import_customers
from bot.durations import parse_duration
from bot.errors import PromptlyError
from bot.settings import Settings, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promptly", description=__doc__)
    parser.add_argument("--config", type=Path, help="path to promptly.toml")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="train if needed, start Rasa and the gateway")
    commands.add_parser("gateway", help="start only the gateway (Rasa runs elsewhere)")
    train = commands.add_parser("train", help="train the Rasa model if its inputs changed")
    train.add_argument("--force", action="store_true")
    commands.add_parser("check", help="validate the configuration and exit")
    kb = commands.add_parser("kb", help="knowledge base tasks")
    kb_commands = kb.add_subparsers(dest="kb_command", required=True)
    kb_commands.add_parser("index", help="load the articles and build the vector index")
    customers = commands.add_parser("customers", help="customer records")
    customer_commands = customers.add_subparsers(dest="customers_command", required=True)
    importing = customer_commands.add_parser(
        "import", help="set tiers from a CSV: channel,external_id,tier[,name,email,language]"
    )
    importing.add_argument("csv", type=Path)
    users = commands.add_parser("users", help="console accounts")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    adding = user_commands.add_parser(
        "add", help="add a console user; the password is asked for, or read from stdin"
    )
    adding.add_argument("username")
    adding.add_argument(
        "--role",
        choices=ROLES,
        required=True,
        help="agent works tickets, editor keeps the knowledge base, lead works tickets and "
        "sees the dashboard, admin does everything and manages users",
    )
    user_commands.add_parser("list", help="list console users")
    report = commands.add_parser("report", help="response-time, SLA and CSAT statistics")
    report.add_argument("--since", default="7d", help="a duration back from now (7d) or a time")
    report.add_argument("--until", help="a duration back from now or a time; default now")
    report.add_argument("--format", choices=("text", "csv", "json"), default="text")
    report.add_argument("--out", type=Path, help="write the report into this folder")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # CPU-feature probing noise
    try:
        return _dispatch(args)
    except PromptlyError as e:
        print(f"promptly: {e}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.command == "check":
        print("configuration OK")
    elif args.command == "train":
        from bot.training import train

        print(train(settings, force=args.force))
    elif args.command == "customers":
        summary = asyncio.run(_import_customers(settings, args.csv))
        print(summary)
        return 1 if summary.rejected else 0
    elif args.command == "users":
        print(asyncio.run(_users(settings, args)))
    elif args.command == "report":
        print(asyncio.run(_report(settings, args)), end="")
    elif args.command == "kb":
        from bot.knowledge import load_knowledge_base_sync
        from knowledge_base import SentenceTransformerEmbedder

        kb = load_knowledge_base_sync(settings, SentenceTransformerEmbedder())
        print(f"knowledge base ready: {len(kb.articles)} articles")
    else:
        from bot.runner import serve
        from bot.training import train

        manage = args.command == "run" and settings.rasa.manage
        if manage:
            train(settings)
        asyncio.run(serve(settings, manage_rasa=manage))
    return 0


async def _import_customers(settings: Settings, path: Path) -> ImportSummary:
    from bot.store.sqlite import SQLiteStore

    store = await SQLiteStore.open(settings.path(settings.storage.database))
    try:
        return await import_customers(store, path)
    finally:
        await store.close()


async def _users(settings: Settings, args: argparse.Namespace) -> str:
    from bot.console.accounts import Accounts, Audit
    from bot.store.sqlite import SQLiteStore

    password = _new_password() if args.users_command == "add" else ""
    store = await SQLiteStore.open(settings.path(settings.storage.database))
    try:
        accounts = Accounts(store)
        if args.users_command == "list":
            users = await accounts.all()
            if not users:
                return "no users yet: promptly users add NAME --role admin"
            return "\n".join(
                "\t".join([u.username, u.role, *(["disabled"] if u.disabled else [])])
                for u in users
            )
        user = await accounts.add(args.username, password, args.role)
        await Audit(store).record("cli", "user.add", user.id, {"role": user.role})
        return f"added {user.role} {user.username}"
    finally:
        await store.close()


async def _report(settings: Settings, args: argparse.Namespace) -> str:
    from bot.analytics import report
    from bot.store.sqlite import SQLiteStore

    now = datetime.now(UTC)
    until = _moment(args.until, now) if args.until else now
    since = _moment(args.since, now)
    if since >= until:
        raise PromptlyError("--since must be before --until")
    options = report.options_for(settings, since, until)
    store = await SQLiteStore.open(settings.path(settings.storage.database))
    try:
        built = await report.build(store, options)
    finally:
        await store.close()
    if args.out is None:
        return report.render(built, args.format)
    return "".join(f"wrote {path}\n" for path in report.write(built, args.format, args.out))


def _moment(value: str, now: datetime) -> datetime:
    """A duration back from ``now`` ("7d", "12h") or an ISO time (UTC when no zone is given)."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PromptlyError(f"invalid time {value!r}: use a duration (7d) or an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _new_password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat it: "):
            raise PromptlyError("the two passwords differ")
        return password
    return sys.stdin.readline().rstrip("\n")


if __name__ == "__main__":
    sys.exit(main())
