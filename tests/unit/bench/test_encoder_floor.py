from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.support.requirements import require_module

onnx = require_module("onnx")
require_module("torch")
require_module("transformers")

from bench.encoder_floor import _session, matmul_floor_model, weight_matmul_shapes  # noqa: E402
from export.onnx_export import export_model  # noqa: E402
from tests.support.tiny_model import write_tiny_checkpoint  # noqa: E402


def test_the_floor_holds_exactly_the_models_weight_products(tmp_path: Path) -> None:
    source = write_tiny_checkpoint(tmp_path / "tiny")
    export_model(source, tmp_path / "model", ["fp32"])
    shapes = weight_matmul_shapes(tmp_path / "model" / "fp32" / "model.onnx")
    # The tiny BERT (hidden 32, feed-forward 64, 2 layers): Q, K, V, attention output, and the two
    # feed-forward products per layer; the attention-score MatMuls have no weight and are left out.
    assert sorted(shapes) == sorted([(32, 32)] * 8 + [(32, 64)] * 2 + [(64, 32)] * 2)
    model = onnx.load_from_string(matmul_floor_model(shapes, rows=10))
    assert [node.op_type for node in model.graph.node] == ["MatMul"] * len(shapes)
    floor = _session(model.SerializeToString(), threads=1)
    # Chained in model order: one input, every product feeds the next, one (10 x 32) result.
    assert [i.name for i in floor.get_inputs()] == ["x32"]
    outputs = floor.run(None, {"x32": np.ones((10, 32), dtype=np.float32)})
    assert [o.shape for o in outputs] == [(10, 32)]
    assert np.isfinite(outputs[0]).all()
