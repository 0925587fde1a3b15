"""The web widget in headless Chromium against a running gateway + Rasa.

``promptly_url`` (tests/conftest.py) is the base URL of that gateway. Chromium is Debian's
(``apt-get install -y chromium``); Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, expect, sync_playwright

from tests.conftest import Stack

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QUESTION = "How long does delivery take?"
REPLY_TIMEOUT_MS = 15_000
MSG = '[data-testid="promptly-msg"]'
BOT_REPLY = f'{MSG}[data-type="ack"], {MSG}[data-type="answer"]'
ABOUT_DELIVERY = re.compile(r"deliver|shipping", re.IGNORECASE)
SAM = {"id": "sam", "name": "Sam"}
RATING = '[data-testid="promptly-csat-rating"]'


@dataclass
class Tab:
    page: Page
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "the e2e tests need Debian's Chromium on PATH as `chromium`: "
            "run `apt-get update && apt-get install -y chromium`"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def tab(browser: Browser, promptly_url: str) -> Iterator[Tab]:
    """A fresh browser context (empty localStorage: a new customer) on the demo page."""
    context = browser.new_context(
        base_url=promptly_url, viewport={"width": 1280, "height": 860}, locale="en-US"
    )
    context.set_default_timeout(REPLY_TIMEOUT_MS)
    page = context.new_page()
    tab = Tab(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            tab.errors.append(f"console.error: {message.text} ({message.location})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: tab.errors.append(f"uncaught exception: {error}"))
    try:
        yield tab
    finally:
        context.close()


def transcript(page: Page) -> str:
    """What the widget shows, for assertion messages."""
    rows = page.locator(MSG).evaluate_all(
        """els => els.map(e => [e.dataset.type, e.dataset.kind, e.dataset.seq, e.dataset.state,
              e.textContent.trim().slice(0, 160),
              [...e.querySelectorAll('a')].map(a => a.textContent + ' -> ' + a.href)])"""
    )
    return "\n".join(f"  {row}" for row in rows) or "  (no messages)"


def expect_shown(page: Page, locator: Locator, what: str) -> None:
    try:
        expect(locator).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    except AssertionError as e:
        raise AssertionError(f"{what} not shown; the widget shows:\n{transcript(page)}") from e


def delivery_answer(page: Page) -> Locator:
    """The bot reply (solution ack or answer) that cites a delivery/shipping article."""
    return page.locator(BOT_REPLY).filter(has=page.locator("a", has_text=ABOUT_DELIVERY))


def ask_about_delivery(tab: Tab) -> None:
    page = tab.page
    page.goto("/")
    box = page.get_by_test_id("promptly-input")
    expect(box, "the demo page opens the widget (data-open=true)").to_be_visible()
    box.fill(QUESTION)
    box.press("Enter")
    expect(box).to_have_value("")
    mine = page.locator(f'{MSG}[data-type="customer"]', has_text=QUESTION)
    expect(mine).to_have_count(1)
    expect_shown(page, delivery_answer(page).first, "an answer citing a delivery article")
    expect(mine, "the gateway accepted the message").to_have_attribute("data-state", "sent")


def test_answer_with_delivery_citation(tab: Tab, promptly_url: str) -> None:
    ask_about_delivery(tab)
    page = tab.page
    link = delivery_answer(page).first.locator("a", has_text=ABOUT_DELIVERY).first
    href = link.get_attribute("href") or ""
    assert href.startswith(("http://", "https://")), href
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", re.compile(r"\bnoopener\b"))
    # The linked citation names the source; the text's "Source: <title>" line is not repeated.
    expect(delivery_answer(page).first).not_to_contain_text("Source:")
    first_reply = page.locator(BOT_REPLY).first
    expect(first_reply).to_have_attribute("data-type", "ack")
    expect(first_reply).to_have_attribute("data-kind", re.compile(r"^(solution|receipt)$"))


def test_history_survives_reload(tab: Tab) -> None:
    ask_about_delivery(tab)
    page = tab.page
    page.reload()
    mine = page.locator(f'{MSG}[data-type="customer"]', has_text=QUESTION)
    expect_shown(page, mine, "the customer's message, reloaded from history")
    expect_shown(page, delivery_answer(page).first, "the answer, reloaded from history")
    # History, the WebSocket replay and live frames overlap: each frame is shown once.
    expect(mine).to_have_count(1)
    expect(delivery_answer(page)).to_have_count(1)
    seqs = [s for s in page.locator(MSG).evaluate_all("els => els.map(e => e.dataset.seq)") if s]
    assert len(seqs) == len(set(seqs)), f"duplicate frames:\n{transcript(page)}"


def test_no_console_errors(tab: Tab) -> None:
    ask_about_delivery(tab)
    page = tab.page
    page.reload()
    expect_shown(page, delivery_answer(page).first, "the answer after reload")
    page.wait_for_timeout(500)  # let the WebSocket connect after the history load
    assert tab.errors == [], "browser console errors:\n" + "\n".join(tab.errors)


def agent_api(stack: Stack, path: str, body: object = None) -> dict[str, object]:
    """GET (no body) or POST the agent API with the stack's bearer token."""
    request = urllib.request.Request(
        f"{stack.url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {stack.agent_token}",
            "Content-Type": "application/json",
        },
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def handed_off_ticket(tab: Tab, stack: Stack) -> str:
    """Ask the widget for a person; the id of the ticket its plan card names."""
    page = tab.page
    page.goto("/")
    box = page.get_by_test_id("promptly-input")
    box.fill("I want to talk to a real person please")
    box.press("Enter")
    plan = page.locator(f'{MSG}[data-type="ack"][data-kind="plan"]')
    expect_shown(page, plan.first, "a plan card")
    reference = re.search(r"PR-[0-9A-Z]{5}", plan.first.text_content() or "")
    assert reference, transcript(page)
    expect(plan.first).to_contain_text(re.compile(r"reply by", re.IGNORECASE))
    tickets = agent_api(stack, "/api/agent/tickets")["tickets"]
    assert isinstance(tickets, list)
    return str(next(t["id"] for t in tickets if t["reference"] == reference[0]))


