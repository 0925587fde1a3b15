from hypothesis import given
from hypothesis import strategies as st

from bot.handoff.config import Priority, RoutingRule, RoutingSettings, Tier
from bot.handoff.routing import cues, is_filler, priority_for, queue_for, raised

ORDER = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT]
INTENTS = ["urgent_outage", "complaint", "refund_request", "human_handoff", "kb_unsure", None]


def facts(intent=None, tier="consumer", channel="web", language="en"):
    return {"intent": intent, "tier": tier, "channel": channel, "language": language}


def test_queue_by_intent_with_default():
    routing = RoutingSettings()
    assert queue_for(routing, facts("refund_request")) == "billing"
    assert queue_for(routing, facts("urgent_outage")) == "urgent"
    assert queue_for(routing, facts("something_else")) == "support"
    assert queue_for(routing, facts(None)) == "support"


def test_first_matching_rule_wins_on_tier_channel_and_language():
    routing = RoutingSettings(
        default_queue="support",
        rules=[
            RoutingRule.model_validate({"when": {"tier": "enterprise"}, "queue": "vip"}),
            RoutingRule.model_validate(
                {"when": {"language": ["de", "fr"], "channel": "web"}, "queue": "europe"}
            ),
            RoutingRule.model_validate({"when": {"intent": "refund_request"}, "queue": "billing"}),
        ],
    )
    assert queue_for(routing, facts("refund_request", tier="enterprise")) == "vip"
    assert queue_for(routing, facts("refund_request", language="de")) == "europe"
    assert queue_for(routing, facts("refund_request", language="de", channel="sms")) == "billing"
    assert queue_for(routing, facts("greet", language="es")) == "support"


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


def test_enterprise_tier_is_a_signal():
    assert cues("can I talk to someone", Tier.ENTERPRISE) == ["enterprise"]
    assert priority_for("human_handoff", "can I talk to someone", Tier.ENTERPRISE) is (
        Priority.HIGH
    )
    assert priority_for("human_handoff", "can I talk to someone", Tier.BUSINESS) is (
        Priority.NORMAL
    )


def test_raised_goes_one_level_up_to_urgent():
    assert [raised(p) for p in ORDER] == [
        Priority.NORMAL,
        Priority.HIGH,
        Priority.URGENT,
        Priority.URGENT,
    ]


@given(st.sampled_from(INTENTS), st.text(max_size=200), st.sampled_from(list(Tier)))
def test_signals_never_lower_priority_and_never_make_it_urgent(intent, text, tier):
    base = priority_for(intent, "")
    with_text = priority_for(intent, text, tier)
    assert ORDER.index(with_text) >= ORDER.index(base)
    if intent != "urgent_outage":
        assert with_text is not Priority.URGENT


WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)


@given(st.lists(WORDS, min_size=1, max_size=4, unique=True), st.integers(50, 800))
def test_a_long_run_of_a_few_words_is_filler(vocabulary, length):
    text = " ".join(vocabulary[i % len(vocabulary)] for i in range(length))
    assert is_filler(text) == (len(vocabulary) < 0.1 * length)


@given(st.lists(WORDS, max_size=49))
def test_a_short_message_is_never_filler(words):
    assert not is_filler(" ".join(words))


def test_real_messages_are_not_filler():
    story = (
        "I ordered a tent three weeks ago and it still has not arrived. The tracking page says "
        "it left your warehouse on Monday but nothing has moved since, and I am going camping "
        "on Friday with my family, so I really need to know whether it will come in time or "
        "whether I should buy one locally and return yours when it finally shows up here."
    )
    assert not is_filler(story)
    assert not is_filler("help " * 10)  # short: a person may well mean it
    assert is_filler("word " * 790) and is_filler("lorem ipsum dolor sit amet " * 100)
