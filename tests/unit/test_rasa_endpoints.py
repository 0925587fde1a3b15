"""The endpoints.yml `promptly run` writes for Rasa: the action endpoint, and with
``[scale] redis_url`` Rasa 3.6's Redis lock store and tracker store."""

from __future__ import annotations

import stat

import pytest
import yaml

from bot.rasa_server import rasa_stores, write_endpoints


def test_without_redis_only_the_action_endpoint(tmp_path):
    path = write_endpoints(tmp_path / "endpoints.yml", "http://127.0.0.1:8080/actions/webhook", "t")
    assert yaml.safe_load(path.read_text()) == {
        "action_endpoint": {"url": "http://127.0.0.1:8080/actions/webhook", "token": "t"}
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_with_redis_the_lock_and_tracker_stores_are_there(tmp_path):
    path = write_endpoints(
        tmp_path / "endpoints.yml",
        "http://127.0.0.1:8080/actions/webhook",
        'a"token',
        redis_url="rediss://promptly:p%40ss:w@redis.internal:6380/2",
        redis_prefix="acme-prod:",
    )
    written = yaml.safe_load(path.read_text())
    expected = {
        "type": "redis",
        "url": "redis.internal",
        "port": 6380,
        "db": 2,
        "username": "promptly",
        "password": "p@ss:w",
        "use_ssl": True,
        "key_prefix": "acmeprod",  # Rasa ignores a prefix that is not alphanumeric
    }
    assert written["lock_store"] == expected
    # Idle trackers expire after 30 days (an integer: Redis takes whole seconds).
    assert written["tracker_store"] == {**expected, "record_exp": 2_592_000}
    assert written["action_endpoint"]["token"] == 'a"token'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_defaults_of_a_plain_redis_url():
    stores = rasa_stores("redis://127.0.0.1", "promptly:")
    assert stores["lock_store"] == {
        "type": "redis",
        "url": "127.0.0.1",
        "port": 6379,
        "db": 0,
        "key_prefix": "promptly",
    }


def test_not_a_redis_url():
    with pytest.raises(ValueError, match="redis://"):
        rasa_stores("http://127.0.0.1", "promptly:")
