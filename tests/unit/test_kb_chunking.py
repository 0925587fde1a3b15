from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knowledge_base import Article, Passage, chunk_article
from knowledge_base.chunking import github_slug


def article(body: str, *, title: str = "Shipping", questions: tuple[str, ...] = ()) -> Article:
    return Article(id="shipping", title=title, body=body, url=None, tags=(), questions=questions)


def sections(passages: list[Passage]) -> list[Passage]:
    return [p for p in passages if p.kind == "section"]


BODY = """\
Orders ship within two business days.

## Domestic delivery
Three to five days.

### Express
Next day before noon.

#### Cut-off
Order by 2pm.

## International delivery
Seven to fourteen days.
"""


def test_lead_and_h2_h3_sections_become_passages_in_order() -> None:
    passages = sections(chunk_article(article(BODY)))

    assert [(p.heading, p.anchor, p.text) for p in passages] == [
        (None, None, "Orders ship within two business days."),
        ("Domestic delivery", "domestic-delivery", "Three to five days."),
        ("Express", "express", "Next day before noon.\n\n#### Cut-off\nOrder by 2pm."),
        ("International delivery", "international-delivery", "Seven to fourteen days."),
    ]
    assert all(p.article_id == "shipping" and p.title == "Shipping" for p in passages)


def test_title_and_questions_become_deduplicated_question_passages() -> None:
    passages = chunk_article(
        article(
            "Body.", title="Shipping times", questions=("When will it arrive?", "shipping  TIMES")
        )
    )

    questions = [p for p in passages if p.kind == "question"]
    assert [p.text for p in questions] == ["Shipping times", "When will it arrive?"]
    assert all(p.heading is None and p.anchor is None for p in questions)


def test_body_starting_with_a_heading_has_no_lead_passage() -> None:
    passages = sections(chunk_article(article("## Only section\nText.\n")))

    assert [(p.heading, p.text) for p in passages] == [("Only section", "Text.")]


def test_heading_like_lines_in_code_fences_are_not_sections() -> None:
    body = "Lead.\n\n## Real\nRun:\n\n```sh\n## not a heading\necho hi\n```\n"

    passages = sections(chunk_article(article(body)))

    assert [p.heading for p in passages] == [None, "Real"]
    assert "## not a heading" in passages[1].text


def test_anchors_follow_github_slugs_and_deduplicate() -> None:
    body = (
        "## What's the Returns & Refunds policy?\na\n\n## FAQ\nb\n\n## FAQ\nc\n\n"
        "## `code` and *emphasis*\nd\n\n## 🎉\ne\n"
    )

    anchors = [p.anchor for p in sections(chunk_article(article(body)))]

    assert anchors == [
        "whats-the-returns--refunds-policy",
        "faq",
        "faq-1",
        "code-and-emphasis",
        "section",
    ]


def test_setext_headings_are_sections() -> None:
    passages = sections(chunk_article(article("Lead.\n\nReturns\n-------\nThirty days.\n")))

    assert [(p.heading, p.text) for p in passages] == [(None, "Lead."), ("Returns", "Thirty days.")]


def test_long_section_is_split_at_paragraphs_with_one_paragraph_overlap() -> None:
    paragraphs = [f"Paragraph {n} " + "word " * 55 for n in range(6)]  # ~300 chars each
    body = "## Long\n" + "\n\n".join(p.strip() for p in paragraphs)

    texts = [p.text for p in sections(chunk_article(article(body), max_chars=900))]

    assert len(texts) > 1
    assert all(len(text) <= 900 for text in texts)
    for before, after in zip(texts, texts[1:], strict=False):
        assert before.split("\n\n")[-1] == after.split("\n\n")[0]
    assert texts[0].startswith("Paragraph 0") and texts[-1].endswith(paragraphs[-1].strip())


def test_oversized_paragraph_is_kept_whole_not_cut() -> None:
    huge = "x" * 2000
    body = f"Short lead.\n\n{huge}\n\nTail."

    texts = [p.text for p in sections(chunk_article(article(body), max_chars=100))]

    assert texts == ["Short lead.", huge, "Tail."]


def test_long_list_is_split_between_items() -> None:
    items = "\n".join(f"- item {n} " + "y" * 40 for n in range(20))

    texts = [p.text for p in sections(chunk_article(article(f"## Options\n{items}"), 200))]

    assert len(texts) > 1 and all(len(text) <= 200 for text in texts)
    assert all(text.startswith("- item") for text in texts)


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        chunk_article(article("x"), max_chars=0)


# --- property: chunking never loses body text and anchors are unique and slug-safe ---

_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüéñ", min_size=1, max_size=8)
_SENTENCE = st.lists(
    st.tuples(_WORD, st.sampled_from(["", ",", ".", "?", "!", "'s"])), min_size=1, max_size=25
).map(lambda words: " ".join(w + p for w, p in words))


@dataclass(frozen=True)
class Block:
    text: str
    is_section_heading: bool


_PARAGRAPH = st.lists(_SENTENCE, min_size=1, max_size=3).map(
    lambda lines: Block("\n".join(lines), False)
)
_HEADING = st.tuples(
    st.sampled_from(["##", "###"]),
    st.one_of(_SENTENCE, st.sampled_from(["?!", "FAQ", "C++ & C#", "Ünïcode"])),
).map(lambda parts: Block(f"{parts[0]} {parts[1]}", True))
_MINOR_HEADING = _SENTENCE.map(lambda text: Block(f"#### {text}", False))
_FENCE = st.lists(_SENTENCE, min_size=1, max_size=3).map(
    lambda lines: Block("```\n## fake heading\n\n" + "\n\n".join(lines) + "\n```", False)
)
_BODY = st.lists(
    st.one_of(_PARAGRAPH, _PARAGRAPH, _HEADING, _MINOR_HEADING, _FENCE), min_size=1, max_size=25
).filter(lambda blocks: any(not b.is_section_heading for b in blocks))


@given(blocks=_BODY, max_chars=st.integers(min_value=40, max_value=1200))
def test_chunking_keeps_every_paragraph_and_anchors_are_unique(
    blocks: list[Block], max_chars: int
) -> None:
    body = "\n\n".join(block.text for block in blocks)

    passages = sections(chunk_article(article(body), max_chars=max_chars))

    texts = [p.text for p in passages]
    for block in blocks:
        if block.is_section_heading:
            continue
        for paragraph in block.text.split("\n\n"):
            if paragraph.strip():
                assert any(paragraph in text for text in texts), paragraph
    single_blocks = {block.text for block in blocks}
    for passage in passages:
        assert passage.text.strip() == passage.text != ""
        assert passage.heading != "fake heading"
        # Only a block that alone exceeds the limit may produce an oversized passage.
        assert len(passage.text) <= max_chars or passage.text in single_blocks
    distinct_sections: list[str] = []
    previous: str | None = None
    for passage in passages:
        if passage.anchor is not None and passage.anchor != previous:
            distinct_sections.append(passage.anchor)
        previous = passage.anchor
    assert len(distinct_sections) == len(set(distinct_sections))
    assert all(re.fullmatch(r"[\w-]+", anchor) for anchor in distinct_sections)
    assert all(anchor == github_slug(anchor) for anchor in distinct_sections)
