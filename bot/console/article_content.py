"""What an editor writes in an article, how it is checked, and how two versions differ."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.errors import Unprocessable
from knowledge_base.articles import (
    AUDIENCES,
    DEFAULT_LANGUAGE,
    LANGUAGE_PATTERN,
    Audience,
    tidy_body,
    tidy_items,
    tidy_title,
)

# Same alphabet as Markdown article ids: ids end up in URLs (/kb/{id}).
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Imported FAQ sets carry many real customer phrasings (Banking77: up to 168 per article,
# some over 400 characters), and what imports must stay savable in the editor.
MAX_TITLE, MAX_BODY, MAX_QUESTION, MAX_QUESTIONS = 200, 100_000, 500, 200
MAX_TAG, MAX_TAGS = 40, 20


@dataclass(frozen=True)
class Content:
    """What an editor writes; every version holds one whole."""

    title: str
    body: str
    questions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    language: str = DEFAULT_LANGUAGE
    audience: Audience = "customer"


def diff_content(old: Content, new: Content, old_label: str, new_label: str) -> str:
    """A unified diff per changed field, headed ``{label}/{field}``; "" when nothing changed."""
    before, after = _field_lines(old), _field_lines(new)
    lines: list[str] = []
    for name in before:
        lines.extend(
            difflib.unified_diff(
                before[name],
                after[name],
                f"{old_label}/{name}",
                f"{new_label}/{name}",
                lineterm="",
            )
        )
    return "\n".join(lines)


def _field_lines(content: Content) -> dict[str, list[str]]:
    return {
        "title": [content.title],
        "body": content.body.split("\n"),
        "questions": list(content.questions),
        "tags": list(content.tags),
        "audience": [content.audience],
        "language": [content.language],
    }


def valid_id(article_id: str) -> str:
    if not _ID.fullmatch(article_id):
        raise Unprocessable(
            "invalid_id",
            "an article id is 1–100 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit",
            field="id",
        )
    return article_id


def make_content(
    *,
    title: str,
    body: str,
    questions: Sequence[str] = (),
    tags: Sequence[str] = (),
    language: str = DEFAULT_LANGUAGE,
    audience: str = "customer",
) -> Content:
    """Validated and normalised content, or ``Unprocessable`` naming the field."""
    title = tidy_title(title)
    if not 0 < len(title) <= MAX_TITLE:
        raise Unprocessable("invalid_title", f"a title is 1–{MAX_TITLE} characters", field="title")
    body = tidy_body(body)
    if not body.strip() or len(body) > MAX_BODY:
        raise Unprocessable(
            "invalid_body", f"the body is 1–{MAX_BODY} characters of Markdown", field="body"
        )
    if not LANGUAGE_PATTERN.fullmatch(language):
        raise Unprocessable(
            "invalid_language",
            "language is a language tag such as 'en' or 'pt-BR'",
            field="language",
        )
    return Content(
        title=title,
        body=body,
        questions=_items(questions, "questions", MAX_QUESTIONS, MAX_QUESTION),
        tags=_items(tags, "tags", MAX_TAGS, MAX_TAG),
        language=language,
        audience=_valid_audience(audience),
    )


def _items(values: Sequence[str], name: str, most: int, longest: int) -> tuple[str, ...]:
    """Stripped, blank-free and de-duplicated (case-insensitively), in the given order."""
    items = tidy_items(values)
    if any(len(text) > longest for text in items):
        raise Unprocessable(
            f"invalid_{name}", f"each of {name} is at most {longest} characters", field=name
        )
    if len(items) > most:
        raise Unprocessable(f"invalid_{name}", f"at most {most} {name}", field=name)
    return items


def _valid_audience(audience: str) -> Audience:
    for known in AUDIENCES:
        if audience == known:
            return known
    raise Unprocessable(
        "invalid_audience", "audience is 'customer' or 'internal'", field="audience"
    )
