"""Online equals offline for `PROFILESTREAM_USER_VECTOR=sequence`: histories through a real worker
(which loads the exported tower with its item residuals and co-occurrence lists), Kafka and Redis,
against the stream's offline recomputation."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.support.requirements import require_module

require_module("torch")

from export.sequence_module import SequenceConfig  # noqa: E402
from models.data.amazon import load_dataset  # noqa: E402
from models.encoder.onnx_encoder import load_encoder, options_from_settings  # noqa: E402
from models.evaluation.online import run_online_eval  # noqa: E402
from models.training.sequence import train_sequence_tower  # noqa: E402
from stream.core.settings import Settings  # noqa: E402
from stream.core.window import WindowConfig  # noqa: E402
from tests.support.rec_fixtures import write_dataset  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_sequence_tower_online_equals_offline(isolated: Settings, tmp_path: Path) -> None:
    dataset_dir = write_dataset(tmp_path / "dataset")
    dataset = load_dataset(dataset_dir)
    config = SequenceConfig(hidden=32, layers=1, heads=2, max_length=8, epochs=3, batch_size=16, threads=1)
    encoder = load_encoder(isolated.model_dir, options_from_settings(isolated))
    result = train_sequence_tower(
        dataset, encoder, tmp_path / "tower", config, WindowConfig.from_settings(isolated)
    )
    # Item residuals (the default) change the item vectors the worker ranks against: online must
    # still equal offline.
    assert result.manifest.residual_items > 0
    # So do the co-occurrence lists (the default): the worker must add the same kNN term.
    assert result.manifest.neighbour_items > 0 and result.manifest.knn_weight > 0
    # And the training sessions (the default): the worker must add the same session term.
    assert result.manifest.sessions > 0 and result.manifest.session_weight > 0
    settings = isolated.model_copy(
        update={
            "user_vector": "sequence",
            "sequence_model_dir": tmp_path / "tower",
            "batch_max_wait_ms": 100,
            "redis_key_prefix": f"t:{uuid.uuid4().hex[:8]}",
        }
    )
    report = run_online_eval(settings, dataset_dir, tmp_path / "work", os.environ, split="test")
    assert report.equal, report.differences
    assert report.users_with_lists == len(dataset.rows["test"])
    assert report.online == report.offline
    assert "+sequence:" in report.model_version
    assert "/knn:" in report.model_version  # the worker served the lists
    assert "/sessions:" in report.model_version  # and the sessions
