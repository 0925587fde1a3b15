"""Help-centre articles and their Markdown-with-front-matter file format."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from knowledge_base.errors import ArticleError

logger = logging.getLogger(__name__)

Audience = Literal["customer", "internal"]
AUDIENCES: tuple[Audience, ...] = ("customer", "internal")
_KNOWN_KEYS = frozenset({"id", "title", "url", "tags", "questions", "audience", "language"})
# Ids end up in URLs (/kb/{id}) and in cache metadata, so keep them to a path-safe alphabet.
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# BCP-47-ish: a lowercase 2-3 letter language, then optional subtags ("en", "pt-BR", "zh-Hant").
LANGUAGE_PATTERN = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
DEFAULT_LANGUAGE = "en"
_DELIMITER = "---"


@dataclass(frozen=True)
class Article:
    """One help-centre article. ``body`` is Markdown without the front matter.

    ``internal`` articles are for agents only: customer-facing searches never return them.
    """

    id: str
    title: str
    body: str
    url: str | None
    tags: tuple[str, ...]
    questions: tuple[str, ...]
    audience: Audience = "customer"
    language: str = DEFAULT_LANGUAGE


def load_markdown_dir(path: Path) -> list[Article]:
    """Load every ``*.md`` file directly inside ``path``, sorted by article id.

    Raises ``ArticleError`` naming the file for the first bad file, a duplicate id, or when
    ``path`` is not a directory.
    """
    if not path.is_dir():
        raise ArticleError(path, "not a directory")
    by_id: dict[str, tuple[Article, Path]] = {}
    for file in sorted(path.glob("*.md")):
        article = load_markdown_file(file)
        if article.id in by_id:
            first = by_id[article.id][1]
            raise ArticleError(file, f"duplicate id {article.id!r} (also used by {first})")
        by_id[article.id] = (article, file)
    if not by_id:
        logger.warning("no *.md articles found in %s", path)
    return [by_id[key][0] for key in sorted(by_id)]


def load_markdown_file(path: Path) -> Article:
    """Parse one article file: YAML front matter between ``---`` lines, then Markdown."""
    return parse_markdown(path, read_text(path))


def read_text(path: Path) -> str:
    """A UTF-8 file's text (a byte-order mark dropped, newlines as ``\n``), or ``ArticleError``."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArticleError(path, f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise ArticleError(path, f"cannot read file ({exc.strerror or exc})") from exc


def parse_markdown(path: Path, text: str) -> Article:
    """``text`` as an article file; ``path`` names it in errors and gives the default id."""
    front, body = _split_front_matter(path, text)
    meta = _parse_yaml(path, front)
    unknown = sorted(set(meta) - _KNOWN_KEYS)
    if unknown:
        # Warn rather than fail: authors may add bookkeeping keys, but a typo such as
        # "question:" silently drops data, so it must at least be visible.
        logger.warning("%s: ignoring unknown front matter keys %s", path, ", ".join(unknown))
    return article_from_fields(path, meta, body, default_id=path.stem)


def article_from_fields(
    path: Path, meta: Mapping[str, object], body: str, *, default_id: str
) -> Article:
    """Check the fields of one article (front matter, or an imported record) and build it.

    Raises ``ArticleError`` naming ``path`` and the field at fault.
    """
    article_id = _optional_str(path, meta, "id") or default_id
    if not _ID_PATTERN.fullmatch(article_id):
        raise ArticleError(
            path, f"id {article_id!r} must use only letters, digits, '.', '_' and '-'"
        )
    title = tidy_title(_optional_str(path, meta, "title") or "")
    if not title:
        raise ArticleError(path, "front matter is missing a non-empty 'title'")
    if not body.strip():
        raise ArticleError(path, "article body is empty")
    return Article(
        id=article_id,
        title=title,
        body=tidy_body(body),
        url=_optional_str(path, meta, "url"),
        tags=tidy_items(_str_list(path, meta, "tags")),
        questions=tidy_items(_str_list(path, meta, "questions")),
        audience=_audience(path, meta),
        language=_language(path, meta),
    )


