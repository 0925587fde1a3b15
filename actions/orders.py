"""Order status: a form collects the order number, then the order book answers."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import services
from actions.orderbook import describe, normalise_order_number


class ValidateOrderStatusForm(FormValidationAction):
    def name(self) -> str:
        return "validate_order_status_form"

    def validate_order_number(
        self,
        slot_value: Any,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: dict[str, Any],
    ) -> dict[str, Any]:
        number = normalise_order_number(str(slot_value or ""))
        if number is None:
            dispatcher.utter_message(
                text="That doesn't look like an order number. It looks like AC-10452 "
                "and is in your confirmation email."
            )
        return {"order_number": number}


class ActionOrderStatus(Action):
    def name(self) -> str:
        return "action_order_status"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        number = normalise_order_number(str(tracker.get_slot("order_number") or ""))
        order = (await services.get()).orders.lookup(number) if number else None
        if order is None:
            dispatcher.utter_message(
                text=f"I couldn't find order {number or 'with that number'}. Please check the "
                "number, or say 'agent' and a person will look into it."
            )
        else:
            dispatcher.utter_message(text=describe(order))
        return [SlotSet("order_number", None)]
