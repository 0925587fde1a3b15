from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.durations import format_duration, parse_duration
from bot.errors import ConfigError
from bot.settings import Priority, Tier, load_settings


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
    assert settings.sla.target(Priority.URGENT, Tier.ENTERPRISE).first_response == timedelta(
        minutes=30
    )


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
