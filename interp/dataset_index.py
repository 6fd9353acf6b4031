"""Dataset-level views: the top-activating inputs of every unit and per-image features.

One pass over a dataset in batches, with forward hooks on the requested layers, keeps

- per channel, the top-k images by that channel's activation, one entry per image (its spatial
  argmax: value, image id, y, x), as the Deep Visualization Toolbox (``find_maxes``) and
  NetDissect do; Zeiler & Fergus (2014) show the receptive-field crops of these entries;
- per image and layer, a feature vector for nearest neighbours and embeddings: linear layers as
  they are, conv layers mean-pooled over space (one value per channel).

The merge is a running one: each layer's output is reduced in its forward hook and dropped, so
the pass holds what a plain forward holds. Ties are broken by image id (smaller first) with
stable sorts, because ``torch.topk`` leaves the order of equal values unspecified and an index
must not depend on batch size or on which worker saw which block (the Ray engine merges
per-block candidates with the same function).

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
from interp.hooks import reduce_until

INDEXABLE = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear)
"""Layer types indexed by default (every conv, ReLU, pool and linear layer)."""

METRICS = ("cosine", "l2")



class NothingIndexed(InvalidInput):
    """The pass saw no image (every file of the dataset was unreadable, or the dataset is empty)."""

@dataclass(frozen=True)
class BuildIndexParams:
    """Parameters of an index build.

    Attributes:
        k: entries kept per channel (the top-k images of every unit).
        batch_size: images per forward pass; memory holds one batch of feature maps at a time.
    """

    k: int = 64
    batch_size: int = 1024


def default_layers(model: nn.Module) -> list[str]:
    """Module paths of every conv / ReLU / pool / linear leaf of ``model``, in registration order."""
    return [
        name
        for name, module in model.named_modules()
        if name and not any(True for _ in module.children()) and isinstance(module, INDEXABLE)
    ]


@dataclass
class TopK:
    """The running top-k of every unit: one row per channel, of one layer or of several stacked.

    Attributes:
        values: (R, k) float32, best first; -inf where fewer than k images were seen.
        ids: (R, k) int64 image ids, -1 where empty.
        ys, xs: (R, k) int64 spatial argmax of each entry (0 for layers without a spatial layout).
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
        """Merge candidates (R, n) into the kept top-k: value descending, ties by smaller image id.

        Empty candidate slots (id -1) are ignored; only the rows with a candidate are sorted.
        """
        live = ids >= 0
        if not bool(live.any()):
            return
        rows = live.any(dim=1).nonzero().squeeze(1)
        every = rows.numel() == self.values.shape[0]
        new = [t if every else t[rows] for t in (values.float(), ids, ys, xs)]
        if every and ids.shape[1] >= self.k and int(self.ids.max()) < 0:  # nothing kept yet: no merge
            order = torch.argsort(new[0], dim=1, descending=True, stable=True)[:, : self.k]
            self.values, self.ids, self.ys, self.xs = (t.gather(1, order) for t in new)
            return
        kept = [t if every else t[rows] for t in (self.values, self.ids, self.ys, self.xs)]
        all_values, all_ids, all_ys, all_xs = (torch.cat([a, b], dim=1) for a, b in zip(kept, new, strict=True))
        # Both sides are in id order within equal values. When every kept id is below every new one
        # (the local engine's pass in id order), one stable sort by value keeps ties in id order;
        # otherwise (blocks in any order) sort by id first. Empty slots (id -1, value -inf) sort
        # last either way.
        if int(kept[1].max()) >= int(ids[live].min()):
            tie_key = torch.where(all_ids < 0, torch.iinfo(torch.int64).max, all_ids)
            order = torch.argsort(tie_key, dim=1, stable=True)
            all_values, all_ids, all_ys, all_xs = (t.gather(1, order) for t in (all_values, all_ids, all_ys, all_xs))
        order = torch.argsort(all_values, dim=1, descending=True, stable=True)[:, : self.k]
        merged = [t.gather(1, order) for t in (all_values, all_ids, all_ys, all_xs)]
        if every:
            self.values, self.ids, self.ys, self.xs = merged
        else:
            for target, part in zip((self.values, self.ids, self.ys, self.xs), merged, strict=True):
                target[rows] = part

    def merge_topk(self, other: TopK) -> None:
        self.merge(other.values, other.ids, other.ys, other.xs)


