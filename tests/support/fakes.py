"""Deterministic stand-ins for the encoder and the item catalogue (unit tests only)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

DIM = 32


class BagOfWordsEncoder:
    """Each word hashes to a fixed random direction; a text is the normalised sum of its words."""

    dim = DIM
    model_version = "bow-test"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def _word(self, word: str) -> npt.NDArray[np.float32]:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace("|", " ").split():
                out[i] += self._word(word)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        normalised: npt.NDArray[np.float32] = (out / np.where(norms == 0, 1, norms)).astype(np.float32)
        return normalised


@dataclass
class FakeCatalogue:
    titles: dict[str, str]
    out_of_stock: set[str] = field(default_factory=set)
    counts: dict[str, float] = field(default_factory=dict)  # popularity; 0 for items not named
    encoder: BagOfWordsEncoder = field(default_factory=BagOfWordsEncoder)

    def __post_init__(self) -> None:
        self._ids = list(self.titles)
        self._vectors = self.encoder.encode([self.titles[i] for i in self._ids])
        self._rows = {item: row for row, item in enumerate(self._ids)}

    @property
    def ids(self) -> Sequence[str]:
        return self._ids

    @property
    def vectors(self) -> npt.NDArray[np.float32]:
        return self._vectors

    @property
    def in_stock(self) -> npt.NDArray[np.bool_]:
        return np.asarray([i not in self.out_of_stock for i in self._ids], dtype=bool)

    @property
    def popularity(self) -> npt.NDArray[np.float32]:
        return np.asarray([self.counts.get(i, 0.0) for i in self._ids], dtype=np.float32)

    def row(self, item_id: str) -> int | None:
        return self._rows.get(item_id)

    def title(self, item_id: str) -> str | None:
        return self.titles.get(item_id)
