"""The sequence user tower: trains on a tiny data set, exports with parity, serves recency."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.support.requirements import require_module

torch = require_module("torch")

from export.sequence_export import export_sequence_tower, parity_inputs  # noqa: E402
from export.sequence_module import SequenceConfig, load_tower, save_tower, tower_vectors  # noqa: E402
from models.data.amazon import Dataset, EvalRow, history_window, load_dataset  # noqa: E402
from models.encoder.cooccurrence import NEIGHBOURS_FILE  # noqa: E402
from models.encoder.sequence_tower import (  # noqa: E402
    RESIDUAL_IDS_FILE,
    SEQUENCE_MANIFEST,
    SequenceInputs,
    SequenceTower,
    sequence_features,
)
from models.encoder.sessions import SESSIONS_FILE  # noqa: E402
from models.index.catalog import CatalogItem, item_text  # noqa: E402
from models.training.sequence import (  # noqa: E402
    tower_item_vectors,
    train_sequence_tower,
    train_tower,
    training_data,
    training_neighbours,
    training_sessions,
    warm_items,
)
from stream.core.errors import ModelError  # noqa: E402
from stream.core.events import Event, EventType  # noqa: E402
from stream.core.window import Window, WindowConfig  # noqa: E402
from stream.profiles.computer import ProfileComputer, ProfileConfig  # noqa: E402
from stream.profiles.offline import offline_payloads  # noqa: E402
from tests.support.fakes import BagOfWordsEncoder, FakeCatalogue  # noqa: E402
from tests.support.rec_fixtures import write_dataset  # noqa: E402

SMALL = SequenceConfig(hidden=32, layers=1, heads=2, max_length=8, epochs=40, batch_size=16, threads=1)


def _vectors(dataset: Dataset) -> tuple[list[str], np.ndarray]:
    ids = list(dataset.items)
    return ids, BagOfWordsEncoder().encode([item_text(dataset.items[i]) for i in ids])


def windows_of(data: object, dataset: Dataset) -> list[Window]:
    """Windows of the data set's valid rows (any real histories will do)."""
    return [history_window(row.history, WindowConfig()) for row in dataset.rows["valid"]]


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
    # Item residuals (on by default): learned for the items training saw, zero for the others.
    assert model.item_table is not None
    table = model.item_table.table.detach().numpy()
    warm = warm_items(data, len(ids))
    assert np.abs(table[warm]).sum(axis=1).min() > 0 and not table[~warm].any() and (~warm).any()