@dataclass
class UnitPass:
    """What one layer's forward hook keeps of a batch's output (the output itself is dropped).

    Attributes:
        channels: (n,) the channel of each entry that may enter the top-k, channel ascending,
            then image position ascending.
        positions: (n,) the image position in the batch of each entry.
        values, ys, xs: (n,) each entry's value and first-maximum location (row-major; zeros
            for layers without a spatial layout).
        features: (B, F) float32 per-image features (see :func:`pooled_features`).
        shape: the output shape per sample.
        table: when every entry may enter (a batch of at most k images and no floor), instead of
            the entries: (values, ys, xs), each (B, C).
    """

    channels: Tensor
    positions: Tensor
    values: Tensor
    ys: Tensor
    xs: Tensor
    features: Tensor
    shape: tuple[int, ...]
    table: tuple[Tensor, Tensor, Tensor] | None = None


def unit_pass(
    output: Tensor,
    k: int,
    floor: Tensor | None = None,
    strict: bool = False,
    floor_full: bool | None = None,
    maxima: Tensor | None = None,
) -> UnitPass:
    """One layer's share of a batch, computed while its output exists (in the forward hook).

    The entries that may enter the kept top-k of a unit are those at least the batch's own k-th
    value of that unit (ties included) and, given ``floor`` (C,), at least the k-th value already
    kept (above it with ``strict``: every kept id is smaller than this batch's, so a tie loses).
    After the first batch of a pass they are a handful; only they get a spatial argmax, which
    costs about ten times the maximum. ``floor_full``: whether every unit's floor holds k values
    (then the batch's own k-th value is not needed); None: look. ``maxima`` (B, C): the
    per-channel maxima when already known (from a max pool tiling this output).
    """
    if output.dim() == 4:
        values = output.amax(dim=(2, 3)).float() if maxima is None else maxima
        features = pooled_features(output)
    elif output.dim() == 2:
        values = features = output.float()
    else:
        raise InvalidInput(f"expected (B, C, H, W) or (B, F) layer output, got shape {tuple(output.shape)}")
    may_enter = None
    if floor_full is None:
        floor_full = floor is not None and bool(floor.isfinite().all())
    if floor is not None and floor_full:
        channels, positions = _above_floor(values, floor, strict)
        return _entries(output, values, channels, positions, features)
    if values.shape[0] > k and not floor_full:
        # (once a floor holds k values it filters harder than the batch's own k-th value)
        may_enter = values >= torch.topk(values.T, k, dim=1).values[:, -1]
    if floor is not None:
        above = values > floor if strict else values >= floor
        may_enter = above if may_enter is None else may_enter & above
    if may_enter is None:  # every entry: a table, not a list
        none = torch.zeros(0, dtype=torch.int64)
        if output.dim() == 4:
            width = int(output.shape[3])
            flat = output.flatten(2).argmax(dim=2)
            ys, xs = flat // width, flat % width
        else:
            ys = xs = torch.zeros(values.shape, dtype=torch.int64)
        return UnitPass(channels=none, positions=none, values=values.new_empty(0), ys=none, xs=none,
                        features=features, shape=tuple(output.shape[1:]), table=(values, ys, xs))  # fmt: skip
    channels, positions = may_enter.T.nonzero().unbind(1)
    return _entries(output, values, channels, positions, features)


