"""Embedding maps on the server: features from the activation index, maps cached in memory.

A map is made from the per-image features the activation index stores for the layer
(:mod:`server.stores.index`): an index of the dataset that holds the layer is reused, otherwise
one is built for that layer (the same pass, the same files, the same key as ``BuildIndex``), so
there is one feature extractor only. The projection is :func:`interp.embedding.embed`.

Finished maps are kept in the server's memory, the most recent :data:`MAP_CACHE_SIZE`, keyed by
(model weights SHA-256, dataset manifest hash, preprocessing, layer, method, points, t-SNE
parameters, openTSNE threads): a second identical request is answered from the cache, and
``PlaceImages`` finds the map by the same key. A map enters the cache only once complete; a
cancelled or failed run leaves nothing. Two identical requests at once: the second waits and
reuses. Maps are not written to disk (openTSNE's map object holds its nearest-neighbour index):
after a restart, ``Embedding`` makes the map again.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from interp.dataset.crops import fast_png
from interp.embedding import EmbeddingMap, EmbeddingParams, atlas_image, scatter_image, sprite
from interp.errors import Cancelled
from interp.rendering import encode_png, to_uint8_image
from server.errors import FailedPrecondition
from server.stores.index import images_by_id

MAP_CACHE_SIZE = 4
"""Maps kept in memory (a 70k-point t-SNE map with its affinities is a few hundred MB)."""
MAX_THUMBNAILS = 10_000
"""Points whose images travel in the result's thumbnail sprite (the first ones)."""
THUMBNAIL_SIDE = 28
"""Thumbnails are at most this many pixels on a side (LeNet's inputs as they are)."""


class MapUnavailable(FailedPrecondition):
    """No cached map for a PlaceImages request: make it first with Embedding (FAILED_PRECONDITION)."""


def map_key(
    *,
    weights_sha256: str,
    manifest: str,
    preprocessing: Any,
    layer: str,
    method: str,
    points: int,
    params: EmbeddingParams | None,
    threads: int,
) -> str:
    record = {
        "w": weights_sha256,
        "d": manifest,
        "p": asdict(preprocessing) if preprocessing is not None else None,
        "layer": layer,
        "method": method,
        "n": int(points),
        "params": asdict(params) if params is not None and method == "tsne" else None,
        "threads": int(threads) if method == "tsne" else None,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


@dataclass
class CachedMap:
    """A finished map and what its results show."""

    key: str
    emap: EmbeddingMap
    ids: np.ndarray  # (N,) int64 dataset ids, row order of the coordinates
    labels: np.ndarray  # (N,) int64, -1 unlabelled
    classes: tuple[str, ...]
    index_id: str
    thumbnails: np.ndarray  # (M, s, s) or (M, s, s, 3) uint8, the first M points
    scatter_png: bytes
    atlas_png: bytes
    sprite_png: bytes
    sprite_columns: int


class MapStore:
    """The most recent maps in memory, with one builder per key."""

    def __init__(self, size: int = MAP_CACHE_SIZE) -> None:
        self._size = size
        self._maps: OrderedDict[str, CachedMap] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def get(self, key: str) -> CachedMap | None:
        with self._lock:
            found = self._maps.get(key)
            if found is not None:
                self._maps.move_to_end(key)
            return found

    def get_or_make(
        self, key: str, make: Callable[[], CachedMap], should_stop: Callable[[], bool] | None = None
    ) -> tuple[CachedMap, bool]:
        """The cached map, or ``make()``'s (cached only when it returns); whether it was reused."""
        found = self.get(key)
        if found is not None:
            return found, True
        with self._lock:
            gate = self._building.setdefault(key, threading.Lock())
        while not gate.acquire(timeout=0.1):  # the same map is being made: wait, then reuse
            if should_stop is not None and should_stop():
                raise Cancelled("cancelled while waiting for a concurrent Embedding of the same map")
        try:
            found = self.get(key)
            if found is not None:
                return found, True
            made = make()
            with self._lock:
                self._maps[key] = made
                while len(self._maps) > self._size:
                    self._maps.popitem(last=False)
            return made, False
        finally:
            gate.release()

    def __len__(self) -> int:
        with self._lock:
            return len(self._maps)


def render(
    emap: EmbeddingMap, labels: np.ndarray, classes: tuple[str, ...], thumbnails: np.ndarray, title: str
) -> tuple[bytes, bytes, bytes, int]:
    """scatter PNG, atlas PNG, thumbnail sprite PNG and the sprite's column count."""
    scatter = encode_png(scatter_image(emap.coordinates, labels, classes, title=title))
    atlas = encode_png(atlas_image(emap.coordinates, thumbnails)) if len(thumbnails) else b""
    columns = max(1, math.ceil(math.sqrt(len(thumbnails)))) if len(thumbnails) else 0
    tiles = fast_png(sprite(thumbnails, columns)) if len(thumbnails) else b""
    return scatter, atlas, tiles, columns


def thumbnails_of(dataset: Any, spec: Any, ids: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """(M, s, s[, 3]) uint8 thumbnails of the preprocessed images ``ids``, read in chunks (bounded memory)."""
    out: list[np.ndarray] = []
    for start in range(0, len(ids), 256):
        chunk = [int(i) for i in ids[start : start + 256]]
        for image in images_by_id(dataset, spec, chunk):
            pixels = to_uint8_image(image)
            if max(pixels.shape[:2]) > side:
                pixels = cv2.resize(pixels, (side, side), interpolation=cv2.INTER_AREA)
            out.append(pixels)
    if not out:
        return np.zeros((0, side, side), dtype=np.uint8)
    return np.stack(out)
