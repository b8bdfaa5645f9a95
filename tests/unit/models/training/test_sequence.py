"""The sequence user tower: trains on a tiny data set, exports with parity, serves recency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.requirements import require_module

torch = require_module("torch")

from export.sequence_export import export_sequence_tower, parity_inputs  # noqa: E402
from export.sequence_module import SequenceConfig, load_tower, save_tower, tower_vectors  # noqa: E402
from models.data.amazon import Dataset, EvalRow, load_dataset  # noqa: E402
from models.encoder.sequence_tower import SEQUENCE_MANIFEST, SequenceTower, sequence_features  # noqa: E402
from models.index.catalog import CatalogItem, item_text  # noqa: E402
from models.training.sequence import train_sequence_tower, train_tower, training_data  # noqa: E402
from stream.core.errors import ModelError  # noqa: E402
from stream.core.events import Event, EventType  # noqa: E402
from stream.core.window import WindowConfig  # noqa: E402
from stream.profiles.computer import ProfileComputer, ProfileConfig  # noqa: E402
from stream.profiles.offline import offline_payloads  # noqa: E402
from tests.support.fakes import BagOfWordsEncoder, FakeCatalogue  # noqa: E402
from tests.support.rec_fixtures import write_dataset  # noqa: E402

SMALL = SequenceConfig(hidden=32, layers=1, heads=2, max_length=8, epochs=40, batch_size=16, threads=1)


def _vectors(dataset: Dataset) -> tuple[list[str], np.ndarray]:
    ids = list(dataset.items)
    return ids, BagOfWordsEncoder().encode([item_text(dataset.items[i]) for i in ids])


def test_the_tower_trains_on_a_tiny_data_set_lowers_the_loss_and_never_sees_a_test_target(
    tmp_path: Path,
) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    ids, vectors = _vectors(dataset)
    data = training_data(dataset, ids, vectors, SMALL, WindowConfig())
    # The fixture's test targets ("t0".."t3") occur nowhere else: training must not see one.
    assert not {ids[row] for row in data.targets} & {f"t{t}" for t in range(4)}
    popularity = np.zeros(len(ids), dtype=np.float32)
    model, result = train_tower(data, vectors, popularity, SMALL)
    first, last = result.first_last_loss()
    assert len(result.losses) == SMALL.epochs
    assert last < first * 0.8, (first, last)
    # The trained tower ranks each training target higher than the untrained one (`last item`) did.
    untrained = data.inputs.vectors[:, -1]
    trained = tower_vectors(model, data.inputs)

    def mean_rank(users: np.ndarray) -> float:
        target_scores = (users * vectors[data.targets]).sum(1, keepdims=True)
        return float((users @ vectors.T > target_scores).sum(1).mean())

    assert mean_rank(trained) < mean_rank(untrained)


def test_the_export_passes_parity_and_a_tampered_file_is_refused(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    ids, vectors = _vectors(dataset)
    config = SequenceConfig(hidden=32, layers=2, heads=2, max_length=8, epochs=3, batch_size=16, threads=1)
    data = training_data(dataset, ids, vectors, config, WindowConfig())
    model, _ = train_tower(data, vectors, np.ones(len(ids), dtype=np.float32), config)
    save_tower(model, config, tmp_path / "tower", item_model_version="bow-test")
    manifest = export_sequence_tower(tmp_path / "tower", tmp_path / "onnx")
    assert manifest.parity_max_abs_diff is not None and manifest.parity_max_abs_diff <= 1e-4
    assert (manifest.dim, manifest.max_length, manifest.layers) == (vectors.shape[1], 8, 2)
    assert manifest.event_types == ("search", "view", "click", "add_to_cart", "purchase")
    assert manifest.item_model_version == "bow-test" and manifest.version.startswith("sequence:")
    tower = SequenceTower(tmp_path / "onnx", provider="cpu")
    # The real features of the data set, not only the random parity inputs.
    reloaded, _, _ = load_tower(tmp_path / "tower")
    np.testing.assert_allclose(tower.encode(data.inputs), tower_vectors(reloaded, data.inputs), atol=1e-4)
    empty = parity_inputs(vectors.shape[1], 8, batch=1)  # row 0 holds no event
    assert not tower.encode(empty).any()
    onnx = tmp_path / "onnx" / manifest.onnx_file
    onnx.write_bytes(onnx.read_bytes()[:-7] + b"tampered")
    with pytest.raises(ModelError, match="sha256"):
        SequenceTower(tmp_path / "onnx", provider="cpu")
    (tmp_path / "onnx" / SEQUENCE_MANIFEST).unlink()
    with pytest.raises(ModelError, match="PROFILESTREAM_SEQUENCE_MODEL_DIR"):
        SequenceTower(tmp_path / "onnx", provider="cpu")


CLUSTERS = {
    "pen": ("gel", "ballpoint", "fountain", "marker", "felt", "roller"),
    "lamp": ("desk", "floor", "clip", "reading", "halogen", "led"),
    "paper": ("printer", "copy", "photo", "graph", "lined", "card"),
}


def _cluster_dataset() -> Dataset:
    """Users drift between clusters: each next item stays in the last item's cluster with p 0.8."""
    items = {
        f"{name}{n}": CatalogItem(f"{name}{n}", f"{word} {name}")
        for name, words in CLUSTERS.items()
        for n, word in enumerate(words)
    }
    rng = np.random.default_rng(5)
    names = list(CLUSTERS)
    rows: list[EvalRow] = []
    for user in range(120):
        cluster = names[int(rng.integers(3))]
        sequence: list[str] = []
        for _ in range(8):
            if sequence and rng.random() > 0.8:
                cluster = names[int(rng.integers(3))]
            sequence.append(f"{cluster}{int(rng.integers(6))}")
        rows.append(EvalRow(f"u{user}", tuple(sequence[:-1]), sequence[-1]))
    return Dataset("clusters", items, {"valid": rows, "test": rows[:1]})


