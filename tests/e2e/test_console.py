"""The agent console and the KB editor in headless Chromium against a running gateway + Rasa.

One story, as people live it: an admin adds an agent and an editor; a customer asks for a
human; the agent sees the ticket arrive without reloading, answers with a KB passage, and the
customer's widget shows it; a question the bot could not answer shows among the editor's
content gaps, the editor writes the article from it, and the next customer asking is
answered from it. Markup in a customer message or an article stays text; a POST without
the CSRF token is refused. ``make screenshots`` saves both pages to docs/screenshots/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.conftest import ROOT, Stack
from tests.e2e.test_widget import BOT_REPLY, MSG, REPLY_TIMEOUT_MS, browser  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

# `make screenshots` refreshes the README's pictures; other runs keep theirs with the stack.
SCREENSHOTS_ENV = "PROMPTLY_SCREENSHOTS"
ADMIN, ADMIN_PASSWORD = "root", "root password 1"
AGENT, EDITOR, PASSWORD = "alex", "erin", "a long enough pw"
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

    # The agent opens the console and goes online before any ticket exists.
    agent = new_page(browser, stack, contexts)
    sign_in(agent, AGENT, PASSWORD)
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
    sign_in(editor, EDITOR, PASSWORD)
    expect(editor).to_have_url(re.compile(r"/console/editor"))
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
    try:
        lead.get_by_text("Emergency switch", exact=True).click()
        lead.get_by_test_id("emergency-reason").fill(XSS)  # a reason is shown as text
        lead.get_by_test_id("emergency-channel-web").click()
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