def test_handoff_plan_and_agent_reply_in_the_widget(tab: Tab, stack: Stack) -> None:
    page = tab.page
    ticket_id = handed_off_ticket(tab, stack)
    reply = {"text": "Hi, Sam from support here.", "agent": SAM}
    agent_api(stack, f"/api/agent/tickets/{ticket_id}/replies", reply)
    agent = page.locator(f'{MSG}[data-type="agent"]', has_text="Sam from support")
    expect_shown(page, agent, "the agent's reply")
    page.screenshot(path=str(stack.database.parent / "widget-handoff.png"))
    assert tab.errors == [], "browser console errors:\n" + "\n".join(tab.errors)


def test_a_locked_database_shows_the_receipt_at_once_then_the_answer(
    tab: Tab, stack: Stack
) -> None:
    """The database away: the receipt comes from memory, is kept once it is stored, and the
    answer follows when the database is back (bot/journal.py)."""
    page = tab.page
    page.goto("/")
    box = page.get_by_test_id("promptly-input")
    expect(box).to_be_visible()
    receipt = page.locator(f'{MSG}[data-type="ack"][data-kind="receipt"]')
    db = sqlite3.connect(stack.database, timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")  # what a long backup or a stuck process does
        box.fill(QUESTION)
        box.press("Enter")
        expect_shown(page, receipt.first, "the receipt sent from memory")
        expect(receipt.first).to_have_attribute("data-journaled", "1")
        expect(receipt.first).to_contain_text("technical problem")
    finally:
        db.execute("ROLLBACK")
        db.close()
    expect_shown(page, delivery_answer(page).first, "the answer once the database is back")
    expect(receipt).to_have_count(1)  # the stored receipt is the one already shown
    expect(receipt.first).not_to_have_attribute("data-journaled", "1")
    expect(receipt.first).to_have_attribute("data-seq", re.compile(r"^\d+$"))
    page.reload()  # the history has it once too
    expect_shown(page, delivery_answer(page).first, "the answer, reloaded")
    expect(receipt).to_have_count(1)
    assert tab.errors == [], "browser console errors:\n" + "\n".join(tab.errors)


def csat_events(stack: Stack, ticket_id: str) -> list[dict[str, object]]:
    db = sqlite3.connect(stack.database, timeout=30)
    try:
        rows = db.execute(
            "SELECT data FROM events WHERE type = 'csat' AND ticket_id = ? ORDER BY seq",
            (ticket_id,),
        ).fetchall()
    finally:
        db.close()
    return [json.loads(data) for (data,) in rows]


def test_rating_then_an_optional_comment_kept_when_the_rating_changes(
    tab: Tab, stack: Stack
) -> None:
    page = tab.page
    ticket_id = handed_off_ticket(tab, stack)
    agent_api(stack, f"/api/agent/tickets/{ticket_id}/resolve", {"agent": SAM})
    expect_shown(page, page.get_by_test_id("promptly-csat"), "the rating buttons")
    comment = page.get_by_label("Anything to add?")
    send = page.get_by_test_id("promptly-csat-comment-send")
    status = page.get_by_test_id("promptly-csat").get_by_role("status")
    expect(comment, "the comment field follows a tap").to_be_hidden()

    page.locator(f'{RATING}[data-rating="4"]').click()
    expect(status).to_have_text("Thanks for your rating!")
    expect(page.locator(f'{RATING}[aria-pressed="true"]')).to_have_text("4")
    expect(comment).to_be_visible()
    expect(send, "nothing to send yet").to_be_disabled()
    comment.fill("x" * 1001)  # the API's limit is 1000: not cut, not sendable
    expect(comment).to_have_value("x" * 1001)
    expect(status).to_have_text("Too long to send: 1001 / 1000 characters.")
    expect(send).to_be_disabled()
    comment.fill("Quick and kind")
    expect(status).to_have_text("")
    comment.press("Enter")
    expect(status).to_have_text("Thanks, we've passed your comment on.")
    expect(comment).to_be_hidden()

    page.locator(f'{RATING}[data-rating="2"]').click()  # a change of mind
    expect(page.locator(f'{RATING}[aria-pressed="true"]')).to_have_text("2")
    expect(status).to_have_text("Thanks for your rating!")
    expect(comment, "the comment was sent already").to_be_hidden()
    stored = [(e["rating"], e["comment"]) for e in csat_events(stack, ticket_id)]
    assert stored == [(4, None), (4, "Quick and kind"), (2, "Quick and kind")], stored

    page.reload()  # the buttons remember the latest rating
    expect_shown(page, page.get_by_test_id("promptly-csat"), "the rating buttons, reloaded")
    expect(page.locator(f'{RATING}[aria-pressed="true"]')).to_have_text("2")
    expect(comment).to_be_hidden()
    assert tab.errors == [], "browser console errors:\n" + "\n".join(tab.errors)


def test_a_typed_rating_shows_on_the_buttons(tab: Tab, stack: Stack) -> None:
    page = tab.page
    ticket_id = handed_off_ticket(tab, stack)
    agent_api(stack, f"/api/agent/tickets/{ticket_id}/resolve", {"agent": SAM})
    expect_shown(page, page.get_by_test_id("promptly-csat"), "the rating buttons")
    box = page.get_by_test_id("promptly-input")
    box.fill("5 - great service")
    box.press("Enter")
    expect(page.locator(f'{RATING}[aria-pressed="true"]')).to_have_text("5")
    assert [(e["rating"], e["comment"]) for e in csat_events(stack, ticket_id)] == [
        (5, "great service")
    ]
    assert tab.errors == [], "browser console errors:\n" + "\n".join(tab.errors)


def overlaps(a: Locator, b: Locator) -> bool:
    box_a, box_b = a.bounding_box(), b.bounding_box()
    assert box_a and box_b
    return not (
        box_a["x"] + box_a["width"] <= box_b["x"]
        or box_b["x"] + box_b["width"] <= box_a["x"]
        or box_a["y"] + box_a["height"] <= box_b["y"]
        or box_b["y"] + box_b["height"] <= box_a["y"]
    )


@pytest.mark.parametrize("viewport", [(1280, 860), (390, 844)], ids=["desktop", "mobile"])
def test_counter_beside_the_text_and_long_text_kept_whole(
    tab: Tab, viewport: tuple[int, int]
) -> None:
    page = tab.page
    page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
    page.goto("/")
    box = page.get_by_test_id("promptly-input")
    counter = page.get_by_test_id("promptly-counter")
    send = page.get_by_test_id("promptly-send")
    expect(box).to_be_visible()
    expect(counter).to_be_hidden()

    box.fill("word " * 760)  # 3800 characters: the counter shows, under the text
    expect(counter).to_have_text("3800 / 4000")
    assert not overlaps(counter, box), "the counter is drawn over the message text"
    assert not overlaps(counter, send), "the counter is drawn over the send button"
    expect(counter).not_to_have_class(re.compile(r"\bover\b"))
    expect(send).to_be_enabled()

    box.fill("y" * 4100)  # a paste past the limit is kept whole, and the counter says so
    expect(box).to_have_value("y" * 4100)
    expect(counter).to_have_text("4100 / 4000: too long to send, please shorten it")
    expect(counter).to_have_class(re.compile(r"\bover\b"))
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(send).to_be_disabled()
    assert not overlaps(counter, box)
    box.press("Enter")  # refused: nothing is sent, nothing is cut
    expect(box).to_have_value("y" * 4100)
    expect(page.locator(f'{MSG}[data-type="customer"]')).to_have_count(0)

    box.fill("y" * 4000)
    expect(counter).to_have_text("4000 / 4000")
    expect(send).to_be_enabled()
    assert tab.errors == [], "browser console errors:\n" + "\n".join(tab.errors)
