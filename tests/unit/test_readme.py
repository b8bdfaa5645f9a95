from __future__ import annotations

from pathlib import Path

from stream.settings import Settings, env_name

README = Path(__file__).resolve().parents[2] / "README.md"


def test_configuration_table_lists_every_setting() -> None:
    text = README.read_text()
    missing = [env_name(name) for name in Settings.model_fields if f"`{env_name(name)}`" not in text]
    assert missing == []
