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
* and, for a knowledge-base answer, the knowledge base scores at or above ``kb.direct_floor``;
  for a canned response, the text carries no urgency or frustration cue and the knowledge
  base scores below ``kb.offer_floor`` (``settle``),

the gateway does what the rule says — the same KB passage and citation, the same response
text from ``domain.yml``, the same handoff — and Rasa is not asked.

A form the message completes in its turn is run the same way (``order_status`` ->
``order_status_form`` -> ``action_order_status``): when every slot the form requires is
filled from an entity of this message (Rasa's own regexes from ``data/nlu.yml``, one match
each, as its ``RegexEntityExtractor`` finds them), the form's validation action accepts them
without a word, and Rasa's tracker holds no such slot from an earlier turn, the gateway runs
the project's validation and submit actions itself (the same ``actions`` package Rasa calls
back) and answers with what they say. A value that fails validation, a missing or doubled
entity, a conversation whose earlier message left an entity with Rasa: Rasa's turn.

Everything else, and anything the gateway is unsure of, goes to Rasa as before. Rasa's
tracker does not see these turns; nothing its rules condition on (forms, the
``offered_human`` slot, a slot an entity fills) is touched by them: a message carrying such an
entity goes to Rasa unless it completes the form here. The question is embedded once: the
gate's vector is the one the knowledge base searches with. Measured in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
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


