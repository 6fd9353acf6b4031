"""Dataset-level jobs budgeted from their sizes before any work starts.

The single-image RPCs are budgeted by pixels and steps (``Limits.max_batch_pixels``,
``max_pixel_steps``). A dataset-level job's size comes from other numbers: how many images, how
wide the layer, k, steps, points. Each job's peak working memory and its work (multiply-adds,
counted from the model's conv and linear layers) are estimated here from those numbers alone and
checked against two budgets, so that one valid request cannot monopolize the server:

- ``Limits.max_job_bytes``: working memory one job may hold (default a quarter of the memory
  available to the server);
- ``Limits.max_job_macs``: multiply-adds one job may cost (default 5e13: about 20 minutes of
  this service's LeNet-to-VGG16 mix on a 2-core CPU).

Over either one, the request is refused with RESOURCE_EXHAUSTED naming the budget, the estimate
and what to ask for instead. The estimates are upper bounds of the order of magnitude, not
predictions to the percent: they count the dominant products and tensors of each job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from interp.pca import pca_cost
from models.catalogue import LayerInfo
from models.loaded import LoadedModel
from server.config import Limits
from server.errors import Overloaded

FLOAT = 4  # bytes of a float32 value
TSNE_WORK_PER_POINT = 400
"""Multiply-adds per point and iteration of openTSNE's gradient (its FFT interpolation grid and
3 x perplexity attractive neighbours), an upper bound of the order measured here."""
SEARCH_ROUNDS = 9
"""Attacks run per image by a minimal-epsilon search: the bisection over the 256 levels of the
8-bit grid (8) and the re-check at the level found."""
DEEPFOOL_PASSES = 50 * 11
"""Forward + backward passes per image of DeepFool (50 steps, the top 10 candidates and the class)."""


@dataclass(frozen=True)
class JobCost:
    """One job's estimate: peak working memory (bytes), work (multiply-adds) and its sizes in words."""

    bytes: int
    macs: int
    sizes: str


