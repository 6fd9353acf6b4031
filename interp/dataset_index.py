"""Dataset-level views: the top-activating inputs of every unit and per-image features.

One pass over a dataset in batches, with forward hooks on the requested layers, keeps

- per channel, the top-k images by that channel's activation, one entry per image (its spatial
  argmax: value, image id, y, x), as the Deep Visualization Toolbox (``find_maxes``) and
  NetDissect do; Zeiler & Fergus (2014) show the receptive-field crops of these entries;
- per image and layer, a feature vector for nearest neighbours and embeddings: linear layers as
  they are, conv layers mean-pooled over space (one value per channel).

The merge is a running one: the pass never holds more than one batch of feature maps. Ties are
broken by image id (smaller first) with two stable sorts, because ``torch.topk`` leaves the order
of equal values unspecified and an index must not depend on batch size or on which worker saw
which block (the Ray engine merges per-block candidates with the same function).

Everything here is a pure function of a module and tensors; reading datasets and storing the
index is the caller's business.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from interp.errors import Cancelled, InvalidInput
from interp.hooks import run_until

INDEXABLE = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear)
"""Layer types indexed by default (every conv, ReLU, pool and linear layer)."""

METRICS = ("cosine", "l2")


@dataclass(frozen=True)
class BuildIndexParams:
    """Parameters of an index build.

    Attributes:
        k: entries kept per channel (the top-k images of every unit).
        batch_size: images per forward pass; memory holds one batch of feature maps at a time.
    """

    k: int = 64
    batch_size: int = 256


def default_layers(model: nn.Module) -> list[str]:
    """Module paths of every conv / ReLU / pool / linear leaf of ``model``, in registration order."""
    return [
        name
        for name, module in model.named_modules()
        if name and not any(True for _ in module.children()) and isinstance(module, INDEXABLE)
    ]


@dataclass
class TopK:
    """The running per-channel top-k of one layer.

    Attributes:
        values: (C, k) float32, best first; -inf where fewer than k images were seen.
        ids: (C, k) int64 image ids, -1 where empty.
        ys, xs: (C, k) int64 spatial argmax of each entry (0 for layers without a spatial layout).
    """

    values: Tensor
    ids: Tensor
    ys: Tensor
    xs: Tensor

    @classmethod
    def empty(cls, channels: int, k: int) -> TopK:
        return cls(
            values=torch.full((channels, k), -math.inf),
            ids=torch.full((channels, k), -1, dtype=torch.int64),
            ys=torch.zeros((channels, k), dtype=torch.int64),
            xs=torch.zeros((channels, k), dtype=torch.int64),
        )

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    def merge(self, values: Tensor, ids: Tensor, ys: Tensor, xs: Tensor) -> None:
        """Merge candidates (C, n) into the kept top-k: value descending, ties by smaller image id."""
        if not ids.numel():
            return
        all_values = torch.cat([self.values, values.float()], dim=1)
        all_ids = torch.cat([self.ids, ids], dim=1)
        all_ys = torch.cat([self.ys, ys], dim=1)
        all_xs = torch.cat([self.xs, xs], dim=1)
        kept = self.ids[self.ids >= 0]
        # Both sides are sorted (value descending, id ascending). When every kept id is below every
        # new one (the local engine's pass in id order), one stable sort by value keeps ties in id
        # order; otherwise (blocks in any order) sort by id first. Empty slots (id -1, value -inf)
        # sort last either way.
        if kept.numel() and ids.numel() and int(kept.max()) >= int(ids.min()):
            tie_key = torch.where(all_ids < 0, torch.iinfo(torch.int64).max, all_ids)
            order = torch.argsort(tie_key, dim=1, stable=True)
            all_values, all_ids, all_ys, all_xs = (t.gather(1, order) for t in (all_values, all_ids, all_ys, all_xs))
        order = torch.argsort(all_values, dim=1, descending=True, stable=True)[:, : self.k]
        self.values, self.ids, self.ys, self.xs = (t.gather(1, order) for t in (all_values, all_ids, all_ys, all_xs))

    def merge_topk(self, other: TopK) -> None:
        self.merge(other.values, other.ids, other.ys, other.xs)


def unit_maxima(output: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per image and channel, the largest activation and where it is.

    Args:
        output: (B, C, H, W) feature maps or (B, F) linear outputs.

    Returns:
        values (B, C) float32, ys (B, C) and xs (B, C) int64 (the first maximum in row-major
        order; zeros for (B, F)).
    """
    if output.dim() == 2:
        zeros = torch.zeros(output.shape, dtype=torch.int64)
        return output.float(), zeros, zeros
    if output.dim() != 4:
        raise InvalidInput(f"expected (B, C, H, W) or (B, F) layer output, got shape {tuple(output.shape)}")
    b, c, _, w = output.shape
    values, flat = output.reshape(b, c, -1).max(dim=2)
    return values.float(), flat // w, flat % w