def _above_floor(values: Tensor, floor: Tensor, strict: bool) -> tuple[Tensor, Tensor]:
    """(channels, positions) of the entries of ``values`` (B, C) at least ``floor`` (C,) (above it
    with ``strict``), channel ascending then position. One comparison over the whole block: once
    the floors are up the entries are a few per unit, and narrowing to the units whose batch
    maximum reaches their floor first costs more than it saves (a maximum over the images of a
    narrow (B, C) block is slow). Few channels: compared channel-major (a transposed view, whose
    nonzero comes out in the wanted order); many: compared in memory order, then stably sorted
    by channel (nonzero over a wide transposed view is the slower of the two)."""
    if values.shape[1] <= _CHANNEL_MAJOR_WIDTH:
        block, bound = values.T, floor.unsqueeze(1)
        channels, positions = (block > bound if strict else block >= bound).nonzero().unbind(1)
        return channels, positions
    positions, channels = (values > floor if strict else values >= floor).nonzero().unbind(1)
    order = torch.argsort(channels, stable=True)
    return channels[order], positions[order]


_CHANNEL_MAJOR_WIDTH = 64
"""Up to this many channels :func:`_above_floor` compares a transposed view (measured on a
(1024, C) block at 2 threads: C = 6 17 against 27 us, C = 16 35 against 55 us; C = 418 503
against 361 us for the sorted path; the previous two-step selection took 48, 82 and 583 us)."""


def _entries(output: Tensor, values: Tensor, channels: Tensor, positions: Tensor, features: Tensor) -> UnitPass:
    """The UnitPass of the listed entries (channel ascending): their values and first-maximum locations."""
    if not channels.numel():  # the usual case once the floors are up: nothing to locate
        return UnitPass(channels=channels, positions=positions, values=values.new_empty(0), ys=channels, xs=channels,
                        features=features, shape=tuple(output.shape[1:]))  # fmt: skip
    if output.dim() == 4:
        width = int(output.shape[3])
        if channels.numel() * 8 > values.numel():  # many entries: no copy of their maps
            flat = output.flatten(2).argmax(dim=2)[positions, channels]
        else:
            flat = output[positions, channels].flatten(1).argmax(dim=1)
        ys, xs = flat // width, flat % width
    else:
        ys = xs = torch.zeros_like(channels)
    return UnitPass(channels=channels, positions=positions, values=values[positions, channels], ys=ys, xs=xs,
                    features=features, shape=tuple(output.shape[1:]))  # fmt: skip


@dataclass
class Candidates:
    """Entries that may enter the top-k of their unit, each field (n,): the unit (row), value,
    image id and first-maximum location; in id order within a unit."""

    units: Tensor
    values: Tensor
    ids: Tensor
    ys: Tensor
    xs: Tensor

    @staticmethod
    def cat(parts: Sequence[Candidates]) -> Candidates:
        if len(parts) == 1:
            return parts[0]
        return Candidates(*(torch.cat([getattr(p, f) for p in parts]) for f in ("units", "values", "ids", "ys", "xs")))

    def padded(self, units: int) -> TopK:
        """As a (units, m) :class:`TopK` block: each unit's entries in id order (a stable sort by
        unit keeps that order), padded with empty slots (value -inf, id -1) to the largest count m.
        """
        # One batch's entries come grouped by unit already (layer by layer, channel by channel).
        grouped = self.units.numel() < 2 or bool((self.units[1:] >= self.units[:-1]).all())
        order = None if grouped else torch.argsort(self.units, stable=True)
        rows = self.units if order is None else self.units[order]
        counts = torch.bincount(rows, minlength=units)
        width = int(counts.max()) if rows.numel() else 0
        block = TopK.empty(units, width)
        if width:
            slots = torch.arange(rows.numel()) - (counts.cumsum(0) - counts)[rows]
            for target, source in zip(
                (block.values, block.ids, block.ys, block.xs), (self.values, self.ids, self.ys, self.xs), strict=True
            ):
                target[rows, slots] = source if order is None else source[order]
        return block


def batch_top(output: Tensor, ids: Tensor, k: int, floor: Tensor | None = None, strict: bool = False) -> TopK:
    """One layer's top-k of a batch (B, C, H, W) or (B, F): value descending, ties by smaller id.

    ``ids`` (B,) increasing; ``floor`` (C,) or None filters as in :func:`unit_pass` (entries
    below it are left out, not kept as -inf).
    """
    unit = unit_pass(output, k, floor, strict)
    channels = int(output.shape[1])
    top = TopK.empty(channels, k)
    if unit.table is not None:
        values, ys, xs = unit.table
        top.merge_topk(TopK(values.T, ids.expand(channels, -1), ys.T, xs.T))
    else:
        top.merge_topk(Candidates(unit.channels, unit.values, ids[unit.positions], unit.ys, unit.xs).padded(channels))
    return top


