from hypothesis import given
from hypothesis import strategies as st

from bot.handoff.routing import cues, priority_for, queue_for
from bot.settings import Priority, RoutingSettings

ORDER = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT]
INTENTS = ["urgent_outage", "complaint", "refund_request", "human_handoff", "kb_unsure", None]


def test_queue_by_intent_with_default():
    routing = RoutingSettings()
    assert queue_for("refund_request", routing) == "billing"
    assert queue_for("urgent_outage", routing) == "urgent"
    assert queue_for("something_else", routing) == "support"
    assert queue_for(None, routing) == "support"


def test_priority_from_intent():
    assert priority_for("urgent_outage", "checkout is down") is Priority.URGENT
    assert priority_for("complaint", "my parcel is late") is Priority.HIGH
    assert priority_for("human_handoff", "can I talk to someone") is Priority.NORMAL


def test_cues_raise_priority():
    assert cues("I need this sorted ASAP") == ["urgency"]
    assert cues("This is ridiculous!!") == ["frustration"]
    assert cues("WHERE IS MY REFUND") == ["frustration"]  # shouting
    assert priority_for("refund_request", "refund me right now, this is unacceptable") is (
        Priority.HIGH
    )
    assert priority_for("human_handoff", "please, it's urgent") is Priority.HIGH


@given(st.sampled_from(INTENTS), st.text(max_size=200))
def test_cues_never_lower_priority_and_never_make_it_urgent(intent, text):
    base = priority_for(intent, "")
    with_text = priority_for(intent, text)
    assert ORDER.index(with_text) >= ORDER.index(base)
    if intent != "urgent_outage":
        assert with_text is not Priority.URGENT
