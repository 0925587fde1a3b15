"""Read articles to import from Markdown, CSV, JSONL or HTML files; no database here.

Every format ends in the same :class:`Record` (where it came from, and the checked
:class:`Article`) or :class:`Problem` (where, and why it was skipped). A bad file or row never
stops the others: the caller stores what could be read and reports the rest.

- Markdown (``.md``, ``.markdown``): front matter and body, as in the articles folder.
- CSV (``.csv``): a header row naming ``question`` and ``answer``, optionally ``title``,
  ``tags`` (split on ``;`` or ``,``), ``language``, ``audience`` and ``id``; the id defaults to
  a slug of the title, else of the question.
- JSONL (``.jsonl``): one ``{"id", "title", "body", "questions"?}`` object per line (the eval
  sets' format), optionally ``tags``, ``language``, ``audience``, ``url``.
- HTML (``.html``, ``.htm``): title from ``<title>``, else the first ``<h1>``; the body is
  sanitised with nh3 (scripts, styles and event handlers dropped) and then written as Markdown.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import nh3

from knowledge_base.articles import Article, article_from_fields, parse_markdown, read_text
from knowledge_base.errors import ArticleError

if TYPE_CHECKING:
    from _csv import Reader as _CSVReader

MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUFFIXES = MARKDOWN_SUFFIXES | HTML_SUFFIXES | {".csv", ".jsonl"}
_ID_LIMIT = 80  # article ids are at most 100 characters; leave room for a suffix
_TAG_SEPARATORS = re.compile(r"[;,]")


@dataclass(frozen=True)
class Location:
    """A file, and the line in it for formats with one record per row or line."""

    path: Path
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else str(self.path)


@dataclass(frozen=True)
class Record:
    location: Location
    article: Article


@dataclass(frozen=True)
class Problem:
    location: Location
    reason: str

    @property
    def source(self) -> str:
        """Where, as text: the file, and the line when there is one."""
        return str(self.location)

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class Parsed:
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files_read: int = 0  # files whose text could be read at all (valid or not)


def files_to_import(path: Path, suffixes: Iterable[str] = SUFFIXES) -> list[Path]:
    """``path`` itself, or the files with a known suffix directly inside the folder, sorted.

    Raises ``ArticleError`` when ``path`` does not exist or is a file of an unknown kind.
    """
    allowed = frozenset(suffixes)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in allowed)
    if not path.exists():
        raise ArticleError(path, "no such file or folder")
    if path.suffix.lower() not in allowed:
        raise ArticleError(
            path, f"unknown kind of file; expected one of {', '.join(sorted(allowed))}"
        )
    return [path]


def parse_path(
    path: Path,
    *,
    suffixes: Iterable[str] = SUFFIXES,
    on_file: Callable[[Path], None] | None = None,
) -> Parsed:
    """Every record in ``path`` (a file or a folder of them); ``on_file`` after each file.

    An id seen twice keeps its first record; the later one is a problem naming the first.
    """
    parsed = Parsed()
    for file in files_to_import(path, suffixes):
        parse_file(file, parsed)
        if on_file is not None:
            on_file(file)
    parsed.records = _first_of_each_id(parsed.records, parsed.problems)
    return parsed


def parse_markdown_dir(path: Path) -> Parsed:
    """The articles folder the gateway imports at start: its Markdown files only."""
    if not path.is_dir():
        raise ArticleError(path, "not a directory")
    return parse_path(path, suffixes=MARKDOWN_SUFFIXES)


def parse_file(path: Path, into: Parsed) -> None:
    """Add ``path``'s records and problems to ``into``."""
    try:
        text = read_text(path)
    except ArticleError as exc:
        into.problems.append(Problem(Location(path), exc.reason))
        return
    into.files_read += 1
    suffix = path.suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        _add(into, Location(path), lambda: parse_markdown(path, text))
    elif suffix in HTML_SUFFIXES:
        _add(into, Location(path), lambda: parse_html(path, text))
    elif suffix == ".csv":
        _parse_csv(path, text, into)
    else:
        _parse_jsonl(path, text, into)