def pooled_features(output: Tensor) -> Tensor:
    """Per-image features: (B, C, H, W) mean-pooled to (B, C); (B, F) as it is. float32."""
    if output.dim() == 4:
        return nn.functional.adaptive_avg_pool2d(output.float(), 1).flatten(1)  # the fastest mean here
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
    """One batch's contribution: the top-k candidates of every unit of every layer (the layers'
    channels stacked as rows, the layers in ``rows`` order), and per layer the features for its
    image ids.
    """

    ids: Tensor
    candidates: Candidates | TopK  # TopK: a (units, B) block of every entry (see ``_dense_block``)
    features: dict[str, Tensor] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    rows: list[str] = field(default_factory=list)
    units: int = 0  # rows of the index: the layers' channels, stacked


def index_batch(
    model: nn.Module,
    x: Tensor,
    ids: Tensor,
    layers: Sequence[str],
    k: int,
    floor: Tensor | None = None,
    strict: bool = False,
    pools: Mapping[str, nn.MaxPool2d] | None = None,
) -> BatchOutcome:
    """One forward pass of a batch, truncated after the deepest layer; its candidates and features.

    Each layer's output is reduced in its forward hook (maxima, means, the locations of the few
    entries that may enter) and dropped, so the pass holds what a plain forward holds; the units
    of all layers are then selected together, one sort for the whole batch.

    Args:
        model: the module; x: (B, C, H, W) pixels in [0, 1]; ids: (B,) int64 image ids.
        layers: module paths; k: entries kept per channel.
        floor, strict: (R,) per unit (the layers' channels stacked) the k-th value kept so far,
            and whether every kept id is smaller than this batch's (see :func:`unit_pass`);
            they only save work.
        pools: :func:`tiling_pools` of (model, layers), when the caller computed it once for many
            batches.
    """
    if x.dim() != 4 or ids.shape != (x.shape[0],):
        raise InvalidInput(f"expected x (B, C, H, W) and ids (B,), got {tuple(x.shape)} and {tuple(ids.shape)}")
    offset = 0
    full = floor is not None and bool(floor.isfinite().all())
    pools = tiling_pools(model, layers) if pools is None else pools
    results: dict[str, tuple[UnitPass | Tensor, int]] = {}
    held: list[tuple[str, Tensor, int]] = []  # a map whose maxima the next layer, a max pool, gives

    def layer_floor(start: int, channels: int) -> Tensor | None:
        return floor[start : start + channels] if floor is not None else None

    def reduce(name: str, output: Tensor, inputs: tuple[object, ...]) -> None:
        # Feature maps are reduced in the hook; linear outputs are small and kept, to be selected
        # together after the pass.
        nonlocal offset
        channels = int(output.shape[1])
        start, offset = offset, offset + channels
        maxima = None
        if held:
            before, kept, at = held.pop()
            if inputs and inputs[0] is kept and _tiles(pools.get(before), kept):
                # a pool tiling its input keeps every maximum: the same values from either map, taken
                # from the one whose maximum is cheaper
                source = output if output.shape[2] * output.shape[3] >= _FAST_MAX_SPATIAL else kept
                maxima = source.amax(dim=(2, 3)).float()
            results[before] = (unit_pass(kept, k, layer_floor(at, kept.shape[1]), strict, full, maxima), at)
        if output.dim() == 2:
            results[name] = (output.float(), start)
        elif name in pools and maxima is None:
            held.append((name, output, start))  # reduced in the pool's hook, its maxima from the pool
        else:
            results[name] = (unit_pass(output, k, layer_floor(start, channels), strict, full, maxima), start)

    with torch.inference_mode():
        reduce_until(model, x, layers, reduce)
        for before, kept, at in held:  # (the pool did not run after it: reduced here)
            results[before] = (unit_pass(kept, k, layer_floor(at, kept.shape[1]), strict, full), at)
        units = results
        if floor is not None and floor.shape != (offset,):
            raise InvalidInput(f"floor has {tuple(floor.shape)} units, the layers {offset}")
        rows = sorted(layers, key=lambda name: units[name][1])  # the order the hooks fired in
        # each part with the index rows of its channels: a slice, or the joint linear part's rows
        parts: list[tuple[UnitPass, slice | Tensor]] = [
            (unit, slice(start, start + unit.features.shape[1]))
            for unit, start in (units[name] for name in rows)
            if isinstance(unit, UnitPass)
        ]
        linear = [(out, start) for out, start in (units[name] for name in rows) if isinstance(out, Tensor)]
        features = {name: unit.features if isinstance(unit, UnitPass) else unit for name, (unit, _) in units.items()}
        if linear:
            where = torch.cat([torch.arange(out.shape[1]) + start for out, start in linear])
            joint = unit_pass(torch.cat([out for out, _ in linear], dim=1), k,
                              floor[where] if floor is not None else None, strict, full)  # fmt: skip
            parts.append((joint, where))
        candidates: Candidates | TopK
        if all(unit.table is not None for unit, _ in parts):
            candidates = _dense_block(parts, ids, offset)
        else:
            candidates = Candidates(
                torch.cat(
                    [unit.channels + at.start if isinstance(at, slice) else at[unit.channels] for unit, at in parts]
                ),
                torch.cat([unit.values for unit, _ in parts]),
                ids[torch.cat([unit.positions for unit, _ in parts])],
                torch.cat([unit.ys for unit, _ in parts]),
                torch.cat([unit.xs for unit, _ in parts]),
            )
    return BatchOutcome(
        ids=ids,
        candidates=candidates,
        features={name: features[name] for name in layers},
        shapes={name: _shape(units[name][0]) for name in layers},
        rows=rows,
        units=offset,
    )