def batch_top(output: Tensor, ids: Tensor, k: int, floor: Tensor | None = None, strict: bool = False) -> TopK:
    """A batch's own per-channel top-k candidates, ties by smaller id (``ids`` must be increasing).

    ``floor`` (C, 1): the k-th value already kept per channel. An image none of whose channels
    reaches it cannot enter the merged top-k and is dropped before the sort (after the first few
    batches of a pass, that is almost every image); with ``strict`` (every kept id is smaller
    than every id of this batch, so a tie with the floor loses) it must exceed it. The spatial
    argmax (the first maximum in row-major order) is computed only for candidates that reach the
    floor: finding where the maximum is costs more than the maximum itself. Candidates that do
    not enter are dropped by the exact merge, so the merged result does not depend on the floor.
    """
    if output.dim() == 4:
        values = output.amax(dim=(2, 3))
    elif output.dim() == 2:
        values = output
    else:
        raise InvalidInput(f"expected (B, C, H, W) or (B, F) layer output, got shape {tuple(output.shape)}")
    by_channel = values.T.float()  # (C, B), images in id order: a stable sort keeps smaller ids first
    positions = torch.arange(by_channel.shape[1])
    if floor is not None:
        reach = (by_channel > floor) if strict else (by_channel >= floor)
        columns = reach.any(dim=0).nonzero().squeeze(1)
        if columns.numel() < by_channel.shape[1]:
            by_channel, ids, positions = by_channel[:, columns], ids[columns], positions[columns]
        if not columns.numel():
            return TopK.empty(by_channel.shape[0], 0)
    order = _top_order(by_channel, k)
    top_values = by_channel.gather(1, order)
    channels = by_channel.shape[0]
    if output.dim() == 4:
        width = output.shape[3]
        rows = torch.arange(channels).unsqueeze(1).expand_as(order)
        live = torch.ones_like(order, dtype=torch.bool) if floor is None else top_values >= floor
        flat = torch.zeros_like(order)
        if bool(live.any()):
            maps = output[positions[order[live]], rows[live]]  # (n, H, W), only entries that may enter
            flat[live] = maps.flatten(1).argmax(dim=1)
        ys, xs = flat // width, flat % width
    else:
        ys = xs = torch.zeros_like(order)
    return TopK(values=top_values, ids=ids[order], ys=ys, xs=xs)


def _top_order(by_channel: Tensor, k: int) -> Tensor:
    """Column order of each row's k largest values, value descending then column ascending.

    ``torch.topk`` picks arbitrarily among values equal to the k-th (common: a ReLU unit that is 0
    on most images); a stable descending sort keeps equal values in column order, and sorting a
    batch's row costs less than ``topk`` plus the tie bookkeeping it would need.
    """
    k = min(k, by_channel.shape[1])
    return torch.argsort(by_channel, dim=1, descending=True, stable=True)[:, :k]


