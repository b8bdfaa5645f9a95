"""An LRU cache of query vectors, shared by the stream worker and personalised search.

Shoppers repeat queries: encoding each distinct one once, not once per batch or request, was most
of the encoder's work in the worker's items mode and in search.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from models.encoder.onnx_encoder import TextEncoder

FloatArray = npt.NDArray[np.float32]


class QueryVectorCache:
    """Query -> vector, least recently used out first; misses of one call are encoded together."""

    def __init__(self, encoder: TextEncoder, capacity: int) -> None:
        self._encoder = encoder
        self._capacity = capacity
        self._vectors: OrderedDict[str, FloatArray] = OrderedDict()
        # Searches run in worker threads; the dict's reordering is not atomic.
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._vectors)

    def lookup(self, texts: Sequence[str]) -> dict[str, FloatArray]:
        """The cached vectors among `texts` (each now the most recently used)."""
        found: dict[str, FloatArray] = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
            self.hits += sum(1 for text in texts if text in found)
        return found

    def encode_new(self, texts: Sequence[str]) -> FloatArray:
        """Encode `texts` in one encoder call and cache the vectors."""
        vectors = self._encoder.encode(texts)
        self.remember(texts, vectors)
        return vectors

    def remember(self, texts: Sequence[str], vectors: FloatArray) -> None:
        """Cache vectors the caller encoded itself (e.g. in one call with other texts)."""
        with self._lock:
            self.misses += len(texts)
            for text, vector in zip(texts, vectors, strict=True):
                self._vectors[text] = vector
                self._vectors.move_to_end(text)
            while len(self._vectors) > self._capacity:
                self._vectors.popitem(last=False)

    def encode(self, texts: Sequence[str]) -> dict[str, FloatArray]:
        """Vectors of `texts`: cached ones from the cache, the others encoded in one call."""
        found = self.lookup(texts)
        missing = sorted({text for text in texts if text not in found})
        if missing:
            found.update(zip(missing, self.encode_new(missing), strict=True))
        return found
