from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bot.console.article_content import make_content
from knowledge_base import Article, ArticleError, KnowledgeBaseError, load_markdown_dir
from knowledge_base.articles import load_markdown_file, parse_markdown, to_markdown

SHIPPING = """\
---
id: shipping-times
title: How long does shipping take?
url: https://shop.example/help/shipping
tags: [shipping, delivery]
questions:
  - When will my order arrive?
  - How long is delivery?
---
Orders ship within two business days.

## Domestic
Three to five days.
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_all_front_matter_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "shipping.md", SHIPPING)

    article = load_markdown_file(path)

    assert article == Article(
        id="shipping-times",
        title="How long does shipping take?",
        body="Orders ship within two business days.\n\n## Domestic\nThree to five days.",
        url="https://shop.example/help/shipping",
        tags=("shipping", "delivery"),
        questions=("When will my order arrive?", "How long is delivery?"),
    )


def test_language_defaults_to_english_and_round_trips_through_to_markdown(
    tmp_path: Path,
) -> None:
    assert load_markdown_file(write(tmp_path, "shipping.md", SHIPPING)).language == "en"
    path = write(tmp_path, "versand.md", "---\ntitle: Versand\nlanguage: pt-BR\n---\nDrei.\n")

    article = load_markdown_file(path)

    assert article.language == "pt-BR"
    assert parse_markdown(path, to_markdown(article)) == article


def test_id_defaults_to_file_stem_and_optional_fields_are_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "returns.md", "---\ntitle: Returns\n---\nThirty days.\n")

    article = load_markdown_file(path)

    assert (article.id, article.url, article.tags, article.questions) == ("returns", None, (), ())


def test_directory_is_sorted_by_id_and_ignores_other_files(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "---\nid: zebra\ntitle: Z\n---\nz\n")
    write(tmp_path, "b.md", "---\nid: apple\ntitle: A\n---\na\n")
    write(tmp_path, "notes.txt", "not an article")

    assert [article.id for article in load_markdown_dir(tmp_path)] == ["apple", "zebra"]


def test_windows_line_endings_and_bom_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "crlf.md"
    path.write_bytes(b"\xef\xbb\xbf---\r\ntitle: Windows\r\n---\r\nBody line.\r\n")

    article = load_markdown_file(path)

    assert (article.title, article.body) == ("Windows", "Body line.")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("---\ntags: [a]\n---\nBody\n", "missing a non-empty 'title'"),
        ("---\ntitle: '  '\n---\nBody\n", "missing a non-empty 'title'"),
        ("---\ntitle: [unclosed\n---\nBody\n", "invalid YAML front matter at line"),
        ("---\n- just\n- a list\n---\nBody\n", "must be a YAML mapping"),
        ("title: No delimiters\n\nBody\n", "must start with a '---'"),
        ("---\ntitle: Never closed\nBody\n", "not closed by a '---' line"),
        ("---\ntitle: T\nquestions: one question\n---\nBody\n", "'questions' must be a list"),
        ("---\ntitle: T\ntags: [ok, 3]\n---\nBody\n", "'tags' item 1 must be a non-empty string"),
        ("---\ntitle: T\nid: has space\n---\nBody\n", "id 'has space' must use only"),
        ("---\ntitle: T\nurl: 42\n---\nBody\n", "'url' must be a string"),
        ("---\ntitle: T\n---\n\n  \n", "body is empty"),
        ("---\ntitle: T\nlanguage: English\n---\nBody\n", "'language' must be a language tag"),
    ],
)
def test_bad_files_raise_an_error_naming_file_and_problem(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = write(tmp_path, "broken-article.md", text)

    with pytest.raises(ArticleError) as caught:
        load_markdown_dir(tmp_path)

    assert caught.value.path == path
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{path}: ")
    assert isinstance(caught.value, KnowledgeBaseError)


def test_invalid_yaml_reports_the_file_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.md", "---\ntitle: ok\ntags: [a, b\n---\nBody\n")

    with pytest.raises(ArticleError, match=r"bad\.md: invalid YAML front matter at line \d"):
        load_markdown_file(path)


def test_non_utf8_file_is_an_article_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.md"
    path.write_bytes("---\ntitle: Café\n---\nBody\n".encode("latin-1"))

    with pytest.raises(ArticleError, match="not valid UTF-8"):
        load_markdown_file(path)


def test_duplicate_ids_name_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.md", "---\nid: same\ntitle: One\n---\nx\n")
    second = write(tmp_path, "b.md", "---\nid: same\ntitle: Two\n---\ny\n")

    with pytest.raises(ArticleError) as caught:
        load_markdown_dir(tmp_path)

    assert caught.value.path == second
    assert "duplicate id 'same'" in caught.value.reason
    assert str(first) in caught.value.reason


def test_missing_directory_is_an_article_error(tmp_path: Path) -> None:
    with pytest.raises(ArticleError, match="not a directory"):
        load_markdown_dir(tmp_path / "nope")


def test_unknown_keys_are_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "typo.md", "---\ntitle: T\nquestion: [oops]\n---\nBody\n")

    with caplog.at_level(logging.WARNING, logger="knowledge_base.articles"):
        article = load_markdown_file(path)

    assert article.questions == ()
    assert "typo.md: ignoring unknown front matter keys question" in caplog.text


_TEXT = st.text(alphabet=st.sampled_from("aB é\t"), max_size=12)
_FILLED = _TEXT.filter(lambda text: text.strip() != "")


@given(
    title=_FILLED,
    questions=st.lists(_FILLED, max_size=5),
    lines=st.lists(_TEXT, min_size=1, max_size=5).filter(lambda ls: "".join(ls).strip() != ""),
    crlf=st.booleans(),
)
def test_a_file_reads_as_the_article_the_editor_stores(title, questions, lines, crlf):
    # Same text either way, so the index built from the folder is the one the gateway loads.
    body = ("\r\n" if crlf else "\n").join(lines)
    front = yaml.safe_dump({"title": title, "questions": questions}, allow_unicode=True)
    article = parse_markdown(Path("a.md"), f"---\n{front}---\n{body}\n")
    content = make_content(title=title, body=body, questions=questions)
    assert (article.title, article.body, article.questions) == (
        content.title,
        content.body,
        content.questions,
    )


def test_tidying_keeps_a_markdown_hard_line_break():
    body = "Write to us at:  \nAcme Ltd\t \n1 High Street   \n"
    article = parse_markdown(Path("a.md"), f"---\ntitle: Address\n---\n{body}")
    assert article.body == "Write to us at:  \nAcme Ltd\n1 High Street  "
    assert make_content(title="Address", body=body).body == article.body
