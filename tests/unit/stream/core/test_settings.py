from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stream.core.errors import ConfigError
from stream.core.settings import Settings, load_settings


def test_defaults_are_valid() -> None:
    settings = load_settings({})
    assert settings.kafka_servers == ["127.0.0.1:9092"]
    assert settings.top_k == 20
    assert settings.redis_key("recent", "u1") == "profilestream:v1:{u1}:recent"


def test_environment_values_are_parsed_and_unrelated_variables_ignored() -> None:
    settings = load_settings(
        {
            "PROFILESTREAM_TOP_K": "7",
            "PROFILESTREAM_KAFKA_BOOTSTRAP_SERVERS": "a:1, b:2",
            "PROFILESTREAM_MODEL_DIR": "/models/v3",
            "PROFILESTREAM_TABLE_STORE": "rocksdb",
            "HOME": "/root",
        }
    )
    assert settings.top_k == 7
    assert settings.kafka_servers == ["a:1", "b:2"]
    assert settings.model_dir == Path("/models/v3")
    assert settings.table_store == "rocksdb"


def test_overrides_win_over_environment() -> None:
    assert load_settings({"PROFILESTREAM_TOP_K": "7"}, top_k=9).top_k == 9


def test_invalid_value_names_the_variable_and_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"PROFILESTREAM_TOP_K": "many"})
    message = str(info.value)
    assert "PROFILESTREAM_TOP_K" in message
    assert "'many'" in message
    assert "set PROFILESTREAM_TOP_K to a valid value" in message


def test_out_of_range_value_is_rejected() -> None:
    with pytest.raises(ConfigError, match="PROFILESTREAM_EVENTS_PARTITIONS"):
        load_settings({"PROFILESTREAM_EVENTS_PARTITIONS": "0"})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"PROFILESTREAM_TOP_K": "x", "PROFILESTREAM_TABLE_STORE": "disk"})
    assert "PROFILESTREAM_TOP_K" in str(info.value)
    assert "PROFILESTREAM_TABLE_STORE" in str(info.value)


def test_unknown_variable_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"PROFILESTREAM_TOPK": "5"})
    assert "PROFILESTREAM_TOPK: unknown setting; did you mean PROFILESTREAM_TOP_K?" in str(info.value)


@pytest.mark.parametrize("value", ["localhost", "host:port", "a:1,,b:2", ""])
def test_bad_bootstrap_servers(value: str) -> None:
    with pytest.raises(ConfigError, match="PROFILESTREAM_KAFKA_BOOTSTRAP_SERVERS"):
        load_settings({"PROFILESTREAM_KAFKA_BOOTSTRAP_SERVERS": value})


@pytest.mark.parametrize("value", ["bad topic", "x" * 250, "..", "ünïcode"])
def test_bad_topic_names(value: str) -> None:
    with pytest.raises(ConfigError, match="PROFILESTREAM_EVENTS_TOPIC"):
        load_settings({"PROFILESTREAM_EVENTS_TOPIC": value})


def test_redis_url_is_secret_and_never_echoed() -> None:
    settings = load_settings({"PROFILESTREAM_REDIS_URL": "redis://:hunter2@cache:6379/0"})
    assert "hunter2" not in repr(settings)
    assert settings.redis_url.get_secret_value().endswith("@cache:6379/0")
    with pytest.raises(ConfigError) as info:
        load_settings({"PROFILESTREAM_REDIS_URL": "http://:hunter2@cache"})
    assert "PROFILESTREAM_REDIS_URL" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_settings_are_frozen() -> None:
    settings = load_settings({})
    with pytest.raises(ValidationError):
        settings.top_k = 3


def test_extra_fields_are_forbidden_in_code_too() -> None:
    with pytest.raises(ValidationError):
        Settings(not_a_setting=1)  # type: ignore[call-arg]
