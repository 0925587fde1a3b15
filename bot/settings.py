"""Typed settings: ``promptly.toml`` validated once at start, secrets from the environment."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError

from bot.durations import parse_duration
from bot.errors import ConfigError

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
CONFIG_ENV = "PROMPTLY_CONFIG"
AGENT_TOKEN_ENV = "PROMPTLY_AGENT_TOKEN"
ACTION_TOKEN_ENV = "PROMPTLY_ACTION_TOKEN"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Tier(StrEnum):
    CONSUMER = "consumer"
    BUSINESS = "business"
    ENTERPRISE = "enterprise"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    public_url: str | None = None


class StorageSettings(_Section):
    database: Path = Path("var/promptly.db")


class RasaSettings(_Section):
    url: str = "http://127.0.0.1:5005"
    manage: bool = True
    port: int = Field(5005, ge=1, le=65535)
    project: Path = Path(".")  # holds config.yml, domain.yml and data/
    venv: Path = Path(".venv-rasa")
    model_dir: Path = Path("models")
    timeout: Duration = timedelta(seconds=10)
    concurrency: int = Field(4, ge=1, le=256)
    breaker_failures: int = Field(3, ge=1)
    probe_interval: Duration = timedelta(seconds=1)


class KBSettings(_Section):
    articles: Path = Path("kb/articles")
    index_dir: Path = Path("var/kb-index")
    floor: float = Field(0.55, ge=0, le=1)
    direct_floor: float = Field(0.6, ge=0, le=1)
    enabled: bool = True


class WebChannelSettings(_Section):
    promise: Duration = timedelta(seconds=2)
    margin: Duration = timedelta(milliseconds=250)
    max_text_chars: int = Field(4000, ge=1)
    max_body_bytes: int = Field(65536, ge=1024)
    allowed_origins: tuple[str, ...] = ("*",)


class ChannelsSettings(_Section):
    web: WebChannelSettings = WebChannelSettings()


class Targets(_Section):
    first_response: Duration
    next_response: Duration


_DEFAULT_TARGETS: dict[Priority, dict[Tier, dict[str, str]]] = {
    Priority.URGENT: {t: {"first_response": "30m", "next_response": "30m"} for t in Tier},
    Priority.HIGH: {
        Tier.CONSUMER: {"first_response": "2h", "next_response": "2h"},
        Tier.BUSINESS: {"first_response": "1h", "next_response": "1h"},
        Tier.ENTERPRISE: {"first_response": "30m", "next_response": "30m"},
    },
    Priority.NORMAL: {
        Tier.CONSUMER: {"first_response": "8h", "next_response": "8h"},
        Tier.BUSINESS: {"first_response": "4h", "next_response": "4h"},
        Tier.ENTERPRISE: {"first_response": "2h", "next_response": "2h"},
    },
    Priority.LOW: {t: {"first_response": "24h", "next_response": "24h"} for t in Tier},
}


class SLASettings(_Section):
    """First/next response targets by priority x tier, in calendar time.

    Business-hours calendars arrive with the SLA engine; until then targets run on the clock.
    """

    timezone: str = "UTC"
    targets: dict[Priority, dict[Tier, Targets]] = Field(
        default_factory=lambda: {
            p: {t: Targets.model_validate(v) for t, v in tiers.items()}
            for p, tiers in _DEFAULT_TARGETS.items()
        }
    )

    def target(self, priority: Priority, tier: Tier) -> Targets:
        try:
            return self.targets[priority][tier]
        except KeyError as e:
            raise ConfigError(f"sla.targets.{priority}.{tier} is not configured") from e


class RoutingSettings(_Section):
    default_queue: str = "support"
    intents: dict[str, str] = Field(
        default_factory=lambda: {
            "refund_request": "billing",
            "complaint": "support",
            "urgent_outage": "urgent",
            "human_handoff": "support",
            "order_status": "orders",
        }
    )
    queue_names: dict[str, str] = Field(
        default_factory=lambda: {
            "support": "Customer Support",
            "billing": "Billing",
            "urgent": "Urgent Response",
            "orders": "Orders",
        }
    )


class Settings(_Section):
    root: Path = Path(".")
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    rasa: RasaSettings = RasaSettings()
    kb: KBSettings = KBSettings()
    channels: ChannelsSettings = ChannelsSettings()
    sla: SLASettings = SLASettings()
    routing: RoutingSettings = RoutingSettings()
    agent_token: SecretStr | None = None
    action_token: SecretStr | None = None

    def path(self, p: Path) -> Path:
        """Resolve a configured path against the config file's folder."""
        return p if p.is_absolute() else (self.root / p).resolve()


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``promptly.toml`` (or $PROMPTLY_CONFIG) and the secret env vars into ``Settings``."""
    env = os.environ if env is None else env
    path = path or Path(env.get(CONFIG_ENV, "promptly.toml"))
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from e
    elif path != Path("promptly.toml"):
        raise ConfigError(f"config file {path} does not exist")
    data["root"] = path.resolve().parent
    for key, var in (("agent_token", AGENT_TOKEN_ENV), ("action_token", ACTION_TOKEN_ENV)):
        if env.get(var):
            data[key] = env[var]
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, str(path))) from e
