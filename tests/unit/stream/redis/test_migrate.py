"""The key migration reports a Redis that fails part-way as ServiceUnavailable with the fix."""

from __future__ import annotations

import pytest

from stream.core.errors import ServiceUnavailable
from stream.core.settings import load_settings
from stream.redis.migrate import migrate_keys
from tests.support.ports import free_port


def test_a_refused_connection_is_service_unavailable_saying_rerun_resumes() -> None:
    settings = load_settings(
        {}, redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_retry_backoff_max_s=0.05
    )
    with pytest.raises(ServiceUnavailable) as caught:
        migrate_keys(settings, dry_run=True)
    message = str(caught.value)
    assert "PROFILESTREAM_REDIS_URL" in message
    assert "run `profilestream redis migrate-keys` again" in message
