"""Split articles into passages small enough to embed and to quote back to customers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.token import Token

from knowledge_base.articles import Article

PassageKind = Literal["section", "question"]

DEFAULT_MAX_CHARS = 900

_SECTION_TAGS = frozenset({"h2", "h3"})
# Only the parser is shared; MarkdownIt.parse keeps no state between calls.
_MARKDOWN = MarkdownIt("commonmark")
_NOT_SLUG_CHARS = re.compile(r"[^\w\- ]")


@dataclass(frozen=True)
class Passage:
    """A retrievable piece of an article.

    ``section`` passages hold Markdown answer text (the lead has ``heading``/``anchor`` None);
    ``question`` passages hold the title or an alternate phrasing from the front matter.
    """

    article_id: str
    title: str
    heading: str | None
    anchor: str | None
    text: str
    kind: PassageKind


@dataclass(frozen=True)
class _Heading:
    start: int
    end: int
    tag: str
    text: str


@dataclass(frozen=True)
class _Segment:
    start: int
    end: int
    heading: str | None
    anchor: str | None


def chunk_article(article: Article, max_chars: int = DEFAULT_MAX_CHARS) -> list[Passage]:
    """Split ``article`` into section passages (document order) followed by question passages.

    The lead (text before the first ``##``/``###`` heading) and each such section become
    passages; anything longer than ``max_chars`` is split at block boundaries, repeating one
    block of overlap. A single block longer than ``max_chars`` is kept whole rather than cut.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    body = article.body.replace("\r\n", "\n").replace("\r", "\n")
    lines = body.split("\n")
    tokens = _MARKDOWN.parse(body)
    passages: list[Passage] = []
    block_starts = _block_starts(tokens)
    for segment in _segments(tokens, len(lines)):
        units = _units(lines, segment, block_starts)
        for text in _chunk_texts(lines, units, max_chars):
            passages.append(
                Passage(
                    article_id=article.id,
                    title=article.title,
                    heading=segment.heading,
                    anchor=segment.anchor,
                    text=text,
                    kind="section",
                )
            )
    passages.extend(_question_passages(article))
    return passages


def github_slug(text: str) -> str:
    """Slug a heading's plain text the way GitHub builds heading anchors (without dedup)."""
    return _NOT_SLUG_CHARS.sub("", text.strip().lower()).replace(" ", "-")


def _segments(tokens: Sequence[Token], line_count: int) -> list[_Segment]:
    headings = _headings(tokens)
    # Every heading takes part in dedup, as on GitHub, so anchors match the rendered page.
    seen: dict[str, int] = {}
    anchors = [_unique_slug(heading.text, seen) for heading in headings]
    sections = [(h, a) for h, a in zip(headings, anchors, strict=True) if h.tag in _SECTION_TAGS]
    first_start = sections[0][0].start if sections else line_count
    segments = [_Segment(0, first_start, None, None)]
    for position, (heading, anchor) in enumerate(sections):
        end = sections[position + 1][0].start if position + 1 < len(sections) else line_count
        segments.append(_Segment(heading.end, end, heading.text, anchor))
    return segments


def _headings(tokens: Sequence[Token]) -> list[_Heading]:
    headings: list[_Heading] = []
    for position, token in enumerate(tokens):
        if token.type == "heading_open" and token.level == 0 and token.map is not None:
            inline = tokens[position + 1]
            text = _plain_text(inline.children or [])
            headings.append(_Heading(token.map[0], token.map[1], token.tag, text))
    return headings


def _plain_text(children: Iterable[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "text_special", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())


def _unique_slug(text: str, seen: dict[str, int]) -> str:
    # Same loop as github-slugger; "section" stands in when a heading has no slug characters
    # at all (e.g. only emoji), because an empty fragment would link to the page top.
    base = github_slug(text) or "section"
    slug = base
    while slug in seen:
        seen[base] += 1
        slug = f"{base}-{seen[base]}"
    seen[slug] = 0
    return slug


def _block_starts(tokens: Sequence[Token]) -> set[int]:
    starts: set[int] = set()
    for token in tokens:
        if token.map is None or token.nesting < 0:
            continue
        # Top-level blocks, plus items of top-level lists so long lists can still be split.
        if token.level == 0 or (token.level == 1 and token.type == "list_item_open"):
            starts.add(token.map[0])
    return starts


def _units(lines: Sequence[str], segment: _Segment, block_starts: set[int]) -> list[range]:
    # Units partition the segment's lines (so nothing, e.g. a link reference definition
    # that yields no token, is lost), trimmed of surrounding blank lines.
    cuts = sorted({segment.start} | {s for s in block_starts if segment.start < s < segment.end})
    units: list[range] = []
    for position, start in enumerate(cuts):
        end = cuts[position + 1] if position + 1 < len(cuts) else segment.end
        while start < end and not lines[start].strip():
            start += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        if start < end:
            units.append(range(start, end))
    return units


def _chunk_texts(lines: Sequence[str], units: Sequence[range], max_chars: int) -> list[str]:
    def text(first: int, last: int) -> str:
        return "\n".join(lines[units[first].start : units[last].stop])

    chunks: list[str] = []
    first = 0
    while first < len(units):
        last = first
        while last + 1 < len(units) and len(text(first, last + 1)) <= max_chars:
            last += 1
        chunks.append(text(first, last))
        if last + 1 >= len(units):
            break
        # Repeat the previous block for context, unless that would leave no room for the
        # next one (the chunk would then hold nothing new).
        overlap_fits = last > first and len(text(last, last + 1)) <= max_chars
        first = last if overlap_fits else last + 1
    return chunks


def _question_passages(article: Article) -> list[Passage]:
    passages: list[Passage] = []
    seen: set[str] = set()
    for question in (article.title, *article.questions):
        key = " ".join(question.lower().split())
        if not key or key in seen:
            continue
        seen.add(key)
        passages.append(
            Passage(
                article_id=article.id,
                title=article.title,
                heading=None,
                anchor=None,
                text=question.strip(),
                kind="question",
            )
        )
    return passages
