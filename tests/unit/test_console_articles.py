"""The article repository on real stores, SQLite and PostgreSQL (a fresh database per test,
``tests.services``): versions, concurrency, diff, import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.console.article_content import MAX_QUESTION, MAX_QUESTIONS, Content, make_content
from bot.console.articles import IMPORT_AUTHOR, ArticleStore, kb_article
from bot.errors import Conflict, NotFound, Unprocessable
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SQLiteStore
from tests.unit.test_store import store  # noqa: F401  (the fixture: both backends)

ROOT = Path(__file__).resolve().parents[2]
SHIPPING = make_content(
    title="How long does delivery take?",
    body="Standard delivery takes 3-5 days.\n\n## Express\nNext day before noon.",
    questions=["When will my parcel arrive?"],
    tags=["shipping"],
)


class Ticking:
    """A clock that moves one second per reading, so every version has its own time."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def articles(store: SQLiteStore | PostgresStore) -> ArticleStore:  # noqa: F811
    return ArticleStore(store, Ticking())


def md(title: str, body: str, *, audience: str = "customer") -> str:
    return f"---\ntitle: {title}\naudience: {audience}\nquestions:\n  - {title}?\n---\n{body}\n"


# -- versions --------------------------------------------------------------------------------


async def test_every_save_is_a_version_with_its_author_and_time(articles: ArticleStore) -> None:
    created = await articles.create("shipping", SHIPPING, "erin")
    edited = make_content(title="Delivery times", body="Three to five days.")
    saved = await articles.save_draft("shipping", edited, version=1, author="sam")
    published = await articles.publish("shipping", version=2, author="erin")

    assert (created.version, created.status, created.updated_by) == (1, "draft", "erin")
    assert (saved.version, saved.status, saved.updated_by) == (2, "draft", "sam")
    assert (published.version, published.status, published.live_version) == (3, "published", 3)
    versions = await articles.versions("shipping")
    assert [(v.version, v.status, v.author) for v in versions] == [
        (3, "published", "erin"),
        (2, "draft", "sam"),
        (1, "draft", "erin"),
    ]
    assert versions[0].at > versions[1].at > versions[2].at
    assert (await articles.version("shipping", 1)).content == SHIPPING
    assert (await articles.get("shipping")).content == edited


async def test_a_draft_over_a_published_article_does_not_change_what_is_served(
    articles: ArticleStore,
) -> None:
    await articles.create("shipping", SHIPPING, "erin")
    await articles.publish("shipping", version=1, author="erin")
    draft = make_content(title="Delivery (rewrite in progress)", body="TODO")
    head = await articles.save_draft("shipping", draft, version=2, author="erin")

    assert (head.status, head.version, head.live_version) == ("draft", 3, 2)
    assert await articles.published() == [kb_article("shipping", SHIPPING)]


async def test_archiving_stops_serving_even_after_a_later_draft(articles: ArticleStore) -> None:
    await articles.create("shipping", SHIPPING, "erin")
    await articles.publish("shipping", version=1, author="erin")
    archived = await articles.archive("shipping", version=2, author="erin")
    await articles.save_draft("shipping", SHIPPING, version=3, author="erin")

    assert (archived.status, archived.live_version) == ("archived", None)
    assert await articles.published() == []
    assert (await articles.get("shipping")).live_version is None


async def test_publishing_or_archiving_twice_adds_no_version(articles: ArticleStore) -> None:
    await articles.create("shipping", SHIPPING, "erin")
    await articles.publish("shipping", version=1, author="erin")
    again = await articles.publish("shipping", version=2, author="sam")

    assert (again.version, again.updated_by) == (2, "erin")


async def test_publish_can_carry_the_edits(articles: ArticleStore) -> None:
    await articles.create("shipping", SHIPPING, "erin")
    edited = make_content(title="Delivery times", body="Three to five days.", audience="internal")
    published = await articles.publish("shipping", version=1, author="erin", content=edited)

    assert (published.version, published.content) == (2, edited)
    assert (await articles.published())[0].audience == "internal"


async def test_restore_saves_an_old_version_as_the_newest_draft(articles: ArticleStore) -> None:
    await articles.create("shipping", SHIPPING, "erin")
    edited = make_content(title="Delivery times", body="Three to five days.")
    await articles.publish("shipping", version=1, author="erin", content=edited)
    restored = await articles.restore("shipping", 1, version=2, author="sam")

    assert (restored.version, restored.status, restored.content) == (3, "draft", SHIPPING)
    assert restored.live_version == 2  # served stays as published until published again
    assert [v.version for v in await articles.versions("shipping")] == [3, 2, 1]