def pooled_features(output: Tensor) -> Tensor:
    """Per-image features: (B, C, H, W) mean-pooled to (B, C); (B, F) as it is. float32."""
    if output.dim() == 4:
        return output.float().mean(dim=(2, 3))
    if output.dim() == 2:
        return output.float()
    raise InvalidInput(f"expected (B, C, H, W) or (B, F) layer output, got shape {tuple(output.shape)}")


@dataclass
class LayerIndex:
    """What the pass keeps for one layer: its top-k and its per-image features (N, F)."""

    top: TopK
    features: Tensor
    spatial: bool
    shape: tuple[int, ...]  # output shape per sample


@dataclass
class BatchOutcome:
    """One batch's contribution: per layer, top-k candidates and features for its image ids."""

    ids: Tensor
    candidates: dict[str, TopK] = field(default_factory=dict)
    features: dict[str, Tensor] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def index_batch(
    model: nn.Module,
    x: Tensor,
    ids: Tensor,
    layers: Sequence[str],
    k: int,
    floors: Mapping[str, Tensor] | None = None,
    strict: bool = False,
) -> BatchOutcome:
    """One forward pass of a batch, truncated after the deepest layer; its candidates and features.

    Args:
        model: the module; x: (B, C, H, W) pixels in [0, 1]; ids: (B,) int64 image ids.
        layers: module paths; k: entries kept per channel (the batch keeps at most k too).
        floors, strict: per layer the k-th value kept so far, and whether every kept id is
            smaller than this batch's (see :func:`batch_top`); they only save work.
    """
    if x.dim() != 4 or ids.shape != (x.shape[0],):
        raise InvalidInput(f"expected x (B, C, H, W) and ids (B,), got {tuple(x.shape)} and {tuple(ids.shape)}")
    outcome = BatchOutcome(ids=ids)
    with torch.inference_mode():
        store = run_until(model, x, layers)
        for name in layers:
            output = store[name]
            floor = floors.get(name) if floors is not None else None
            outcome.candidates[name] = batch_top(output, ids, k, floor, strict)
            outcome.features[name] = pooled_features(output)
            outcome.shapes[name] = tuple(output.shape[1:])
    return outcome


class IndexAccumulator:
    """Merges batch outcomes (in any order) into the final per-layer index of ``size`` images."""

    def __init__(self, layers: Sequence[str], k: int, size: int) -> None:
        if k <= 0:
            raise InvalidInput(f"k must be >= 1, got {k}")
        self.layers = list(layers)
        self.k = k
        self.size = size
        self.seen = 0
        self._top: dict[str, TopK] = {}
        self._features: dict[str, Tensor] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._present = torch.zeros(size, dtype=torch.bool)
        self.max_id = -1  # the largest image id added so far

    def add(self, outcome: BatchOutcome) -> None:
        for name in self.layers:
            top = outcome.candidates[name]
            if name not in self._top:
                self._top[name] = TopK.empty(top.values.shape[0], self.k)
                feats = outcome.features[name]
                self._features[name] = torch.zeros((self.size, feats.shape[1]), dtype=torch.float32)
                self._shapes[name] = outcome.shapes[name]
            self._top[name].merge_topk(top)
            self._features[name][outcome.ids] = outcome.features[name]
        self._present[outcome.ids] = True
        self.seen += int(outcome.ids.numel())
        if outcome.ids.numel():
            self.max_id = max(self.max_id, int(outcome.ids.max()))

    def result(self) -> dict[str, LayerIndex]:
        if not self._top:
            raise InvalidInput("no image was indexed")
        return {
            name: LayerIndex(
                top=self._top[name],
                features=self._features[name],
                spatial=len(self._shapes[name]) == 3,
                shape=self._shapes[name],
            )
            for name in self.layers
        }

    def floors(self) -> dict[str, Tensor]:
        """Per layer, the (C, 1) k-th value kept so far (-inf until k images were seen)."""
        return {name: top.values[:, -1:] for name, top in self._top.items()}

    @property
    def present(self) -> Tensor:
        """(size,) bool: which image ids were indexed (unreadable ones are not)."""
        return self._present