def forward_macs(model: LoadedModel) -> int:
    """Multiply-adds of one forward pass of one image: every Conv2d and Linear layer counted."""
    module = model.require_ready()
    total = 0
    for layer in model.layers:
        child = module.get_submodule(layer.name)
        if isinstance(child, nn.Conv2d):
            kh, kw = child.kernel_size
            total += math.prod(layer.output_shape) * (child.in_channels // child.groups) * kh * kw
        elif isinstance(child, nn.Linear):
            total += child.in_features * child.out_features
    return total


def activation_values(model: LoadedModel) -> int:
    """Values one forward pass of one image writes (every layer's output): what a backward pass keeps."""
    return sum(math.prod(layer.output_shape) for layer in model.layers)


def feature_width(layer: LayerInfo) -> int:
    """Width of a layer's per-image features in the index: channels (spatial maps are mean-pooled)."""
    return layer.channels


def then(first: JobCost, second: JobCost) -> JobCost:
    """Two phases of one job run one after the other: the larger memory, the work added up."""
    return JobCost(max(first.bytes, second.bytes), first.macs + second.macs, f"{first.sizes}, then {second.sizes}")


def forward_peak_values(model: LoadedModel) -> int:
    """Values alive at once in a forward pass without gradients, per image: a layer's input and
    output (the largest pair bounds it; the index pass reduces each output in its hook and frees it)."""
    sizes = [math.prod(layer.output_shape) for layer in model.layers]
    return 2 * max(sizes, default=0)


def check(limits: Limits, what: str, cost: JobCost, advice: str) -> None:
    """Refuse ``cost`` when it is above either budget (RESOURCE_EXHAUSTED naming the budget)."""
    if cost.bytes > limits.max_job_bytes:
        raise Overloaded(
            f"{what}: {cost.sizes} would hold about {cost.bytes:,} bytes, above this server's budget "
            f"max_job_bytes={limits.max_job_bytes:,} (--max-job-mb); {advice}"
        )
    if cost.macs > limits.max_job_macs:
        raise Overloaded(
            f"{what}: {cost.sizes} is about {cost.macs:,} multiply-adds, above this server's budget "
            f"max_job_macs={limits.max_job_macs:,} (--max-job-gmacs); {advice}"
        )


def index_cost(model: LoadedModel, images: int, widths: Sequence[int], units: int, k: int, batch: int) -> JobCost:
    """BuildIndex (and the index an Embedding builds first): one forward per image, per-image
    features of the layers (``widths``), top-k tables of ``units`` units, one batch's activations."""
    features = images * sum(widths) * FLOAT
    tables = units * k * 4 * FLOAT
    batch_values = min(batch, images) * forward_peak_values(model) * FLOAT
    return JobCost(
        features + tables + batch_values,
        images * forward_macs(model),
        f"indexing {images:,} images ({sum(widths):,} feature values each, {units:,} units x k={k})",
    )


def map_cost(points: int, width: int, method: str, pca_dims: int, iterations: int, perplexity: float) -> JobCost:
    """Embedding's map of ``points`` features of ``width``: the PCA, then (t-SNE) its iterations."""
    pca = pca_cost(points, width, 2 if method == "pca" else pca_dims)
    macs, memory = pca.flops, pca.bytes
    if method == "tsne":
        neighbours = min(points - 1, int(3 * perplexity))
        memory += points * (neighbours * 3 * 8 + pca_dims * 8 + 64)
        macs += iterations * points * (TSNE_WORK_PER_POINT + 2 * neighbours)
    return JobCost(memory, macs, f"a {method} map of {points:,} points of width {width:,}")


def neighbours_cost(points: int, width: int, queries: int) -> JobCost:
    """NearestNeighbors: the stored features read in, one distance per point and query."""
    return JobCost(
        points * width * FLOAT * 2 + points * queries * 8,
        points * width * queries,
        f"{queries:,} queries against {points:,} images of width {width:,}",
    )


def place_cost(model: LoadedModel, images: int, points: int) -> JobCost:
    """PlaceImages: one forward per image, then each image against the map's points."""
    return JobCost(
        images * (forward_peak_values(model) * FLOAT + points * 8 * 3),
        images * (forward_macs(model) + points * TSNE_WORK_PER_POINT),
        f"{images:,} image(s) placed on a map of {points:,} points",
    )


def projections_cost(model: LoadedModel, crops: int) -> JobCost:
    """TopActivations' projections: one guided backward (about two forwards) per crop."""
    return JobCost(
        activation_values(model) * FLOAT * 3,
        crops * 3 * forward_macs(model),
        f"{crops:,} projections (one backward pass each)",
    )


def attack_dataset_cost(
    model: LoadedModel, images: int, methods: Sequence[str], epsilons: int, steps: int, batch: int
) -> JobCost:
    """AttackDataset: per image and method, the curve's attacks at every epsilon and the minimal-
    epsilon search (DeepFool: its own passes), each step a forward and a backward (3 forwards)."""
    passes = 0
    for method in methods:
        if method.startswith("deepfool"):
            passes += DEEPFOOL_PASSES
        else:
            per_attack = 1 if method == "fgsm" else steps
            passes += (epsilons + SEARCH_ROUNDS) * per_attack
    return JobCost(
        min(batch, images) * activation_values(model) * FLOAT * 3,
        images * passes * 3 * forward_macs(model),
        f"{images:,} images x {len(methods)} method(s) x {epsilons} epsilon(s) x {steps} step(s)",
    )


__all__ = [
    "JobCost",
    "activation_values",
    "attack_dataset_cost",
    "check",
    "feature_width",
    "place_cost",
    "then",
    "forward_macs",
    "forward_peak_values",
    "index_cost",
    "map_cost",
    "neighbours_cost",
    "projections_cost",
]
