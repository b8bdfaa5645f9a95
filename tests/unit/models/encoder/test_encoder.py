"""Runtime encoder: equals PyTorch, keeps input order, refuses damaged folders with clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.onnx_export import (
    ExportResult,
    export_model,
    inspect_source,
    load_embedder,
    reference_embeddings,
    tokenize,
)
from models.encoder.onnx_encoder import (
    CPU,
    CUDA,
    EncoderOptions,
    OnnxTextEncoder,
    TextEncoder,
    load_encoder,
    load_variant,
    pad_batch,
    plan_batches,
    provider_list,
)
from stream.core.errors import ConfigError, ModelError
from tests.support.tiny_model import write_tiny_checkpoint

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = [
    "pens",
    "heavy duty stapler with 1000 staples for the office, black, letter size",
    "",
    "usb hub",
    "blue notebook with long sheets and a small desk lamp",
    "ink",
    "green folder pack",
]
CPU_OPTIONS = EncoderOptions(provider="cpu", batch_size=2, max_length=64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExportResult]:
    root = tmp_path_factory.mktemp("enc")
    checkpoint = write_tiny_checkpoint(root / "checkpoint", seed=1)
    return checkpoint, export_model(checkpoint, root / "model", ["fp32", "fp32-opt"])


@pytest.fixture
def variant_copy(exported: tuple[Path, ExportResult], tmp_path: Path) -> Path:
    """A private copy of the fp32 folder that a test may damage."""
    return Path(shutil.copytree(exported[1].model_dir / "fp32", tmp_path / "fp32"))


def test_encoder_matches_pytorch_and_keeps_input_order(exported: tuple[Path, ExportResult]) -> None:
    checkpoint, result = exported
    source = inspect_source(checkpoint)
    reference = reference_embeddings(
        load_embedder(source, "sdpa"), tokenize(checkpoint / "tokenizer.json", TEXTS, 64), source.pad_id
    )
    for variant in ("fp32", "fp32-opt"):
        encoder = load_variant(result.model_dir / variant, CPU_OPTIONS, [CPU])
        vectors = encoder.encode(TEXTS)
        assert vectors.dtype == np.float32
        assert vectors.shape == (len(TEXTS), 32)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        cosines = (vectors * reference).sum(axis=1)
        assert cosines.min() >= 0.999, variant
        # One text at a time (no bucketing, no padding) gives the same rows in the same order.
        singles = np.vstack([encoder.encode([text]) for text in TEXTS])
        np.testing.assert_allclose(vectors, singles, atol=1e-5)


def test_encoder_satisfies_the_protocol(exported: tuple[Path, ExportResult]) -> None:
    encoder: TextEncoder = load_variant(exported[1].model_dir / "fp32", CPU_OPTIONS, [CPU])
    assert encoder.dim == 32
    assert encoder.model_version.startswith("fp32:")
    assert encoder.encode([]).shape == (0, 32)


def test_load_encoder_takes_the_cpu_default(exported: tuple[Path, ExportResult]) -> None:
    encoder = load_encoder(exported[1].model_dir, CPU_OPTIONS)
    assert isinstance(encoder, OnnxTextEncoder)
    assert encoder.provider == CPU
    assert encoder.manifest.variant == "fp32"
    assert load_encoder(exported[1].model_dir, CPU_OPTIONS, "fp32-opt").manifest.variant == "fp32-opt"
    with pytest.raises(ModelError, match="variant 'fp64'"):
        load_encoder(exported[1].model_dir, CPU_OPTIONS, "fp64")


# Run in a child process with no visible GPU, on any machine: onnxruntime is asked for CUDA (listed
# as available even where the installed onnxruntime is CPU-only), cannot start it, and the encoder
# must end up on CPU with a warning in the log.
FALLBACK_PROBE = """
import logging, sys
from pathlib import Path
import onnxruntime as ort
from models.encoder import onnx_encoder
from models.encoder.onnx_encoder import CPU, CUDA, EncoderOptions, load_encoder
available = ort.get_available_providers()
if CUDA not in available:
    ort.get_available_providers = lambda: [CUDA, *available]
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
encoder = load_encoder(Path(sys.argv[1]), EncoderOptions(provider="auto", max_length=64))
print("PROVIDER", encoder.provider, encoder.encode(["pens"]).shape)
"""


def test_auto_provider_falls_back_to_cpu_with_a_warning_without_a_usable_gpu(
    exported: tuple[Path, ExportResult],
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FALLBACK_PROBE, str(exported[1].model_dir)],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"PROVIDER {CPU} (1, 32)" in result.stdout
    warnings = [line for line in result.stdout.splitlines() if line.startswith("WARNING")]
    assert any("falling back to CPU" in line for line in warnings), result.stdout


def test_provider_list() -> None:
    assert provider_list("cpu", [CUDA, CPU]) == [CPU]
    assert provider_list("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert provider_list("auto", [CPU]) == [CPU]
    with pytest.raises(ConfigError, match="PROFILESTREAM_ENCODER_PROVIDER=cuda"):
        provider_list("cuda", [CPU])


def test_plan_batches_groups_by_length_and_covers_every_index() -> None:
    plan = plan_batches([5, 1, 3, 1, 9, 3], batch_size=2)
    assert plan == [[1, 3], [2, 5], [0, 4]]
    assert sorted(i for batch in plan for i in batch) == list(range(6))


def test_pad_batch() -> None:
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def _damage(path: Path, keep_bytes: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    if keep_bytes is not None:
        path.write_bytes(bytes(data[:keep_bytes]))
        return
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_manifest(folder: Path, **changes: object) -> None:
    path = folder / "manifest.json"
    document = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del document[key]
        else:
            document[key] = value
    path.write_text(json.dumps(document))


def test_corrupted_onnx_names_the_file(variant_copy: Path) -> None:
    _damage(variant_copy / "model.onnx")
    with pytest.raises(ModelError, match=r"model\.onnx has sha256 .* corrupt, truncated"):
        load_variant(variant_copy, CPU_OPTIONS, [CPU])


def test_truncated_onnx_names_the_file(variant_copy: Path) -> None:
    _damage(variant_copy / "model.onnx", keep_bytes=1000)
    with pytest.raises(ModelError, match=str(variant_copy / "model.onnx")):
        load_variant(variant_copy, CPU_OPTIONS, [CPU])


def test_truncated_onnx_with_matching_hash_is_still_a_model_error(variant_copy: Path) -> None:
    # Someone "fixed" the hash by hand: onnxruntime's own failure must become a ModelError.
    from models.encoder.manifest import sha256_file

    _damage(variant_copy / "model.onnx", keep_bytes=1000)
    _edit_manifest(variant_copy, sha256=sha256_file(variant_copy / "model.onnx"))
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        load_variant(variant_copy, CPU_OPTIONS, [CPU])


def test_wrong_hash_in_manifest(variant_copy: Path) -> None:
    _edit_manifest(variant_copy, sha256="0" * 64)
    with pytest.raises(ModelError, match="expects 0000000000000000"):
        load_variant(variant_copy, CPU_OPTIONS, [CPU])


def test_manifest_missing_keys(variant_copy: Path) -> None:
    _edit_manifest(variant_copy, sha256=None, dim=None)
    with pytest.raises(ModelError, match=r"manifest\.json lacks keys \['dim', 'sha256'\]"):
        load_variant(variant_copy, CPU_OPTIONS, [CPU])


def test_manifest_not_json(variant_copy: Path) -> None:
    (variant_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        load_variant(variant_copy, CPU_OPTIONS, [CPU])


def test_mismatched_dim(variant_copy: Path) -> None:
    _edit_manifest(variant_copy, dim=384)
    with pytest.raises(ModelError, match="dim 384"):
        load_variant(variant_copy, CPU_OPTIONS, [CPU]).encode(["pens"])


def test_missing_tokenizer(variant_copy: Path) -> None:
    (variant_copy / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"tokenizer file .*tokenizer\.json .* is missing"):
        load_variant(variant_copy, CPU_OPTIONS, [CPU])


def test_missing_top_manifest_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"manifest\.json does not exist; re-run `profilestream export`"):
        load_encoder(tmp_path, CPU_OPTIONS)


def test_runtime_import_path_is_free_of_torch() -> None:
    code = (
        "import sys, models.encoder.onnx_encoder, models.index.item_index, models.index.topk; "
        "import models.index.catalog; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr


def test_a_missing_relative_model_folder_names_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default model folder is relative (var/model): started elsewhere, the path alone misleads.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match=r"relative to the working directory .+ does not exist"):
        load_encoder(Path("var/model"), CPU_OPTIONS)