@dataclass(frozen=True)
class IndexProgress:
    images_done: int
    total: int
    images_per_s: float
    elapsed_s: float


def build_index(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    layers: Sequence[str],
    k: int,
    size: int,
    *,
    on_batch: Callable[[IndexProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[dict[str, LayerIndex], Tensor]:
    """The local engine: one pass over ``batches`` of (ids (B,), x (B, C, H, W)).

    Returns:
        per layer its :class:`LayerIndex`, and the (size,) bool mask of indexed image ids.

    Raises:
        Cancelled: ``should_stop`` answered true between batches (nothing is returned).
    """
    acc = IndexAccumulator(layers, k, size)
    start = time.perf_counter()
    for ids, x in batches:
        if should_stop is not None and should_stop():
            raise Cancelled("index build cancelled")
        strict = ids.numel() > 0 and acc.max_id < int(ids.min())
        acc.add(index_batch(model, x, ids, layers, k, acc.floors(), strict))
        if on_batch is not None:
            elapsed = time.perf_counter() - start
            on_batch(IndexProgress(acc.seen, size, acc.seen / elapsed if elapsed > 0 else 0.0, elapsed))
    return acc.result(), acc.present


# -- receptive-field crops ----------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """Rows y0..y1-1 and columns x0..x1-1 of the input (may extend past its borders)."""

    y0: int
    x0: int
    y1: int
    x1: int


def receptive_box(rf_size: int, rf_jump: int, rf_start: float, y: int, x: int) -> Box:
    """The input pixels unit (y, x) sees (pixel-centre convention of the layer catalogue).

    Unit k's field is centred on ``start + k * jump`` and spans ``(size - 1) / 2`` on either side.
    """
    half = (rf_size - 1) / 2
    y0 = int(round(rf_start + y * rf_jump - half))
    x0 = int(round(rf_start + x * rf_jump - half))
    return Box(y0, x0, y0 + rf_size, x0 + rf_size)


def clip_box(box: Box, height: int, width: int) -> Box:
    return Box(max(0, box.y0), max(0, box.x0), min(height, box.y1), min(width, box.x1))


def crop_field(image: Tensor, box: Box, fill: float = 0.0) -> tuple[Tensor, bool]:
    """The (C, r, r) crop of ``image`` (C, H, W) under ``box``, padded with ``fill`` past the borders.

    Returns:
        the crop, and whether any of it was padding (the unit's field leaves the image).
    """
    c, h, w = image.shape
    out = torch.full((c, box.y1 - box.y0, box.x1 - box.x0), fill, dtype=image.dtype)
    inside = clip_box(box, h, w)
    if inside.y1 > inside.y0 and inside.x1 > inside.x0:
        out[:, inside.y0 - box.y0 : inside.y1 - box.y0, inside.x0 - box.x0 : inside.x1 - box.x0] = image[
            :, inside.y0 : inside.y1, inside.x0 : inside.x1
        ]
    return out, inside != box


def draw_box(image: np.ndarray, box: Box, scale: int, colour: tuple[int, int, int] = (255, 64, 64)) -> np.ndarray:
    """An (H*scale, W*scale, 3) uint8 copy of a (H, W, 3) uint8 image with ``box`` outlined."""
    h, w = image.shape[:2]
    big = cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    inside = clip_box(box, h, w)
    cv2.rectangle(
        big,
        (inside.x0 * scale, inside.y0 * scale),
        (inside.x1 * scale - 1, inside.y1 * scale - 1),
        colour,
        thickness=1,
    )
    return big


def mark_padding(crop_rgb: np.ndarray, crop_box: Box, height: int, width: int, scale: int) -> np.ndarray:
    """Hatch the padded part of an upscaled crop so a border crop is visibly marked (a new array)."""
    out = crop_rgb.copy()
    out[_padding_hatch(crop_box, height, width, scale)] = (48, 48, 96)
    return out


@functools.lru_cache(maxsize=1024)
def _padding_hatch(crop_box: Box, height: int, width: int, scale: int) -> np.ndarray:
    """The (h*scale, w*scale) bool hatch of a box's padded part; the few box positions of a layer recur."""
    rows = np.arange(crop_box.y0, crop_box.y1)
    cols = np.arange(crop_box.x0, crop_box.x1)
    outside = ~(((rows >= 0) & (rows < height))[:, None] & ((cols >= 0) & (cols < width))[None, :])
    checker = (np.add.outer(np.arange(len(rows)), np.arange(len(cols))) % 2) == 0
    mask = np.repeat(np.repeat(outside & checker, scale, axis=0), scale, axis=1)
    mask.flags.writeable = False
    return mask


def fast_png(image: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) grey or (H, W, 3) RGB uint8 image, fastest zlib level.

    A TopActivations answer holds hundreds of small PNGs; level 1 encodes them about twice as fast
    as OpenCV's default level for a few percent more bytes.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise InvalidInput(f"expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - only empty images fail, excluded above
        raise InvalidInput(f"could not encode an image of shape {image.shape}")
    return buffer.tobytes()


def top_grid(cells: Sequence[Sequence[np.ndarray]], labels: Sequence[str], gap: int = 2) -> np.ndarray:
    """The lecture figure: one row of k cells per channel (uint8 (h, w, 3) each), labelled rows."""
    if not cells or not cells[0]:
        raise InvalidInput("no cells to draw")
    h, w = cells[0][0].shape[:2]
    columns = max(len(row) for row in cells)
    label_w = 48
    grid = np.full((len(cells) * (h + gap) + gap, label_w + columns * (w + gap) + gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(cells):
        top = gap + r * (h + gap)
        cv2.putText(grid, labels[r][:8], (2, top + h // 2 + 4), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1)
        for c, cell in enumerate(row):
            left = label_w + gap + c * (w + gap)
            grid[top : top + h, left : left + w] = cell
    return grid


# -- nearest neighbours -------------------------------------------------------------------------


def distances(features: Tensor, query: Tensor, metric: str) -> Tensor:
    """Exact distances from each query (Q, F) to every row of ``features`` (N, F): (Q, N).

    cosine: 1 - cos (a zero vector is at distance 1 from everything); l2: Euclidean.
    """
    if metric not in METRICS:
        raise InvalidInput(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if features.dim() != 2 or query.dim() != 2 or features.shape[1] != query.shape[1]:
        raise InvalidInput(f"expected (N, F) and (Q, F), got {tuple(features.shape)} and {tuple(query.shape)}")
    f, q = features.double(), query.double()
    if metric == "cosine":
        fn = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
        qn = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (1.0 - qn @ fn.T).float()
    sq = (q * q).sum(1, keepdim=True) - 2.0 * q @ f.T + (f * f).sum(1).unsqueeze(0)
    return sq.clamp_min(0).sqrt().float()


def nearest(features: Tensor, query: Tensor, k: int, metric: str, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The k nearest rows per query, ties by smaller id: (Q, k) ids and (Q, k) distances."""
    d = distances(features, query, metric)
    if valid is not None:
        d = torch.where(valid.unsqueeze(0), d, torch.full_like(d, math.inf))
    k = min(k, d.shape[1])
    order = torch.argsort(d, dim=1, stable=True)[:, :k]
    return order, d.gather(1, order)


def query_features(model: nn.Module, x: Tensor, layer: str) -> Tensor:
    """(B, F) features of ``layer`` for a batch, as the index stores them."""
    outcome = index_batch(model, x, torch.arange(x.shape[0]), [layer], 1)
    return outcome.features[layer]


def shapes_of(index: Mapping[str, LayerIndex]) -> dict[str, tuple[int, ...]]:
    return {name: layer.shape for name, layer in index.items()}
