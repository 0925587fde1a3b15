"""The answer fast path: the gateway runs Rasa's one-step rules itself.

Rasa's turn (NLU, policies, the action called back over HTTP) is what saturates first under
load, yet most messages need no dialogue: for the intents whose rule in ``data/rules.yml`` is
one unconditional step (``faq`` -> ``action_answer_from_kb``, ``greet`` -> ``utter_greet``,
``human_handoff`` -> ``action_escalate``, ...) Rasa's answer depends on the intent alone. So when

* the conversation is with the bot, not inside a form (the gateway hosts Rasa's actions and
  sees when a form is validating), and the bot's last reply was not an offer of a person or
  of choices (a "yes" or "2" then means something only Rasa's slots know),
* a classifier trained on Rasa's own examples (``data/nlu.yml``; a logistic regression on the
  knowledge base model's embeddings, the knowledge base's per-article head reused for intents)
  is at least ``kb.fast_gate`` sure of an intent that has such a rule,
* and, for a knowledge-base answer, the knowledge base is above ``kb.direct_floor``; for a
  canned response, the text carries no urgency or frustration cue,

the gateway does what the rule says — the same KB passage and citation, the same response
text from ``domain.yml``, the same handoff — and Rasa is not asked. Everything else, and
anything the gateway is unsure of, goes to Rasa as before. Rasa's tracker does not see these
turns; nothing its rules condition on (forms, the ``offered_human`` slot) is touched by them.
Measured in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from bot.handoff.routing import cues
from knowledge_base.batching import Query, QueryBatcher
from knowledge_base.embedder import Vectors
from knowledge_base.ranking import ArticleHead

logger = logging.getLogger(__name__)
V = TypeVar("V")

KB_ACTION = "action_answer_from_kb"
ESCALATE_ACTION = "action_escalate"
# [text](entity) and [text]{"entity": ...} annotations in Rasa's training examples.
_ENTITY = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\{[^}]*\})")


def nlu_examples(path: Path) -> tuple[list[str], list[str]]:
    """(texts, intents) of a Rasa NLU YAML file, entity markup removed."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    texts: list[str] = []
    intents: list[str] = []
    for block in data.get("nlu", []):
        if not isinstance(block, dict) or "intent" not in block:
            continue  # synonyms, regexes, lookup tables
        for line in str(block.get("examples", "")).splitlines():
            line = line.strip()
            if line.startswith("- "):
                texts.append(_ENTITY.sub(r"\1", line[2:]).strip())
                intents.append(str(block["intent"]))
    return texts, intents


def one_step_rules(path: Path) -> dict[str, str]:
    """intent -> action of the rules in a Rasa rules file that are one unconditional step."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found: dict[str, str] = {}
    for rule in data.get("rules", []):
        if not isinstance(rule, dict) or rule.get("condition") or rule.get("conversation_start"):
            continue
        steps = rule.get("steps") or []
        if len(steps) == 2 and "intent" in steps[0] and "action" in steps[1]:
            found[str(steps[0]["intent"])] = str(steps[1]["action"])
    return found


def responses(path: Path) -> dict[str, str]:
    """utter name -> its first text in a Rasa domain file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found: dict[str, str] = {}
    for name, variants in (data.get("responses") or {}).items():
        texts = [v["text"] for v in variants or [] if isinstance(v, dict) and v.get("text")]
        if texts:
            found[str(name)] = str(texts[0])
    return found


@dataclass(frozen=True)
class Route:
    """What the gateway does instead of Rasa: the intent and its rule's action."""

    intent: str
    action: str  # KB_ACTION, ESCALATE_ACTION or an utter_* response
    text: str = ""  # the response's text, for an utter_* action


