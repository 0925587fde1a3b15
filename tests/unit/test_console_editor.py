"""The KB editor's page and API through the real app, signed in through the real sign-in form.

The live knowledge base uses the hashing embedder: these tests are about routes, roles, CSRF,
versions and the swap, not about embedding quality (test_kb_live.py covers the real model).
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bot import keys
from bot.app import create_app
from bot.console.access import AUDIT
from knowledge_base import HashingEmbedder, KnowledgeBase, LiveKnowledgeBase
from tests.console_helpers import call, signed_in
from tests.unit.test_gateway import make_settings

ARTICLE = {
    "id": "gift-cards",
    "title": "Do gift cards expire?",
    "body": "Gift cards never expire.\n\n## Balance\nCheck the balance on the gift card page.",
    "questions": ["How long is my gift card valid?"],
    "tags": ["payments"],
}


@pytest.fixture
async def client(tmp_path, rasa_server, aiohttp_client) -> TestClient:
    app = create_app(make_settings(tmp_path, rasa_server.port))
    # The settings say [kb] enabled = false, so the app loads no KB of its own: it builds the
    # editor (and the rest) over this empty in-memory one instead.
    app[keys.KB] = LiveKnowledgeBase(KnowledgeBase.build([], HashingEmbedder(256)))
    return await aiohttp_client(app)


class Session:
    """A signed-in console user: JSON calls with the CSRF header on every request."""

    def __init__(self, client: TestClient, csrf: str) -> None:
        self.client = client
        self.csrf = csrf

    async def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        return await call(self.client, method, path, body, status=status, csrf=self.csrf)


async def session(client: TestClient, role: str = "editor", name: str | None = None) -> Session:
    return Session(client, await sign_in_as(client, role, name))


async def sign_in_as(client: TestClient, role: str, name: str | None = None) -> str:
    """Sign in as a new user, dropping whoever was signed in on this client before."""
    client.session.cookie_jar.clear()
    return await signed_in(client, role, name)


A = "/api/console/articles"


# -- access ----------------------------------------------------------------------------------


async def test_the_page_needs_an_editor_or_admin(client: TestClient) -> None:
    signed_out = await client.get("/console/editor", allow_redirects=False)
    assert signed_out.status == 302
    assert signed_out.headers["Location"].startswith("/console/login?next=")

    await sign_in_as(client, "agent")
    assert (await client.get("/console/editor", allow_redirects=False)).status == 403

    csrf = await sign_in_as(client, "editor")
    page = await client.get("/console/editor")
    html = await page.text()
    assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
    assert f'<meta name="csrf-token" content="{csrf}">' in html
    for testid in (
        "article-list",
        "article-title",
        "article-body",
        "article-questions",
        "article-language",
        "save-draft",
        "publish",
        "archive",
        "preview",
        "versions",
        "try-question",
        "try-results",
        "new-article",
        "content-gaps",
    ):
        assert f'data-testid="{testid}"' in html
    assert '<script src="/console/static/editor.js"></script>' in html
    assert (await client.get("/console/static/editor.js")).status == 200
    assert (await client.get("/console/static/editor.css")).status == 200

    await sign_in_as(client, "admin")
    assert (await client.get("/console/editor")).status == 200


async def test_the_api_refuses_signed_out_users_agents_and_missing_csrf(
    client: TestClient,
) -> None:
    response = await client.get(A)
    assert (response.status, (await response.json())["error"]["code"]) == (401, "signed_out")

    agent = await session(client, "agent")
    assert (await agent.call("GET", A, status=403))["error"]["code"] == "forbidden"

    await session(client, "editor")
    forged = await client.post(A, json=ARTICLE, headers={"X-CSRF-Token": "forged"})
    assert (forged.status, (await forged.json())["error"]["code"]) == (403, "csrf")
    assert (await client.post(A, json=ARTICLE)).status == 403


# -- writing ---------------------------------------------------------------------------------


async def test_draft_publish_archive_with_versions_and_audit(client: TestClient) -> None:
    erin = await session(client, "editor", "erin")
    live = client.app[keys.KB]

    created = await erin.call("POST", A, ARTICLE, status=201)
    assert (created["version"], created["status"], created["updated_by"]) == (1, "draft", "erin")
    assert live.article("gift-cards") is None  # a draft is not served

    path = f"{A}/gift-cards"
    draft = {**ARTICLE, "version": 1, "body": ARTICLE["body"] + "\n\nThey work online too."}
    del draft["id"]
    saved = await erin.call("PUT", path, draft)
    assert (saved["version"], saved["live_version"]) == (2, None)

    published = await erin.call("POST", f"{path}/publish", {"version": 2})
    assert (published["status"], published["version"], published["live_version"]) == (
        "published",
        3,
        3,
    )
    assert published["visible_ms"] < 1000
    assert live.article("gift-cards") is not None
    hits = await erin.call(
        "POST", "/api/console/try", {"question": "How long is my gift card valid?"}
    )
    assert hits["hits"][0]["article_id"] == "gift-cards"
    assert hits["hits"][0]["above_floor"] and hits["hits"][0]["above_direct_floor"]
    assert (hits["floor"], hits["offer_floor"], hits["band"]) == (0.45, 0.4, "answer")

    archived = await erin.call("POST", f"{path}/archive", {"version": 3})
    assert (archived["status"], archived["live_version"]) == ("archived", None)
    assert live.article("gift-cards") is None
    after = await erin.call("POST", "/api/console/try", {"question": "gift card valid"})
    assert "gift-cards" not in [h["article_id"] for h in after["hits"]]

    versions = (await erin.call("GET", f"{path}/versions"))["versions"]
    assert [(v["version"], v["status"], v["author"]) for v in versions] == [
        (4, "archived", "erin"),
        (3, "published", "erin"),
        (2, "draft", "erin"),
        (1, "draft", "erin"),
    ]
    assert "body" not in versions[0]
    entries = await client.app[AUDIT].entries(target="gift-cards")
    assert [(e.actor, e.action, e.data["version"]) for e in reversed(entries)] == [
        ("erin", "article.create", 1),
        ("erin", "article.save", 2),
        ("erin", "article.publish", 3),
        ("erin", "article.archive", 4),
    ]


async def test_publish_with_edits_and_the_audience_reach_the_live_kb(client: TestClient) -> None:
    erin = await session(client)
    await erin.call("POST", A, {**ARTICLE, "audience": "internal"}, status=201)
    content = {k: v for k, v in ARTICLE.items() if k != "id"} | {
        "audience": "internal",
        "language": "pt-BR",
    }
    published = await erin.call(
        "POST", f"{A}/gift-cards/publish", {"version": 1, "content": content}
    )
    assert published["language"] == "pt-BR"
    served = client.app[keys.KB].article("gift-cards", include_internal=True)
    assert served is not None and served.language == "pt-BR"

    question = {"question": "How long is my gift card valid?"}
    customer = await erin.call("POST", "/api/console/try", question)
    agent = await erin.call("POST", "/api/console/try", {**question, "include_internal": True})
    assert customer["hits"] == []
    assert agent["hits"][0]["article_id"] == "gift-cards"


async def test_two_editors_cannot_overwrite_each_other(client: TestClient) -> None:
    erin = await session(client, "editor", "erin")
    await erin.call("POST", A, ARTICLE, status=201)
    edit = {k: v for k, v in ARTICLE.items() if k != "id"} | {"version": 1}
    await erin.call("PUT", f"{A}/gift-cards", {**edit, "title": "Gift cards"})

    stale = await erin.call("PUT", f"{A}/gift-cards", edit, status=409)
    assert (stale["error"]["code"], stale["error"]["field"]) == ("stale_version", "version")
    assert (await erin.call("GET", f"{A}/gift-cards"))["title"] == "Gift cards"


async def test_versions_diff_and_restore(client: TestClient) -> None:
    erin = await session(client)
    await erin.call("POST", A, ARTICLE, status=201)
    edit = {k: v for k, v in ARTICLE.items() if k != "id"}
    await erin.call("PUT", f"{A}/gift-cards", {**edit, "version": 1, "title": "Gift cards"})

    diff = await erin.call("GET", f"{A}/gift-cards/diff?from=1&to=2")
    assert "-Do gift cards expire?\n+Gift cards" in diff["diff"]
    old = await erin.call("GET", f"{A}/gift-cards/versions/1")
    assert (old["title"], old["body"]) == (ARTICLE["title"], ARTICLE["body"])

    restored = await erin.call("POST", f"{A}/gift-cards/restore", {"version": 2, "from_version": 1})
    assert (restored["version"], restored["status"], restored["title"]) == (
        3,
        "draft",
        ARTICLE["title"],
    )
    assert (await erin.call("GET", f"{A}/gift-cards/versions/9", status=404))["error"][
        "code"
    ] == "unknown_version"
    assert (await erin.call("GET", f"{A}/gift-cards/diff?from=x&to=2", status=422))["error"][
        "field"
    ] == "from"


@pytest.mark.parametrize("number", [str(2**70), "\u00b2", "\u0661"])
async def test_version_numbers_past_the_stores_integers_are_refused_not_a_crash(
    client: TestClient, number: str
) -> None:
    """Found by schemathesis: a version beyond 64 bits was a 500 (the driver's overflow),
    and "²" passed str.isdigit but not int()."""
    erin = await session(client)
    await erin.call("POST", A, ARTICLE, status=201)
    await erin.call("GET", f"{A}/gift-cards/diff?from={number}&to=1", status=422)
    await erin.call("GET", f"{A}/gift-cards/versions/{number}", status=404)
    body = {"version": 2**70, "from_version": 1}
    refused = await erin.call("POST", f"{A}/gift-cards/restore", body, status=422)
    assert refused["error"]["field"] == "version"


async def test_list_filters_and_searches(client: TestClient) -> None:
    erin = await session(client)
    await erin.call("POST", A, ARTICLE, status=201)
    await erin.call("POST", A, {**ARTICLE, "id": "returns", "title": "Returns"}, status=201)
    await erin.call("POST", f"{A}/returns/publish", {"version": 1})

    everything = (await erin.call("GET", A))["articles"]
    assert [a["id"] for a in everything] == ["returns", "gift-cards"]
    assert "body" not in everything[0] and everything[0]["updated_by"]
    published = (await erin.call("GET", f"{A}?status=published"))["articles"]
    assert [a["id"] for a in published] == ["returns"]
    assert [a["id"] for a in (await erin.call("GET", f"{A}?q=Returns"))["articles"]] == ["returns"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "no spaces"}, "id"),
        ({"title": ""}, "title"),
        ({"audience": "everyone"}, "audience"),
        ({"language": "English"}, "language"),
        ({"questions": "not a list"}, "questions"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_invalid_articles_are_refused_with_the_field(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    erin = await session(client)
    refused = await erin.call("POST", A, {**ARTICLE, **change}, status=422)
    assert refused["error"]["field"] == field


async def test_unknown_articles_are_404(client: TestClient) -> None:
    erin = await session(client)
    missing = await erin.call("GET", f"{A}/nope", status=404)
    assert missing["error"]["code"] == "unknown_article"
    await erin.call("POST", f"{A}/nope/publish", {"version": 1}, status=404)


# -- preview and try it ----------------------------------------------------------------------


async def test_preview_is_sanitised_html(client: TestClient) -> None:
    erin = await session(client)
    body = (
        "## Hello\n\n<script>alert(1)</script>\n\n"
        "[x](javascript:alert(1)) <img src=x onerror=alert(1)>"
    )
    html = (await erin.call("POST", "/api/console/preview", {"body": body}))["html"]
    assert '<h2 id="hello">Hello</h2>' in html
    assert "<script" not in html and 'href="javascript' not in html and "onerror" not in html


async def test_try_it_validates_the_question(client: TestClient) -> None:
    erin = await session(client)
    refused = await erin.call("POST", "/api/console/try", {"question": ""}, status=422)
    assert refused["error"]["field"] == "question"
