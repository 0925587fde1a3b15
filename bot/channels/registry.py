"""Which platform channels run: enabled in ``promptly.toml`` and given all their secrets.

A channel missing a secret is disabled with one log line naming the variable, never
half-enabled: a webhook nobody can verify, or replies nobody can send, would lose messages.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping

import aiohttp

from bot.channels.platform import PlatformChannel
from bot.errors import ConfigError
from bot.settings import PlatformChannelSettings, Settings

logger = logging.getLogger(__name__)

# channel name -> "module:Class" (imported only when the channel is enabled)
ADAPTERS: Mapping[str, str] = {
    "telegram": "bot.channels.telegram:TelegramChannel",
    "slack": "bot.channels.slack:SlackChannel",
    "whatsapp": "bot.channels.whatsapp:WhatsAppChannel",
    "messenger": "bot.channels.messenger:MessengerChannel",
    "twilio": "bot.channels.twilio:TwilioChannel",
    "email": "bot.channels.email:EmailChannel",
}


def adapter_class(name: str) -> type[PlatformChannel]:
    module, _, attribute = ADAPTERS[name].partition(":")
    cls = getattr(importlib.import_module(module), attribute)
    if not (isinstance(cls, type) and issubclass(cls, PlatformChannel)):
        raise TypeError(f"{ADAPTERS[name]} is not a PlatformChannel")
    return cls


def platform_settings(settings: Settings) -> dict[str, PlatformChannelSettings]:
    found = {}
    for name in ADAPTERS:
        channel = settings.channels.platform(name)
        if channel is not None:
            found[name] = channel
    return found


def build_channels(
    settings: Settings,
    session: aiohttp.ClientSession,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, PlatformChannel]:
    """The enabled platform adapters, by channel name."""
    channels: dict[str, PlatformChannel] = {}
    for name, channel_settings in platform_settings(settings).items():
        if not channel_settings.enabled:
            logger.info("channel %s: disabled in the configuration", name)
            continue
        cls = adapter_class(name)
        missing = [var for var in cls.SECRETS.values() if not environ.get(var)]
        if missing:
            logger.info("channel %s: disabled: %s not set", name, ", ".join(missing))
            continue
        secrets = {role: environ[var] for role, var in cls.SECRETS.items()}
        # Optional secrets an adapter reads when present (e.g. the SMTP password).
        for role, var in cls.OPTIONAL_SECRETS.items():
            if environ.get(var):
                secrets[role] = environ[var]
        try:
            channels[name] = cls(
                secrets, dict(channel_settings.options), session, channel_settings.api_base
            )
        except ConfigError as e:
            raise ConfigError(f"channels.{name}: {e}") from e
        logger.info("channel %s: enabled", name)
    return channels
