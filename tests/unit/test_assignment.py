from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.handoff.assignment import (
    AgentLoad,
    Presence,
    agents_online,
    choose_agent,
    free_slots,
)

QUEUES = ["support", "billing"]
SKILLS = ["de", "fr", "refunds"]


def agent(
    name: str,
    open_tickets: int = 0,
    capacity: int = 3,
    *,
    presence: Presence = Presence.ONLINE,
    skills: frozenset[str] = frozenset(),
    queues: frozenset[str] = frozenset(),
    last_assigned: int = 0,
) -> AgentLoad:
    return AgentLoad(name, presence, capacity, open_tickets, skills, queues, last_assigned)


def eligible(a: AgentLoad, queue: str, skills: frozenset[str], exclude: frozenset[str]) -> bool:
    """The rule restated independently of the module."""
    return (
        a.presence is Presence.ONLINE
        and a.open_tickets < a.capacity
        and (not a.queues or queue in a.queues)
        and skills <= a.skills
        and a.id not in exclude
    )


# --- Worked examples -------------------------------------------------------------------------


def test_the_least_loaded_agent_gets_the_ticket():
    team = [agent("ana", 2), agent("bo", 1), agent("cy", 2)]
    assert choose_agent(team, "support") == "bo"


def test_fewest_open_tickets_beats_a_lower_load_ratio():
    # bo is 20 % loaded but holds more tickets than ana, who is 50 % loaded.
    team = [agent("ana", 1, capacity=2), agent("bo", 2, capacity=10)]
    assert choose_agent(team, "support") == "ana"


def test_ties_go_to_the_oldest_assignment_then_the_smallest_id():
    team = [agent("ana", 1, last_assigned=7), agent("bo", 1, last_assigned=3), agent("cy", 1)]
    assert choose_agent(team, "support") == "cy"  # never assigned
    assert choose_agent(team[:2], "support") == "bo"
    assert choose_agent([agent("cy", 1), agent("bo", 1)], "support") == "bo"


@pytest.mark.parametrize(
    "blocked",
    [
        agent("ana", presence=Presence.AWAY),
        agent("ana", presence=Presence.OFFLINE),
        agent("ana", 3, capacity=3),
        agent("ana", 4, capacity=3),  # capacity lowered after assignment
        agent("ana", capacity=0),
        agent("ana", queues=frozenset({"billing"})),
        agent("ana", skills=frozenset({"fr"})),
    ],
    ids=["away", "offline", "at-capacity", "over-capacity", "no-capacity", "other-queue", "skill"],
)
def test_an_ineligible_agent_is_passed_over_for_a_busier_one(blocked):
    team = [blocked, agent("zed", 2, skills=frozenset({"de", "fr"}))]
    assert choose_agent(team, "support", required_skills=frozenset({"de"})) == "zed"
    assert choose_agent([blocked], "support", required_skills=frozenset({"de"})) is None


def test_a_returned_ticket_skips_the_agent_it_comes_from():
    team = [agent("ana"), agent("bo", 2)]
    assert choose_agent(team, "support", exclude=frozenset({"ana"})) == "bo"
    assert choose_agent(team[:1], "support", exclude=frozenset({"ana"})) is None


def test_no_queues_means_every_queue():
    assert choose_agent([agent("ana")], "anything") == "ana"
    assert choose_agent([agent("ana", queues=frozenset({"billing"}))], "billing") == "ana"


def test_online_agents_and_free_slots_count_only_online_agents_of_the_queue():
    team = [
        agent("ana", 1, capacity=3),
        agent("bo", 5, capacity=2),  # over capacity: no slots, not minus three
        agent("cy", capacity=0),  # online but takes no tickets
        agent("dee", capacity=4, presence=Presence.AWAY),
        agent("eve", capacity=4, queues=frozenset({"billing"})),
    ]
    assert agents_online(team, "support") == 2
    assert free_slots(team, "support") == 2
    assert agents_online(team, "billing") == 3
    assert free_slots(team, "billing") == 6