# -- optimistic concurrency ------------------------------------------------------------------


async def test_saving_a_stale_version_is_a_conflict_that_names_who_saved(
    articles: ArticleStore,
) -> None:
    await articles.create("shipping", SHIPPING, "erin")
    await articles.save_draft("shipping", SHIPPING, version=1, author="sam")

    with pytest.raises(Conflict) as caught:
        await articles.save_draft("shipping", SHIPPING, version=1, author="erin")

    assert (caught.value.code, caught.value.field) == ("stale_version", "version")
    assert "sam" in caught.value.message
    assert (await articles.get("shipping")).version == 2
    for write in (
        articles.publish("shipping", version=1, author="erin"),
        articles.archive("shipping", version=1, author="erin"),
        articles.restore("shipping", 1, version=1, author="erin"),
    ):
        with pytest.raises(Conflict):
            await write


async def test_creating_an_existing_id_is_a_conflict(articles: ArticleStore) -> None:
    await articles.create("shipping", SHIPPING, "erin")
    with pytest.raises(Conflict) as caught:
        await articles.create("shipping", SHIPPING, "sam")
    assert (caught.value.code, caught.value.field) == ("article_exists", "id")


async def test_unknown_articles_and_versions_are_not_found(articles: ArticleStore) -> None:
    with pytest.raises(NotFound) as caught:
        await articles.get("nope")
    assert caught.value.code == "unknown_article"
    await articles.create("shipping", SHIPPING, "erin")
    with pytest.raises(NotFound) as caught:
        await articles.version("shipping", 9)
    assert (caught.value.code, caught.value.field) == ("unknown_version", "version")


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"title": "  "}, "invalid_title"),
        ({"title": "x" * 201}, "invalid_title"),
        ({"body": "\n \n"}, "invalid_body"),
        ({"questions": ["x" * (MAX_QUESTION + 1)]}, "invalid_questions"),
        ({"questions": [f"q{i}" for i in range(MAX_QUESTIONS + 1)]}, "invalid_questions"),
        ({"tags": [f"t{i}" for i in range(21)]}, "invalid_tags"),
        ({"language": "English"}, "invalid_language"),
        ({"audience": "everyone"}, "invalid_audience"),
    ],
)
def test_invalid_content_names_its_field(fields: dict[str, Any], code: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        make_content(**{"title": "T", "body": "B", **fields})
    assert caught.value.code == code
    assert caught.value.field == code.removeprefix("invalid_")


def test_content_is_normalised() -> None:
    content = make_content(
        title="  Delivery   times ",
        body="Line one.  \r\nLine two. \t\n\n",
        questions=["Where is it?", " where IS it? ", ""],
        tags=["a", "A", "b"],
    )
    assert content == Content(
        title="Delivery times",
        body="Line one.  \nLine two.",  # a Markdown hard line break is kept
        questions=("Where is it?",),
        tags=("a", "b"),
    )


async def test_bad_ids_are_refused(articles: ArticleStore) -> None:
    for bad in ("", "-x", "a b", "../etc", "x" * 101):
        with pytest.raises(Unprocessable):
            await articles.create(bad, SHIPPING, "erin")


# -- list, search and diff -------------------------------------------------------------------


async def test_find_filters_by_status_and_searches_title_body_and_questions(
    articles: ArticleStore,
) -> None:
    await articles.create("shipping", SHIPPING, "erin")
    returns = make_content(title="Returns", body="Send it back within 30 days (100% refund).")
    await articles.create("returns", returns, "erin")
    await articles.publish("returns", version=1, author="erin")

    assert [a.id for a in await articles.find()] == ["returns", "shipping"]  # newest first
    assert [a.id for a in await articles.find(status="draft")] == ["shipping"]
    assert [a.id for a in await articles.find(text="PARCEL")] == ["shipping"]  # a question
    assert [a.id for a in await articles.find(text="express")] == ["shipping"]  # the body
    assert [a.id for a in await articles.find(text="100%")] == ["returns"]
    assert await articles.find(text="1_0") == []  # LIKE wildcards are literal
    with pytest.raises(Unprocessable):
        await articles.find(status="gone")


async def test_diff_shows_each_changed_field(articles: ArticleStore) -> None:
    await articles.create("shipping", SHIPPING, "erin")
    edited = make_content(
        title="How long does delivery take?",
        body="Standard delivery takes 2-4 days.\n\n## Express\nNext day before noon.",
        questions=["When will my parcel arrive?", "Is delivery fast?"],
        tags=["shipping"],
    )
    await articles.save_draft("shipping", edited, version=1, author="sam")

    diff = await articles.diff("shipping", 1, 2)

    assert "--- v1/body\n+++ v2/body" in diff
    assert "-Standard delivery takes 3-5 days." in diff
    assert "+Standard delivery takes 2-4 days." in diff
    assert "+Is delivery fast?" in diff
    assert "v1/title" not in diff and "v1/tags" not in diff  # unchanged fields are left out
    assert await articles.diff("shipping", 2, 2) == ""


# -- import ----------------------------------------------------------------------------------


async def test_import_is_idempotent_and_keeps_editors_changes(
    articles: ArticleStore, tmp_path: Path
) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "shipping.md").write_text(md("Shipping", "Three to five days."), encoding="utf-8")
    (folder / "returns.md").write_text(md("Returns", "Thirty days."), encoding="utf-8")

    first = await articles.import_markdown_dir(folder)
    again = await articles.import_markdown_dir(folder)

    assert (first.added, first.updated, first.unchanged) == (["returns", "shipping"], [], 0)
    assert (again.added, again.updated, again.unchanged) == ([], [], 2)
    shipping = await articles.get("shipping")
    assert (shipping.status, shipping.version, shipping.updated_by) == (
        "published",
        1,
        IMPORT_AUTHOR,
    )

    # An editor improves the article; the unchanged file must not undo that on restart.
    better = make_content(title="Shipping", body="Three to five business days.")
    await articles.publish("shipping", version=1, author="erin", content=better)
    await articles.import_markdown_dir(folder)
    assert (await articles.get("shipping")).content == better

    # A file changes: new content, imported as a new published version, unless an editor
    # changed the article since the last import; then it is a conflict, and erin's stays.
    (folder / "shipping.md").write_text(md("Shipping", "Two days."), encoding="utf-8")
    (folder / "returns.md").write_text(md("Returns", "Sixty days."), encoding="utf-8")
    changed = await articles.import_markdown_dir(folder)
    assert (changed.added, changed.updated, changed.unchanged) == ([], ["returns"], 0)
    assert [r.source for r in changed.rejected] == [str(folder / "shipping.md")]
    assert "conflict" in changed.rejected[0].reason and "erin" in changed.rejected[0].reason
    assert (await articles.get("shipping")).content == better
    returns = await articles.get("returns")
    assert (returns.version, returns.status, returns.updated_by) == (2, "published", IMPORT_AUTHOR)
    assert returns.content.body == "Sixty days."


