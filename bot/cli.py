"""The ``promptly`` command."""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.console.accounts import ROLES
from bot.customers import ImportSummary, import_customers
from bot.durations import parse_duration
from bot.errors import ConfigError, PromptlyError
from bot.settings import Settings, load_settings

if TYPE_CHECKING:
    from bot.console.accounts import Accounts, Audit
    from bot.console.articles import ArticleStore
    from bot.store.open import AnyStore
    from knowledge_base import Embedder
    from knowledge_base.articles import Article
    from knowledge_base.importers import Parsed

MAX_HITS = 100  # kb search -k
MAX_DAYS = 3650  # kb gaps --days: ten years
# The console's limits (bot/console/emergency.py, bot/console/access.py), so both ways agree.
MAX_REASON = 500
MAX_PASSWORD = 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promptly", description=__doc__)
    parser.add_argument("--config", type=Path, help="path to promptly.toml")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    running = commands.add_parser("run", help="train if needed, start Rasa and the gateway")
    gateway = commands.add_parser("gateway", help="start only the gateway (Rasa runs elsewhere)")
    for serving in (running, gateway):
        serving.add_argument(
            "--workers",
            type=_positive,
            default=1,
            help="gateway processes sharing the port (more than 1 needs [storage] "
            "database_url on PostgreSQL and [scale] redis_url; docs/deploy.md)",
        )
    # One of the `--workers` processes: binds the port with SO_REUSEPORT.
    gateway.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    train = commands.add_parser("train", help="train the Rasa model if its inputs changed")
    train.add_argument("--force", action="store_true")
    commands.add_parser("check", help="validate the configuration and exit")
    kb = commands.add_parser("kb", help="knowledge base tasks")
    kb_commands = kb.add_subparsers(dest="kb_command", required=True)
    kb_commands.add_parser("index", help="load the articles and build the vector index")
    _kb_parsers(kb_commands)
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
    passwd = user_commands.add_parser(
        "passwd", help="set a console user's password; asked for, or read from stdin"
    )
    passwd.add_argument("username")
    report = commands.add_parser("report", help="response-time, SLA and CSAT statistics")
    report.add_argument("--since", default="7d", help="a duration back from now (7d) or a time")
    report.add_argument("--until", help="a duration back from now or a time; default now")
    report.add_argument("--format", choices=("text", "csv", "json"), default="text")
    report.add_argument("--out", type=Path, help="write the report into this folder")
    db = commands.add_parser(
        "db",
        help="the database: status, upgrade, backup, restore (docs/deploy.md)",
        description="status: schema version and row counts. upgrade: run pending schema "
        "migrations (a start does too). backup PATH: a consistent copy while Promptly runs, "
        "checked before it is kept. restore PATH --yes: replace the database with a backup "
        "(stop Promptly first).",
    )
    db.add_argument("action", choices=("status", "upgrade", "backup", "restore"))
    db.add_argument("file", nargs="?", type=Path, help="the backup file (backup, restore)")
    db.add_argument("--force", action="store_true", help="backup: replace an existing file")
    db.add_argument("--yes", action="store_true", help="restore: yes, replace the database")
    emergency = commands.add_parser(
        "emergency",
        help="the leads' emergency switch: show it, or set a mode or pause a channel",
        description="normal | all-to-humans (every new message opens a ticket, the bot is "
        "bypassed) | bot-only (no live agents: handoffs promise the SLA deadline) | pause "
        "CHANNEL (messages are acked and wait) | resume CHANNEL | status. A running gateway "
        "picks the change up within a second; each change is logged with --reason.",
    )
    emergency.add_argument(
        "action", choices=("status", "normal", "all-to-humans", "bot-only", "pause", "resume")
    )
    emergency.add_argument("channel", nargs="?", help="for pause and resume: web, telegram, ...")
    emergency.add_argument(
        "--reason",
        type=_reason,
        default="",
        help=f"why, for the event log (at most {MAX_REASON} characters)",
    )
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
    except OSError as e:
        # A file the command reads or writes, refused by the system: which one, and why.
        where = f"{e.filename}: " if e.filename else ""
        print(f"promptly: {where}{e.strerror or e}", file=sys.stderr)
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
    elif args.command == "db":
        print(asyncio.run(_db(settings, args)))
    elif args.command == "emergency":
        print(asyncio.run(_emergency(settings, args)))
    elif args.command == "report":
        print(asyncio.run(_report(settings, args)), end="")
    elif args.command == "kb" and args.kb_command != "index":
        return asyncio.run(_kb(settings, args))
    elif args.command == "kb":
        from bot.knowledge import load_knowledge_base_sync
        from knowledge_base import SentenceTransformerEmbedder

        kb = load_knowledge_base_sync(settings, SentenceTransformerEmbedder())
        print(f"knowledge base ready: {len(kb.articles)} articles")
    else:
        from bot.runner import serve, workers_refusal
        from bot.training import train

        refusal = workers_refusal(settings, args.workers)
        if refusal is not None:  # before training: that takes minutes
            raise ConfigError(refusal)
        manage = args.command == "run" and settings.rasa.manage
        if manage:
            train(settings)
        try:
            asyncio.run(
                serve(
                    settings,
                    manage_rasa=manage,
                    workers=args.workers,
                    config=args.config,
                    reuse_port=args.reuse_port if args.command == "gateway" else False,
                )
            )
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            server = settings.server
            raise PromptlyError(
                f"port {server.port} is in use on {server.host}: stop what listens there, "
                "or set another [server] port"
            ) from e
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {low} to {high}, not {text!r}"
            )
        return value

    return whole


