from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.durations import format_duration, parse_duration
from bot.errors import ConfigError
from bot.handoff.config import ALWAYS_OPEN
from bot.settings import load_settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2s", timedelta(seconds=2)),
        ("250ms", timedelta(milliseconds=250)),
        ("30m", timedelta(minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        (3, timedelta(seconds=3)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "2", "abc", "-1s", "2 weeks", True, None, -3])
def test_parse_duration_rejects_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


@given(st.integers(min_value=1, max_value=10**7))
def test_format_and_parse_round_trip(milliseconds):
    delta = timedelta(milliseconds=milliseconds)
    assert parse_duration(format_duration(delta)) == delta


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "promptly.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_paths_resolve_against_the_config_folder(tmp_path):
    settings = load_settings(write(tmp_path, ""), env={})
    assert settings.channels.web.promise == timedelta(seconds=2)
    assert settings.path(settings.storage.database) == tmp_path / "var" / "promptly.db"
    assert settings.sla.policies[0].first_response.span == timedelta(minutes=30)
    assert settings.queues["urgent"].calendar == ALWAYS_OPEN


def test_bad_value_names_the_key(tmp_path):
    path = write(tmp_path, '[channels.web]\npromise = "soon"\n')
    with pytest.raises(ConfigError, match=r"channels\.web\.promise.*invalid duration 'soon'"):
        load_settings(path, env={})


def test_unknown_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"rasa\.tiemout"):
        load_settings(write(tmp_path, '[rasa]\ntiemout = "5s"\n'), env={})


def test_invalid_toml_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[server\n"), env={})


def test_missing_explicit_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_secrets_come_from_the_environment(tmp_path):
    settings = load_settings(write(tmp_path, ""), env={"PROMPTLY_AGENT_TOKEN": "s3cret"})
    assert settings.agent_token is not None
    assert settings.agent_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


SLA = """
[calendars.office]
timezone = "Europe/Berlin"
hours = { "mon-fri" = "09:00-12:00,13:00-18:00" }
holidays = { country = "DE", subdivision = "BE" }
closed = [2026-12-24]

[queues.support]
name = "Support"
calendar = "office"
lead = "lead@example.com"

[routing]
default_queue = "support"
rules = []

[sla]
notify_url = "http://127.0.0.1:9/alerts"

[[sla.policies]]
name = "vip"
when = { tier = ["enterprise", "business"], priority = "high" }
first_response = "1h"
next_response = "2h"
resolution = "2d"

[[sla.policies]]
name = "default"
first_response = "1d"
business_hours = true
"""


def test_sla_policies_calendars_and_queues_load(tmp_path):
    env = {"PROMPTLY_NOTIFY_SECRET": "s3cret"}
    settings = load_settings(write(tmp_path, SLA), env=env)
    vip, default = settings.sla.policies
    assert vip.when.tier == ("enterprise", "business")
    assert vip.resolution is not None and vip.resolution.days == 2
    assert default.first_response.days == 1 and default.next_response is None
    calendar = settings.calendars["office"].build()
    assert str(calendar.timezone) == "Europe/Berlin"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('resolution = "2d"', 'resolution = "-2h"'),
            r"sla\.policies\.0\.resolution.*invalid duration '-2h'",
        ),
        (('resolution = "2d"', 'resolution = "soon"'), r"invalid duration 'soon'"),
        (('resolution = "2d"', 'resolution = "0m"'), r"resolution.*longer than zero"),
        (('resolution = "2d"', 'resolutoin = "2d"'), r"sla\.policies\.0\.resolutoin"),
        (("when = { tier", 'when = { colour = "red", tier'), r"sla\.policies\.0\.when\.colour"),
        (
            (
                '\n[[sla.policies]]\nname = "vip"',
                '\n[[sla.policies]]\nname = "all"\n'
                'first_response = "1h"\n[[sla.policies]]\nname = "vip"',
            ),
            r"'vip'.*can never match",
        ),
        (
            ('name = "default"\n', 'name = "default"\nwhen = { channel = "web" }\n'),
            r"last policy \('default'\) must match every ticket",
        ),
        (('"mon-fri" = "09:00-12:00,13:00-18:00"', '"mon-fri" = "9-5"'), r"calendars\.office.*9-5"),
        (
            ('hours = { "mon-fri" = "09:00-12:00,13:00-18:00" }', "hours = {}"),
            r"calendars\.office: calendar has no open hours",
        ),
        (('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"'), r"unknown time zone"),
        (('calendar = "office"', 'calendar = "home"'), r"queues\.support\.calendar.*'home'"),
        (
            ('default_queue = "support"', 'default_queue = "sales"'),
            r"routing\.default_queue.*'sales'",
        ),
    ],
)
def test_bad_sla_config_stops_the_start_naming_the_key(tmp_path, change, message):
    old, new = change
    assert old in SLA
    path = write(tmp_path, SLA.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env={"PROMPTLY_NOTIFY_SECRET": "s3cret"})


def test_signed_alerts_need_the_secret(tmp_path):
    with pytest.raises(ConfigError, match="PROMPTLY_NOTIFY_SECRET"):
        load_settings(write(tmp_path, SLA), env={})


def test_each_platform_keeps_its_own_promise_when_its_section_omits_it(tmp_path):
    path = tmp_path / "promptly.toml"
    path.write_text(
        '[channels.email]\noptions = { address = "help@example.com" }\n'
        '[channels.twilio]\npromise = "20s"\n[channels.slack]\nenabled = false\n',
        encoding="utf-8",
    )
    channels = load_settings(path, env={}).channels
    assert channels.email.enabled and channels.email.promise == timedelta(minutes=5)
    assert channels.twilio.promise == timedelta(seconds=20)
    assert channels.telegram.promise == timedelta(seconds=3)
    assert not channels.slack.enabled
    empty = tmp_path / "empty.toml"
    empty.write_text("", encoding="utf-8")
    assert not load_settings(empty, env={}).channels.email.enabled


def test_limits_default_to_not_throttling_a_fast_typist(tmp_path):
    limits = load_settings(write(tmp_path, ""), env={}).limits
    assert limits.messages_per_sender / limits.window.total_seconds() >= 2  # 20 in 10 s
    assert limits.requests_per_address >= 10 * limits.messages_per_sender  # a shared NAT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('window = "0s"', r"limits.*window must be longer than 0"),
        ("messages_per_sender = -1", r"limits\.messages_per_sender"),
        ('socket_idle = "soon"', r"limits\.socket_idle.*invalid duration"),
        ("per_sender = 5", r"limits\.per_sender"),
    ],
)
def test_bad_limits_stop_the_start_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(write(tmp_path, f"[limits]\n{text}\n"), env={})
