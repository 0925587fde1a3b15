"""Answer from the knowledge base with a citation, offer the closest titles, or admit it and
offer a human (the bands of ``knowledge_base/bands.py``)."""

from __future__ import annotations

import logging
import time
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import services
from knowledge_base.bands import MAX_CHOICES, Band, compose, decide, offer_text

logger = logging.getLogger(__name__)

KB_DOWN_TEXT = (
    "I can't look that up in our help articles right now. "
    "Would you like me to connect you with a person?"
)
UNSURE_TEXT = (
    "I'm not sure about that one, and I'd rather not guess. "
    "Would you like me to connect you with a person?"
)


class ActionAnswerFromKB(Action):
    def name(self) -> str:
        return "action_answer_from_kb"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        question = tracker.latest_message.get("text") or ""
        deps = await services.get()
        started = time.monotonic()
        try:
            hits = await deps.kb.asearch(question, k=MAX_CHOICES) if deps.kb else []
        except Exception:
            # Degraded: the KB is down (the host reports it), Rasa is not. Offer a person, and
            # do not count the question as a content gap: no article was ever consulted.
            logger.exception("the knowledge base failed; offering a person instead")
            dispatcher.utter_message(
                json_message={"promptly": "answer", "text": KB_DOWN_TEXT, "citations": []}
            )
            return [SlotSet("offered_human", True)]
        # The KB's share of Rasa's turn, so analytics can tell the NLU stage from the KB stage.
        kb_ms = round((time.monotonic() - started) * 1000, 3)
        decision = decide(hits, deps.kb_floor, deps.kb_offer_floor)
        score = None if decision.best_score is None else round(float(decision.best_score), 4)
        if decision.band is Band.ANSWER:
            hit = decision.hits[0]
            payload = {
                "text": compose(hit.passage, hit.title),
                # The gateway composes again to fit the channel's length limit.
                "passage": hit.passage,
                "title": hit.title,
                "article_id": hit.article_id,
                "citations": [{"title": hit.citation.title, "url": hit.citation.url}],
            }
        elif decision.band is Band.OFFER:
            payload = {
                "text": offer_text([hit.title for hit in decision.hits]),
                "citations": [],
                "choices": [
                    {"article_id": hit.article_id, "title": hit.title} for hit in decision.hits
                ],
            }
        else:
            payload = {"text": UNSURE_TEXT, "citations": [], "unsure": True}
        dispatcher.utter_message(
            json_message={"promptly": "answer", **payload, "score": score, "kb_ms": kb_ms}
        )
        return [SlotSet("offered_human", decision.band is Band.DECLINE)]
