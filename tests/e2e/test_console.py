"""The agent console and the KB editor in headless Chromium against a running gateway + Rasa.

One story, as people live it: an admin adds an agent and an editor; a customer asks for a
human; the agent sees the ticket arrive without reloading, answers with a KB passage, and the
customer's widget shows it; a question the bot could not answer shows among the editor's
content gaps, the editor writes the article from it, and the next customer asking is
answered from it. Markup in a customer message or an article stays text; a POST without
the CSRF token is refused. ``make screenshots`` saves both pages to docs/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.conftest import ROOT, Stack
from tests.e2e.test_widget import BOT_REPLY, MSG, REPLY_TIMEOUT_MS, browser  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

# `make screenshots` refreshes the README's pictures; other runs keep theirs with the stack.
SCREENSHOTS_ENV = "PROMPTLY_SCREENSHOTS"
ADMIN, ADMIN_PASSWORD = "root", "root password 1"
AGENT, EDITOR, PASSWORD = "alex", "erin", "a long enough pw"
EDITOR_PASSWORD, AGENT_PASSWORD = "set by the admin", "changed by alex"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>'


@pytest.fixture(scope="module")
def admin(stack: Stack) -> str:
    """The first admin, made the documented way: ``promptly users add``."""
    subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(stack.config), "users", "add", ADMIN,
         "--role", "admin"],
        input=f"{ADMIN_PASSWORD}\n", text=True, check=True, cwd=ROOT, capture_output=True,
    )  # fmt: skip
    return ADMIN


@pytest.fixture
def contexts(browser: Browser, stack: Stack) -> Iterator[list[BrowserContext]]:  # noqa: F811
    made: list[BrowserContext] = []
    yield made
    for context in made:
        context.close()


def new_page(browser: Browser, stack: Stack, contexts: list[BrowserContext]) -> Page:  # noqa: F811
    context = browser.new_context(base_url=stack.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(REPLY_TIMEOUT_MS)
    contexts.append(context)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/console/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-form")).to_have_count(0)


def screenshots(stack: Stack) -> Path:
    folder = (
        ROOT / "docs" / "screenshots" if os.environ.get(SCREENSHOTS_ENV) else stack.database.parent
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def customer_asks(page: Page, text: str) -> None:
    if not page.url.endswith("/"):
        page.goto("/")
    box = page.get_by_test_id("promptly-input")
    box.fill(text)
    box.press("Enter")
    expect(page.locator(f'{MSG}[data-type="customer"]', has_text=text[:20]).first).to_be_visible()


def test_admin_agent_editor_and_customer(
    browser: Browser,  # noqa: F811
    stack: Stack,
    admin: str,
    contexts: list[BrowserContext],
) -> None:
    # The admin adds an agent and an editor.
    boss = new_page(browser, stack, contexts)
    sign_in(boss, admin, ADMIN_PASSWORD)
    boss.goto("/console/users")
    for username, role in ((AGENT, "agent"), (EDITOR, "editor")):
        boss.get_by_test_id("new-username").fill(username)
        boss.get_by_test_id("new-password").fill(PASSWORD)
        boss.get_by_test_id("new-role").select_option(role)
        boss.get_by_test_id("add-user").click()
        expect(boss.locator(f'tr[data-username="{username}"]')).to_be_visible()
    # The editor forgot the password: the admin sets a new one in the users page.
    row = boss.locator(f'tr[data-username="{EDITOR}"]')
    row.get_by_label(f"new password for {EDITOR}").fill(EDITOR_PASSWORD)
    row.get_by_test_id("set-password").click()
    expect(boss.get_by_test_id("users-status")).to_have_text(f"Set a new password for {EDITOR}.")

    # The agent opens the editor by mistake: a page in the console's layout leads back.
    agent = new_page(browser, stack, contexts)
    sign_in(agent, AGENT, PASSWORD)
    expect(agent).to_have_url(re.compile(r"/console$"))
    agent.goto("/console/editor")
    expect(agent.get_by_test_id("forbidden")).to_contain_text("needs the editor role")
    expect(agent.get_by_test_id("brand")).to_have_attribute("href", "/console")
    agent.get_by_test_id("forbidden-home").click()
    expect(agent).to_have_url(re.compile(r"/console$"))
    agent.get_by_test_id("presence").select_option("online")
    expect(agent.get_by_test_id("queue")).to_be_visible()

    # A customer asks for a human, with markup in the message.
    customer = new_page(browser, stack, contexts)
    customer.goto("/")
    customer_asks(customer, f"I want to talk to a real person about delivery {XSS}")
    plan = customer.locator(f'{MSG}[data-type="ack"][data-kind="plan"]').first
    expect(plan).to_be_visible()
    reference = re.search(r"PR-[0-9A-Z]{5}", plan.text_content() or "")
    assert reference

    # The ticket appears in the agent's queue live, without a reload.
    row = agent.get_by_test_id("ticket-row").filter(has_text=reference[0])
    expect(row).to_be_visible()
    expect(row.get_by_test_id("countdown")).to_have_text(re.compile(r"\d"))
    row.click()
    view = agent.get_by_test_id("ticket-view")
    expect(view.get_by_test_id("conversation")).to_contain_text("<script>window.__xss=1</script>")
    assert agent.evaluate("window.__xss") is None, "a customer's markup ran in the console"
    take = agent.get_by_test_id("take")
    if take.is_enabled():
        take.click()

    # A KB suggestion goes into the reply with its citation; the customer sees the reply.
    suggestion = agent.get_by_test_id("kb-suggestions").get_by_test_id("kb-insert").first
    expect(suggestion).to_be_visible()
    suggestion.click()
    reply_box = agent.get_by_test_id("reply-text")
    expect(reply_box).to_have_value(re.compile(r"\S"))
    reply_box.fill(f"Hi, Alex here. {reply_box.input_value()}")
    agent.get_by_test_id("send-reply").click()
    from_agent = customer.locator(f'{MSG}[data-type="agent"]', has_text="Alex here")
    expect(from_agent).to_be_visible()
    shots = screenshots(stack)
    agent.screenshot(path=str(shots / "console.png"))

    # A state-changing request without the CSRF token is refused, even with the session.
    refused = agent.request.post("/api/console/users", data={"username": "x"})
    assert refused.status == 403
    refused = agent.request.put(f"/api/agent/agents/{AGENT}", data={"presence": "away"})
    assert refused.status == 403

    # A customer asks what no article answers yet: the bot says it is not sure.
    asker = new_page(browser, stack, contexts)
    customer_asks(asker, "Do you offer gift wrapping?")
    expect(asker.locator(BOT_REPLY, has_text="not sure").first).to_be_visible()

    # The editor finds it among the content gaps and writes the article from it; the
    # customer's next question is answered from it.
    editor = new_page(browser, stack, contexts)
    sign_in(editor, EDITOR, EDITOR_PASSWORD)
    expect(editor).to_have_url(re.compile(r"/console/editor"))
    expect(editor.get_by_test_id("brand")).to_have_attribute("href", "/console/editor")
    gap = editor.get_by_test_id("gaps-list").locator("li", has_text="Do you offer gift wrapping?")
    expect(gap.first).to_be_visible()
    gap.first.get_by_test_id("gap-write").click()
    questions = editor.get_by_test_id("article-questions")
    expect(questions).to_have_value("Do you offer gift wrapping?")
    editor.get_by_test_id("article-title").fill("Gift wrapping")
    editor.get_by_test_id("article-body").fill(
        "We gift wrap any order for £3.50: tick *gift wrap* at checkout and add a note.\n\n"
        f"Markup stays text: {XSS}\n"
    )
    questions.fill(f"{questions.input_value()}\nCan you wrap my order as a present?")
    expect(editor.get_by_test_id("preview")).to_contain_text("gift wrap any order")
    assert editor.evaluate("window.__xss") is None, "an article's markup ran in the editor"
    editor.get_by_test_id("publish").click()
    expect(editor.get_by_test_id("article-list")).to_contain_text("Gift wrapping")
    editor.screenshot(path=str(shots / "editor.png"))

    customer2 = new_page(browser, stack, contexts)
    customer2.goto("/")
    customer_asks(customer2, "Do you offer gift wrapping?")
    answer = customer2.locator(
        f'{MSG}[data-type="ack"], {MSG}[data-type="answer"]', has_text="gift wrap any order"
    ).first
    expect(answer).to_be_visible()
    expect(answer.locator("a", has_text="Gift wrapping")).to_be_visible()
    assert customer2.evaluate("window.__xss") is None

    # The admin's dashboard shows today's figures and draws every chart server-side.
    boss.goto("/console/dashboard?period=today")
    figures = boss.get_by_test_id("key-figures")
    # Every ack of this story (and of the other browser tests on this stack) was in time.
    expect(figures.locator('[data-key="ack_within"] .value')).to_have_text("100.0 %")
    acks = figures.locator('[data-key="ack_p99"] .detail').text_content() or ""
    assert int(acks.split()[0]) >= 2, acks  # the two customers' first messages at least
    expect(boss.get_by_test_id("chart").first).to_be_visible()
    boss.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="chart"]')]
                 .every(img => img.complete && img.naturalWidth > 0)"""
    )
    boss.screenshot(path=str(shots / "dashboard.png"), full_page=True)

    # The agent changes their own password from the name in the top bar.
    agent.get_by_test_id("me").click()
    agent.get_by_label("Current password").fill(PASSWORD)
    agent.get_by_label("New password (at least 10 characters)").fill(AGENT_PASSWORD)
    agent.get_by_label("Repeat the new password").fill(AGENT_PASSWORD)
    agent.get_by_test_id("change-password").click()
    expect(agent.get_by_test_id("password-status")).to_contain_text("Password changed")
    agent.get_by_test_id("logout").click()
    sign_in(agent, AGENT, AGENT_PASSWORD)

    for page in (boss, agent, customer, asker, editor, customer2):
        assert page.errors == [], page.errors  # type: ignore[attr-defined]


