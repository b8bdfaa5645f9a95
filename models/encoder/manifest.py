"""Manifests of exported encoders: the contract between `export/` (writer) and the runtime (reader).

Layout under ``settings.model_dir``::

    manifest.json             top level: which variant is the default (per provider) and where each lives
    <variant>/manifest.json   one exported variant: ONNX file, sha256, dim, tokenizer files, parity figures
    <variant>/model.onnx
    <variant>/tokenizer.json  (and the other tokenizer files copied from the source checkpoint)

Pure data and validation plus small JSON/sha256 helpers; no torch, no onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stream.core.errors import ModelError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
INPUT_NAMES = ("input_ids", "attention_mask")
# Not "embedding": the exporter already names BERT's embedding Gather node so, and a duplicate name
# makes an invalid graph.
OUTPUT_NAME = "sentence_embedding"
VARIANTS = ("fp32", "fp32-opt", "fp16")

_EXPORT_HINT = "re-run `profilestream export` to write a fresh model folder"


@dataclass(frozen=True)
class Parity:
    """How closely the ONNX output matched PyTorch on the fixed parity texts.

    Cosines are between each text's ONNX and PyTorch vectors (None when not `checked`); `n_texts`
    is how many texts were compared.
    """

    checked: bool
    min_cosine: float | None
    mean_cosine: float | None
    n_texts: int
    note: str = ""


@dataclass(frozen=True)
class VariantManifest:
    """What the runtime needs to load and trust one exported variant (``<variant>/manifest.json``).

    `dim`: output width; `max_length`: the token limit the model was exported (or trained) for, which
    caps the runtime's; `sha256`: hex digest of `onnx_file`; `inputs`/`output`: graph tensor names.
    """

    format_version: int
    variant: str
    onnx_file: str
    sha256: str
    source: str
    opset: int
    dim: int
    max_length: int
    pad_id: int
    pooling: str
    normalized: bool
    inputs: tuple[str, ...]
    output: str
    tokenizer_files: tuple[str, ...]
    parity: Parity
    profilestream_version: str
    created_at: str
    exporter: str

    @property
    def model_version(self) -> str:
        """Short id of the weights: the index records it to refuse vectors from another encoder."""
        return f"{self.variant}:{self.sha256[:16]}"


@dataclass(frozen=True)
class TopManifest:
    """Which variant the runtime takes by default on each provider, and where each variant lives."""

    format_version: int
    default_cpu: str
    default_cuda: str
    variants: tuple[str, ...]


def sha256_file(path: Path) -> str:
    """Hex sha256 (64 characters) of the file at `path`, read in 1 MiB blocks; `OSError` if unreadable."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def listed_file(directory: Path, file_name: str, expected_name: str, digest: str) -> Path:
    """The file a tower's manifest lists beside it (`expected_name`, e.g. ``item_sessions.npz``),
    checked against the manifest's sha256. Raises `ModelError` (re-export the tower) for another
    name, a missing file or another digest."""
    path = directory / file_name
    if file_name != expected_name or not path.is_file():
        raise ModelError(f"{path}: missing (listed in the tower's manifest); re-export the tower")
    found = sha256_file(path)
    if found != digest:
        raise ModelError(
            f"{path}: sha256 {found[:12]} does not match the manifest's {digest[:12]}; the file is "
            "corrupt or was replaced, re-export the tower"
        )
    return path


def write_json_atomic(path: Path, document: Any) -> None:
    """Write JSON so that readers see either the old or the new file, never half of one.

    Indented, keys sorted, final newline, mode 0644; creates the parent folder. `OSError` and
    `TypeError` (not JSON-serialisable) propagate and leave no temporary file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
            handle.write("\n")
        # mkstemp creates 0600; manifests are meant to be read by other users (workers, CI).
        Path(tmp_name).chmod(0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_json(path: Path, what: str, hint: str) -> dict[str, Any]:
    """The JSON object in `path`; `ModelError` naming `what`, the path and `hint` when it is
    missing, unreadable, not JSON or not an object."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        # A relative default (var/model) read from another directory is the usual cause: say where.
        where = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise ModelError(f"{what} {path}{where} does not exist; {hint}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{what} {path} is not readable JSON ({exc}); {hint}") from exc
    if not isinstance(document, dict):
        raise ModelError(f"{what} {path} must hold a JSON object; {hint}")
    return document


