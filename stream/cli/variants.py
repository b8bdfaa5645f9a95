"""Quick measurement of sequence-tower variants (how the default recipe was chosen; issue 17).

``python -m stream.cli.variants DATASET_DIR --item-index DIR --split valid --tag NAME
[--set FIELD=VALUE ...] [--knn]`` trains `models.training.sequence.train_tower` with the
`SequenceConfig` fields given by ``--set`` on the allowed pairs of ``--split`` (never one of its
targets), scores every row of that split over the whole catalogue through the torch module (the
export's parity check covers the ONNX copy), and prints one JSON line: HR@10, NDCG@10 and MRR for
several popularity-prior weights, and with ``--knn`` the co-occurrence term fused into the ranking
as the stream serves it (``cosine + prior + beta x kNN``: the lists `profilestream train` would
export for this config, ``--set knn_lists=cooccurrence`` for the baseline's construction, scored
by `models.encoder.cooccurrence.CatalogueNeighbours`), for several beta including the config's
``knn_weight``.
The item vectors come from a saved index (`profilestream index` of the folder's items.json),
so each variant costs only its training. The same rows and ranking as `profilestream evaluate`
(no exclusions, ties by catalogue order).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from export.sequence_module import SequenceConfig, tower_vectors
from models.data.amazon import history_window, load_dataset
from models.encoder.cooccurrence import DEFAULT_DECAY
from models.encoder.sequence_tower import sequence_features
from models.evaluation.recommend import summarise, target_ranks
from models.index.item_index import load_index
from models.training.sequence import (
    catalogue_popularity,
    tower_item_vectors,
    train_tower,
    training_data,
    training_neighbours,
)
from stream.core.prior import popularity_prior
from stream.core.window import WindowConfig

PRIOR_WEIGHTS = (0.0, 0.02, 0.03, 0.05, 0.07, 0.1)
KNN_WEIGHTS = (0.1, 0.15, 0.2, 0.3, 0.4)


def parse_config(pairs: list[str], split: str) -> tuple[SequenceConfig, dict[str, Any]]:
    """`--set FIELD=VALUE` pairs onto the default `SequenceConfig` (values typed by the field's default)."""
    defaults = SequenceConfig()
    known = {f.name for f in fields(SequenceConfig)}
    changes: dict[str, Any] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in known:
            raise SystemExit(
                f"--set {pair}: {name} is not a SequenceConfig field ({', '.join(sorted(known))})"
            )
        current = getattr(defaults, name)
        if isinstance(current, bool):
            changes[name] = value.lower() in ("1", "true", "yes")
        elif current is None:
            changes[name] = int(value)
        else:
            changes[name] = type(current)(value)
    return SequenceConfig(**{"threads": 1, **changes, "eval_split": split}), changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset_dir", type=Path)
    parser.add_argument("--item-index", type=Path, required=True)
    parser.add_argument("--split", choices=["valid", "test"], default="valid")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--knn", action="store_true", help="also rank with item-kNN fused in")
    args = parser.parse_args()
    config, changes = parse_config(args.set, args.split)
    dataset = load_dataset(args.dataset_dir)
    manifest = json.loads((args.item_index / "manifest.json").read_text(encoding="utf-8"))
    index = load_index(args.item_index, str(manifest["encoder_version"]))
    ids = list(index.ids)
    if ids != list(dataset.items):
        raise SystemExit(f"{args.item_index} does not hold {args.dataset_dir}/items.json in file order")
    positions = {item_id: n for n, item_id in enumerate(ids)}
    window = WindowConfig()
    data = training_data(dataset, ids, index.vectors, config, window)
    popularity = catalogue_popularity(dataset, args.split)
    started = time.perf_counter()
    model, result = train_tower(data, index.vectors, popularity, config)
    train_s = time.perf_counter() - started
    items = tower_item_vectors(model, index.vectors)
    rows = dataset.rows[args.split]
    targets = np.asarray([positions.get(row.target, -1) for row in rows], dtype=np.intp)
    windows = [history_window(row.history, window) for row in rows]
    users = tower_vectors(model, sequence_features(windows, positions.get, items, {}, config.max_length))
    scores = users @ items.T
    out: dict[str, Any] = {
        "tag": args.tag,
        "split": args.split,
        "config": changes,
        "train_s": round(train_s, 1),
        "loss_first_last": [round(result.losses[0], 3), round(result.losses[-1], 3)],
        "warm_items": int(model.item_table.warm_items().sum()) if model.item_table is not None else 0,
    }
    knn_scores = None
    if args.knn:
        lists = training_neighbours(dataset, ids, config).for_catalogue(ids, DEFAULT_DECAY, 1.0)
        knn_scores = np.zeros(scores.shape, dtype=np.float32)
        for n, row in enumerate(rows):
            # The window's item events newest first, as `ProfileComputer.cooccurrence` reads them.
            history = [positions[i] for i in reversed(row.history) if i in positions]
            term_rows, values = lists.scores(history)
            knn_scores[n, term_rows] = values
    for weight in PRIOR_WEIGHTS:
        ranked = scores + popularity_prior(popularity, weight)[None]
        metrics = summarise(target_ranks(ranked, targets))
        out[f"prior {weight}: HR@10, NDCG@10, MRR"] = [
            round(metrics.at(10)[0], 4),
            round(metrics.at(10)[1], 4),
            round(metrics.mrr, 4),
        ]
        if knn_scores is not None and weight == config.popularity_weight:
            for beta in sorted({*KNN_WEIGHTS, config.knn_weight}):
                fused = summarise(target_ranks(ranked + beta * knn_scores, targets))
                out[f"prior {weight} + kNN {beta}: HR@10, NDCG@10, MRR"] = [
                    round(fused.at(10)[0], 4),
                    round(fused.at(10)[1], 4),
                    round(fused.mrr, 4),
                ]
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