_FAST_MAX_SPATIAL = 64
"""A per-channel maximum over fewer values than this per map is slower than over the larger map
before its pool, so a small pool output's maxima are taken from its input instead (measured,
batch 1,024 at 2 threads: 16 x 5 x 5 273 us, 16 x 10 x 10 102 us; 6 x 14 x 14 63 us against
6 x 28 x 28 256 us)."""


def tiling_pools(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.MaxPool2d]:
    """{layer: the max pool that is the next of ``layers`` in module order}, for pools whose
    windows tile their input without overlap or padding (kernel = stride, no padding or
    dilation): such a pool's per-channel maximum is its input's."""
    wanted = set(layers)
    names = [name for name, _ in model.named_modules() if name in wanted]
    pools = {}
    for before, after in zip(names, names[1:], strict=False):
        pool = model.get_submodule(after)
        if (
            isinstance(pool, nn.MaxPool2d)
            and nn.modules.utils._pair(pool.kernel_size) == nn.modules.utils._pair(pool.stride)
            and nn.modules.utils._pair(pool.padding) == (0, 0)
            and nn.modules.utils._pair(pool.dilation) == (1, 1)
        ):
            pools[before] = pool
    return pools


def _tiles(pool: nn.MaxPool2d | None, maps: Tensor) -> bool:
    """Whether ``pool``'s windows cover ``maps`` (B, C, H, W) exactly."""
    if pool is None or maps.dim() != 4:
        return False
    kh, kw = nn.modules.utils._pair(pool.kernel_size)
    return maps.shape[2] % kh == 0 and maps.shape[3] % kw == 0


def _dense_block(parts: Sequence[tuple[UnitPass, slice | Tensor]], ids: Tensor, units: int) -> TopK:
    """Every entry of a batch as a (units, B) :class:`TopK` block, images in id order."""
    batch = int(ids.shape[0])
    block = TopK(
        values=torch.empty((units, batch)),
        ids=ids.expand(units, batch),
        ys=torch.empty((units, batch), dtype=torch.int64),
        xs=torch.empty((units, batch), dtype=torch.int64),
    )
    for unit, at in parts:
        if unit.table is None:
            raise InvalidInput("a dense block needs every layer's table")
        for target, source in zip((block.values, block.ys, block.xs), unit.table, strict=True):
            target[at] = source.T
    return block


