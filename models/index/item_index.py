"""The item index: one L2-normalised embedding per catalogue item, plus ids, the in-stock mask and
each item's popularity (the catalogue's count, for `stream.core.prior`).

Updates never need a full rebuild: `upsert` re-encodes only items whose text hash changed (a stock,
price or popularity change alone re-encodes nothing) and `remove` drops rows. On disk an index is a
generation folder (embeddings.npy, in_stock.npy, popularity.npy, items.json) named by
``manifest.json``; a save writes a new
generation and then replaces the manifest atomically, so readers never see a half-written index.
The manifest records the encoder's `model_version`; loading with another encoder is an error.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs installed

from models.encoder.manifest import read_json, write_json_atomic
from models.encoder.onnx_encoder import TextEncoder
from models.index.catalog import (
    CatalogFormat,
    CatalogItem,
    SkippedRow,
    item_text,
    read_catalog,
    text_hash,
)
from stream.core.errors import CatalogError, ModelError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TITLES_NAME = "titles.json"
_REBUILD_HINT = "rebuild it with `profilestream index CATALOG --rebuild`"


@dataclass(frozen=True)
class ItemIndex:
    """The catalogue's item vectors: row i of `vectors` ((n, dim) float32, unit rows) is `ids[i]`.

    `in_stock` (n,) bool, `popularity` (n,) float32 counts for the prior (zeros when absent),
    `text_hashes` the item texts' hashes (what `upsert` compares), `encoder_version` the model
    version that made the vectors. Raises `ValueError` when popularity has another length.
    """

    ids: tuple[str, ...]
    vectors: NDArray[np.float32]
    in_stock: NDArray[np.bool_]
    text_hashes: tuple[str, ...]
    encoder_version: str
    dim: int
    popularity: NDArray[np.float32] = field(default_factory=lambda: np.empty(0, dtype=np.float32))

    def __post_init__(self) -> None:
        # Indexes saved before popularity existed, and callers that do not care: no prior.
        if len(self.popularity) != len(self.ids):
            if len(self.popularity):
                raise ValueError(f"{len(self.popularity)} popularity values for {len(self.ids)} items")
            object.__setattr__(self, "popularity", np.zeros(len(self.ids), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self) -> dict[str, int]:
        """Row of each item id in `vectors` (and the other per-item arrays)."""
        return {item_id: row for row, item_id in enumerate(self.ids)}


@dataclass(frozen=True)
class UpsertStats:
    """Items added, re-encoded because their text changed, left as they were, and removed."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0

    @property
    def encoded(self) -> int:
        """Items that went through the encoder (added + updated)."""
        return self.added + self.updated


def empty_index(encoder: TextEncoder) -> ItemIndex:
    """An index of no items for `encoder`: vectors of shape ``(0, encoder.dim)``."""
    return ItemIndex(
        ids=(),
        vectors=np.empty((0, encoder.dim), dtype=np.float32),
        in_stock=np.empty(0, dtype=bool),
        text_hashes=(),
        encoder_version=encoder.model_version,
        dim=encoder.dim,
    )


def encode_texts(encoder: TextEncoder, texts: Sequence[str], batch_size: int) -> NDArray[np.float32]:
    """`texts` (n) -> ``(n, encoder.dim)`` float32 unit rows, `batch_size` texts per call, with a
    progress bar for more than one batch; the encoder's `ModelError` propagates."""
    out = np.empty((len(texts), encoder.dim), dtype=np.float32)
    with tqdm(total=len(texts), desc="encoding items", unit="item", disable=len(texts) < batch_size) as bar:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            out[start : start + len(batch)] = encoder.encode(batch)
            bar.update(len(batch))
    return out