def variant_to_json(manifest: VariantManifest) -> dict[str, Any]:
    """The JSON document of a variant manifest (tuples as lists); `variant_from_json` reads it back."""
    document = asdict(manifest)
    document["inputs"] = list(manifest.inputs)
    document["tokenizer_files"] = list(manifest.tokenizer_files)
    return document


def variant_from_json(document: dict[str, Any], path: Path) -> VariantManifest:
    """Validate a variant manifest; any missing or ill-typed key names the file and the key.

    Raises `ModelError` for missing keys, ill-typed or negative values, or another format version.
    """
    fields = VariantManifest.__dataclass_fields__
    missing = sorted(set(fields) - set(document))
    if missing:
        raise ModelError(f"model manifest {path} lacks keys {missing}; {_EXPORT_HINT}")
    parity_doc = document["parity"]
    if not isinstance(parity_doc, dict) or set(parity_doc) - set(Parity.__dataclass_fields__):
        raise ModelError(
            f"model manifest {path}: 'parity' must be an object of {list(Parity.__dataclass_fields__)}"
        )
    try:
        values = {name: document[name] for name in fields}
        values["inputs"] = tuple(str(x) for x in document["inputs"])
        values["tokenizer_files"] = tuple(str(x) for x in document["tokenizer_files"])
        values["parity"] = Parity(**parity_doc)
        manifest = VariantManifest(**values)
        _check_types(manifest)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model manifest {path} has an invalid value ({exc}); {_EXPORT_HINT}") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise ModelError(
            f"model manifest {path} has format_version {manifest.format_version}, this profilestream "
            f"reads {FORMAT_VERSION}; {_EXPORT_HINT}"
        )
    return manifest


def _check_types(manifest: VariantManifest) -> None:
    for name in ("opset", "dim", "max_length", "pad_id", "format_version"):
        value = getattr(manifest, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    for name in ("variant", "onnx_file", "sha256", "output", "pooling"):
        if not isinstance(getattr(manifest, name), str) or not getattr(manifest, name):
            raise ValueError(f"{name} must be a non-empty string")
    if manifest.dim == 0:
        raise ValueError("dim must be positive")


def top_to_json(manifest: TopManifest) -> dict[str, Any]:
    """The JSON document of the top-level ``manifest.json`` (defaults per provider, variant paths)."""
    return {
        "format_version": manifest.format_version,
        "default": {"cpu": manifest.default_cpu, "cuda": manifest.default_cuda},
        "variants": {name: f"{name}/{MANIFEST_NAME}" for name in manifest.variants},
    }


def read_top_manifest(model_dir: Path) -> TopManifest:
    """The top-level manifest of a `profilestream export` folder.

    Raises `ModelError` when it is missing, unreadable, lacks a key or names a default variant it
    does not list.
    """
    path = model_dir / MANIFEST_NAME
    document = read_json(path, "model manifest", _EXPORT_HINT)
    try:
        default = document["default"]
        variants = tuple(str(name) for name in document["variants"])
        top = TopManifest(
            format_version=int(document["format_version"]),
            default_cpu=str(default["cpu"]),
            default_cuda=str(default["cuda"]),
            variants=variants,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model manifest {path} lacks or mangles key {exc}; {_EXPORT_HINT}") from exc
    for name in (top.default_cpu, top.default_cuda):
        if name not in top.variants:
            raise ModelError(f"model manifest {path} names default variant {name!r} but lists {variants}")
    return top


def read_variant_manifest(variant_dir: Path) -> VariantManifest:
    """The validated manifest of one variant folder; `ModelError` as `read_json` and `variant_from_json`."""
    path = variant_dir / MANIFEST_NAME
    return variant_from_json(read_json(path, "model manifest", _EXPORT_HINT), path)