def test_a_window_whose_newest_event_changes_topic_gets_the_new_topic(tmp_path: Path) -> None:
    dataset = _cluster_dataset()
    titles = {i: item.title for i, item in dataset.items.items()}
    catalogue = FakeCatalogue(titles)
    config = SequenceConfig(hidden=32, layers=1, heads=2, max_length=8, epochs=15, batch_size=32, threads=1)
    data = training_data(dataset, list(catalogue.ids), catalogue.vectors, config, WindowConfig())
    model, _ = train_tower(data, catalogue.vectors, np.zeros(len(titles), np.float32), config)
    save_tower(model, config, tmp_path / "tower", item_model_version="bow-test")
    export_sequence_tower(tmp_path / "tower", tmp_path / "tower")
    # Four pens, then one lamp: the lamp is what the user looks at now.
    history = ["pen0", "pen1", "pen2", "pen3", "lamp0"]
    events = [
        Event(f"e{n}", "u", EventType.VIEW, 1_700_000_000_000 + n * 1000, item)
        for n, item in enumerate(history)
    ]
    ranked: dict[str, list[str]] = {}
    for mode in ("sequence", "items"):
        profile = ProfileConfig(WindowConfig(), top_k=4, user_vector=mode)
        tower = SequenceTower(tmp_path / "tower", provider="cpu") if mode == "sequence" else None
        comp = ProfileComputer(BagOfWordsEncoder(), catalogue, profile, tower)
        ranked[mode] = [i["item_id"] for i in offline_payloads(events, comp)["u"]["items"]]
    assert all(item.startswith("lamp") for item in ranked["sequence"]), ranked
    # The mean of the window (the `items` mode) says "pens": the case needs the order.
    assert ranked["items"][0].startswith("pen"), ranked


def test_the_recipe_trains_and_exports_into_one_folder(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    config = SequenceConfig(hidden=16, layers=1, heads=2, max_length=8, epochs=2, batch_size=16, threads=1)
    result = train_sequence_tower(dataset, BagOfWordsEncoder(), tmp_path / "out", config, WindowConfig())
    assert result.manifest.item_model_version == "bow-test"
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {SEQUENCE_MANIFEST, result.manifest.onnx_file}
    features = sequence_features([], lambda _: None, np.zeros((1, 4), np.float32), {}, 8)
    assert features.vectors.shape == (0, 8, 4)


def test_train_then_evaluate_the_tower_through_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from export.onnx_export import export_model
    from stream.cli import main
    from tests.support.tiny_model import write_tiny_checkpoint

    data = write_dataset(tmp_path / "data")
    export_model(write_tiny_checkpoint(tmp_path / "tiny"), tmp_path / "zero", ["fp32"])
    env = {
        "PROFILESTREAM_ENCODER_PROVIDER": "cpu",
        "PROFILESTREAM_ENCODER_INTRA_OP_THREADS": "1",
        "PROFILESTREAM_MODEL_DIR": str(tmp_path / "zero"),
    }
    runner = CliRunner()
    args = ["train", str(data), "--out", str(tmp_path / "tower"), "--epochs", "2", "--hidden", "16"]
    trained = runner.invoke(main, [*args, "--threads", "1"], env=env)
    assert trained.exit_code == 0, trained.output
    assert "PROFILESTREAM_USER_VECTOR=sequence" in trained.output
    out = tmp_path / "eval"
    args = ["evaluate", str(data), "--no-zero-shot", "--model", str(tmp_path / "tower"), "--out", str(out)]
    evaluated = runner.invoke(main, args, env=env)
    assert evaluated.exit_code == 0, evaluated.output
    assert "| tower tower: sequence |" in evaluated.output
    assert "| tower tower: sequence + prior (prior weight 0.05) |" in evaluated.output
