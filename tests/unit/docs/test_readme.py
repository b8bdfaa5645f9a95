from __future__ import annotations

from stream.core.settings import Settings, env_name
from tests.support.paths import REPO

README = REPO / "README.md"


def test_configuration_table_lists_every_setting() -> None:
    text = README.read_text()
    missing = [env_name(name) for name in Settings.model_fields if f"`{env_name(name)}`" not in text]
    assert missing == []
