"""What ``promptly`` does with arguments, files and ports it cannot use: one ``promptly: …``
line on stderr and exit 2 (argparse's own usage error for a bad argument), never a
traceback, and nothing half-written or created on the way."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import pytest

from bot import cli
from bot.console.accounts import Accounts
from bot.store.sqlite import SQLiteStore

NOT_UTF8 = b"caf\xe9".decode("utf-8", "surrogateescape")  # how Python passes such bytes on


def config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "promptly.toml"
    path.write_text(
        f'[storage]\ndatabase = "{tmp_path / "p.db"}"\n[kb]\nenabled = false\n{extra}',
        encoding="utf-8",
    )
    return path


def promptly(conf: Path, *args: str) -> int:
    return cli.main(["--config", str(conf), *args])


def refused(capsys: pytest.CaptureFixture[str], conf: Path, *args: str) -> str:
    """The one line ``promptly`` gives for ``args``, which it refuses with exit 2."""
    assert promptly(conf, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("promptly: ") and err.count("\n") == 1, err
    return err


def usage_error(capsys: pytest.CaptureFixture[str], conf: Path, *args: str) -> str:
    with pytest.raises(SystemExit) as exited:
        promptly(conf, *args)
    assert exited.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


def test_a_config_that_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "config file" in refused(capsys, tmp_path, "check")


def test_kb_export_to_a_place_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = config(tmp_path)
    a_file = tmp_path / "taken.md"
    a_file.write_text("mine", encoding="utf-8")

    assert "is a folder" in refused(capsys, conf, "kb", "export", "--out", str(tmp_path))
    missing = tmp_path / "no" / "such" / "out.jsonl"
    assert "no folder" in refused(capsys, conf, "kb", "export", "--out", str(missing))
    markdown = ("kb", "export", "--format", "markdown", "--out")
    assert "is a file" in refused(capsys, conf, *markdown, str(a_file))
    under_a_file = a_file / "sub"
    assert f"cannot write {under_a_file}" in refused(capsys, conf, *markdown, str(under_a_file))
    assert a_file.read_text(encoding="utf-8") == "mine"


def test_report_to_a_place_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = config(tmp_path)
    a_file = tmp_path / "taken.txt"
    a_file.write_text("mine", encoding="utf-8")

    assert "is a file" in refused(capsys, conf, "report", "--out", str(a_file))
    assert f"cannot write the report to {a_file / 'sub'}" in refused(
        capsys, conf, "report", "--out", str(a_file / "sub")
    )
    assert a_file.read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize(
    "period",
    [
        ("--since", "99999999d"),
        ("--until", "99999999d"),
        ("--since", "7d", "--until", "9999-12-31T23:59:59-01:00"),
    ],
)
def test_report_times_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], period: tuple[str, ...]
) -> None:
    err = refused(capsys, config(tmp_path), "report", *period)
    assert f"{period[-1]!r} is out of range" in err


def test_kb_search_and_gaps_bound_their_numbers_and_refuse_bytes_that_are_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = config(tmp_path)
    huge = "99999999999999999999"
    assert "from 1 to 100" in usage_error(capsys, conf, "kb", "search", "delivery", "-k", huge)
    assert "from 1 to 100" in usage_error(capsys, conf, "kb", "search", "delivery", "-k", "0")
    assert "not valid UTF-8" in usage_error(capsys, conf, "kb", "search", NOT_UTF8)
    assert "from 1 to 3650" in usage_error(capsys, conf, "kb", "gaps", "--days", "99999999")


def test_emergency_reason_is_the_consoles_length_and_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = config(tmp_path)
    normal = ("emergency", "normal", "--reason")
    assert "at most 500 characters" in usage_error(capsys, conf, *normal, "x" * 501)
    assert "not valid UTF-8" in usage_error(capsys, conf, *normal, NOT_UTF8)
    assert not (tmp_path / "p.db").exists()  # refused before the database was opened
    assert promptly(conf, *normal, "y" * 500) == 0


async def signs_in(tmp_path: Path, username: str, password: str) -> bool:
    store = await SQLiteStore.open(tmp_path / "p.db")
    try:
        return await Accounts(store).verify(username, password) is not None
    finally:
        await store.close()


def test_users_add_reads_one_utf8_line_of_at_most_1024_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = config(tmp_path)
    add = ("users", "add", "ann", "--role", "agent")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{NOT_UTF8} long password\n"))
    assert "not valid UTF-8" in refused(capsys, conf, *add)
    monkeypatch.setattr("sys.stdin", io.StringIO("x" * 1025 + "\n"))
    assert "at most 1024 characters" in refused(capsys, conf, *add)

    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\r\n"))  # piped from Windows
    assert promptly(conf, *add) == 0
    assert asyncio.run(signs_in(tmp_path, "ann", "a long password"))


def test_gateway_on_a_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = config(tmp_path, f'[server]\nhost = "127.0.0.1"\nport = {port}\n')
        assert promptly(conf, "gateway") == 2
    err = capsys.readouterr().err
    assert f"promptly: port {port} is in use on 127.0.0.1" in err
    assert "Traceback" not in err


def test_db_upgrade_and_backup_create_nothing_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "unmounted" / "promptly.db"
    conf = tmp_path / "promptly.toml"
    conf.write_text(f'[storage]\ndatabase = "{missing}"\n', encoding="utf-8")
    assert "no database file there" in refused(capsys, conf, "db", "upgrade")
    assert not missing.parent.exists()

    conf = config(tmp_path)
    asyncio.run(_create(tmp_path / "p.db"))
    backup = tmp_path / "backups" / "b.db"
    assert "no folder" in refused(capsys, conf, "db", "backup", str(backup))
    assert not backup.parent.exists()
    backup.parent.mkdir()
    assert promptly(conf, "db", "backup", str(backup)) == 0 and backup.is_file()


async def _create(path: Path) -> None:
    await (await SQLiteStore.open(path)).close()
