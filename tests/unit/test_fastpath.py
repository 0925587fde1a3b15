"""The answer fast path's parts: Rasa's files, the intent gate, and what keeps a turn Rasa's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bot.fastpath import (
    ESCALATE_ACTION,
    KB_ACTION,
    FastPath,
    Route,
    build,
    nlu_examples,
    one_step_rules,
    responses,
)
from knowledge_base import HashingEmbedder
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
    assert await fast.route("c1", "where is my order AC-10452") is None  # a form: Rasa's


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