def _utf8(text: str) -> str:
    """An argparse type: text as typed, refused when its bytes were not UTF-8 (Python keeps
    such bytes as lone surrogates, which no tokenizer, database or log line accepts)."""
    if not _is_utf8(text):
        raise argparse.ArgumentTypeError(f"not valid UTF-8: {text!r}")
    return text


def _reason(text: str) -> str:
    if len(text) > MAX_REASON:
        raise argparse.ArgumentTypeError(f"at most {MAX_REASON} characters, not {len(text)}")
    return _utf8(text)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- kb import / export / reindex / search ---------------------------------------------------

_KB_IMPORT_HELP = """\
Import articles from PATH: a Markdown file or a folder of them (front matter as in
kb/articles), a CSV file (header row with question and answer, optionally title, tags
split on ';' or ',', language, audience, id; the id defaults to a slug of the title or
question), a JSONL file of {"id", "title", "body", "questions"?} objects, or HTML files
(title from <title> or <h1>, the body sanitised and turned into Markdown). A folder is
read non-recursively, each file by its suffix.

New articles are published; a changed one becomes a new published version by "import";
an unchanged one is left alone. An article changed in the console since its last import
(or created there) is not overwritten: it is reported as a conflict (--overwrite to
publish the file's version anyway).

Exit status: 0 when everything was imported or unchanged; 1 when any file, row or
article was rejected (each is listed with its file and line; the rest is imported);
2 when PATH is missing or nothing in it could be read."""


