"""Item index with a deterministic fake encoder: ranking, incremental upsert, remove, persistence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from models.encoder.onnx_encoder import TextEncoder
from models.index.catalog import CatalogItem, read_catalog
from models.index.item_index import (
    build_index,
    load_index,
    remove,
    save_index,
    sync_catalog,
    upsert,
)
from models.index.topk import top_k
from stream.core.errors import CatalogError, ModelError

WORDS = ("pen", "paper", "chair", "desk", "ink", "tape", "lamp", "stapler")


class KeywordEncoder:
    """Bag of known words, L2-normalised; records every text it encodes."""

    def __init__(self, version: str = "fake:1") -> None:
        self.model_version = version
        self.dim = len(WORDS) + 1
        self.encoded: list[str] = []

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.encoded.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = text.lower().replace("|", " ").split()
            for col, word in enumerate(WORDS):
                out[row, col] = tokens.count(word)
            out[row, -1] = 0.1  # keeps texts without known words from being the zero vector
        unit: NDArray[np.float32] = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit


CATALOGUE = [
    {"item_id": "p1", "title": "Blue pen", "brand": "Bic", "in_stock": True},
    {"item_id": "p2", "title": "pen and ink set", "in_stock": True},
    {"item_id": "c1", "title": "Office chair", "category": "desk furniture", "in_stock": True},
    {"item_id": "d1", "title": "Standing desk", "in_stock": False},
    {"item_id": "t1", "title": "Clear tape", "in_stock": True},
]


def _items() -> list[CatalogItem]:
    return [CatalogItem(**row) for row in CATALOGUE]  # type: ignore[arg-type]


def test_the_fake_encoder_satisfies_the_protocol() -> None:
    encoder: TextEncoder = KeywordEncoder()
    assert encoder.encode(["pen"]).shape == (1, encoder.dim)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_index_from_catalogue_file_ranks_as_expected(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"items{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in CATALOGUE))
    else:
        lines = ["item_id,title,brand,category,in_stock"] + [
            f"{r['item_id']},{r['title']},{r.get('brand', '')},{r.get('category', '')},{r['in_stock']}"
            for r in CATALOGUE
        ]
        path.write_text("\n".join(lines) + "\n")
    encoder = KeywordEncoder()
    index = build_index(read_catalog(path), encoder, batch_size=2)
    users = encoder.encode(["pen", "desk", "tape ink"])
    ranked = top_k(users, index.vectors, index.ids, 2, in_stock=index.in_stock)
    assert [item for item, _ in ranked[0]] == ["p1", "p2"]
    assert ranked[1][0][0] == "c1"  # d1 is the better match but out of stock
    assert {item for item, _ in ranked[2]} == {"t1", "p2"}


def test_upsert_reencodes_only_changed_items() -> None:
    encoder = KeywordEncoder()
    index = build_index(_items(), encoder)
    assert len(encoder.encoded) == 5
    encoder.encoded.clear()
    changed = [
        CatalogItem("p1", "Blue pen", brand="Bic", in_stock=False),  # stock only: no re-encode
        CatalogItem("t1", "Clear tape with stapler"),  # text changed
        CatalogItem("n1", "Desk lamp"),  # new
        CatalogItem("c1", "Office chair", category="desk furniture"),  # unchanged
    ]
    updated, stats = upsert(index, changed, encoder)
    assert sorted(encoder.encoded) == ["Clear tape with stapler", "Desk lamp"]
    assert (stats.added, stats.updated, stats.unchanged, stats.encoded) == (1, 1, 2, 2)
    assert updated.ids == ("p1", "p2", "c1", "d1", "t1", "n1")
    assert updated.in_stock.tolist() == [False, True, True, False, True, True]
    np.testing.assert_allclose(updated.vectors[4], encoder.encode(["Clear tape with stapler"])[0])
    np.testing.assert_array_equal(updated.vectors[:4], index.vectors[:4])
    assert index.ids == ("p1", "p2", "c1", "d1", "t1")  # the old index is untouched


def test_popularity_updates_without_reencoding_and_survives_save_remove_and_load(tmp_path: Path) -> None:
    encoder = KeywordEncoder()
    index = build_index(_items(), encoder)
    assert index.popularity.tolist() == [0.0] * 5  # no counts in the catalogue: no prior
    encoder.encoded.clear()
    counted = [
        CatalogItem("p2", "pen and ink set", popularity=7.0),
        CatalogItem("n1", "Desk lamp", popularity=2),
    ]
    updated, stats = upsert(index, counted, encoder)
    assert encoder.encoded == ["Desk lamp"] and stats.unchanged == 1  # a count alone re-encodes nothing
    assert updated.popularity.tolist() == [0.0, 7.0, 0.0, 0.0, 0.0, 2.0]
    assert remove(updated, ["p1"]).popularity.tolist() == [7.0, 0.0, 0.0, 0.0, 2.0]
    folder = save_index(updated, tmp_path)
    assert load_index(tmp_path, encoder.model_version).popularity.tolist() == updated.popularity.tolist()
    # A generation saved before popularity existed loads with every count 0.
    (folder / "popularity.npy").unlink()
    assert load_index(tmp_path, encoder.model_version).popularity.tolist() == [0.0] * 6
    np.save(folder / "popularity.npy", np.asarray([1, 2, np.nan, 0, 0, 0], dtype=np.float32))
    with pytest.raises(ModelError, match="negative or non-finite counts"):
        load_index(tmp_path, encoder.model_version)
    np.save(folder / "popularity.npy", np.ones(2, dtype=np.float32))
    with pytest.raises(ModelError, match=r"popularity \(2,\)"):
        load_index(tmp_path, encoder.model_version)


def test_remove_drops_items_and_ignores_unknown_ids() -> None:
    encoder = KeywordEncoder()
    index = remove(build_index(_items(), encoder), ["p2", "d1", "nope"])
    assert index.ids == ("p1", "c1", "t1")
    assert index.vectors.shape == (3, encoder.dim)
    assert index.in_stock.tolist() == [True, True, True]


def test_save_and_load_round_trip_and_old_generations_go(tmp_path: Path) -> None:
    encoder = KeywordEncoder()
    index = build_index(_items(), encoder)
    first = save_index(index, tmp_path)
    second = save_index(remove(index, ["p1"]), tmp_path)
    assert not first.exists() and second.exists()
    loaded = load_index(tmp_path, encoder.model_version)
    assert loaded.ids == ("p2", "c1", "d1", "t1")
    np.testing.assert_array_equal(loaded.vectors, index.vectors[1:])
    assert loaded.text_hashes == index.text_hashes[1:]


def test_index_from_another_encoder_is_refused(tmp_path: Path) -> None:
    save_index(build_index(_items(), KeywordEncoder("fp32:aaaa")), tmp_path)
    with pytest.raises(ModelError, match=r"built with encoder fp32:aaaa but the loaded encoder is fp16:bbbb"):
        load_index(tmp_path, "fp16:bbbb")
    with pytest.raises(ModelError, match="--rebuild"):
        upsert(build_index([], KeywordEncoder("x")), _items(), KeywordEncoder("y"))


def test_damaged_index_files_raise_model_error(tmp_path: Path) -> None:
    encoder = KeywordEncoder()
    folder = save_index(build_index(_items(), encoder), tmp_path)
    (folder / "embeddings.npy").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="missing or corrupt"):
        load_index(tmp_path, encoder.model_version)


def test_sync_catalog_upserts_and_removes_and_rebuilds(tmp_path: Path) -> None:
    catalog = tmp_path / "items.jsonl"
    catalog.write_text("".join(json.dumps(row) + "\n" for row in CATALOGUE))
    index_dir = tmp_path / "index"
    encoder = KeywordEncoder()
    assert sync_catalog(index_dir, catalog, encoder).added == 5
    catalog.write_text("".join(json.dumps(row) + "\n" for row in CATALOGUE[:3]))
    encoder.encoded.clear()
    stats = sync_catalog(index_dir, catalog, encoder)
    assert (stats.added, stats.updated, stats.unchanged, stats.removed) == (0, 0, 3, 2)
    assert encoder.encoded == []
    assert load_index(index_dir, encoder.model_version).ids == ("p1", "p2", "c1")
    titles = json.loads((index_dir / "titles.json").read_text())
    assert titles == {"p1": "Blue pen", "p2": "pen and ink set", "c1": "Office chair"}
    other = KeywordEncoder("fake:2")
    with pytest.raises(ModelError, match="--rebuild"):
        sync_catalog(index_dir, catalog, other)
    assert sync_catalog(index_dir, catalog, other, rebuild=True).added == 3
    catalog.write_text("")
    with pytest.raises(CatalogError, match="holds no items; refusing to empty"):
        sync_catalog(index_dir, catalog, other)
