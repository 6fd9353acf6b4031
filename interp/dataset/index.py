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

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from interp.dataset.top_k import Candidates, TopK, UnitPass, unit_pass
from interp.errors import Cancelled, InvalidInput
from interp.hooks import reduce_until

INDEXABLE = (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear)
"""Layer types indexed by default (every conv, ReLU, pool and linear layer)."""


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
            raise InvalidInput(f"k must be >= 1, got {k}", param="k")
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
