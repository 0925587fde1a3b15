"""Hand the conversation to a human queue; the gateway turns the result into a plan ack."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import services


def _reason(tracker: Tracker) -> tuple[str | None, str]:
    """The intent and text behind the handoff; a 'yes' to our offer points at the question."""
    latest = tracker.latest_message
    intent = (latest.get("intent") or {}).get("name")
    text = latest.get("text") or ""
    if intent == "affirm":
        users = [e for e in tracker.events if e.get("event") == "user"]
        if len(users) >= 2:
            text = users[-2].get("text") or text
        intent = "kb_unsure"
    return intent, text


class ActionEscalate(Action):
    def name(self) -> str:
        return "action_escalate"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        intent, text = _reason(tracker)
        ticket = await (await services.get()).tickets.escalate(tracker.sender_id, intent, text)
        dispatcher.utter_message(
            json_message={
                "promptly": "handoff",
                "ticket_id": ticket.id,
                "reference": ticket.reference,
                "queue": ticket.queue,
            }
        )
        return [SlotSet("offered_human", False)]
