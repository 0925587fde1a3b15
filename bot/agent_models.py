"""Request bodies of the agent API (validated with pydantic; unknown fields are refused)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.channels.registry import ADAPTERS
from bot.handoff.assignment import Presence
from bot.handoff.config import Priority, Tier
from bot.http import NonBlankText


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentIn(_In):
    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=200)


# ``agent`` names who acts when the bearer token calls; a console session acts as its user,
# whatever the body says.


class ReplyIn(_In):
    text: NonBlankText = Field(max_length=4000)
    agent: AgentIn | None = None
    # Default: where the customer last wrote. Another channel of theirs moves the ticket there.
    channel: str | None = Field(None, min_length=1, max_length=32)


class ByAgentIn(_In):
    agent: AgentIn | None = None


class PriorityIn(_In):
    priority: Priority
    agent: AgentIn | None = None


class TransferIn(_In):
    queue: str | None = Field(None, min_length=1)
    agent_id: str | None = Field(None, min_length=1)
    agent: AgentIn | None = None


class NoteIn(_In):
    text: NonBlankText = Field(max_length=4000)
    agent: AgentIn | None = None


class CannedIn(_In):
    title: NonBlankText = Field(max_length=100)
    text: NonBlankText = Field(max_length=4000)


class PresenceIn(_In):
    name: str = Field(min_length=1, max_length=200)
    presence: Presence
    capacity: int = Field(3, ge=0, le=100)
    skills: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()


CHANNELS = ("web", *ADAPTERS)  # every channel a customer can write from, enabled or not


class CustomerIn(_In):
    channel: str = Field(min_length=1, max_length=32)
    external_id: str = Field(min_length=1, max_length=128)
    tier: Tier
    name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)
    language: str | None = Field(None, min_length=2, max_length=16)

    @field_validator("channel")
    @classmethod
    def _known_channel(cls, channel: str) -> str:
        if channel not in CHANNELS:
            raise ValueError(f"one of {', '.join(CHANNELS)}")
        return channel


class MergeIn(_In):
    from_customer: str = Field(min_length=1, max_length=64, alias="from")
    agent: AgentIn | None = None