def slug(text: str) -> str:
    """A path-safe id from a title or question ("Where's my order?" → "where-s-my-order").

    Text with no ASCII letters or digits at all gets a stable hash-based id instead.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    made = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:_ID_LIMIT].rstrip("-")
    return made or "article-" + hashlib.sha256(text.encode()).hexdigest()[:12]


# -- formats ---------------------------------------------------------------------------------


def _add(into: Parsed, location: Location, build: Callable[[], Article]) -> None:
    try:
        article = build()
    except ArticleError as exc:
        into.problems.append(Problem(location, exc.reason))
        return
    unstorable = _unstorable(article)
    if unstorable is not None:
        into.problems.append(Problem(location, unstorable))
    else:
        into.records.append(Record(location, article))


# A NUL, or half of a UTF-16 pair ("\ud800" from a JSON or YAML escape): no database text
# column or UTF-8 file can hold either.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable(article: Article) -> str | None:
    """Why ``article`` cannot be stored as text, naming the field; None when it can."""
    fields: dict[str, Iterable[str | None]] = {
        "id": [article.id],
        "title": [article.title],
        "body": [article.body],
        "url": [article.url],
        "tags": article.tags,
        "questions": article.questions,
        "language": [article.language],
        "audience": [article.audience],
    }
    for name, texts in fields.items():
        for text in texts:
            reason = _bad_character(text or "")
            if reason is not None:
                return f"'{name}' contains {reason}"
    return None


def _bad_character(text: str) -> str | None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found[0] == "\x00":
        return "a NUL character"
    return f"a lone surrogate (U+{ord(found[0]):04X}), which is not valid Unicode"


def _parse_csv(path: Path, text: str, into: Parsed) -> None:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [name.strip().lower() for name in next(reader, [])]
    except csv.Error as exc:
        into.problems.append(Problem(Location(path, 1), f"unreadable CSV header: {exc}"))
        return
    missing = [name for name in ("question", "answer") if name not in header]
    if missing:
        found = ", ".join(name for name in header if name) or "nothing"
        into.problems.append(
            Problem(
                Location(path, 1),
                f"the header row must name the columns question and answer "
                f"(missing {', '.join(missing)}; found {found})",
            )
        )
        return
    for line, row in csv_rows(reader):
        location = Location(path, line)
        if isinstance(row, csv.Error):
            into.problems.append(Problem(location, f"unreadable CSV row: {row}"))
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            into.problems.append(
                Problem(location, f"{len(row)} cells but the header names {len(header)}")
            )
            continue
        cells = {name: cell.strip() for name, cell in zip(header, row, strict=False)}
        _add(into, location, functools.partial(_csv_article, path, cells))


def csv_rows(reader: _CSVReader) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """Each row with the line it starts on (a quoted cell may span lines). A row the reader
    refuses (a cell over the csv module's size limit) is its error, and reading goes on at
    the next line, so one bad row never hides the rows after it."""
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row: list[str] | csv.Error = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row = exc
        if reader.line_num == end:  # nothing read: the reader cannot go on
            return
        end = reader.line_num
        yield start, row


def _csv_article(path: Path, cells: dict[str, str]) -> Article:
    question, answer = cells.get("question", ""), cells.get("answer", "")
    if not question:
        raise ArticleError(path, "missing question")
    if not answer:
        raise ArticleError(path, "missing answer")
    title = cells.get("title") or question
    meta: dict[str, object] = {
        "title": title,
        "questions": [question] if question != title else [],
        "tags": _split_tags(cells.get("tags", "")),
    }
    for name in ("id", "language", "audience"):
        if cells.get(name):
            meta[name] = cells[name]
    return article_from_fields(path, meta, answer, default_id=slug(title))


def _parse_jsonl(path: Path, text: str, into: Parsed) -> None:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        location = Location(path, number)
        try:
            item: object = _json_value(line)
        except ValueError as exc:
            into.problems.append(Problem(location, str(exc)))
            continue
        if not isinstance(item, dict):
            into.problems.append(
                Problem(location, f"each line must be a JSON object, got {type(item).__name__}")
            )
            continue
        _add(into, location, functools.partial(_json_article, path, item))


def _json_value(line: str) -> object:
    """The line's JSON value, or ``ValueError`` saying why it cannot be used."""
    try:
        value: object = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None
    except ValueError:  # int() refusing a huge literal (CVE-2020-10735)
        limit = sys.get_int_max_str_digits()
        raise ValueError(f"invalid JSON: a number longer than {limit} digits") from None
    reason = _bad_string(value)
    if reason is not None:
        raise ValueError(f"a string contains {reason}")
    return value


def _bad_string(value: object) -> str | None:
    """What is wrong with the first unstorable string (a key or a value) anywhere in
    ``value``. A loop, not recursion: json.loads nests nearly as deep as the stack allows."""
    pending: list[object] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            reason = _bad_character(item)
            if reason is not None:
                return reason
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _json_article(path: Path, item: dict[str, object]) -> Article:
    body = item.get("body")
    if not isinstance(body, str):
        raise ArticleError(path, "'body' must be a string")
    meta = {key: value for key, value in item.items() if key != "body"}
    if isinstance(meta.get("tags"), str):
        meta["tags"] = _split_tags(str(meta["tags"]))
    title = meta.get("title")
    return article_from_fields(
        path, meta, body, default_id=slug(title) if isinstance(title, str) else ""
    )


def _split_tags(text: str) -> list[str]:
    return [tag.strip() for tag in _TAG_SEPARATORS.split(text) if tag.strip()]


# -- HTML ------------------------------------------------------------------------------------

# What survives sanitising; everything else is dropped, keeping its text, except the
# _DROPPED tags, whose content goes too (a script's code is never text of the article).
_HTML_TAGS = frozenset(
    {"h1", "h2", "h3", "h4", "h5", "h6", "p", "div", "section", "article", "main", "br", "hr"}
    | {"ul", "ol", "li", "a", "strong", "b", "em", "i", "code", "pre", "blockquote"}
    | {"table", "thead", "tbody", "tr", "th", "td", "dl", "dt", "dd"}
)
_DROPPED = frozenset(
    {"script", "style", "title", "head", "noscript", "template", "iframe", "object", "embed"}
    | {"svg", "math", "form", "button", "select", "textarea", "nav", "footer"}
)


def parse_html(path: Path, text: str) -> Article:
    """One help page: its title, and its sanitised content as Markdown; id from the file name."""
    heads = _Headings()
    heads.feed(text)
    heads.close()
    title = heads.title or heads.h1
    if not title:
        raise ArticleError(path, "no <title> or <h1> to take the title from")
    clean = nh3.clean(
        text,
        tags=set(_HTML_TAGS),
        clean_content_tags=set(_DROPPED),
        attributes={"a": {"href"}},
        url_schemes={"http", "https", "mailto"},
        link_rel=None,
    )
    writer = _MarkdownWriter(skip_heading=title)
    writer.feed(clean)
    writer.close()
    return article_from_fields(
        path, {"title": title}, writer.markdown(), default_id=slug(path.stem)
    )


class _Headings(HTMLParser):
    """The text of the first ``<title>`` and the first ``<h1>`` (read only, nothing rendered)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.h1 = ""
        self._in: str | None = None
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("title", "h1") and not getattr(self, tag) and self._in is None:
            self._in, self._parts = tag, []

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            setattr(self, tag, " ".join("".join(self._parts).split()))
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self._parts.append(data)


_BLOCKS = frozenset(
    {"p", "div", "section", "article", "main", "blockquote", "table", "tr", "dl", "dd", "dt"}
)
_EMPHASIS = {"strong": "**", "b": "**", "em": "*", "i": "*"}
# A "<" that would start a tag if the Markdown were rendered as HTML: kept as text instead.
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


class _MarkdownWriter(HTMLParser):
    """Sanitised HTML as Markdown-ish text: headings, paragraphs, lists, links, emphasis, code."""

    def __init__(self, *, skip_heading: str) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._lists: list[list[int]] = []  # one counter per open list; -1 for a bulleted one
        self._links: list[tuple[int, str | None]] = []
        self._pre = 0
        self._skip_heading = skip_heading  # the page title repeated as its <h1>
        self._heading_at = 0  # where the open heading starts in _out

    def markdown(self) -> str:
        text = "".join(self._out)
        lines = [line.rstrip() for line in text.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            self._block()
            self._heading_at = len(self._out)
            self._out.append("#" * int(tag[1]) + " ")
        elif tag in _BLOCKS:
            self._block()
        elif tag == "br":
            self._out.append("\n")
        elif tag == "hr":
            self._block()
            self._out.append("---")
            self._block()
        elif tag in ("ul", "ol"):
            self._block()
            self._lists.append([0 if tag == "ol" else -1])
        elif tag == "li":
            self._out.append("\n" + "  " * max(len(self._lists) - 1, 0))
            counter = self._lists[-1] if self._lists else [-1]
            if counter[0] >= 0:
                counter[0] += 1
                self._out.append(f"{counter[0]}. ")
            else:
                self._out.append("- ")
        elif tag in ("td", "th"):
            self._out.append(" | ")
        elif tag in _EMPHASIS:
            self._out.append(_EMPHASIS[tag])
        elif tag == "code" and not self._pre:
            self._out.append("`")
        elif tag == "pre":
            self._block()
            self._out.append("```\n")
            self._pre += 1
        elif tag == "a":
            self._links.append((len(self._out), dict(attrs).get("href")))

    def handle_endtag(self, tag: str) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            heading = "".join(self._out[self._heading_at + 1 :]).strip()
            if tag == "h1" and " ".join(heading.split()) == self._skip_heading:
                del self._out[self._heading_at :]  # already the article's title
                self._skip_heading = ""
            self._block()
        elif tag in _BLOCKS:
            self._block()
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._block()
        elif tag in _EMPHASIS:
            self._out.append(_EMPHASIS[tag])
        elif tag == "code" and not self._pre:
            self._out.append("`")
        elif tag == "pre" and self._pre:
            self._pre -= 1
            self._out.append("\n```")
            self._block()
        elif tag == "a" and self._links:
            start, href = self._links.pop()
            label = "".join(self._out[start:]).strip()
            if href and label:
                self._out[start:] = [f"[{label}]({href})"]

    def handle_data(self, data: str) -> None:
        if not self._pre:
            data = re.sub(r"\s+", " ", data)
            if not self._out or self._out[-1].endswith(("\n", " ")):
                data = data.lstrip()
        self._out.append(_TAG_START.sub("&lt;", data))

    def _block(self) -> None:
        self._out.append("\n\n")


def _first_of_each_id(records: list[Record], problems: list[Problem]) -> list[Record]:
    first: dict[str, Record] = {}
    for record in records:
        seen = first.get(record.article.id)
        if seen is None:
            first[record.article.id] = record
        else:
            problems.append(
                Problem(
                    record.location,
                    f"duplicate id {record.article.id!r} (first at {seen.location})",
                )
            )
    return list(first.values())
