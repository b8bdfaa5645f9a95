"""The item index as the profile computer sees it: vectors, rows, titles, stock and popularity."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from models.index.item_index import ItemIndex, load_index
from models.index.topk import PreparedItems, prepare_items
from stream.core.settings import Settings


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
        matrix of its own (`stream.core.prior`) and never needs this one."""
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