def form_rules(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(intent -> form it activates, form -> action its submit rule runs) of a Rasa rules file.

    An activation counts when it is the rule's only step and its only condition, if any, is
    that no form is active (the fast path never runs inside one)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    activates: dict[str, str] = {}
    submits: dict[str, str] = {}
    for rule in data.get("rules", []):
        if not isinstance(rule, dict) or rule.get("conversation_start"):
            continue
        steps = rule.get("steps") or []
        condition = rule.get("condition") or []
        if (
            len(steps) == 3
            and "intent" in steps[0]
            and "action" in steps[1]
            and steps[2].get("active_loop") == steps[1]["action"]
            and condition in ([], [{"active_loop": None}])
        ):
            activates[str(steps[0]["intent"])] = str(steps[1]["action"])
        elif (
            len(steps) == 4
            and len(condition) == 1
            and steps[0].get("action") == condition[0].get("active_loop")
            and "active_loop" in steps[1]
            and steps[1]["active_loop"] is None
            and steps[2].get("slot_was_set") == [{"requested_slot": None}]
            and "action" in steps[3]
        ):
            submits[str(steps[0]["action"])] = str(steps[3]["action"])
    return activates, submits


def entity_patterns(path: Path) -> dict[str, list[re.Pattern[str]]]:
    """entity -> Rasa's regexes for it in an NLU file (``RegexEntityExtractor``: not case
    sensitive, the patterns as written)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found: dict[str, list[re.Pattern[str]]] = {}
    for block in data.get("nlu", []):
        if isinstance(block, dict) and "regex" in block:
            for line in str(block.get("examples", "")).splitlines():
                line = line.strip()
                if line.startswith("- "):
                    pattern = re.compile(line[2:], re.IGNORECASE)
                    found.setdefault(str(block["regex"]), []).append(pattern)
    return found


def _regex_entities_only(config: Path) -> bool:
    """Does Rasa extract entities with its regexes alone (so the gateway finds the same)?"""
    data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    regex = False
    for component in data.get("pipeline") or []:
        name = component.get("name") if isinstance(component, dict) else None
        if name == "RegexEntityExtractor":
            regex = (
                component.get("use_regexes", True)
                and not component.get("case_sensitive", False)
                and not component.get("use_lookup_tables", True)
            )
        elif (name == "DIETClassifier" and component.get("entity_recognition", True)) or (
            name in ("CRFEntityExtractor", "DucklingEntityExtractor", "SpacyEntityExtractor")
        ):
            return False
    return bool(regex)


@dataclass(frozen=True)
class Form:
    """A form the gateway may run when one message fills it: its required slots, each with
    the entity that fills it, and the action Rasa's submit rule runs after it."""

    name: str
    slots: tuple[tuple[str, str], ...]  # (slot, entity)
    submit: str


def forms(project: Path) -> dict[str, Form]:
    """intent -> the form its rule activates, for the forms a single message can fill: every
    required slot has an unconditional ``from_entity`` mapping, Rasa extracts entities with
    regexes only, and a submit rule names the action that follows."""
    if not _regex_entities_only(project / "config.yml"):
        return {}
    nlu = (project / "data" / "nlu.yml").read_text(encoding="utf-8")
    if re.search(r"^\s*-\s*synonym:|\"value\"|\]\([^)]*:", nlu, re.MULTILINE):
        return {}  # Rasa's EntitySynonymMapper may rename a value: not followed here
    activates, submits = form_rules(project / "data" / "rules.yml")
    domain = yaml.safe_load((project / "domain.yml").read_text(encoding="utf-8")) or {}
    slot_defs = domain.get("slots") or {}
    found: dict[str, Form] = {}
    for intent, name in activates.items():
        required = ((domain.get("forms") or {}).get(name) or {}).get("required_slots") or []
        slots: list[tuple[str, str]] = []
        for slot in required:
            mappings = (slot_defs.get(slot) or {}).get("mappings") or []
            entity = next(
                (
                    str(m["entity"])
                    for m in mappings
                    if isinstance(m, dict)
                    and m.get("type") == "from_entity"
                    and set(m) <= {"type", "entity"}
                ),
                None,
            )
            if entity is None:
                break
            slots.append((str(slot), entity))
        if name in submits and slots and len(slots) == len(required):
            found[intent] = Form(name, tuple(slots), submits[name])
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
    action: str  # KB_ACTION, ESCALATE_ACTION, an utter_* response or a form
    text: str = ""  # the response's text, for an utter_* action
    form: Form | None = None  # the form one message completes
    # Per message: the form's slot values found in it, and the question's embedding (the
    # knowledge base searches with it rather than embedding the question again).
    values: tuple[tuple[str, str], ...] = ()
    vector: Vectors | None = field(default=None, compare=False, repr=False)

    @property
    def escalates(self) -> bool:
        return self.action == ESCALATE_ACTION


def settle(route: Route, kb_score: float | None, *, direct: float, offer: float) -> str:
    """How a KB or canned route ends, given the knowledge base's best score for the question
    (None: no KB, or nothing in it): ``"kb"`` (answer from it), ``"canned"`` (the rule's
    response) or ``"rasa"`` (ask Rasa after all).

    A KB answer needs the ``direct`` floor: anything less is Rasa's (its action offers choices
    or a person and sets its slot). A canned reply yields to an article the KB is fairly sure of
    (the ``offer`` band): the gate learnt small talk and off-topic from a few examples and can
    be sure of them where Rasa reads a question for the KB (docs/benchmarks.md, answer quality
    with and without the fast path).
    """
    if route.action == KB_ACTION:
        return "kb" if kb_score is not None and kb_score >= direct else "rasa"
    return "rasa" if kb_score is not None and kb_score >= offer else "canned"


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
    # Conversations Rasa was sent an entity a form's slot maps from, until its submit action
    # (which empties the slots) runs: a form filled here would leave Rasa's copy behind.
    slot_held: dict[str, None] = field(default_factory=dict)
    remember: int = 100_000
    # Runs one of the project's actions as Rasa's call would: (action call) -> the executor's
    # result ({"events": [...], "responses": [...]}); None: no form runs here.
    run_action: Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]] | None = None
    patterns: dict[str, list[re.Pattern[str]]] = field(default_factory=dict)  # entity regexes
    domain: dict[str, Any] = field(default_factory=dict)  # sent with each action call

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
        if any(r.form is not None and r.form.submit == action for r in self.rules.values()):
            self.slot_held.pop(sender, None)  # the submit action empties the form's slots

    def replied(self, conversation_id: str, *, offered: bool) -> None:
        """The bot answered; ``offered`` when it offered a person or choices."""
        self.after_offer.pop(conversation_id, None)
        if offered:
            _remember(self.after_offer, conversation_id, None, self.remember)

    async def route(self, conversation_id: str, text: str) -> Route | None:
        """What to do instead of asking Rasa, or None: then Rasa takes the turn."""
        found = self._entities(text)
        route = await self._route(conversation_id, text, found)
        if route is None and any(found.values()):
            # Rasa fills the slot from this entity whatever the intent, and keeps it.
            self.slot_held.pop(conversation_id, None)
            _remember(self.slot_held, conversation_id, None, self.remember)
        return route

    async def _route(
        self, conversation_id: str, text: str, found: dict[str, list[str]]
    ) -> Route | None:
        if conversation_id in self.in_form or conversation_id in self.after_offer:
            return None
        if not text.strip():
            return None
        vector = await self.embed(text)
        probabilities = self.gate.probabilities(vector)[0]
        best = int(np.argmax(probabilities))
        route = self.rules.get(self.gate.article_ids[best])
        if route is None or float(probabilities[best]) < self.gate_floor:
            return None
        if route.action != ESCALATE_ACTION and cues(text):
            return None  # urgent or upset: let Rasa and its handoff rules see it
        if route.form is None:
            return None if any(found.values()) else replace(route, vector=vector)
        if self.run_action is None or conversation_id in self.slot_held:
            return None
        values: list[tuple[str, str]] = []
        for slot, entity in route.form.slots:
            matches = found.get(entity, [])
            if len(matches) != 1:
                return None  # the form would ask, or Rasa would fill the slot with a list
            values.append((slot, matches[0]))
        if any(found[e] for e in found if e not in {e for _, e in route.form.slots}):
            return None
        return replace(route, values=tuple(values), vector=vector)

    def _entities(self, text: str) -> dict[str, list[str]]:
        """The entities Rasa's regex extractor finds in ``text``, by entity."""
        return {
            entity: [m.group(0) for pattern in patterns for m in pattern.finditer(text)]
            for entity, patterns in self.patterns.items()
        }

    async def complete_form(
        self, route: Route, conversation_id: str, text: str
    ) -> list[str] | None:
        """Run ``route``'s form as Rasa would for a message that fills it: validation, then the
        submit action. Its replies' texts; None (nothing run but validation): Rasa's turn."""
        form, run = route.form, self.run_action
        if form is None or run is None:
            return None
        user = {
            "event": "user",
            "text": text,
            "parse_data": {"intent": {"name": route.intent}, "text": text},
        }
        filled = dict(route.values)
        validation = await run(
            self._call(
                f"validate_{form.name}",
                conversation_id,
                text,
                route.intent,
                {**filled, "requested_slot": None},
                [user, *({"event": "slot", "name": s, "value": v} for s, v in route.values)],
                active_loop=form.name,
            )
        )
        if validation is None or validation.get("responses"):
            return None  # the form said something: it asks again, which is Rasa's dialogue
        for event in validation.get("events") or []:
            if event.get("event") != "slot" or event.get("name") not in filled:
                return None
            filled[str(event["name"])] = event.get("value")
        if any(value is None for value in filled.values()):
            return None
        result = await run(
            self._call(
                form.submit,
                conversation_id,
                text,
                route.intent,
                {**filled, "requested_slot": None},
                [user],
            )
        )
        if result is None:
            return None
        events = result.get("events") or []
        if any(e.get("event") != "slot" or e.get("value") is not None for e in events):
            # The submit action left something in Rasa's tracker the gateway cannot put there.
            logger.warning(
                "%s sets more than empty slots: the fast path leaves %s to Rasa from now on",
                form.submit,
                form.name,
            )
            self.rules.pop(route.intent, None)
        return [str(r["text"]) for r in result.get("responses") or [] if r.get("text")]

    def _call(
        self,
        action: str,
        conversation_id: str,
        text: str,
        intent: str,
        slots: dict[str, Any],
        events: list[dict[str, Any]],
        active_loop: str | None = None,
    ) -> dict[str, Any]:
        latest = {"text": text, "intent": {"name": intent}, "entities": []}
        return {
            "next_action": action,
            "sender_id": conversation_id,
            "domain": self.domain,
            "tracker": {
                "sender_id": conversation_id,
                "slots": slots,
                "latest_message": latest,
                "events": events,
                "paused": False,
                "active_loop": {"name": active_loop} if active_loop else {},
                "latest_action_name": "action_listen",
            },
        }


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
        form_of = await loop.run_in_executor(None, forms, project)
        patterns = await loop.run_in_executor(None, entity_patterns, project / "data" / "nlu.yml")
        domain = await loop.run_in_executor(None, _yaml, project / "domain.yml")
        vectors = await loop.run_in_executor(None, embed, texts)
        gate = ArticleHead.fit(vectors, intents)
    except (OSError, ValueError, re.error, yaml.YAMLError) as exc:
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

    run_action = _action_runner() if form_of else None
    if run_action is not None:
        routes.update(
            {intent: Route(intent, form.name, form=form) for intent, form in form_of.items()}
        )
    logger.info(
        "answer fast path on for %s (gate trained on %d examples)",
        ", ".join(sorted(routes)),
        len(texts),
    )
    return FastPath(
        gate,
        routes,
        gate_floor,
        embed_one,
        run_action=run_action,
        patterns={e: p for e, p in patterns.items() if e in (domain.get("entities") or [])},
        domain=domain,
    )


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}


def _action_runner() -> Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]] | None:
    """The project's actions (the package Rasa calls back), run in this process."""
    try:
        from rasa_sdk.executor import ActionExecutor

        import actions
    except ImportError as exc:  # pragma: no cover - both ship with the gateway
        logger.warning("no forms on the fast path: %s", exc)
        return None
    executor = ActionExecutor()
    executor.register_package(actions)

    async def run(call: dict[str, Any]) -> dict[str, Any] | None:
        result = await executor.run(call)
        return None if result is None else dict(result.model_dump())

    return run