def _kb_parsers(kb_commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    importing = kb_commands.add_parser(
        "import",
        help="import articles from Markdown, CSV, JSONL or HTML (exit 1 if any is rejected)",
        description=_KB_IMPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    importing.add_argument("path", type=Path, help="a file, or a folder of files")
    importing.add_argument(
        "--overwrite",
        action="store_true",
        help="publish changed articles even over edits made in the console",
    )
    exporting = kb_commands.add_parser(
        "export",
        help="write the published articles (customer and internal) as JSONL or Markdown",
        description="Write every published article, with all its fields. JSONL goes to "
        "stdout unless --out names a file; Markdown needs --out, a folder that gets one "
        "<id>.md per article, which `promptly kb import` reads back as the same articles.",
    )
    exporting.add_argument("--out", type=Path, help="a file (jsonl) or a folder (markdown)")
    exporting.add_argument("--format", choices=("jsonl", "markdown"), default="jsonl")
    kb_commands.add_parser(
        "reindex",
        help="rebuild the vector index from the database's published articles and save it "
        "to kb.index_dir",
    )
    searching = kb_commands.add_parser(
        "search", help="search the published articles as the bot would; print each hit"
    )
    searching.add_argument("question", type=_utf8)
    searching.add_argument(
        "-k",
        type=_between(1, MAX_HITS),
        default=5,
        help=f"hits to show, 1 to {MAX_HITS} (default 5)",
    )
    searching.add_argument(
        "--internal", action="store_true", help="include agents-only articles, as agents see"
    )
    gaps = kb_commands.add_parser(
        "gaps",
        help="what to write next: questions the bot declined or was unsure of, grouped",
        description="Customers' questions the bot declined or only offered choices for, "
        "grouped by meaning, largest group first, with three examples and the nearest "
        "existing article (docs/kb.md).",
    )
    gaps.add_argument(
        "--days",
        type=_between(1, MAX_DAYS),
        default=30,
        help=f"the period, up to now: 1 to {MAX_DAYS} (default 30)",
    )
    gaps.add_argument("--min-count", type=_positive, default=1, help="smallest group shown")
    gaps.add_argument("--limit", type=_positive, default=20, help="groups shown (default 20)")
    gaps.add_argument("--json", action="store_true", help="the report as JSON")


def _embedder(settings: Settings) -> Embedder:
    """The configured model, in-process (tests replace this with the hashing embedder)."""
    from bot.knowledge import local_embedder

    return local_embedder(settings)


async def _kb(settings: Settings, args: argparse.Namespace) -> int:
    from bot.console.articles import ArticleStore
    from bot.store.open import open_store

    parsed: Parsed | None = None
    if args.kb_command == "import":
        # Read before opening the database: a missing PATH should not create one.
        parsed = _read_import(args.path)
        if parsed.files_read == 0:
            for problem in parsed.problems:
                print(f"promptly: {problem}", file=sys.stderr)
            print(f"promptly: nothing could be read from {args.path}", file=sys.stderr)
            return 2
    if args.kb_command == "export":
        _check_export_out(args.format, args.out)
    store = await open_store(settings)
    try:
        articles = ArticleStore(store)
        if parsed is not None:
            return await _kb_import(store, articles, parsed, args)
        if args.kb_command == "export":
            return _kb_export(await articles.published(), args)
        if args.kb_command == "gaps":
            return await _kb_gaps(settings, store, await articles.published(), args)
        return await _kb_index(settings, await articles.published(), args)
    finally:
        await store.close()


def _read_import(path: Path) -> Parsed:
    from tqdm import tqdm

    from knowledge_base.errors import ArticleError
    from knowledge_base.importers import files_to_import, parse_path

    try:
        total = len(files_to_import(path))
    except ArticleError as exc:
        raise PromptlyError(str(exc)) from None
    with tqdm(total=total, desc="reading", unit="file", **_bar()) as bar:
        return parse_path(path, on_file=lambda _: bar.update())


async def _kb_import(
    store: AnyStore, articles: ArticleStore, parsed: Parsed, args: argparse.Namespace
) -> int:
    from tqdm import tqdm

    from bot.console.accounts import Audit

    with tqdm(total=len(parsed.records), desc="importing", unit="article", **_bar()) as bar:
        report = await articles.import_records(
            parsed.records, overwrite=args.overwrite, progress=bar.update
        )
    audit = Audit(store)
    for outcome, ids in (("added", report.added), ("updated", report.updated)):
        for article_id in ids:
            data = {"outcome": outcome, "source": str(args.path)}
            await audit.record("cli", "article.import", article_id, data)
    rejected = parsed.problems + report.rejected
    print(
        f"added {len(report.added)}, updated {len(report.updated)}, "
        f"unchanged {report.unchanged}, rejected {len(rejected)}"
    )
    for label, ids in (("added", report.added), ("updated", report.updated)):
        if ids and args.verbose:
            print(f"{label}: {', '.join(ids)}")
    for item in rejected:
        print(f"rejected {item}")
    return 1 if rejected else 0


def _check_export_out(fmt: str, out: Path | None) -> None:
    """Refuse an --out that cannot take the export, before the database is opened."""
    if fmt == "markdown" and out is None:
        raise PromptlyError("--format markdown needs --out FOLDER")
    if out is None:
        return
    if fmt == "markdown" and out.exists() and not out.is_dir():
        raise PromptlyError(f"--out {out} is a file; --format markdown writes into a folder")
    if fmt == "jsonl" and out.is_dir():
        raise PromptlyError(f"--out {out} is a folder; --format jsonl writes one file")
    if fmt == "jsonl" and not out.parent.is_dir():
        raise PromptlyError(f"--out {out}: no folder {out.parent}")


def _kb_export(published: Sequence[Article], args: argparse.Namespace) -> int:
    try:
        _write_export(published, args.format, args.out)
    except OSError as e:
        raise PromptlyError(f"cannot write {e.filename or args.out}: {e.strerror or e}") from e
    print(f"exported {len(published)} articles to {args.out or 'stdout'}", file=sys.stderr)
    return 0


def _write_export(published: Sequence[Article], fmt: str, out: Path | None) -> None:
    import json

    from knowledge_base.articles import to_fields, to_markdown

    if fmt == "markdown":
        assert out is not None  # _check_export_out
        out.mkdir(parents=True, exist_ok=True)
        for article in published:
            (out / f"{article.id}.md").write_text(to_markdown(article), encoding="utf-8")
        return
    lines = "".join(
        json.dumps(to_fields(article), ensure_ascii=False) + "\n" for article in published
    )
    if out is None:
        sys.stdout.write(lines)
    else:
        out.write_text(lines, encoding="utf-8")


async def _kb_index(
    settings: Settings, published: Sequence[Article], args: argparse.Namespace
) -> int:
    from knowledge_base import KnowledgeBase

    if not published:
        print("no published articles yet: promptly kb import PATH", file=sys.stderr)
    index_dir = settings.path(settings.kb.index_dir)
    embedder = _embedder(settings)
    if args.kb_command == "reindex":
        started = time.perf_counter()
        kb = await asyncio.to_thread(KnowledgeBase.build, published, embedder)
        await asyncio.to_thread(kb.save, index_dir)
        seconds = time.perf_counter() - started
        print(f"indexed {len(published)} articles into {index_dir} in {seconds:.1f} s")
        return 0
    # Reuses the saved index when it matches the articles (else builds and saves one).
    kb = await asyncio.to_thread(KnowledgeBase.load, index_dir, embedder, published)
    hits = kb.search(args.question, args.k, include_internal=args.internal)
    if not hits:
        print("no hits")
    for hit in hits:
        print(f"{hit.score:.3f}  {hit.title}  {hit.citation.url}")
        print(f"       {_trimmed(hit.passage)}")
    return 0


async def _kb_gaps(
    settings: Settings, store: AnyStore, published: Sequence[Article], args: argparse.Namespace
) -> int:
    import json
    from datetime import timedelta

    from bot.kb_api import gap_report
    from knowledge_base import KnowledgeBase, LiveKnowledgeBase

    index_dir = settings.path(settings.kb.index_dir)
    embedder = _embedder(settings)
    kb = await asyncio.to_thread(KnowledgeBase.load, index_dir, embedder, published)
    until = datetime.now(UTC)
    report = await gap_report(
        store,
        LiveKnowledgeBase(kb),
        until - timedelta(days=args.days),
        until,
        limit=args.limit,
        min_count=args.min_count,
    )
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    print(
        f"{report['questions']} unanswered or low-confidence questions in the last "
        f"{args.days} days"
        + (f" ({report['left_out']} asked too rarely to group)" if report["left_out"] else "")
    )
    if not report["gaps"]:
        print("no gaps: nothing to group")
    for number, gap in enumerate(report["gaps"], start=1):
        print(
            f"\n{number}. {gap['count']} questions "
            f"({gap['unanswered']} declined, {gap['low_confidence']} offered choices)"
        )
        for example in gap["examples"]:
            print(f"     “{_trimmed(example, 100)}”")
        nearest = gap["nearest"]
        if nearest is not None:
            print(f"   nearest: {nearest['title']} ({nearest['score']:.2f}) {nearest['url']}")
    return 0


def _trimmed(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _bar() -> dict[str, Any]:
    # On stderr so stdout stays the summary; drawn only for a person watching a terminal.
    return {"file": sys.stderr, "disable": not sys.stderr.isatty(), "leave": False}


async def _import_customers(settings: Settings, path: Path) -> ImportSummary:
    from bot.store.open import open_store

    store = await open_store(settings)
    try:
        return await import_customers(store, path)
    finally:
        await store.close()


async def _users(settings: Settings, args: argparse.Namespace) -> str:
    from bot.console.accounts import Accounts, Audit
    from bot.store.open import open_store

    password = _new_password() if args.users_command in ("add", "passwd") else ""
    store = await open_store(settings)
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
        if args.users_command == "passwd":
            return await _set_password(accounts, Audit(store), args.username, password)
        user = await accounts.add(args.username, password, args.role)
        await Audit(store).record("cli", "user.add", user.id, {"role": user.role})
        return f"added {user.role} {user.username}"
    finally:
        await store.close()


async def _set_password(accounts: Accounts, audit: Audit, username: str, password: str) -> str:
    user = next((u for u in await accounts.all() if u.username == username), None)
    if user is None:
        raise PromptlyError(f"no console user {username!r}: promptly users list")
    await accounts.update(user.id, password=password)
    await audit.record("cli", "user.update", user.id, {"password": "changed"})
    return f"changed the password of {user.username}"


async def _db(settings: Settings, args: argparse.Namespace) -> str:
    from bot.store import maintenance
    from bot.store.sqlite import SQLiteStore

    if (args.file is not None) != (args.action in ("backup", "restore")):
        raise PromptlyError(
            f"{args.action} needs a FILE" if args.file is None else f"{args.action} takes no FILE"
        )
    url = settings.storage.database_dsn()
    if url is not None:
        return await _pg_db(url, args)
    path = settings.path(settings.storage.database)
    if args.action == "backup":
        if args.file.is_dir():
            raise PromptlyError(f"{args.file} is a folder: name the backup file in it")
        if not args.file.parent.is_dir():  # a typo, or a backup volume that is not mounted
            raise PromptlyError(f"{args.file}: no folder {args.file.parent}; create it first")
        copy = await asyncio.to_thread(maintenance.backup, path, args.file, overwrite=args.force)
        return f"backed up to {copy.describe()}"
    if args.action == "restore":
        if not args.yes:
            raise PromptlyError(f"restore replaces {path}: stop Promptly, then add --yes")
        restored = await asyncio.to_thread(maintenance.restore, args.file, path)
        if restored.schema_version < restored.code_version:
            await (await SQLiteStore.open(path)).close()  # bring it up to this code's schema
        now = await asyncio.to_thread(maintenance.status, path)
        return f"restored {args.file} into {now.describe()}"
    if args.action == "upgrade":
        # status first: it refuses a missing file (a mistyped path or an unmounted volume
        # must not become a new, empty database; the first start creates one), or garbage.
        before = (await asyncio.to_thread(maintenance.status, path)).schema_version
        await (await SQLiteStore.open(path)).close()
        after = await asyncio.to_thread(maintenance.status, path)
        return f"upgraded schema version {before} to {after.schema_version}\n{after.describe()}"
    return (await asyncio.to_thread(maintenance.status, path)).describe()


async def _pg_db(url: str, args: argparse.Namespace) -> str:
    """``promptly db`` on PostgreSQL (``storage.database_url``): status and upgrade here;
    backups are PostgreSQL's own tools (docs/deploy.md)."""
    from bot.store import pg_maintenance
    from bot.store.postgres import redacted

    if args.action in ("backup", "restore"):
        tool = (
            f"pg_dump --format=custom --file={args.file} <database URL>"
            if args.action == "backup"
            else f"pg_restore --clean --if-exists --single-transaction --dbname=<database URL> "
            f"{args.file} (with Promptly stopped), then `promptly db upgrade`"
        )
        raise PromptlyError(
            f"db {args.action} copies the SQLite file only; {redacted(url)} is PostgreSQL: "
            f"use {tool} (docs/deploy.md, Backups)"
        )
    if args.action == "upgrade":
        before, after = await pg_maintenance.upgrade(url)
        was = "a new database" if before is None else f"schema version {before}"
        return f"upgraded {was} to {after.schema_version}\n{after.describe()}"
    return (await pg_maintenance.status(url)).describe()


async def _emergency(settings: Settings, args: argparse.Namespace) -> str:
    from bot.channels.registry import platform_settings
    from bot.emergency import EmergencySwitch, mode_named
    from bot.store.open import open_store

    needs_channel = args.action in ("pause", "resume")
    if needs_channel != (args.channel is not None):
        raise PromptlyError(
            "pause and resume need a CHANNEL"
            if needs_channel
            else f"{args.action} takes no CHANNEL"
        )
    store = await open_store(settings)
    try:
        switch = EmergencySwitch(
            store, lambda: datetime.now(UTC), {"web", *platform_settings(settings)}
        )
        await switch.load()
        if args.action == "pause":
            await switch.pause(args.channel, "cli", args.reason)
        elif args.action == "resume":
            await switch.resume(args.channel, "cli", args.reason)
        elif args.action != "status":
            await switch.set_mode(mode_named(args.action), "cli", args.reason)
        state = switch.current
    finally:
        await store.close()
    paused = ", ".join(sorted(state.paused)) or "none"
    line = f"mode: {state.mode.value}; paused channels: {paused}"
    if state.at is not None:
        line += f"\nlast change by {state.by} at {state.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        line += f": {state.reason}" if state.reason else ""
    return line


async def _report(settings: Settings, args: argparse.Namespace) -> str:
    from bot.analytics import report
    from bot.store.open import open_store

    now = datetime.now(UTC)
    until = _moment(args.until, now) if args.until else now
    since = _moment(args.since, now)
    if since >= until:
        raise PromptlyError("--since must be before --until")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise PromptlyError(f"--out {args.out} is a file; the report is written into a folder")
    options = report.options_for(settings, since, until)
    store = await open_store(settings)
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
    except OverflowError:
        raise PromptlyError(f"{value!r} is out of range: before the year 1") from None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PromptlyError(f"invalid time {value!r}: use a duration (7d) or an ISO time") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)  # the database compares times in UTC
    except OverflowError:
        raise PromptlyError(f"{value!r} is out of range in UTC") from None
    return moment


def _new_password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat it: "):
            raise PromptlyError("the two passwords differ")
    else:
        password = _piped_password()
    # Bytes that are not UTF-8 arrive as lone surrogates when the terminal or stdin decodes
    # leniently; the password hash would fail on them.
    if not _is_utf8(password):
        raise PromptlyError("the password is not valid UTF-8")
    if len(password) > MAX_PASSWORD:
        raise PromptlyError(f"a password has at most {MAX_PASSWORD} characters")
    return password


def _piped_password() -> str:
    try:
        line = sys.stdin.readline()
    except UnicodeDecodeError:
        raise PromptlyError("the password is not valid UTF-8") from None
    return line.rstrip("\r\n")  # a CRLF line (a Windows pipe) is the same password


if __name__ == "__main__":
    sys.exit(main())