def upsert(
    index: ItemIndex, items: Iterable[CatalogItem], encoder: TextEncoder, batch_size: int = 256
) -> tuple[ItemIndex, UpsertStats]:
    """Add new items and update changed ones; only items whose text changed are encoded.

    Returns the new index (the old one is not changed) and the counts; a stock, price or
    popularity change updates the row without encoding. Raises `ModelError` when `index` was built
    by another encoder, and whatever the encoder raises.
    """
    check_encoder(index, encoder.model_version, "the index in memory")
    positions = index.positions()
    latest = {item.item_id: item for item in items}
    in_stock = index.in_stock.copy()
    popularity = index.popularity.copy()
    hashes = list(index.text_hashes)
    to_encode: list[tuple[str, str, str]] = []  # (item_id, text, hash)
    unchanged = 0
    for item_id, item in latest.items():
        text = item_text(item)
        digest = text_hash(text)
        row = positions.get(item_id)
        if row is not None:
            in_stock[row] = item.in_stock
            popularity[row] = item.popularity
            if hashes[row] == digest:
                unchanged += 1
                continue
        to_encode.append((item_id, text, digest))
    vectors = encode_texts(encoder, [text for _, text, _ in to_encode], batch_size)
    updated_rows = [(positions[i], n) for n, (i, _, _) in enumerate(to_encode) if i in positions]
    new_rows = [n for n, (i, _, _) in enumerate(to_encode) if i not in positions]
    matrix = index.vectors.copy()
    for row, n in updated_rows:
        matrix[row] = vectors[n]
        hashes[row] = to_encode[n][2]
    new_ids = index.ids + tuple(to_encode[n][0] for n in new_rows)
    result = ItemIndex(
        ids=new_ids,
        vectors=np.concatenate([matrix, vectors[new_rows]]) if new_rows else matrix,
        in_stock=np.concatenate([in_stock, [latest[to_encode[n][0]].in_stock for n in new_rows]]).astype(
            bool
        ),
        text_hashes=tuple(hashes) + tuple(to_encode[n][2] for n in new_rows),
        encoder_version=index.encoder_version,
        dim=index.dim,
        popularity=np.concatenate(
            [popularity, [latest[to_encode[n][0]].popularity for n in new_rows]]
        ).astype(np.float32),
    )
    return result, UpsertStats(added=len(new_rows), updated=len(updated_rows), unchanged=unchanged)


def build_index(items: Iterable[CatalogItem], encoder: TextEncoder, batch_size: int = 256) -> ItemIndex:
    """A fresh in-memory index of `items`: ``(n, encoder.dim)`` float32 unit vectors of their item text."""
    return upsert(empty_index(encoder), items, encoder, batch_size)[0]


def remove(index: ItemIndex, item_ids: Iterable[str]) -> ItemIndex:
    """Drop the given items (unknown ids are ignored); remaining rows keep their order."""
    gone = set(item_ids)
    keep = [row for row, item_id in enumerate(index.ids) if item_id not in gone]
    return ItemIndex(
        ids=tuple(index.ids[row] for row in keep),
        vectors=index.vectors[keep],
        in_stock=index.in_stock[keep],
        text_hashes=tuple(index.text_hashes[row] for row in keep),
        encoder_version=index.encoder_version,
        dim=index.dim,
        popularity=index.popularity[keep],
    )


def check_encoder(index: ItemIndex, encoder_version: str, where: str) -> None:
    """`ModelError` naming `where` unless `index` was built by the encoder `encoder_version`."""
    if index.encoder_version != encoder_version:
        raise ModelError(
            f"{where} was built with encoder {index.encoder_version} but the loaded encoder is "
            f"{encoder_version}: its vectors are not comparable; {_REBUILD_HINT}"
        )


