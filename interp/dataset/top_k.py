"""The running top-k of every unit: the reduction each batch of an index pass goes through.

Per channel, the top-k images by that channel's activation, one entry per image (its spatial
argmax: value, image id, y, x). Ties are broken by image id (smaller first) with stable sorts,
because ``torch.topk`` leaves the order of equal values unspecified and an index must not depend
on batch size or on which worker saw which block (the Ray engine merges per-block candidates
with the same function).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from interp.errors import InvalidInput


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


def pooled_features(output: Tensor) -> Tensor:
    """Per-image features: (B, C, H, W) mean-pooled to (B, C); (B, F) as it is. float32."""
    if output.dim() == 4:
        return nn.functional.adaptive_avg_pool2d(output.float(), 1).flatten(1)  # the fastest mean here
    if output.dim() == 2:
        return output.float()
    raise InvalidInput(f"expected (B, C, H, W) or (B, F) layer output, got shape {tuple(output.shape)}")