def test_negative_counts_are_refused():
    with pytest.raises(ValueError, match="capacity must not be negative"):
        agent("ana", capacity=-1)
    with pytest.raises(ValueError, match="open_tickets must not be negative"):
        agent("ana", -1)


# --- Properties ------------------------------------------------------------------------------

agents = st.builds(
    AgentLoad,
    id=st.sampled_from(["ana", "bo", "cy", "dee", "eve", "fay", "gus", "hal"]),
    presence=st.sampled_from(Presence),
    capacity=st.integers(0, 4),
    open_tickets=st.integers(0, 5),
    skills=st.frozensets(st.sampled_from(SKILLS)),
    queues=st.frozensets(st.sampled_from(QUEUES)),
    last_assigned=st.integers(0, 6),
)
teams = st.lists(agents, max_size=8, unique_by=lambda a: a.id)
queues = st.sampled_from(QUEUES)
skill_sets = st.frozensets(st.sampled_from(SKILLS), max_size=2)
excludes = st.frozensets(st.sampled_from(["ana", "bo", "cy"]), max_size=2)


@given(teams, queues, skill_sets, excludes)
def test_the_choice_is_eligible_and_least_loaded_or_none_when_nobody_is(
    team, queue, skills, exclude
):
    chosen = choose_agent(team, queue, skills, exclude)
    candidates = [a for a in team if eligible(a, queue, skills, exclude)]
    if not candidates:
        assert chosen is None
        return
    picked = next(a for a in team if a.id == chosen)
    assert eligible(picked, queue, skills, exclude)
    assert picked.open_tickets == min(a.open_tickets for a in candidates)


@given(teams, queues, skill_sets, excludes, st.data())
def test_the_choice_does_not_depend_on_the_order_agents_are_listed_in(
    team, queue, skills, exclude, data
):
    shuffled = data.draw(st.permutations(team))
    assert choose_agent(shuffled, queue, skills, exclude) == choose_agent(
        team, queue, skills, exclude
    )


@given(teams, queues)
def test_counts_are_never_negative_and_online_agents_have_the_free_slots(team, queue):
    assert 0 <= agents_online(team, queue) <= len(team)
    assert free_slots(team, queue) >= 0
    if agents_online(team, queue) == 0:
        assert free_slots(team, queue) == 0
        assert choose_agent(team, queue) is None


def assign(team: list[AgentLoad], counter: int) -> tuple[list[AgentLoad], str | None]:
    """Assigns one ticket the way the ticket service records it."""
    chosen = choose_agent(team, "support")
    team = [
        replace(a, open_tickets=a.open_tickets + 1, last_assigned=counter) if a.id == chosen else a
        for a in team
    ]
    return team, chosen


@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 40))
def test_repeated_assignment_keeps_equal_capacity_loads_within_one(size, capacity, tickets):
    team = [agent(f"agent{i}", capacity=capacity) for i in range(size)]
    for counter in range(1, tickets + 1):
        team, chosen = assign(team, counter)
        loads = [a.open_tickets for a in team]
        assert max(loads) - min(loads) <= 1
        assert (chosen is None) == (counter > size * capacity)


@given(st.integers(1, 6), st.integers(1, 30))
def test_when_tickets_resolve_at_once_assignment_goes_round_the_team(size, tickets):
    team = [agent(f"agent{i}") for i in range(size)]
    chosen_in_turn = []
    for counter in range(1, tickets + 1):
        team, chosen = assign(team, counter)
        team = [replace(a, open_tickets=0) for a in team]  # resolved before the next one
        chosen_in_turn.append(chosen)
    for start in range(0, tickets, size):
        turn = chosen_in_turn[start : start + size]
        assert len(set(turn)) == len(turn)  # nobody twice before everyone once
