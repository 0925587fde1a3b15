"""Which online agent takes a ticket next. Pure: no I/O, no clock.

An agent is eligible for a ticket when online, below capacity, working the ticket's queue,
holding every skill the ticket needs and not excluded (the agent it is being returned from).
The ticket goes to the eligible agent with the fewest open tickets; ties go to the agent whose
latest assignment is oldest (round robin), then to the smallest id, so the choice never depends
on the order agents are listed in.

Fewest open tickets, not the lowest open/capacity ratio: the tickets an agent already holds are
what a new customer waits behind, and a high-capacity agent with more open tickets than a
colleague is not the faster reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_CAPACITY = 3  # tickets at once for an agent nobody has configured


class Presence(StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


@dataclass(frozen=True)
class AgentLoad:
    """An agent's state for assignment.

    ``capacity`` caps open tickets at once; ``open_tickets`` may exceed it when capacity was
    lowered after assignment. ``queues`` empty means every queue. ``last_assigned`` is the value
    of a shared, increasing assignment counter at the agent's latest assignment (0: never).
    """

    id: str
    presence: Presence
    capacity: int
    open_tickets: int
    skills: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()
    last_assigned: int = 0

    def __post_init__(self) -> None:
        for name in ("capacity", "open_tickets", "last_assigned"):
            if getattr(self, name) < 0:
                raise ValueError(f"agent {self.id!r}: {name} must not be negative")

    def works(self, queue: str) -> bool:
        return not self.queues or queue in self.queues


def choose_agent(
    agents: Iterable[AgentLoad],
    queue: str,
    required_skills: frozenset[str] = frozenset(),
    exclude: frozenset[str] = frozenset(),
) -> str | None:
    """The id of the eligible agent with the fewest open tickets, or None: the ticket waits.

    Ties go to the oldest latest assignment, then the smallest id (see the module docstring).
    """
    eligible = [
        agent
        for agent in agents
        if _serving(agent, queue)
        and agent.open_tickets < agent.capacity
        and required_skills <= agent.skills
        and agent.id not in exclude
    ]
    if not eligible:
        return None
    return min(eligible, key=lambda a: (a.open_tickets, a.last_assigned, a.id)).id


def agents_online(agents: Iterable[AgentLoad], queue: str) -> int:
    """Online agents working ``queue`` who can hold tickets at all (capacity above zero)."""
    return sum(1 for agent in agents if _serving(agent, queue) and agent.capacity > 0)


def free_slots(agents: Iterable[AgentLoad], queue: str) -> int:
    """Tickets online agents working ``queue`` can take now; an agent over capacity adds 0."""
    return sum(
        max(agent.capacity - agent.open_tickets, 0) for agent in agents if _serving(agent, queue)
    )


def _serving(agent: AgentLoad, queue: str) -> bool:
    return agent.presence == Presence.ONLINE and agent.works(queue)