# The same tidying as the editor's (bot/console/article_content.py), so an article read from
# a file is the article the database holds after importing it: the index built from the
# folder (`promptly kb index`) is then the one the gateway finds current, not rebuilt.


def tidy_title(title: str) -> str:
    return " ".join(title.split())


def tidy_body(body: str) -> str:
    """Line ends as "\\n", no blank lines around the text, no trailing white space on a line
    but a Markdown hard line break (two or more spaces after text), kept as two spaces."""
    return "\n".join(map(_tidy_line, body.replace("\r\n", "\n").split("\n"))).strip("\n")


def _tidy_line(line: str) -> str:
    text = line.rstrip()
    return text + "  " if text and line.endswith("  ") else text


def tidy_items(values: Iterable[str]) -> tuple[str, ...]:
    """Whitespace collapsed, blanks dropped and repeats (case-insensitive) dropped, in order."""
    kept: dict[str, str] = {}
    for value in values:
        text = " ".join(value.split())
        if text:
            kept.setdefault(text.casefold(), text)
    return tuple(kept.values())


def to_fields(article: Article) -> dict[str, object]:
    """Every field of ``article`` as plain data: the JSONL export, and the front matter."""
    fields: dict[str, object] = {"id": article.id, "title": article.title}
    if article.url is not None:
        fields["url"] = article.url
    fields |= {
        "language": article.language,
        "audience": article.audience,
        "tags": list(article.tags),
        "questions": list(article.questions),
        "body": article.body,
    }
    return fields


def to_markdown(article: Article) -> str:
    """The article as a file ``parse_markdown`` reads back as the same article."""
    meta = {
        key: value for key, value in to_fields(article).items() if key != "body" and value != []
    }
    # No line folding: a long title stays on one line, easier to read and to diff.
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=1_000_000)
    return f"{_DELIMITER}\n{front}{_DELIMITER}\n{article.body}\n"


def _split_front_matter(path: Path, text: str) -> tuple[str, str]:
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != _DELIMITER:
        raise ArticleError(path, "file must start with a '---' front matter line")
    for number, line in enumerate(lines[1:], start=1):
        if line.rstrip() == _DELIMITER:
            return "\n".join(lines[1:number]), "\n".join(lines[number + 1 :])
    raise ArticleError(path, "front matter is not closed by a '---' line")


def _parse_yaml(path: Path, front: str) -> dict[str, object]:
    try:
        loaded: object = yaml.safe_load(front)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # +2: YAML counts from 0 and the opening '---' is line 1 of the file.
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ArticleError(path, f"invalid YAML front matter{where}: {problem}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ArticleError(path, "front matter must be a YAML mapping of keys to values")
    return {str(key): value for key, value in loaded.items()}


def _optional_str(path: Path, meta: Mapping[str, object], key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ArticleError(
            path, f"'{key}' must be a string, got {type(value).__name__} ({value!r})"
        )
    return value.strip() or None


def _audience(path: Path, meta: Mapping[str, object]) -> Audience:
    value = _optional_str(path, meta, "audience") or "customer"
    for audience in AUDIENCES:
        if value == audience:
            return audience
    raise ArticleError(path, f"'audience' must be 'customer' or 'internal', got {value!r}")


def _language(path: Path, meta: Mapping[str, object]) -> str:
    value = _optional_str(path, meta, "language") or DEFAULT_LANGUAGE
    if not LANGUAGE_PATTERN.fullmatch(value):
        raise ArticleError(
            path, f"'language' must be a language tag such as 'en' or 'pt-BR', got {value!r}"
        )
    return value


def _str_list(path: Path, meta: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = meta.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ArticleError(path, f"'{key}' must be a list of strings, got {type(value).__name__}")
    items: list[str] = []
    for position, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ArticleError(
                path, f"'{key}' item {position} must be a non-empty string, got {item!r}"
            )
        items.append(item.strip())
    return tuple(items)