def test_the_export_passes_parity_and_a_tampered_file_is_refused(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    ids, vectors = _vectors(dataset)
    config = SequenceConfig(hidden=32, layers=2, heads=2, max_length=8, epochs=3, batch_size=16, threads=1)
    data = training_data(dataset, ids, vectors, config, WindowConfig())
    model, _ = train_tower(data, vectors, np.ones(len(ids), dtype=np.float32), config)
    save_tower(model, config, tmp_path / "tower", item_model_version="bow-test", item_ids=ids)
    manifest = export_sequence_tower(tmp_path / "tower", tmp_path / "onnx")
    assert manifest.parity_max_abs_diff is not None and manifest.parity_max_abs_diff <= 1e-4
    assert (manifest.dim, manifest.max_length, manifest.layers) == (vectors.shape[1], 8, 2)
    assert manifest.event_types == ("search", "view", "click", "add_to_cart", "purchase")
    assert manifest.item_model_version == "bow-test" and manifest.version.startswith("sequence:")
    tower = SequenceTower(tmp_path / "onnx", provider="cpu")
    # The real features of the data set, not only the random parity inputs, read through the
    # item residuals as the stream reads them: the index's vectors, then `item_vectors`.
    reloaded, _, _ = load_tower(tmp_path / "tower")
    warm = warm_items(data, len(ids))
    assert manifest.residual_items == int(warm.sum()) > 0 and not warm.all()
    items = tower.item_vectors(ids, vectors)
    np.testing.assert_allclose(items, tower_item_vectors(reloaded, vectors), atol=1e-6)
    np.testing.assert_array_equal(items[~warm], vectors[~warm])  # cold items: their text vector
    assert not np.allclose(items[warm], vectors[warm])  # warm items moved
    inputs = sequence_features(windows_of(data, dataset), {i: n for n, i in enumerate(ids)}.get, items, {}, 8)
    np.testing.assert_allclose(tower.encode(inputs), tower_vectors(reloaded, inputs), atol=1e-4)
    # The length axis is dynamic: rows run grouped by length, each cut to it, and a row's vector
    # does not depend on the other rows of its batch.
    assert tower.dynamic_length and len(set(inputs.lengths.tolist())) > 1
    together = tower.encode(inputs)
    for row in (0, int(np.argmax(inputs.lengths)), len(inputs.lengths) - 1):
        one = slice(row, row + 1)
        alone = SequenceInputs(
            inputs.vectors[one], inputs.event_types[one], inputs.gap_buckets[one], inputs.mask[one]
        )
        np.testing.assert_allclose(tower.encode(alone)[0], together[row], atol=1e-6)
    empty = parity_inputs(vectors.shape[1], 8, batch=1)  # row 0 holds no event
    assert not tower.encode(empty).any()
    residual_file = tmp_path / "onnx" / (manifest.residuals_file or "")
    saved = residual_file.read_bytes()
    residual_file.write_bytes(saved[:-4] + b"\0\0\0\1")
    with pytest.raises(ModelError, match="sha256"):
        SequenceTower(tmp_path / "onnx", provider="cpu")
    residual_file.write_bytes(saved)
    # The ids say which item a row belongs to: a swapped id is refused too.
    ids_file = tmp_path / "onnx" / RESIDUAL_IDS_FILE
    ids_text = ids_file.read_text()
    swapped = json.loads(ids_text)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    ids_file.write_text(json.dumps(swapped))
    with pytest.raises(ModelError, match="sha256"):
        SequenceTower(tmp_path / "onnx", provider="cpu")
    ids_file.write_text(ids_text)
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
    # A new item: in the catalogue, in no row, so training never sees it (no residual).
    items["lamp9"] = CatalogItem("lamp9", "wall lamp")
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
    save_tower(model, config, tmp_path / "tower", item_model_version="bow-test", item_ids=list(catalogue.ids))
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
    # The new item has no residual: it keeps its text vector, and as the newest event it still
    # steers the list to lamps from its text alone.
    tower = SequenceTower(tmp_path / "tower", provider="cpu")
    assert (
        tower.residuals is not None and "lamp9" not in tower.residuals.ids and "lamp0" in tower.residuals.ids
    )
    row = catalogue.row("lamp9") or 0
    np.testing.assert_array_equal(
        tower.item_vectors(catalogue.ids, catalogue.vectors)[row], catalogue.vectors[row]
    )
    cold = [*events[:4], Event("e9", "u", EventType.VIEW, 1_700_000_009_000, "lamp9")]
    comp = ProfileComputer(
        BagOfWordsEncoder(), catalogue, ProfileConfig(WindowConfig(), top_k=4, user_vector="sequence"), tower
    )
    got = [i["item_id"] for i in offline_payloads(cold, comp)["u"]["items"]]
    assert all(item.startswith("lamp") for item in got), got


def test_the_recipe_trains_and_exports_into_one_folder(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    config = SequenceConfig(hidden=16, layers=1, heads=2, max_length=8, epochs=2, batch_size=16, threads=1)
    result = train_sequence_tower(dataset, BagOfWordsEncoder(), tmp_path / "out", config, WindowConfig())
    assert result.manifest.item_model_version == "bow-test"
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {SEQUENCE_MANIFEST, result.manifest.onnx_file}
    features = sequence_features([], lambda _: None, np.zeros((1, 4), np.float32), {}, 8)
    assert features.vectors.shape == (0, 8, 4)


def test_the_recipe_exports_co_occurrence_lists_of_the_training_pairs_only(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    config = SequenceConfig(
        hidden=16, layers=1, heads=2, max_length=8, epochs=1, batch_size=16, threads=1, max_neighbours=5
    )
    out = tmp_path / "out"
    manifest = train_sequence_tower(dataset, BagOfWordsEncoder(), out, config, WindowConfig()).manifest
    assert (manifest.neighbours_file, manifest.max_neighbours) == (NEIGHBOURS_FILE, 5)
    assert manifest.knn_weight == SequenceConfig().knn_weight > 0 and manifest.neighbour_items > 0
    tower = SequenceTower(out, provider="cpu")
    lists = tower.neighbours
    assert lists is not None and int(np.diff(lists.indptr).max()) <= 5
    # The exported lists are the config's construction from the allowed sequences; the default is
    # the baseline's, and --knn-lists sequential changes them (they keep only what follows).
    assert config.knn_lists == "cooccurrence"
    expected = training_neighbours(dataset, list(dataset.items), config)
    assert expected.ids == lists.ids
    np.testing.assert_array_equal(expected.indices, lists.indices)
    np.testing.assert_allclose(expected.weights, lists.weights, rtol=1e-6)
    ordered = training_neighbours(dataset, list(dataset.items), replace(config, knn_lists="sequential"))
    assert 0 < len(ordered.indices) < len(lists.indices)
    # The fixture's test targets ("t0".."t3") occur nowhere else: no list may hold or own one.
    owners = {lists.ids[n] for n in np.flatnonzero(np.diff(lists.indptr))}
    members = {lists.ids[j] for j in lists.indices.tolist()}
    assert owners and members and not (owners | members) & {f"t{t}" for t in range(4)}
    # The stream's computer picks the term up with the manifest's weight.
    catalogue = FakeCatalogue({i: item_text(dataset.items[i]) for i in dataset.items})
    comp = ProfileComputer(
        BagOfWordsEncoder(), catalogue, ProfileConfig(WindowConfig(), user_vector="sequence"), tower
    )
    assert comp.neighbours is not None and comp.neighbours.fusion_weight == manifest.knn_weight
    # A changed list file is refused.
    path = out / NEIGHBOURS_FILE
    saved = path.read_bytes()
    path.write_bytes(saved[:-4] + b"\0\0\0\1")
    with pytest.raises(ModelError, match="sha256"):
        SequenceTower(out, provider="cpu")
    # An export from before the lists (no such fields, no file) still loads, without a kNN term.
    data = json.loads((out / SEQUENCE_MANIFEST).read_text())
    for name in (
        "neighbours_file",
        "neighbours_sha256",
        "neighbour_items",
        "max_neighbours",
        "knn_weight",
        "knn_decay",
    ):
        del data[name]
    (out / SEQUENCE_MANIFEST).write_text(json.dumps(data))
    path.unlink()
    old = SequenceTower(out, provider="cpu")
    assert old.neighbours is None and old.neighbours_for(list(dataset.items)) is None
    # --knn-weight 0: no lists at all.
    off = replace(config, knn_weight=0.0)
    manifest = train_sequence_tower(
        dataset, BagOfWordsEncoder(), tmp_path / "off", off, WindowConfig()
    ).manifest
    assert manifest.neighbours_file is None and not (tmp_path / "off" / NEIGHBOURS_FILE).exists()


def test_the_recipe_exports_the_training_sessions_and_the_stream_adds_their_term(tmp_path: Path) -> None:
    dataset = load_dataset(write_dataset(tmp_path / "data"))
    config = SequenceConfig(hidden=16, layers=1, heads=2, max_length=8, epochs=1, batch_size=16, threads=1)
    out = tmp_path / "out"
    manifest = train_sequence_tower(dataset, BagOfWordsEncoder(), out, config, WindowConfig()).manifest
    assert manifest.sessions_file == SESSIONS_FILE and "/sessions:" in manifest.version
    assert (manifest.session_weight, manifest.session_neighbours) == (0.15, 200)
    tower = SequenceTower(out, provider="cpu")
    stored = tower.sessions
    assert stored is not None and len(stored) == manifest.sessions > 0
    # The allowed sequences, oldest first, and nothing else: no test target ("t0".."t3").
    expected = training_sessions(dataset, list(dataset.items), config)
    np.testing.assert_array_equal(expected.items, stored.items)
    assert not {stored.ids[int(i)] for i in stored.items} & {f"t{t}" for t in range(4)}
    catalogue = FakeCatalogue({i: item_text(dataset.items[i]) for i in dataset.items})
    comp = ProfileComputer(
        BagOfWordsEncoder(), catalogue, ProfileConfig(WindowConfig(), user_vector="sequence"), tower
    )
    assert comp.sessions is not None and comp.sessions.fusion_weight == 0.15
    # A changed sessions file is refused.
    path = out / SESSIONS_FILE
    saved = path.read_bytes()
    path.write_bytes(saved[:-4] + b"\0\0\0\1")
    with pytest.raises(ModelError, match="sha256"):
        SequenceTower(out, provider="cpu")
    path.write_bytes(saved)
    # An export from before the sessions (no such fields, no file) still loads, without the term.
    data = json.loads((out / SEQUENCE_MANIFEST).read_text())
    for name in ("sessions_file", "sessions_sha256", "sessions", "session_weight", "session_neighbours"):
        del data[name]
    del data["session_follow_decay"]
    (out / SEQUENCE_MANIFEST).write_text(json.dumps(data))
    path.unlink()
    old = SequenceTower(out, provider="cpu")
    assert old.sessions is None and old.sessions_for(list(dataset.items)) is None
    # --session-weight 0: no sessions at all.
    off = replace(config, session_weight=0.0)
    manifest = train_sequence_tower(
        dataset, BagOfWordsEncoder(), tmp_path / "off", off, WindowConfig()
    ).manifest
    assert manifest.sessions_file is None and not (tmp_path / "off" / SESSIONS_FILE).exists()
    assert "/sessions:" not in manifest.version


def cli_dataset(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A tiny dataset and a tiny zero-shot encoder for the CLI; the environment that selects it."""
    from export.onnx_export import export_model
    from tests.support.tiny_model import write_tiny_checkpoint

    data = write_dataset(tmp_path / "data")
    export_model(write_tiny_checkpoint(tmp_path / "tiny"), tmp_path / "zero", ["fp32"])
    env = {
        "PROFILESTREAM_ENCODER_PROVIDER": "cpu",
        "PROFILESTREAM_ENCODER_INTRA_OP_THREADS": "1",
        "PROFILESTREAM_MODEL_DIR": str(tmp_path / "zero"),
    }
    return data, env


def test_train_then_evaluate_the_tower_through_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from stream.cli import main

    data, env = cli_dataset(tmp_path)
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
    # The default recipe exports co-occurrence lists: evaluate ranks the served, fused score too.
    assert "co-occurrence lists for" in trained.output
    assert "| tower tower: sequence + prior + kNN + sessions (prior weight 0.05) |" in evaluated.output


def test_a_saved_item_index_is_reused_by_train_and_evaluate(tmp_path: Path) -> None:
    """`--item-index`: the vectors of `profilestream index` instead of encoding the items again;
    `--modes` and `--mmr-sweep` on the same run."""
    from click.testing import CliRunner

    from stream.cli import main

    data, env = cli_dataset(tmp_path)
    env["PROFILESTREAM_INDEX_DIR"] = str(tmp_path / "index")
    runner = CliRunner()
    indexed = runner.invoke(main, ["index", str(data / "items.json")], env=env)
    assert indexed.exit_code == 0, indexed.output
    index = ["--item-index", str(tmp_path / "index")]
    args = ["train", str(data), "--out", str(tmp_path / "tower"), "--epochs", "2", "--hidden", "16", *index]
    trained = runner.invoke(main, [*args, "--threads", "1"], env=env)
    assert trained.exit_code == 0, trained.output
    assert "item vectors in 0 s" in trained.output
    out = tmp_path / "eval"
    args = ["evaluate", str(data), "--model", str(tmp_path / "tower"), "--out", str(out), *index]
    args += ["--modes", "last item", "--mmr-sweep", "--mmr-plot", str(tmp_path / "mmr.png")]
    evaluated = runner.invoke(main, args, env=env)
    assert evaluated.exit_code == 0, evaluated.output
    assert "| zero-shot: last item + prior (prior weight 0.05) |" in evaluated.output
    assert "zero-shot: items" not in evaluated.output and "zero-shot: text" not in evaluated.output
    assert "| tower tower: sequence + prior | 0.95 |" in evaluated.output
    assert (tmp_path / "mmr.png").is_file()
    bad = runner.invoke(main, ["evaluate", str(data), "--modes", "everything"], env=env)
    assert bad.exit_code != 0 and "--modes" in bad.output
