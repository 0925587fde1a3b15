import asyncio
from pathlib import Path

from bot.cli import main
from bot.store.sqlite import SQLiteStore

CSV = """channel,external_id,tier,name,email,language
web,ann,enterprise,Ann,ann@example.com,en
telegram,42,business,,,de
web,bob,platinum,Bob,,
web,,consumer,,,
"""


def config(tmp_path: Path) -> Path:
    path = tmp_path / "promptly.toml"
    path.write_text(f'[storage]\ndatabase = "{tmp_path / "p.db"}"\n', encoding="utf-8")
    return path


async def tiers(tmp_path: Path) -> dict[tuple[str, str], tuple[str, str | None]]:
    store = await SQLiteStore.open(tmp_path / "p.db")
    try:
        found = {}
        for channel, external in (("web", "ann"), ("telegram", "42"), ("web", "bob")):
            customer_id = await store.customer_id_for(channel, external)
            customer = await store.customer(customer_id) if customer_id else None
            if customer is not None:
                found[(channel, external)] = (customer.tier, customer.language)
        return found
    finally:
        await store.close()


def test_import_sets_tiers_reports_bad_rows_by_line_and_is_idempotent(tmp_path, capsys):
    data = tmp_path / "customers.csv"
    data.write_text(CSV, encoding="utf-8")
    assert main(["--config", str(config(tmp_path)), "customers", "import", str(data)]) == 1
    out = capsys.readouterr().out
    assert "2 created, 0 updated, 2 rejected" in out
    assert "customers.csv:4: unknown tier 'platinum'" in out
    assert "customers.csv:5: empty external_id" in out
    assert asyncio.run(tiers(tmp_path)) == {
        ("web", "ann"): ("enterprise", "en"),
        ("telegram", "42"): ("business", "de"),
    }
    main(["--config", str(config(tmp_path)), "customers", "import", str(data)])
    assert "0 created, 2 updated, 2 rejected" in capsys.readouterr().out


def test_a_file_without_the_required_columns_is_refused(tmp_path, capsys):
    data = tmp_path / "bad.csv"
    data.write_text("id,level\n1,gold\n", encoding="utf-8")
    assert main(["--config", str(config(tmp_path)), "customers", "import", str(data)]) == 1
    assert "bad.csv:1: missing column(s) channel, external_id, tier" in capsys.readouterr().out


def test_rows_the_agent_api_would_refuse_are_rejected_by_line_and_the_rest_kept(tmp_path, capsys):
    huge = "x" * 200_000
    data = tmp_path / "customers.csv"
    data.write_text(
        "channel,external_id,tier,name,email,language\n"
        f"web,big,business,{huge},,\n"
        "fax,42,business,,,\n"
        f"web,long,business,{'n' * 201},,\n"
        f"web,mail,business,,{'e' * 321},\n"
        "web,lang,business,,,a-language-code-far-too-long\n"
        "web,nul\0,business,,,\n"
        'web,ann,enterprise,"Ann\nSmith",,en\n'
        "telegram,42,business,,,de\n",
        encoding="utf-8",
    )
    assert main(["--config", str(config(tmp_path)), "customers", "import", str(data)]) == 1
    out = capsys.readouterr().out
    assert "2 created, 0 updated, 6 rejected" in out
    for line, reason in (
        (2, "unreadable row: field larger than field limit (131072)"),
        (3, "unknown channel 'fax' (one of web, telegram, slack, whatsapp, messenger, twilio, "),
        (4, "name must be 1–200 characters"),
        (5, "email must be 1–320 characters"),
        (6, "language must be 2–16 characters"),
        (7, "a cell contains a NUL character"),
    ):
        assert f"customers.csv:{line}: {reason}" in out
    assert asyncio.run(tiers(tmp_path)) == {
        ("web", "ann"): ("enterprise", "en"),
        ("telegram", "42"): ("business", "de"),
    }