def save_index(index: ItemIndex, index_dir: Path) -> Path:
    """Write a new generation folder, then switch the manifest to it; returns the folder.

    Readers see the old generation or the new one, never a mix; older generations are removed
    afterwards. `OSError` propagates (the manifest still names the old generation then).
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    generation = f"gen-{time.time_ns()}"
    staging = index_dir / f".{generation}.tmp"
    staging.mkdir()
    np.save(staging / "embeddings.npy", np.ascontiguousarray(index.vectors, dtype=np.float32))
    np.save(staging / "in_stock.npy", index.in_stock.astype(bool))
    np.save(staging / "popularity.npy", index.popularity.astype(np.float32))
    items_doc = {"ids": list(index.ids), "text_hashes": list(index.text_hashes)}
    (staging / "items.json").write_text(json.dumps(items_doc), encoding="utf-8")
    staging.rename(index_dir / generation)
    write_json_atomic(
        index_dir / MANIFEST_NAME,
        {
            "format_version": FORMAT_VERSION,
            "generation": generation,
            "encoder_version": index.encoder_version,
            "dim": index.dim,
            "count": len(index),
            "created_at_s": int(time.time()),
        },
    )
    for old in index_dir.glob("gen-*"):
        if old.name != generation:
            shutil.rmtree(old, ignore_errors=True)
    logger.info("index %s: %d items saved (generation %s)", index_dir, len(index), generation)
    return index_dir / generation


def index_exists(index_dir: Path) -> bool:
    """Whether `index_dir` holds an index manifest (`profilestream index` ran there)."""
    return (index_dir / MANIFEST_NAME).is_file()


def load_index(index_dir: Path, encoder_version: str) -> ItemIndex:
    """Load the current generation; refuses an index built by an encoder other than `encoder_version`.

    Vectors come back as ``(count, dim)`` float32 as saved. Raises `ModelError` for a missing or
    mangled manifest, missing or corrupt files, shapes that disagree with the manifest, or another
    encoder.
    """
    manifest_path = index_dir / MANIFEST_NAME
    manifest = read_json(manifest_path, "index manifest", _REBUILD_HINT)
    try:
        folder = index_dir / str(manifest["generation"])
        stored_version = str(manifest["encoder_version"])
        dim = int(manifest["dim"])
        count = int(manifest["count"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"index manifest {manifest_path} lacks or mangles key {exc}; {_REBUILD_HINT}"
        ) from exc
    if stored_version != encoder_version:
        raise ModelError(
            f"index {index_dir} was built with encoder {stored_version} but the loaded encoder is "
            f"{encoder_version}: its vectors are not comparable; {_REBUILD_HINT}"
        )
    try:
        vectors = np.load(folder / "embeddings.npy", allow_pickle=False)
        in_stock = np.load(folder / "in_stock.npy", allow_pickle=False)
        items_doc = json.loads((folder / "items.json").read_text(encoding="utf-8"))
        ids, hashes = tuple(items_doc["ids"]), tuple(items_doc["text_hashes"])
        # Generations written before popularity existed have no file: every item counts 0.
        popularity_path = folder / "popularity.npy"
        popularity = (
            np.load(popularity_path, allow_pickle=False)
            if popularity_path.exists()
            else np.zeros(count, dtype=np.float32)
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"index files in {folder} are missing or corrupt ({exc}); {_REBUILD_HINT}") from exc
    if (
        vectors.shape != (count, dim)
        or in_stock.shape != (count,)
        or popularity.shape != (count,)
        or len(ids) != count
        or len(hashes) != count
    ):
        raise ModelError(
            f"index files in {folder} disagree with {manifest_path}: embeddings {vectors.shape}, "
            f"in_stock {in_stock.shape}, popularity {popularity.shape}, {len(ids)} ids, expected "
            f"{count} x {dim}; {_REBUILD_HINT}"
        )
    if popularity.size and (not np.isfinite(popularity).all() or popularity.min() < 0):
        raise ModelError(
            f"index file {folder / 'popularity.npy'} holds negative or non-finite counts; {_REBUILD_HINT}"
        )
    return ItemIndex(
        ids,
        vectors.astype(np.float32, copy=False),
        in_stock.astype(bool),
        hashes,
        stored_version,
        dim,
        popularity.astype(np.float32, copy=False),
    )


def sync_catalog(
    index_dir: Path,
    catalog_path: Path,
    encoder: TextEncoder,
    *,
    fmt: CatalogFormat = "auto",
    encoding: str = "utf-8",
    delimiter: str | None = None,
    rebuild: bool = False,
    batch_size: int = 256,
    skipped: list[SkippedRow] | None = None,
) -> UpsertStats:
    """Make the index at `index_dir` match the catalogue file: upsert its items, remove the rest.

    This is `profilestream index CATALOG`; with `rebuild` the existing index is ignored.
    `encoding` and `delimiter` (a CSV file's column separator; None or ``auto``: found) are
    `read_catalog`'s, as is `skipped` (the invalid rows left out). Returns the counts. Raises
    `CatalogError` for an unreadable or empty
    catalogue (never empties an index) and `ModelError` when the existing index belongs to
    another encoder.
    """
    items = read_catalog(catalog_path, fmt, encoding=encoding, delimiter=delimiter, skipped=skipped)
    if not items:
        # Syncing to an empty catalogue would delete every item: almost surely the wrong file.
        raise CatalogError(
            f"catalogue {catalog_path} holds no items; refusing to empty the index {index_dir}"
        )
    return sync_items(
        index_dir, items, encoder, source=str(catalog_path), rebuild=rebuild, batch_size=batch_size
    )


def sync_items(
    index_dir: Path,
    items: Sequence[CatalogItem],
    encoder: TextEncoder,
    *,
    source: str,
    rebuild: bool = False,
    batch_size: int = 256,
) -> UpsertStats:
    """`sync_catalog` for items already in memory; `source` names them in the log."""
    exists = index_exists(index_dir) and not rebuild
    index = load_index(index_dir, encoder.model_version) if exists else empty_index(encoder)
    index, stats = upsert(index, items, encoder, batch_size)
    wanted = {item.item_id for item in items}
    gone = [item_id for item_id in index.ids if item_id not in wanted]
    index = remove(index, gone)
    save_index(index, index_dir)
    # Display titles for lookups and explanations (stream/profiles/catalogue.py reads them); not part of the
    # vectors' contract, so they live beside the generations.
    write_json_atomic(index_dir / TITLES_NAME, {item.item_id: item.title for item in items})
    stats = UpsertStats(stats.added, stats.updated, stats.unchanged, removed=len(gone))
    logger.info(
        "index %s from %s: %d added, %d updated, %d unchanged, %d removed",
        index_dir,
        source,
        stats.added,
        stats.updated,
        stats.unchanged,
        stats.removed,
    )
    return stats
