"""Answer from the knowledge base, with a citation, or admit it and offer a human."""

from __future__ import annotations

import time
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import services

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
        answer = await deps.kb.aanswer(question, deps.kb_floor) if deps.kb else None
        # The KB's share of Rasa's turn, so analytics can tell the NLU stage from the KB stage.
        kb_ms = round((time.monotonic() - started) * 1000, 3)
        if answer is None or not answer.confident or answer.hit is None:
            dispatcher.utter_message(
                json_message={
                    "promptly": "answer",
                    "text": UNSURE_TEXT,
                    "citations": [],
                    "unsure": True,
                    "score": answer.best_score if answer else None,
                    "kb_ms": kb_ms,
                }
            )
            return [SlotSet("offered_human", True)]
        hit = answer.hit
        dispatcher.utter_message(
            json_message={
                "promptly": "answer",
                "text": f"{hit.passage}\n\nSource: {hit.title}",
                "citations": [{"title": hit.citation.title, "url": hit.citation.url}],
                "score": round(float(hit.score), 4),
                "kb_ms": kb_ms,
            }
        )
        return [SlotSet("offered_human", False)]
