"""Namespaces: shadow copies of the settings whose topics, consumer group and Redis keys are separate.

A shadow run (e.g. a second model version replaying the same history) must never read or write what
the default run owns, so every name is derived from the namespace and none is a prefix of a default
name: the Redis prefix starts with ``ns-NAME:`` instead of extending the default prefix, because a
``SCAN MATCH default-prefix:*`` would otherwise also see the shadow's keys.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from stream.core.errors import ConfigError
from stream.core.settings import Settings

_NAME_RE = re.compile(r"^[a-z0-9-]{1,32}$")


def check_namespace(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"namespace {name!r} is invalid: use 1-32 characters from a-z 0-9 - (e.g. 'model-v2')"
        )
    return name


def namespaced(settings: Settings, name: str) -> Settings:
    """A copy of `settings` whose topics, consumer group and Redis prefix all belong to `name`."""
    check_namespace(name)
    update = {
        "events_topic": f"{settings.events_topic}.ns-{name}",
        "dead_letter_topic": f"{settings.dead_letter_topic}.ns-{name}",
        "consumer_group": f"{settings.consumer_group}.ns-{name}",
        "redis_key_prefix": f"ns-{name}:{settings.redis_key_prefix}",
    }
    copy = settings.model_copy(update=update)
    # model_copy does not validate; a long base name could push a derived one past its limit.
    try:
        Settings.model_validate(copy.model_dump())
    except ValidationError as exc:
        fields = ", ".join(str(err["loc"][0]) for err in exc.errors() if err.get("loc"))
        raise ConfigError(
            f"namespace {name!r} makes invalid names for {fields}; choose a shorter namespace "
            "or shorter base names (PROFILESTREAM_REDIS_KEY_PREFIX is limited to 64 characters)"
        ) from exc
    return copy
