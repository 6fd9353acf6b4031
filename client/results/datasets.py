"""Results of the dataset views: index builds, top activations, neighbours, embeddings and placements."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client.results._build import reply
from client.results.base import _SavesImages, _ShortRepr, _Stamped, beside
from client.results.generated import generated
from protos import interp_pb2 as pb

IndexBuild: Any = generated(pb.BuildIndexResult.DESCRIPTOR, name="IndexBuild")
"""An index build (or reuse): dataset, index_id, layers, images, skipped, reused, seconds,
images_per_s, peak_rss_growth_mb, params and the stamp."""


class _TopEntry(_ShortRepr):
    """What TopEntry adds to the fields of its message: the box as a tuple."""

    box: tuple[int, int, int, int]


TopEntry: Any = generated(pb.TopEntry.DESCRIPTOR, base=_TopEntry)
"""One top-activating image of a unit: ``image_id``, ``label``, ``label_name``, ``value`` at
(``y``, ``x``), ``box`` (y0, x0, y1, x1, exclusive, in the preprocessed input), ``padded``, the
receptive-field ``crop`` (H, W, C) with ``crop_png``, ``image_png``, and ``projection`` (H, W, C),
the unit's guided backprop over the crop (with projections=True)."""


@reply(pb.ChannelTop)
@dataclass(frozen=True, eq=False, repr=False)
class ChannelTop(_ShortRepr):
    channel: int
    entries: tuple[TopEntry, ...]

    @property
    def tied(self) -> bool:
        """Every entry has the same value: the unit does not tell these images apart, and their
        order is only the image ids' (a rectified unit that never fires on the dataset ties every
        image at 0). What they look like then says nothing about the unit."""
        return len(self.entries) > 1 and self.entries[0].value == self.entries[-1].value


@reply(pb.TopActivationsResponse)
@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class TopActivationsResult(_Stamped, _SavesImages):
    """Per channel, the dataset images that excite it most (Zeiler & Fergus), best first."""

    dataset: str
    layer: str
    index_id: str
    spatial: bool
    rf_size: int
    channels: tuple[ChannelTop, ...]
    grid_png: bytes

    def _pngs(self) -> list[tuple[str, bytes]]:
        out = [("grid", self.grid_png)]
        for ch in self.channels:
            for rank, e in enumerate(ch.entries):
                out.append((f"channel_{ch.channel:04d}_{rank:02d}_crop", e.crop_png))
                out.append((f"channel_{ch.channel:04d}_{rank:02d}_image", e.image_png))  # with its box
        return out

    def save(self, dest: str | Path, *, as_file: bool | None = None) -> list[Path]:
        """The PNGs (:meth:`_SavesImages.save`), then each entry's projection (with
        ``projections=True``) as ``channel_CCCC_RR_projection.npy`` named the same way."""
        paths = super().save(dest, as_file=as_file)
        for ch in self.channels:
            for rank, e in enumerate(ch.entries):
                if e.projection is not None:
                    paths.append(beside(dest, f"channel_{ch.channel:04d}_{rank:02d}_projection", ".npy", as_file))
                    np.save(paths[-1], e.projection)
        return paths


Neighbor: Any = generated(pb.Neighbor.DESCRIPTOR)
"""One dataset image near the query: image_id, label, label_name, distance, image (H, W, C), png."""
NeighborsResult: Any = generated(pb.NearestNeighborsResponse.DESCRIPTOR, name="NeighborsResult")
"""Nearest first: neighbors, grid_png, input (H, W, C), input_png, dataset, layer, metric, index_id, stamp."""


class _Embedding(_SavesImages):
    """What EmbeddingResult adds to the fields of its reply: arrays never None, PNG names, the HTML page."""

    coordinates: np.ndarray  # (N, 2) float32
    image_ids: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int32
    scatter_png: bytes
    atlas_png: bytes

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("scatter", self.scatter_png), ("atlas", self.atlas_png)]

    def write_html(self, path: str | Path, *, title: str = "") -> Path:
        """One self-contained HTML page (no network): scatter, legend toggles, zoom, hover thumbnails."""
        from client.embedding_html import write_html

        return write_html(self, path, title=title)

    @staticmethod
    def _fix(values: dict[str, Any]) -> dict[str, Any]:
        if values["coordinates"] is None:  # an empty map
            return {**values, "coordinates": np.zeros((0, 2), dtype=np.float32)}
        return values


EmbeddingResult: Any = generated(pb.EmbeddingResult.DESCRIPTOR, base=_Embedding)
"""A t-SNE or PCA map of one layer's features over a dataset.

``coordinates[i]`` (N, 2) is the map position of dataset image ``image_ids[i]`` with label
``labels[i]`` (-1: unlabelled; ``classes`` names them). ``thumbnails_png`` tiles the first
``thumbnail_count`` points' images (``thumbnail_size`` px) row-major in ``thumbnail_columns``
columns. ``save(path)`` writes the scatter and ``<stem>_atlas.png``; :meth:`write_html` the
interactive page.
"""


@reply(pb.PlacedImage)
@dataclass(frozen=True, eq=False, repr=False)
class PlacedImage(_ShortRepr):
    """Where one image falls on a map, and the nearest map points (dataset ids, labels, distances)."""

    x: float
    y: float
    neighbor_ids: tuple[int, ...]
    neighbor_labels: tuple[int, ...]
    neighbor_distances: tuple[float, ...]
    label: int  # the most common label among the neighbours (-1: none)
    label_name: str
    input: np.ndarray | None
    input_png: bytes


@reply(pb.PlaceImagesResponse)
@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class PlacementResult(_Stamped, _SavesImages):
    """Images placed on a cached Embedding map, in request order; ``scatter_png`` marks them."""

    dataset: str
    layer: str
    method: str
    map_id: str
    placed: tuple[PlacedImage, ...]
    scatter_png: bytes
    params: dict[str, Any]

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("scatter", self.scatter_png)] + [(f"input_{i:02d}", p.input_png) for i, p in enumerate(self.placed)]


#: For a many-image RPC, what builds the results of many answers at once (``from_items``), used by