async def test_import_reads_the_audience_and_the_repo_articles(articles: ArticleStore) -> None:
    report = await articles.import_markdown_dir(ROOT / "kb" / "articles")
    served = await articles.published()

    assert len(report.added) == len(served) >= 10
    assert {a.audience for a in served} == {"customer"}


async def test_import_reads_the_language_and_skips_bad_files(
    articles: ArticleStore, tmp_path: Path
) -> None:
    (tmp_path / "hilfe.md").write_text(
        "---\ntitle: Versand\nlanguage: de\n---\nDrei Tage.\n", encoding="utf-8"
    )
    (tmp_path / "broken.md").write_text("---\ntitle: [unclosed\n---\nBody\n", encoding="utf-8")

    report = await articles.import_markdown_dir(tmp_path)

    assert report.added == ["hilfe"]
    assert (await articles.get("hilfe")).content.language == "de"
    assert [a.language for a in await articles.published()] == ["de"]
    assert [r.source for r in report.rejected] == [str(tmp_path / "broken.md")]
    assert "invalid YAML front matter at line 2" in report.rejected[0].reason


async def test_import_marks_internal_articles(articles: ArticleStore, tmp_path: Path) -> None:
    (tmp_path / "playbook.md").write_text(
        md("Refund playbook", "Agents may refund up to $50.", audience="internal"),
        encoding="utf-8",
    )
    await articles.import_markdown_dir(tmp_path)
    assert (await articles.get("playbook")).content.audience == "internal"
