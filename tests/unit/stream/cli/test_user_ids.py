"""`reco` and `recent` refuse the user ids the HTTP lookups refuse, before reaching Redis."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from stream.cli.main import main


@pytest.mark.parametrize("command", ["reco", "recent"])
@pytest.mark.parametrize(
    ("user_id", "fragment"), [("u" * 200, "characters"), ("\u200b", "invisible"), (" \ufeff ", "invisible")]
)
def test_an_id_the_lookups_refuse_is_a_usage_error(command: str, user_id: str, fragment: str) -> None:
    # Nothing listens on port 1: an id that got through would fail on Redis instead (exit 1).
    result = CliRunner().invoke(
        main, [command, user_id], env={"PROFILESTREAM_REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value for 'USER_ID'" in result.output
    assert fragment in result.output
