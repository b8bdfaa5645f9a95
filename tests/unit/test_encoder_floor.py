from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from bench.encoder_floor import _session, matmul_floor_model, weight_matmul_shapes
from export.onnx_export import export_model
from export.tiny import write_tiny_checkpoint


def test_the_floor_holds_exactly_the_models_weight_products(tmp_path: Path) -> None:
    source = write_tiny_checkpoint(tmp_path / "tiny")
    export_model(source, tmp_path / "model", ["fp32"])
    shapes = weight_matmul_shapes(tmp_path / "model" / "fp32" / "model.onnx")
    # The tiny BERT (hidden 32, feed-forward 64, 2 layers): Q, K, V, attention output, and the two
    # feed-forward products per layer; the attention-score MatMuls have no weight and are left out.
    assert sorted(shapes) == sorted([(32, 32)] * 8 + [(32, 64)] * 2 + [(64, 32)] * 2)
    floor = _session(matmul_floor_model(shapes, rows=10), threads=1)
    feed = {f"x{k}": np.ones((10, k), dtype=np.float32) for k in (32, 64)}
    outputs = floor.run(None, feed)
    assert [o.shape for o in outputs] == [(10, n) for _, n in shapes]