@dataclass
class FastPath:
    gate: ArticleHead  # intents, not articles: the same multinomial logistic regression
    rules: dict[str, Route]  # intent -> what its one-step rule does
    gate_floor: float  # the intent's probability needed
    embed: Callable[[str], Awaitable[Vectors]]  # a question's embedding, batched, off the loop
    # What the gateway knows of each conversation's dialogue, newest last. Bounded: the oldest
    # are forgotten first (a conversation idle that long is answered by Rasa once more).
    in_form: dict[str, str] = field(default_factory=dict)  # conversation -> active loop
    after_offer: dict[str, None] = field(default_factory=dict)  # Rasa answers them next
    remember: int = 100_000

    def observe_action(self, action_call: dict[str, Any]) -> None:
        """Rasa called one of its actions: note whether the conversation is inside a form."""
        sender = action_call.get("sender_id")
        tracker = action_call.get("tracker")
        if not isinstance(sender, str) or not isinstance(tracker, dict):
            return
        loop = tracker.get("active_loop")
        name = loop.get("name") if isinstance(loop, dict) else None
        action = str(action_call.get("next_action") or "")
        if action.startswith("validate_"):
            # A form's validation runs from its activation on, before the tracker Rasa sends
            # shows the loop as active.
            name = action.removeprefix("validate_")
        self.in_form.pop(sender, None)
        if name:
            _remember(self.in_form, sender, str(name), self.remember)

    def replied(self, conversation_id: str, *, offered: bool) -> None:
        """The bot answered; ``offered`` when it offered a person or choices."""
        self.after_offer.pop(conversation_id, None)
        if offered:
            _remember(self.after_offer, conversation_id, None, self.remember)

    async def route(self, conversation_id: str, text: str) -> Route | None:
        """What to do instead of asking Rasa, or None: then Rasa takes the turn."""
        if conversation_id in self.in_form or conversation_id in self.after_offer:
            return None
        if not text.strip():
            return None
        probabilities = self.gate.probabilities(await self.embed(text))[0]
        best = int(np.argmax(probabilities))
        route = self.rules.get(self.gate.article_ids[best])
        if route is None or float(probabilities[best]) < self.gate_floor:
            return None
        if route.action != ESCALATE_ACTION and cues(text):
            return None  # urgent or upset: let Rasa and its handoff rules see it
        return route


def _remember(memory: dict[str, V], key: str, value: V, limit: int) -> None:
    memory[key] = value  # the caller removed it first, so it is the newest
    while len(memory) > limit:
        del memory[next(iter(memory))]


async def build(
    project: Path, embed: Callable[[Sequence[str]], Vectors], *, gate_floor: float
) -> FastPath | None:
    """The fast path for the Rasa project in ``project`` (data/nlu.yml, data/rules.yml,
    domain.yml), or None (logged) when its files give nothing to run.

    ``embed`` is the knowledge base's model (blocking): questions are embedded in batches, off
    the event loop, as the knowledge base's own searches are."""
    loop = asyncio.get_running_loop()
    try:
        texts, intents = await loop.run_in_executor(
            None, nlu_examples, project / "data" / "nlu.yml"
        )
        rules = await loop.run_in_executor(None, one_step_rules, project / "data" / "rules.yml")
        texts_of = await loop.run_in_executor(None, responses, project / "domain.yml")
        routes = {
            intent: Route(intent, action, texts_of.get(action, ""))
            for intent, action in rules.items()
            if action in (KB_ACTION, ESCALATE_ACTION) or action in texts_of
        }
        vectors = await loop.run_in_executor(None, embed, texts)
        gate = ArticleHead.fit(vectors, intents)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        logger.warning("no answer fast path: %s", exc)
        return None
    if gate is None or not routes:
        logger.warning("no answer fast path: %s has no intents to route", project)
        return None
    batcher: QueryBatcher[Vectors] = QueryBatcher(
        lambda queries: list(embed([query.question for query in queries]))
    )

    async def embed_one(text: str) -> Vectors:
        return await batcher.submit(Query(text, 1))

    logger.info(
        "answer fast path on for %s (gate trained on %d examples)",
        ", ".join(sorted(routes)),
        len(texts),
    )
    return FastPath(gate, routes, gate_floor, embed_one)
