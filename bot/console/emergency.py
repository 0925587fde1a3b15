"""The emergency switch over HTTP: everyone signed in sees it (and whether the gateway is
overloaded or degraded), leads and admins set it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bot.console.access import require
from bot.console.accounts import ROLES
from bot.emergency import EmergencySwitch, Mode, Switch, mode_named
from bot.errors import Unprocessable
from bot.http import read_json, validate

_MAX_BODY = 4096


class ModeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str = Field(min_length=1, max_length=32)
    reason: str = Field("", max_length=500)


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str = Field(min_length=1, max_length=32)
    paused: bool
    reason: str = Field("", max_length=500)


class EmergencyAPI:
    ROUTES: ClassVar[list[tuple[str, str, str]]] = [
        ("GET", "/api/console/emergency", "show"),
        ("PUT", "/api/console/emergency/mode", "set_mode"),
        ("PUT", "/api/console/emergency/channel", "set_channel"),
    ]

    def __init__(
        self,
        switch: EmergencySwitch,
        channels: list[str],  # those enabled here; the switch may pause any channel it knows
        status: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self._switch = switch
        self._channels = channels
        # What else the banner shows: ``overload`` (bot/overload_watch.py) and ``components``
        # (Rasa and the KB, up or down: the degraded modes).
        self._status = status

    async def show(self, request: web.Request) -> web.Response:
        await require(request, *ROLES)
        return self._answer(self._switch.current)

    async def set_mode(self, request: web.Request) -> web.Response:
        user = await require(request, "lead")
        body = validate(ModeIn, await read_json(request, _MAX_BODY))
        mode = mode_named(body.mode)
        if mode is not Mode.NORMAL:
            _reason_given(body.reason, "switching the bot off")
        return self._answer(await self._switch.set_mode(mode, user.username, body.reason))

    async def set_channel(self, request: web.Request) -> web.Response:
        user = await require(request, "lead")
        body = validate(ChannelIn, await read_json(request, _MAX_BODY))
        if body.paused:
            _reason_given(body.reason, "pausing a channel")
        change = self._switch.pause if body.paused else self._switch.resume
        return self._answer(await change(body.channel, user.username, body.reason))

    def _answer(self, switch: Switch) -> web.Response:
        # The channels to offer: those this gateway serves, and any paused (to resume it).
        channels = sorted(set(self._channels) | switch.paused)
        body = {**switch.to_json(), "channels": channels, **self._status()}
        return web.json_response(body)


def _reason_given(reason: str, what: str) -> None:
    """Everyone sees the banner's reason, and the log keeps it: an empty one explains nothing."""
    if not reason.strip():
        raise Unprocessable("reason_required", f"{what} needs a reason", field="reason")