def test_a_lead_pauses_the_web_channel_and_the_customer_is_answered_on_resume(
    browser: Browser,  # noqa: F811
    stack: Stack,
    admin: str,
    contexts: list[BrowserContext],
) -> None:
    lead = new_page(browser, stack, contexts)
    sign_in(lead, admin, ADMIN_PASSWORD)
    lead.goto("/console")
    dialogs: list[str] = []
    try:
        lead.get_by_text("Emergency switch", exact=True).click()
        # Only the channels this gateway serves; no pause without a reason and a yes.
        expect(lead.locator('[data-testid^="emergency-channel-"]')).to_have_count(1)
        pause = lead.get_by_test_id("emergency-channel-web")
        pause.click()
        reason = lead.get_by_label("Reason (shown to everyone, logged)")
        assert reason.evaluate("el => el.validationMessage"), "an empty reason is refused"
        reason.fill(XSS)  # a reason is shown as text
        lead.once("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        pause.click()
        expect(pause).to_have_text("Pause web")  # said no: nothing changed
        lead.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        pause.click()
        assert len(dialogs) == 2 and "the web channel" in dialogs[0], dialogs
        banner = lead.get_by_test_id("emergency-banner")
        expect(banner).to_contain_text("paused: web")
        expect(banner).to_contain_text("<script>")

        customer = new_page(browser, stack, contexts)
        customer.goto("/")
        customer_asks(customer, "hello, is anyone there?")
        receipt = customer.locator(f'{MSG}[data-type="ack"]').first
        expect(receipt).to_contain_text("Replies on this channel are paused")

        lead.get_by_test_id("emergency-channel-web").click()  # the controls stay open
        expect(banner).to_have_count(0)
        expect(customer.locator(f'{MSG}[data-type="answer"]').first).to_be_visible()
        for page in (lead, customer):
            assert page.evaluate("window.__xss") is None
            assert page.errors == [], page.errors  # type: ignore[attr-defined]
    finally:  # the other browser tests share this gateway
        subprocess.run(
            [sys.executable, "-m", "bot", "--config", str(stack.config), "emergency", "resume",
             "web"],
            check=True, cwd=ROOT, capture_output=True,
        )  # fmt: skip


# What sticks out of its pane (a long name, URL or word must wrap inside it instead).
OVERFLOWING = """() => {
  const out = [];
  const panes = ".ticket-pane, .kb-pane, .conversation, .ticket-head";
  const parts = ".entry, .entry .who, .entry .who span, .hint, .hit, .hit h4";
  for (const el of document.querySelectorAll(`${panes}, ${parts}`)) {
    if (el.scrollWidth > el.clientWidth + 1) out.push(`${el.id || el.className} overflows`);
  }
  const head = document.querySelector(".ticket-head");
  if (head.getBoundingClientRect().height > 260) out.push("the ticket header is too tall");
  if (document.documentElement.scrollWidth > innerWidth) out.push("the page scrolls sideways");
  return out;
}"""


def fake_ticket(key: str, queue: str, due_in: timedelta, name: str, text: str) -> dict[str, Any]:
    """A ticket as ``GET /api/agent/tickets`` shows it, with one running clock."""
    now = datetime.now(UTC)
    clock = {"state": "running", "due": (now + due_in).isoformat(), "warn_at": None}
    return {
        "id": key, "reference": f"PR-{key.upper()}", "queue": queue, "priority": "normal",
        "tier": "consumer", "channel": "web", "status": "new", "assignee": None,
        "customer": {"id": f"c-{key}", "name": name, "email": None}, "last_message": text,
        "waiting_since": now.isoformat(), "created_at": now.isoformat(), "reason": "human",
        "sla": {"paused": False, "clocks": {"first_response": clock}},
    }  # fmt: skip


def test_the_queue_puts_the_most_pressing_group_first_and_long_text_stays_inside(
    browser: Browser,  # noqa: F811
    stack: Stack,
    admin: str,
    contexts: list[BrowserContext],
) -> None:
    """The console's rendering of what the API says, with the API's answers made up (routed
    in the browser): group order, the late countdown, 500-character words, internal KB hits."""
    page = new_page(browser, stack, contexts)
    sign_in(page, admin, ADMIN_PASSWORD)
    queues = [q["queue"] for q in page.request.get("/api/queues").json()["queues"]]
    first, last = queues[0], queues[-1]
    word, name = "Z" * 500, "Nolan " + "N" * 150
    relaxed = fake_ticket("far", first, timedelta(hours=18), "Far", "later")
    pressing = fake_ticket("late", last, timedelta(seconds=-46), name, f"help {word}")
    detail = {
        **pressing, "conversation_id": "conv-late", "notes": [], "events": [],
        "messages": [{"seq": 1, "type": "customer", "text": f"https://example.com/{word}",
                      "created_at": pressing["created_at"]}],
        "now": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    hits = [
        {"article_id": "team-only", "title": "Team only", "score": 0.9, "passage": word,
         "citation": {"title": "Team only", "url": "/kb/team-only"}, "internal": True},
        {"article_id": "returns-policy", "title": "Returns", "score": 0.8, "passage": "60 days",
         "citation": {"title": "Returns", "url": "/kb/returns-policy"}, "internal": False},
    ]  # fmt: skip
    answers = {
        "/api/agent/tickets": {"tickets": [relaxed, pressing], "now": detail["now"]},
        "/api/agent/tickets/late": detail,
        "/api/agent/customers/c-late": {"name": name, "email": None, "tier": "consumer",
                                        "tickets": [], "conversations": []},
        "/api/kb/search": {"query": word, "audience": "agent", "band": None, "hits": hits},
    }  # fmt: skip

    def answer(route: Route) -> None:
        path = route.request.url.split("?")[0].removeprefix(stack.url)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answers[path]))

    for path in answers:
        page.route(f"**{path}", answer)
        page.route(f"**{path}?*", answer)
    page.goto("/console")
    groups = page.locator("#queue h3")
    expect(groups).to_have_count(2)
    assert [groups.nth(i).get_attribute("data-queue") for i in range(2)] == [last, first]
    row = page.get_by_test_id("ticket-row").filter(has_text="PR-LATE")
    expect(row.get_by_test_id("countdown")).to_have_text(re.compile(r"^4\ds late$"))
    row.click()
    expect(page.get_by_test_id("conversation")).to_contain_text("https://example.com/ZZZ")
    hit = page.get_by_test_id("kb-hit")
    expect(hit).to_have_count(2)
    expect(hit.filter(has_text="Team only").get_by_test_id("kb-open")).to_have_count(0)
    expect(hit.filter(has_text="Returns").get_by_test_id("kb-open")).to_have_count(1)
    overflow = page.evaluate(OVERFLOWING)
    assert overflow == [], overflow
    assert page.errors == [], page.errors  # type: ignore[attr-defined]
