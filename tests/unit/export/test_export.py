"""Export of a tiny random BERT: parity, manifest contents, atomic layout, failure messages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from export.onnx_export import ExportResult, export_model, inspect_source
from export.parity import measure_parity, require_parity
from models.encoder.manifest import Parity, read_top_manifest, read_variant_manifest, sha256_file
from stream.core.errors import ModelError
from tests.support.tiny_model import write_tiny_checkpoint

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    root = tmp_path_factory.mktemp("tiny")
    checkpoint = write_tiny_checkpoint(root / "checkpoint")
    return export_model(checkpoint, root / "model")


def test_every_variant_passes_parity_and_is_listed(tiny_export: ExportResult) -> None:
    top = read_top_manifest(tiny_export.model_dir)
    assert set(top.variants) == {"fp32", "fp32-opt", "fp16"}
    assert (top.default_cpu, top.default_cuda) == ("fp32", "fp16")
    for manifest in tiny_export.manifests:
        assert manifest.parity.n_texts == 10
        if manifest.parity.checked:
            assert manifest.parity.min_cosine is not None
            assert manifest.parity.min_cosine >= 0.999
        else:  # fp16 where onnxruntime CPU cannot run it: says so, never a made-up figure
            assert manifest.variant == "fp16"
            assert "CUDA" in manifest.parity.note


def test_manifest_describes_the_files_next_to_it(tiny_export: ExportResult) -> None:
    folder = tiny_export.model_dir / "fp32"
    manifest = read_variant_manifest(folder)
    raw = json.loads((folder / "manifest.json").read_text())
    assert manifest.sha256 == sha256_file(folder / "model.onnx")
    assert manifest.dim == 32
    assert manifest.pooling == "mean"
    assert manifest.normalized is True
    assert manifest.inputs == ("input_ids", "attention_mask")
    assert manifest.max_length == 64  # the tiny config's max_position_embeddings
    assert "tokenizer.json" in manifest.tokenizer_files
    assert all((folder / name).is_file() for name in manifest.tokenizer_files)
    assert {"opset", "source", "created_at", "profilestream_version", "parity"} <= set(raw)
    # No staging folders are left behind.
    assert sorted(p.name for p in tiny_export.model_dir.iterdir()) == [
        "fp16",
        "fp32",
        "fp32-opt",
        "manifest.json",
    ]


def test_unknown_variant_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown variants"):
        export_model(tmp_path, tmp_path / "out", ["int4"])


def test_source_without_fast_tokenizer_names_the_missing_file(tmp_path: Path) -> None:
    checkpoint = write_tiny_checkpoint(tmp_path / "ckpt")
    (checkpoint / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"tokenizer\.json is missing"):
        inspect_source(checkpoint)


def test_missing_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"config\.json"):
        inspect_source(tmp_path)


def test_parity_below_threshold_raises_with_figures(tmp_path: Path) -> None:
    bad = Parity(checked=True, min_cosine=0.98, mean_cosine=0.99, n_texts=10)
    with pytest.raises(ModelError, match=r"parity check failed for variant fp32 .*0\.98"):
        require_parity(bad, "fp32", tmp_path / "model.onnx")


def test_measure_parity_of_identical_and_opposite_vectors() -> None:
    import numpy as np

    a = np.eye(3, dtype=np.float32)
    assert measure_parity(a, a).min_cosine == pytest.approx(1.0)
    assert measure_parity(a, -a).min_cosine == pytest.approx(-1.0)
    with pytest.raises(ModelError, match="shape"):
        measure_parity(a, a[:2])
