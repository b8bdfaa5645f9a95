"""Runtime text encoder: `tokenizers` + onnxruntime, never torch or transformers.

The stream workers import this module, so nothing on its import path may pull in torch (a unit
test guards that). It loads only files a manifest lists, after checking their sha256, so a corrupt
or mismatched model is a `ModelError` naming the file instead of a crash inside onnxruntime.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]  # ships no type information
from numpy.typing import NDArray
from tokenizers import Tokenizer

from models.encoder.manifest import (
    INPUT_NAMES,
    OUTPUT_NAME,
    VariantManifest,
    read_top_manifest,
    read_variant_manifest,
    sha256_file,
)
from stream.core.errors import ConfigError, ModelError
from stream.core.settings import Settings

logger = logging.getLogger(__name__)

Provider = Literal["auto", "cuda", "cpu"]
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_EXPORT_HINT = "re-run `profilestream export`"


class TextEncoder(Protocol):
    """Turns texts into L2-normalised float32 vectors; the seam between the stream and the model."""

    @property
    def dim(self) -> int:
        """Width of every vector `encode` returns (384 for MiniLM)."""
        ...

    @property
    def model_version(self) -> str:
        """Names the weights (``variant:sha256-prefix``); vectors of different versions never mix."""
        ...

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """`texts` (n strings) -> ``(n, dim)`` float32, each row L2-normalised, row i for text i.

        Empty input gives shape ``(0, dim)``. Implementations raise `ModelError` when the model fails.
        """
        ...


@dataclass(frozen=True)
class EncoderOptions:
    """How to run the encoder: provider (`auto`, `cuda`, `cpu`), onnxruntime thread counts (0 = all
    cores), the token limit per text (capped by the manifest's) and texts per onnxruntime call."""

    provider: Provider = "auto"
    intra_op_threads: int = 0
    inter_op_threads: int = 1
    max_length: int = 256
    batch_size: int = 64


def options_from_settings(settings: Settings) -> EncoderOptions:
    """The `EncoderOptions` of the ``PROFILESTREAM_ENCODER_*`` settings."""
    return EncoderOptions(
        provider=settings.encoder_provider,
        intra_op_threads=settings.encoder_intra_op_threads,
        inter_op_threads=settings.encoder_inter_op_threads,
        max_length=settings.encoder_max_length,
        batch_size=settings.encoder_batch_size,
    )


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Group text indices into batches of similar token length, so that little padding is computed.

    `lengths[i]` is text i's token count; returns lists of indices into it, each at most
    `batch_size` long, shortest texts first, every index exactly once. Sorting is stable, so equal
    lengths keep their input order and the plan is deterministic.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Right-pad to the longest sequence of the batch; returns ``(input_ids, attention_mask)``.

    Both are ``(n, longest)`` int64: ids padded with `pad_id`, mask 1 on real tokens and 0 on
    padding; ``(0, 0)`` for no sequences.
    """
    width = max((len(ids) for ids in token_ids), default=0)
    input_ids = np.full((len(token_ids), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(token_ids), width), dtype=np.int64)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def l2_normalise(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """``(n, d)`` float32 -> ``(n, d)`` float32 with unit-length rows; all-zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: NDArray[np.float32] = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return normalised


class OnnxTextEncoder:
    """`TextEncoder` over one exported variant; build it with `load_encoder` or `load_variant`.

    `provider` names the onnxruntime provider the session runs on (CUDA or CPU).
    """

    def __init__(
        self,
        session: Any,
        tokenizer: Tokenizer,
        manifest: VariantManifest,
        batch_size: int,
    ) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._manifest = manifest
        self._batch_size = batch_size
        self.provider: str = str(session.get_providers()[0])
        # IO binding keeps the output on the GPU until the single copy back; CPU gains nothing from it.
        self._use_io_binding = self.provider == CUDA

    @property
    def dim(self) -> int:
        """Output width from the manifest (384 for MiniLM)."""
        return self._manifest.dim

    @property
    def model_version(self) -> str:
        """``variant:sha256-prefix`` of the loaded ONNX file, e.g. ``fp32:7c40d0a937937139``."""
        return self._manifest.model_version

    @property
    def manifest(self) -> VariantManifest:
        """The variant's manifest as read and verified at load."""
        return self._manifest

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, with special tokens, truncated to the token limit (no padding)."""
        return [list(encoding.ids) for encoding in self._tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """`texts` (n strings) -> ``(n, dim)`` float32, L2-normalised rows in input order.

        Each text is truncated to ``min(options.max_length, manifest max_length)`` tokens (the
        end is cut); texts run in length buckets of at most `batch_size`. Empty input gives
        ``(0, dim)``. Raises `ModelError` when onnxruntime fails or returns the wrong width.
        """
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        token_ids = self.token_ids(texts)
        for indices in plan_batches([len(ids) for ids in token_ids], self._batch_size):
            input_ids, attention_mask = pad_batch([token_ids[i] for i in indices], self._manifest.pad_id)
            out[indices] = self.run_batch(input_ids, attention_mask)
        # fp16 graphs come back a hair off unit length; the contract is unit vectors.
        return l2_normalise(out)

    def run_batch(
        self, input_ids: NDArray[np.int64], attention_mask: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        """One padded batch through the graph; `encode` is the API, this is for benchmarks.

        Takes ``(n, seq)`` int64 ids and mask (as `pad_batch` makes them); returns ``(n, dim)``
        float32 mean-pooled vectors, normalised by the graph (fp16 only to about 1e-3). Raises
        `ModelError` when onnxruntime fails or the output shape is not ``(n, dim)``.
        """
        try:
            result = self._run_session(input_ids, attention_mask)
        except Exception as exc:  # onnxruntime's errors share no useful base class
            raise ModelError(
                f"onnxruntime failed to run variant {self._manifest.variant} on {self.provider} for a "
                f"batch of shape {input_ids.shape} ({exc}); re-export, or set "
                "PROFILESTREAM_ENCODER_PROVIDER=cpu if the GPU is the problem"
            ) from exc
        if result.shape != (input_ids.shape[0], self.dim):
            # The graph may declare its width symbolically, so the load-time check can miss this.
            raise ModelError(
                f"the encoder of variant {self._manifest.variant} returned shape {result.shape} for "
                f"{input_ids.shape[0]} texts, but its manifest says dim {self.dim}; {_EXPORT_HINT}"
            )
        return np.asarray(result, dtype=np.float32)

    def _run_session(self, input_ids: NDArray[np.int64], attention_mask: NDArray[np.int64]) -> Any:
        if self._use_io_binding:
            binding = self._session.io_binding()
            binding.bind_cpu_input(INPUT_NAMES[0], input_ids)
            binding.bind_cpu_input(INPUT_NAMES[1], attention_mask)
            binding.bind_output(OUTPUT_NAME, "cuda")
            self._session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0]
        feed = {INPUT_NAMES[0]: input_ids, INPUT_NAMES[1]: attention_mask}
        return self._session.run([OUTPUT_NAME], feed)[0]


def provider_list(requested: Provider, available: Sequence[str]) -> list[str]:
    """The providers to ask onnxruntime for, best first, e.g. ``[CUDA, CPU]``.

    `available` is ``onnxruntime.get_available_providers()``. Raises `ConfigError` when `requested`
    is ``cuda`` and CUDA is not among them.
    """
    if requested == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if requested == "cuda":
        raise ConfigError(
            f"PROFILESTREAM_ENCODER_PROVIDER=cuda but onnxruntime offers only {list(available)}; "
            "install onnxruntime-gpu with the CUDA libraries, or set it to auto or cpu"
        )
    return [CPU]


def load_encoder(model_dir: Path, options: EncoderOptions, variant: str | None = None) -> OnnxTextEncoder:
    """Load the default variant for the provider (or `variant`) from a `profilestream export` folder.

    Under ``auto``, CUDA is tried first (the CUDA default variant) and CPU taken when onnxruntime
    cannot start it; one INFO line says which. Raises `ModelError` for a missing or unreadable
    manifest, an unknown `variant` or a file whose sha256 does not match, and `ConfigError` when
    ``cuda`` was required and cannot run.
    """
    top = read_top_manifest(model_dir)
    if variant is not None and variant not in top.variants:
        raise ModelError(
            f"variant {variant!r} is not in {model_dir / 'manifest.json'}; it lists {top.variants}"
        )
    providers = provider_list(options.provider, ort.get_available_providers())
    if providers[0] == CUDA:
        # onnxruntime-gpu always lists CUDA; on a machine without its libraries the attempt prints
        # a red error that is expected under "auto", so quieten its logger for the probe only.
        if options.provider == "auto":
            ort.set_default_logger_severity(4)
        try:
            encoder = load_variant(model_dir / (variant or top.default_cuda), options, providers)
        finally:
            ort.set_default_logger_severity(2)
        if encoder.provider == CUDA:
            logger.info("encoder: %s on %s", encoder.model_version, CUDA)
            return encoder
        if options.provider == "cuda":
            raise ConfigError(
                "PROFILESTREAM_ENCODER_PROVIDER=cuda but onnxruntime could not start CUDA (no GPU or "
                "missing CUDA/cuDNN libraries, see its log above); fix the GPU set-up or set it to "
                "auto or cpu"
            )
        # A warning: a GPU deployment silently encoding on CPU is many times slower.
        logger.warning("encoder: CUDA listed but not usable by onnxruntime; falling back to CPU")
    encoder = load_variant(model_dir / (variant or top.default_cpu), options, [CPU])
    logger.info("encoder: %s on %s", encoder.model_version, encoder.provider)
    return encoder


def load_variant(variant_dir: Path, options: EncoderOptions, providers: Sequence[str]) -> OnnxTextEncoder:
    """Check one variant folder against its manifest and open an onnxruntime session on it.

    `providers` as `provider_list` returns them. Raises `ModelError` for a missing, unreadable or
    mismatched manifest, tokenizer or ONNX file, or a session onnxruntime cannot open.
    """
    manifest = read_variant_manifest(variant_dir)
    onnx_path = verify_variant_files(variant_dir, manifest)
    tokenizer = _load_tokenizer(variant_dir / "tokenizer.json", min(options.max_length, manifest.max_length))
    session = _open_session(onnx_path, manifest, options, providers)
    return OnnxTextEncoder(session, tokenizer, manifest, options.batch_size)


def verify_variant_files(variant_dir: Path, manifest: VariantManifest) -> Path:
    """Every listed file exists and the ONNX file's sha256 matches; returns the ONNX path.

    Raises `ModelError` naming the file and the fix (re-export) otherwise.
    """
    manifest_path = variant_dir / "manifest.json"
    if "tokenizer.json" not in manifest.tokenizer_files:
        raise ModelError(f"model manifest {manifest_path} lists no tokenizer.json; {_EXPORT_HINT}")
    for name in manifest.tokenizer_files:
        if not (variant_dir / name).is_file():
            raise ModelError(
                f"tokenizer file {variant_dir / name} listed in {manifest_path} is missing; {_EXPORT_HINT}"
            )
    onnx_path = variant_dir / manifest.onnx_file
    if not onnx_path.is_file():
        raise ModelError(f"ONNX file {onnx_path} listed in {manifest_path} is missing; {_EXPORT_HINT}")
    actual = sha256_file(onnx_path)
    if actual != manifest.sha256:
        raise ModelError(
            f"ONNX file {onnx_path} has sha256 {actual[:16]}..., but {manifest_path} expects "
            f"{manifest.sha256[:16]}...: the file is corrupt, truncated or from another export; "
            f"{_EXPORT_HINT}"
        )
    return onnx_path


def _load_tokenizer(path: Path, max_length: int) -> Tokenizer:
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception subclasses
        raise ModelError(f"tokenizer {path} cannot be read ({exc}); {_EXPORT_HINT}") from exc
    tokenizer.enable_truncation(max_length)
    # Padding happens per length bucket in `pad_batch`; the file's own fixed padding would undo that.
    tokenizer.no_padding()
    return tokenizer


def _open_session(
    onnx_path: Path, manifest: VariantManifest, options: EncoderOptions, providers: Sequence[str]
) -> Any:
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = options.intra_op_threads
    session_options.inter_op_num_threads = options.inter_op_threads
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(onnx_path), session_options, providers=list(providers))
    except Exception as exc:  # onnxruntime's errors share no useful base class
        raise ModelError(f"onnxruntime cannot load {onnx_path} ({exc}); {_EXPORT_HINT}") from exc
    names = {node.name for node in session.get_inputs()}
    outputs = {node.name: node.shape for node in session.get_outputs()}
    if names != set(INPUT_NAMES) or OUTPUT_NAME not in outputs:
        raise ModelError(
            f"ONNX file {onnx_path} has inputs {sorted(names)} and outputs {sorted(outputs)}, expected "
            f"{list(INPUT_NAMES)} -> {OUTPUT_NAME}; {_EXPORT_HINT}"
        )
    width = outputs[OUTPUT_NAME][-1]
    if isinstance(width, int) and width != manifest.dim:
        raise ModelError(
            f"ONNX file {onnx_path} outputs {width}-dimensional vectors but its manifest says dim "
            f"{manifest.dim}; {_EXPORT_HINT}"
        )
    return session
