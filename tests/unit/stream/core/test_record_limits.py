"""Settings whose worst case cannot fit one Kafka record are refused at start-up, by name."""

from __future__ import annotations

import pytest

from stream.core.errors import ConfigError
from stream.core.settings import load_settings


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"window_max_bytes": 1_000_000}, "PROFILESTREAM_WINDOW_MAX_BYTES"),
        ({"dead_letter_max_payload_bytes": 999_000}, "PROFILESTREAM_DEAD_LETTER_MAX_PAYLOAD_BYTES"),
        ({"kafka_record_max_bytes": 100_000}, "PROFILESTREAM_WINDOW_MAX_BYTES"),
        ({"event_max_bytes": 300_000}, "PROFILESTREAM_EVENT_MAX_BYTES"),
    ],
)
def test_limits_that_cannot_fit_a_record_are_refused_naming_the_setting(
    overrides: dict[str, int], named: str
) -> None:
    with pytest.raises((ConfigError, ValueError)) as info:
        load_settings({}, **overrides)
    assert named in str(info.value)
    assert "lower it" in str(info.value) or "raise" in str(info.value)


def test_the_defaults_fit() -> None:
    settings = load_settings({})
    assert (
        settings.window_max_bytes + settings.dead_letter_max_payload_bytes < settings.kafka_record_max_bytes
    )