def _shape(unit: UnitPass | Tensor) -> tuple[int, ...]:
    return unit.shape if isinstance(unit, UnitPass) else tuple(unit.shape[1:])


_FLUSH_ENTRIES_PER_UNIT = 8
"""Candidates are merged once this many per unit (on average) are pending."""


class IndexAccumulator:
    """Merges batch outcomes (in any order) into the final per-layer index of ``size`` images."""

    def __init__(self, layers: Sequence[str], k: int, size: int) -> None:
        if k <= 0:
            raise InvalidInput(f"k must be >= 1, got {k}")
        self.layers = list(layers)
        self.k = k
        self.size = size
        self.seen = 0
        self._top: TopK | None = None
        self._features: dict[str, Tensor] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._rows: list[str] = []
        self._pending: list[Candidates] = []  # not merged yet
        self._pending_entries = 0
        self._present = torch.zeros(size, dtype=torch.bool)
        self.max_id = -1  # the largest image id added so far

    def add(self, outcome: BatchOutcome) -> None:
        if self._top is None:
            self._top = TopK.empty(outcome.units, self.k)
            self._rows = list(outcome.rows)
            for name in self.layers:
                feats = outcome.features[name]
                self._features[name] = torch.zeros((self.size, feats.shape[1]), dtype=torch.float32)
                self._shapes[name] = outcome.shapes[name]
        if outcome.rows != self._rows:
            raise InvalidInput(f"batch rows {outcome.rows} differ from the first batch's {self._rows}")
        if isinstance(outcome.candidates, TopK):  # merged now: the pending ones stay in id order
            self._flush()
            self._top.merge_topk(outcome.candidates)
        else:
            self._pending.append(outcome.candidates)
            self._pending_entries += int(outcome.candidates.units.numel())
            if self._pending_entries >= _FLUSH_ENTRIES_PER_UNIT * outcome.units:
                self._flush()
        ids = outcome.ids
        count = int(ids.numel())
        first, last = (int(ids[0]), int(ids[-1])) if count else (0, -1)
        # A pass in id order gives runs of consecutive ids: a slice assignment, not a scatter.
        where: slice | Tensor = slice(first, last + 1) if last - first + 1 == count else ids
        for name in self.layers:
            self._features[name][where] = outcome.features[name]
        self._present[where] = True
        self.seen += count
        if count:
            self.max_id = max(self.max_id, int(ids.max()))

    def _flush(self) -> None:
        """Merge the pending candidates (several batches at a time: one sort, not several)."""
        if self._top is None or not self._pending:
            return
        pending = Candidates.cat(self._pending)
        self._pending, self._pending_entries = [], 0
        self._top.merge_topk(pending.padded(self._top.values.shape[0]))

    def result(self) -> dict[str, LayerIndex]:
        self._flush()
        if self._top is None:
            raise NothingIndexed("no image was indexed")
        top, slices, start = self._top, {}, 0
        for name in self._rows:
            slices[name] = slice(start, start + self._shapes[name][0])
            start += self._shapes[name][0]
        return {
            name: LayerIndex(
                top=TopK(*(t[slices[name]] for t in (top.values, top.ids, top.ys, top.xs))),
                features=self._features[name],
                spatial=len(self._shapes[name]) == 3,
                shape=self._shapes[name],
            )
            for name in self.layers
        }

    def floor(self) -> Tensor | None:
        """(R,) the k-th value kept so far of every unit (-inf until k images were seen); None
        before the first batch. Candidates not merged yet are not counted: the floor is at most
        the true one, which only lets more candidates through."""
        return None if self._top is None else self._top.values[:, -1]

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
    pools = tiling_pools(model, layers)
    start = time.perf_counter()
    for ids, x in batches:
        if should_stop is not None and should_stop():
            raise Cancelled("index build cancelled")
        strict = ids.numel() > 0 and acc.max_id < int(ids.min())
        acc.add(index_batch(model, x, ids, layers, k, acc.floor(), strict, pools))
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
