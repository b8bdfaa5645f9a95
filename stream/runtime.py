"""Opening what a worker needs at start-up: the encoder, the item index and the Redis writers."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from models.encoder import load_encoder, options_from_settings
from models.item_index import ItemIndex, load_index
from models.topk import PreparedItems, prepare_items
from stream.app import WorkerState
from stream.profiles import ProfileComputer, ProfileConfig
from stream.reco_store import RecoStore
from stream.settings import Settings
from stream.sinks import RedisActivitySink

log = logging.getLogger(__name__)


@dataclass
class IndexCatalogue:
    """The item index seen through the stream's `ItemCatalogue` protocol."""

    index: ItemIndex
    titles: dict[str, str]
    _rows: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self._rows = self.index.positions()

    @cached_property
    def prepared(self) -> PreparedItems:
        """The ranking form of the bare vectors (int8 prefilter on large catalogues), built once,
        on first use: a worker whose recommendations carry the popularity prior ranks a widened
        matrix of its own (`stream.prior`) and never needs this one."""
        return prepare_items(self.index.vectors)

    @property
    def ids(self) -> Sequence[str]:
        return self.index.ids

    @property
    def vectors(self) -> npt.NDArray[np.float32]:
        return self.index.vectors

    @property
    def in_stock(self) -> npt.NDArray[np.bool_]:
        return self.index.in_stock

    @property
    def popularity(self) -> npt.NDArray[np.float32]:
        return self.index.popularity

    def row(self, item_id: str) -> int | None:
        return self._rows.get(item_id)

    def title(self, item_id: str) -> str | None:
        return self.titles.get(item_id)


def load_catalogue(settings: Settings, encoder_version: str) -> IndexCatalogue:
    index = load_index(settings.index_dir, encoder_version)
    titles_path = settings.index_dir / "titles.json"
    titles = json.loads(titles_path.read_text(encoding="utf-8")) if titles_path.exists() else {}
    return IndexCatalogue(index, titles)


def open_worker_state(settings: Settings) -> WorkerState:
    encoder = load_encoder(Path(settings.model_dir), options_from_settings(settings))
    catalogue = load_catalogue(settings, encoder.model_version)
    log.info(
        "worker ready: encoder %s (dim %d), %d items in the index",
        encoder.model_version,
        encoder.dim,
        len(catalogue.ids),
    )
    return WorkerState(
        computer=ProfileComputer(encoder, catalogue, ProfileConfig.from_settings(settings)),
        store=RecoStore.from_settings(settings),
        activity=RedisActivitySink.from_settings(settings),
    )
