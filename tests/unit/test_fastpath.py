"""The answer fast path's parts: Rasa's files, the intent gate, and what keeps a turn Rasa's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions import services
from actions.orderbook import OrderBook
from bot.fastpath import (
    ESCALATE_ACTION,
    KB_ACTION,
    FastPath,
    Form,
    Route,
    build,
    entity_patterns,
    form_rules,
    forms,
    nlu_examples,
    one_step_rules,
    responses,
    settle,
)
from knowledge_base import HashingEmbedder, KnowledgeBase, load_markdown_dir
from knowledge_base.ranking import ArticleHead
from tests.conftest import ROOT

NLU = """\
version: "3.1"
nlu:
  - intent: faq
    examples: |
      - how long does delivery take
      - what is your return policy
  - intent: order_status
    examples: |
      - where is my order [A1234](order_number)
  - synonym: parcel
    examples: |
      - package
"""


def test_rasa_files_give_examples_one_step_rules_and_responses(tmp_path: Path) -> None:
    path = tmp_path / "nlu.yml"
    path.write_text(NLU, encoding="utf-8")
    texts, intents = nlu_examples(path)
    assert texts[2] == "where is my order A1234"  # entity markup gone, synonyms skipped
    assert intents == ["faq", "faq", "order_status"]
    # The project's own files: conditional rules, forms and slot-dependent ones are left out.
    rules = one_step_rules(ROOT / "data" / "rules.yml")
    assert rules["faq"] == KB_ACTION and rules["greet"] == "utter_greet"
    assert rules["human_handoff"] == ESCALATE_ACTION
    assert "order_status" not in rules and "affirm" not in rules and "deny" not in rules
    assert responses(ROOT / "domain.yml")["utter_greet"].startswith("Hi!")


async def test_the_gate_routes_the_projects_intents_and_leaves_forms_to_rasa() -> None:
    fast = await build(ROOT, HashingEmbedder(512).encode, gate_floor=0.3)
    assert fast is not None
    greet = await fast.route("c1", "hi there")
    assert greet is not None and (greet.intent, greet.action) == ("greet", "utter_greet")
    assert greet.text.startswith("Hi!")
    handoff = await fast.route("c1", "I want to talk to a person")
    assert handoff is not None and handoff.action == ESCALATE_ACTION
    assert await fast.route("c1", "where is my order") is None  # the form would ask: Rasa's


def fast_path(intent: str = "greet", action: str = "utter_greet") -> FastPath:
    gate = ArticleHead(
        (intent, "other"),
        np.zeros((4, 2), dtype=np.float32),
        np.array([1.0, 0.0], dtype=np.float32),
    )

    async def embed(text: str) -> np.ndarray:
        return np.zeros(4, dtype=np.float32)

    return FastPath(gate, {intent: Route(intent, action, "Hello!")}, 0.7, embed)


async def test_forms_offers_and_upset_text_stay_with_rasa() -> None:
    fast = fast_path()  # the gate says "greet" with p = 0.73
    assert await fast.route("c1", "hello") == Route("greet", "utter_greet", "Hello!")
    assert await fast.route("c1", "hello?? this is ridiculous") is None
    assert await fast.route("c1", "   ") is None

    # A form's validation runs from its activation; its end shows in the next action's tracker.
    fast.observe_action({"next_action": "validate_order_status_form", "sender_id": "c1",
                         "tracker": {"active_loop": {}}})  # fmt: skip
    assert await fast.route("c1", "hello") is None
    assert await fast.route("c2", "hello") is not None
    fast.observe_action({"next_action": "action_order_status", "sender_id": "c1",
                         "tracker": {"active_loop": {"name": None}}})  # fmt: skip
    assert await fast.route("c1", "hello") is not None

    fast.replied("c1", offered=True)  # "shall I get a person?": a "yes" must reach Rasa
    assert await fast.route("c1", "hello") is None
    fast.replied("c1", offered=False)
    assert await fast.route("c1", "hello") is not None

    fast.gate_floor = 0.75  # not sure enough
    assert await fast.route("c1", "hello") is None


async def test_an_upset_handoff_request_is_still_handed_off_at_once() -> None:
    fast = fast_path("human_handoff", ESCALATE_ACTION)
    route = await fast.route("c1", "get me a human NOW, this is ridiculous")
    assert route is not None and route.action == ESCALATE_ACTION


async def test_what_it_remembers_of_conversations_is_bounded() -> None:
    fast = fast_path()
    fast.remember = 2
    for conversation in ("c1", "c2", "c3"):
        fast.replied(conversation, offered=True)
    assert list(fast.after_offer) == ["c2", "c3"]  # the oldest forgotten
    fast.replied("c2", offered=True)  # touched again: now the newest
    fast.replied("c4", offered=True)
    assert list(fast.after_offer) == ["c2", "c4"]


def test_forms_one_message_completes_come_from_rasas_files() -> None:
    activates, submits = form_rules(ROOT / "data" / "rules.yml")
    assert activates == {"order_status": "order_status_form", "inform": "order_status_form"}
    assert submits == {"order_status_form": "action_order_status"}
    form = Form("order_status_form", (("order_number", "order_number"),), "action_order_status")
    assert forms(ROOT) == {"order_status": form, "inform": form}
    [first, second] = entity_patterns(ROOT / "data" / "nlu.yml")["order_number"]
    assert first.search("where is ac10452") and second.search("has 10452 shipped")
    assert not second.search("AC-10452")  # Rasa's own patterns, as written


def test_no_forms_when_rasa_extracts_entities_otherwise(tmp_path: Path) -> None:
    for name in ("domain.yml", "data/rules.yml", "data/nlu.yml"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text(encoding="utf-8"), encoding="utf-8")
    config = (ROOT / "config.yml").read_text(encoding="utf-8")
    (tmp_path / "config.yml").write_text(
        config.replace("entity_recognition: false", "entity_recognition: true"), encoding="utf-8"
    )
    assert forms(tmp_path) == {}  # DIET would find entities the gateway cannot


def order_fast_path() -> FastPath:
    gate = ArticleHead(
        ("order_status", "faq"),
        np.zeros((4, 2), dtype=np.float32),
        np.array([1.0, 0.0], dtype=np.float32),
    )

    async def embed(text: str) -> np.ndarray:
        return np.zeros(4, dtype=np.float32)

    form = Form("order_status_form", (("order_number", "order_number"),), "action_order_status")
    return FastPath(
        gate,
        {"order_status": Route("order_status", form.name, form=form)},
        0.7,
        embed,
        patterns=entity_patterns(ROOT / "data" / "nlu.yml"),
    )


@pytest.fixture
def orders() -> Iterator[None]:
    services.configure(
        services.Services(
            kb=None,
            tickets=None,  # type: ignore[arg-type]  # order actions open no tickets
            orders=OrderBook.from_csv(ROOT / "kb" / "demo_orders.csv"),
            kb_floor=0.5,
            kb_offer_floor=0.4,
        )
    )
    yield
    services.configure(None)


async def test_a_form_one_message_completes_runs_the_projects_actions(orders: None) -> None:
    fast = await build(ROOT, HashingEmbedder(512).encode, gate_floor=0.01)
    assert fast is not None and fast.run_action is not None
    fast.gate_floor = 0.0  # whatever the hashing gate thinks, the route is order_status's
    fast.gate = ArticleHead(
        ("order_status", "faq"),
        np.zeros((512, 2), dtype=np.float32),
        np.array([1.0, 0.0], dtype=np.float32),
    )
    route = await fast.route("c1", "has 10453 shipped yet?")
    assert route is not None and route.form is not None
    assert route.values == (("order_number", "10453"),)
    # Validated (normalised) by validate_order_status_form, then action_order_status answers.
    said = await fast.complete_form(route, "c1", "has 10453 shipped yet?")
    assert said == ["Order AC-10453 is processing; expected delivery 2026-12-02."]
    route = await fast.route("c1", "where is order AC-99999")
    assert route is not None
    said = await fast.complete_form(route, "c1", "where is order AC-99999")
    assert said is not None and said[0].startswith("I couldn't find order AC-99999")


async def test_a_form_the_message_does_not_complete_stays_with_rasa() -> None:
    fast = order_fast_path()
    fast.run_action = run_nothing
    assert await fast.route("c1", "where is my order") is None  # the form would ask
    assert await fast.route("c1", "is it AC-10452 or AC-10453?") is None  # two numbers
    assert await fast.route("c2", "where is order AC-10452") is not None
    fast.run_action = None  # no actions to run here: every form is Rasa's
    assert await fast.route("c2", "where is order AC-10452") is None


async def run_nothing(call: dict[str, Any]) -> dict[str, Any] | None:
    return {"events": [], "responses": []}


async def test_an_entity_left_with_rasa_keeps_its_conversations_forms_there() -> None:
    fast = order_fast_path()
    fast.run_action = run_nothing
    # Rasa fills order_number from any message with a number, and keeps it until the form's
    # submit action empties it: until then a form filled here would leave Rasa's copy behind.
    assert await fast.route("c1", "is it AC-10452 or AC-10453?") is None
    assert "c1" in fast.slot_held
    assert await fast.route("c1", "where is order AC-10452") is None
    assert await fast.route("c2", "where is order AC-10452") is not None
    fast.observe_action({"next_action": "action_order_status", "sender_id": "c1",
                         "tracker": {"active_loop": {}}})  # fmt: skip
    assert await fast.route("c1", "where is order AC-10452") is not None


async def test_a_one_step_intent_with_an_entity_is_rasas() -> None:
    fast = fast_path("faq", KB_ACTION)
    fast.patterns = entity_patterns(ROOT / "data" / "nlu.yml")
    route = await fast.route("c1", "can I return AC-10452?")
    assert route is None and "c1" in fast.slot_held  # Rasa must see the order number
    assert await fast.route("c2", "can I return a jacket?") is not None


async def test_a_validation_that_speaks_or_rejects_leaves_the_turn_to_rasa() -> None:
    fast = order_fast_path()
    calls: list[str] = []

    async def rejecting(call: dict[str, Any]) -> dict[str, Any] | None:
        calls.append(call["next_action"])
        return {
            "events": [{"event": "slot", "name": "order_number", "value": None}],
            "responses": [{"text": "That doesn't look like an order number."}],
        }

    fast.run_action = rejecting
    route = await fast.route("c1", "where is order 12345678")
    assert route is not None
    assert await fast.complete_form(route, "c1", "where is order 12345678") is None
    assert calls == ["validate_order_status_form"]  # the submit action never ran


async def test_the_knowledge_base_answers_the_gates_vector_as_it_answers_the_text() -> None:
    embedder = HashingEmbedder(256)
    kb = KnowledgeBase.build(load_markdown_dir(ROOT / "kb" / "articles"), embedder)
    for question in ("how long does shipping take?", "do you take PayPal?", "tell me a joke"):
        by_text = kb.answer(question, 0.3)
        by_vector = kb.answer_for(embedder.encode([question])[0], 0.3)
        assert by_vector == by_text


scores = st.none() | st.floats(0, 1)
floors = st.floats(0, 1)


@given(scores, floors, floors)
def test_a_kb_route_answers_only_at_the_direct_floor(score, direct, offer):
    ending = settle(Route("faq", KB_ACTION), score, direct=direct, offer=offer)
    assert ending == ("kb" if score is not None and score >= direct else "rasa")


@given(scores, floors, floors)
def test_a_canned_reply_never_hides_an_article_in_the_offer_band(score, direct, offer):
    route = Route("out_of_scope", "utter_out_of_scope", "Sorry, I can only help with ...")
    ending = settle(route, score, direct=direct, offer=offer)
    assert ending == ("rasa" if score is not None and score >= offer else "canned")
