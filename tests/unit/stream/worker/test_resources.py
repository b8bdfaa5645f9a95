"""The worker opens its sequence tower with its own thread count (one by default), not the
encoder's (all cores): a second ORT thread spinning beside the event loop cost 25 % more CPU."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from stream.core.settings import load_settings
from stream.worker import resources


def test_the_sequence_tower_gets_the_sequence_thread_count(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    opened: list[dict[str, Any]] = []

    def fake_tower(directory: Path, **kwargs: Any) -> SimpleNamespace:
        opened.append(kwargs)
        return SimpleNamespace(manifest=SimpleNamespace(item_model_version=""), version="fake")

    encoder = SimpleNamespace(model_version="m", dim=4)
    monkeypatch.setattr(resources, "load_encoder", lambda *a, **k: encoder)
    monkeypatch.setattr(resources, "load_catalogue", lambda *a, **k: SimpleNamespace(ids=[]))
    monkeypatch.setattr(resources, "SequenceTower", fake_tower)
    monkeypatch.setattr(resources, "ProfileComputer", lambda *a: a)
    settings = load_settings(
        {}, user_vector="sequence", sequence_model_dir=tmp_path, encoder_intra_op_threads=0
    )
    assert settings.sequence_intra_op_threads == 1
    resources.open_computer(settings)
    resources.open_computer(settings.model_copy(update={"sequence_intra_op_threads": 3}))
    assert [k["intra_op_threads"] for k in opened] == [1, 3]
