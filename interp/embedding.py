"""Embeddings: a layer's per-image features over a dataset projected to 2-D (PCA or t-SNE).

The lectures' "visualize embeddings" and the classic MNIST t-SNE picture (van der Maaten &
Hinton 2008): every dataset image's feature vector at one layer (from the activation index, so
the features are exactly those :mod:`interp.dataset.index` stores: linear layers as they are,
conv layers mean-pooled) is mapped to a point in the plane.

- ``pca``: the first two principal components (float64 covariance, eigen-decomposition; each
  component's sign fixed so that its largest loading is positive).
- ``tsne``: PCA to ``pca_dims`` (50) dimensions first, then openTSNE (Poličar et al. 2024;
  FFT-accelerated interpolation from 10,000 points, Linderman et al. 2019; Barnes-Hut below,
  openTSNE's "auto") with its own defaults: perplexity 30,
  250 early-exaggeration iterations (exaggeration 12), 500 iterations, learning rate N / exaggeration, PCA
  initialization, seeded. The KL divergence (the objective) is reported every
  :data:`REPORT_EVERY` iterations; cancellation is checked at the same points.
- placing new images on a t-SNE map: openTSNE's ``TSNEEmbedding.transform`` (each new point is
  optimized against the fixed map, its own affinities to the map's points at perplexity 5);
  on a PCA map the new point is simply projected.

Everything here is a pure function of arrays; where the features come from and where maps are
cached is the caller's business. Rendering helpers (scatter with a class legend, thumbnail atlas,
thumbnail sprite) return RGB uint8 arrays.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from interp.errors import Cancelled, InvalidInput
from interp.pca import Pca, check_features, fit_pca
from interp.progress import OnStep, ShouldStop, StepEvent

METHODS = ("tsne", "pca")
REPORT_EVERY = 10
"""t-SNE iterations between progress events (each carries the KL divergence; cancellation is checked there)."""
PLACE_NEIGHBORS = 10
"""Map points reported around each placed image."""


@dataclass(frozen=True)
class EmbeddingParams:
    """Parameters of a t-SNE map (a PCA map has none).

    Attributes:
        perplexity: t-SNE's effective number of neighbours (openTSNE default 30); must be below N / 3.
        iterations: optimization iterations after early exaggeration (openTSNE default 500).
        early_iterations: early-exaggeration iterations (openTSNE default 250).
        pca_dims: features are reduced to this many principal components before t-SNE (50).
        seed: openTSNE's ``random_state`` (nearest-neighbour index and initialization).
    """

    perplexity: float = 30.0
    iterations: int = 500
    early_iterations: int = 250
    pca_dims: int = 50
    seed: int = 0


TSNE_PARAMS = tuple(f.name for f in dataclasses.fields(EmbeddingParams))


def min_points(perplexity: float) -> int:
    """The fewest points a t-SNE map of this perplexity needs: perplexity < N / 3."""
    return int(math.floor(3 * perplexity)) + 1


def check_tsne(n: int, params: EmbeddingParams) -> None:
    """Refuse parameters openTSNE cannot work with, naming the bound (before any work)."""
    if not math.isfinite(params.perplexity) or params.perplexity <= 0:
        raise InvalidInput(f"perplexity must be a positive number, got {params.perplexity}", param="perplexity")
    if n < 4:
        raise InvalidInput(f"t-SNE needs at least 4 points, got {n}")
    if params.perplexity * 3 >= n:
        raise InvalidInput(
            f"perplexity {params.perplexity:g} must be below N / 3 = {n / 3:.4g} for N = {n} points "
            f"(lower the perplexity, or use at least {min_points(params.perplexity)} points)"
        )
    if params.iterations < 1 or params.early_iterations < 0:
        raise InvalidInput(
            f"iterations must be >= 1 and early_iterations >= 0, got {params.iterations}, {params.early_iterations}"
        )
    if params.pca_dims < 2:
        raise InvalidInput(f"pca_dims must be >= 2, got {params.pca_dims}", param="pca_dims")


@dataclass
class EmbeddingMap:
    """A finished map.

    Attributes:
        coordinates: (N, 2) float32 map positions (t-SNE: centred at the bounding box's middle).
        pca: the PCA the features went through (t-SNE: to ``pca_dims``; PCA map: 2 components).
        method: "tsne" or "pca"; params: the t-SNE parameters (None for PCA);
        kl_divergence: t-SNE's final objective (nan for PCA); threads: openTSNE's ``n_jobs``;
        seconds: wall time of the projection (features excluded).
    """

    coordinates: np.ndarray
    pca: Pca
    method: str
    params: EmbeddingParams | None
    kl_divergence: float
    threads: int
    seconds: float
    tsne: Any = None  # openTSNE.TSNEEmbedding (kept to place new points); None for PCA
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)


def embed(
    features: np.ndarray,
    method: str,
    params: EmbeddingParams,
    *,
    threads: int = 1,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> EmbeddingMap:
    """Project features (N, F) to 2-D.

    Progress: one event after the PCA (stage ``"pca"``), one after the nearest-neighbour
    affinities (``"affinities"``), then every :data:`REPORT_EVERY` t-SNE iterations
    (``"early exaggeration"`` then ``"optimization"``) with the KL divergence as the objective;
    steps count iterations (total = early_iterations + iterations), 0 before the iterations.

    Raises:
        InvalidInput: bad features or parameters (see :func:`check_tsne`).
        Cancelled: ``should_stop`` answered true (nothing is returned).
    """
    if method not in METHODS:
        raise InvalidInput(f"unknown embedding method {method!r}; valid: {', '.join(METHODS)}")
    check_features(features)
    n = features.shape[0]
    start = time.perf_counter()
    total = params.early_iterations + params.iterations if method == "tsne" else 1

    def report(step: int, objective: float, stage: str) -> None:
        if on_step is not None:
            on_step(StepEvent(step, total, objective, time.perf_counter() - start, stage))

    def check(where: str) -> None:
        if should_stop is not None and should_stop():
            raise Cancelled(f"embedding cancelled {where}")

    if method == "pca":
        if n < 2:
            raise InvalidInput(f"a PCA map needs at least 2 points, got {n}")
        pca = fit_pca(features, 2, should_stop=should_stop)
        coords = pca.project(features)
        if coords.shape[1] < 2:  # one feature only: the second axis is 0
            coords = np.concatenate([coords, np.zeros((n, 2 - coords.shape[1]))], axis=1)
        report(1, float(pca.explained_variance_ratio.sum()), "pca")
        return EmbeddingMap(
            coordinates=coords.astype(np.float32),
            pca=pca,
            method="pca",
            params=None,
            kl_divergence=math.nan,
            threads=threads,
            seconds=time.perf_counter() - start,
        )

    check_tsne(n, params)
    import openTSNE  # imported on first use: the PCA-only path and the renderers do not need it

    pca = fit_pca(features, params.pca_dims, should_stop=should_stop)
    reduced = pca.project(features)
    report(0, float(pca.explained_variance_ratio.sum()), "pca")
    check("after the PCA")
    tsne = openTSNE.TSNE(
        perplexity=params.perplexity,
        early_exaggeration_iter=params.early_iterations,
        n_iter=params.iterations,
        n_jobs=threads,
        random_state=params.seed,
    )
    embedding = tsne.prepare_initial(reduced)
    report(0, math.nan, "affinities")
    check("after the affinities")
    done = 0

    def phase(n_iter: int, stage: str, **kwargs: Any) -> None:
        nonlocal done
        if n_iter <= 0:
            return
        base = done

        def callback(iteration: int, error: float, _: Any) -> bool:
            nonlocal done
            done = base + iteration
            report(done, float(error), stage)
            return bool(should_stop is not None and should_stop())

        try:
            embedding.optimize(
                n_iter=n_iter,
                inplace=True,
                propagate_exception=True,
                callbacks=[callback],
                callbacks_every_iters=REPORT_EVERY,
                **kwargs,
            )
        except openTSNE.tsne.OptimizationInterrupt:
            raise Cancelled(f"t-SNE cancelled at iteration {done} of {total}") from None
        done = base + n_iter
        if n_iter % REPORT_EVERY:
            report(done, float(embedding.kl_divergence), stage)

    # exactly TSNE.fit's two calls (same momentum and exaggeration), with callbacks
    phase(params.early_iterations, "early exaggeration", exaggeration=tsne.early_exaggeration,
          momentum=tsne.initial_momentum)  # fmt: skip
    phase(params.iterations, "optimization", exaggeration=tsne.exaggeration, momentum=tsne.final_momentum)
    # Centre at the bounding box's middle, as openTSNE's transform does to the map it places into:
    # the coordinates returned now stay those of the cached map after any placement.
    embedding -= (np.max(embedding, axis=0) + np.min(embedding, axis=0)) / 2
    return EmbeddingMap(
        coordinates=np.asarray(embedding, dtype=np.float32).copy(),
        pca=pca,
        method="tsne",
        params=params,
        kl_divergence=float(embedding.kl_divergence),
        threads=threads,
        seconds=time.perf_counter() - start,
        tsne=embedding,
    )


@dataclass(frozen=True)
class Placement:
    """New points on a map: (Q, 2) coordinates and, per point, the nearest map points (Q, k)."""

    coordinates: np.ndarray
    neighbor_ids: np.ndarray  # (Q, k) row numbers into the map's points, nearest first
    neighbor_distances: np.ndarray  # (Q, k) map-plane distances


def place(emap: EmbeddingMap, features: np.ndarray, k: int = PLACE_NEIGHBORS) -> Placement:
    """Place new feature vectors (Q, F) on ``emap`` (t-SNE: openTSNE's transform; PCA: projection)."""
    check_features(features, emap.pca.mean.shape[0])
    reduced = emap.pca.project(features)
    if emap.method == "pca":
        coords = reduced if reduced.shape[1] == 2 else np.pad(reduced, ((0, 0), (0, 2 - reduced.shape[1])))
    else:
        with emap._lock:  # transform re-centres the map in place (a no-op on ours) and is not thread-safe
            coords = np.asarray(emap.tsne.transform(reduced), dtype=np.float64)
    coords = coords.astype(np.float32)
    ids, dist = nearest_points(emap.coordinates, coords, k)
    return Placement(coordinates=coords, neighbor_ids=ids, neighbor_distances=dist)


def nearest_points(points: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of ``points`` (N, 2) to each query (Q, 2), ties by smaller row: ids, distances."""
    k = min(k, points.shape[0])
    p, q = points.astype(np.float64), queries.astype(np.float64)
    d = np.sqrt(((q[:, None, :] - p[None, :, :]) ** 2).sum(axis=2))  # (Q, N): Q is small
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


# -- pictures -----------------------------------------------------------------------------------

PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
"""Class colours (RGB): matplotlib's tab10, then repeated darker."""
UNLABELLED = (160, 160, 160)


def class_colour(label: int) -> tuple[int, int, int]:
    if label < 0:
        return UNLABELLED
    r, g, b = PALETTE[label % len(PALETTE)]
    shade = 0.6 ** (label // len(PALETTE))
    return int(r * shade), int(g * shade), int(b * shade)


def _to_pixels(coords: np.ndarray, size: int, margin: int) -> np.ndarray:
    """Map coordinates into a size x size square (aspect kept), as integer pixel positions (x, y)."""
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = float(max(hi[0] - lo[0], hi[1] - lo[1])) or 1.0
    centre = (lo + hi) / 2
    scale = (size - 2 * margin) / span
    xy = (coords - centre) * scale + size / 2
    xy[:, 1] = size - xy[:, 1]  # y up
    return np.round(xy).astype(np.int64)


def scatter_image(
    coords: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    size: int = 800,
    title: str = "",
    marks: np.ndarray | None = None,
) -> np.ndarray:
    """An RGB uint8 scatter of (N, 2) points coloured by class, with a legend at the right.

    ``marks`` (Q, 2): extra positions (placed images) drawn on top as black rings with a cross.
    """
    if coords.ndim != 2 or coords.shape[1] != 2 or labels.shape != (coords.shape[0],):
        raise InvalidInput(f"expected (N, 2) coordinates and (N,) labels, got {coords.shape} and {labels.shape}")
    marks = np.zeros((0, 2)) if marks is None else np.asarray(marks, dtype=np.float64).reshape(-1, 2)
    present = sorted({int(v) for v in np.unique(labels)})
    names = [classes[v] if 0 <= v < len(classes) else ("unlabelled" if v < 0 else str(v)) for v in present]
    legend_w = 30 + 11 * max((len(n) for n in names), default=4)  # text readable when the page shrinks the plot
    image = np.full((size, size + legend_w, 3), 255, dtype=np.uint8)
    n = coords.shape[0]
    xy = _to_pixels(np.concatenate([coords.astype(np.float64), marks]), size, 12)
    radius = 1 if n > 5000 else 2
    rng = np.random.default_rng(0)  # draw in a fixed shuffled order: no class always on top
    for i in rng.permutation(n):
        cv2.circle(image, (int(xy[i, 0]), int(xy[i, 1])), radius, class_colour(int(labels[i])), -1, cv2.LINE_AA)
    for x, y in xy[n:]:
        cv2.circle(image, (int(x), int(y)), 7, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.drawMarker(image, (int(x), int(y)), (0, 0, 0), cv2.MARKER_CROSS, 10, 1)
    for row, (value, name) in enumerate(zip(present, names, strict=True)):
        y = 30 + row * 26
        cv2.circle(image, (size + 10, y - 6), 7, class_colour(value), -1, cv2.LINE_AA)
        cv2.putText(image, name, (size + 22, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    if title:
        cv2.putText(image, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def atlas_image(coords: np.ndarray, thumbnails: np.ndarray, *, size: int = 1600) -> np.ndarray:
    """The classic t-SNE picture: thumbnails (M, h, w) or (M, h, w, 3) uint8 drawn at their points.

    The plane is cut into cells of one thumbnail; each cell shows the point nearest its centre
    (points 0..M-1 of ``coords``; later points have no thumbnail). White background.
    """
    m = thumbnails.shape[0]
    if m == 0 or coords.shape[0] < m:
        raise InvalidInput(f"expected at most {coords.shape[0]} thumbnails and at least one, got {m}")
    h, w = thumbnails.shape[1:3]
    rgb = thumbnails if thumbnails.ndim == 4 else np.repeat(thumbnails[..., None], 3, axis=3)
    xy = _to_pixels(coords[:m].astype(np.float64), size, max(h, w)).astype(np.float64)
    cols, rows = size // w, size // h
    cx = np.clip((xy[:, 0] // w).astype(np.int64), 0, cols - 1)
    cy = np.clip((xy[:, 1] // h).astype(np.int64), 0, rows - 1)
    cell = cy * cols + cx
    off = np.hypot(xy[:, 0] - (cx + 0.5) * w, xy[:, 1] - (cy + 0.5) * h)
    order = np.lexsort((np.arange(m), off, cell))  # per cell: nearest centre first, then smaller id
    first = np.ones(m, dtype=bool)
    first[1:] = cell[order][1:] != cell[order][:-1]
    image = np.full((rows * h, cols * w, 3), 255, dtype=np.uint8)
    for i in order[first]:
        y0, x0 = int(cy[i]) * h, int(cx[i]) * w
        image[y0 : y0 + h, x0 : x0 + w] = rgb[i]
    return image


def sprite(thumbnails: np.ndarray, columns: int) -> np.ndarray:
    """Thumbnails (M, h, w[, 3]) tiled row-major in ``columns`` columns (thumbnail i at row i // columns)."""
    m, h, w = thumbnails.shape[:3]
    rows = max(1, math.ceil(m / columns))
    shape = (rows * h, columns * w) + thumbnails.shape[3:]
    out = np.zeros(shape, dtype=np.uint8)
    for i in range(m):
        r, c = divmod(i, columns)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = thumbnails[i]
    return out


__all__ = [
    "METHODS",
    "EmbeddingParams",
    "EmbeddingMap",
    "Placement",
    "atlas_image",
    "check_tsne",
    "embed",
    "nearest_points",
    "place",
    "scatter_image",
    "sprite",
]
