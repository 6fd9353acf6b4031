"""Principal components of an (N, F) feature matrix, at a cost that scales with what it is given.

Three routes, chosen from N and F before any work (:func:`pca_cost` says which and what it costs):

- ``covariance``: F <= N and F small: eigen-decomposition of the F x F covariance.
- ``gram``: N < F and N small: eigen-decomposition of the N x N Gram matrix ``C C^T`` of the centred
  data ``C``; the components are ``C^T u / |C^T u|``. Same eigenvalues and, up to sign, the same
  components as the covariance route (exactly, in exact arithmetic): a 6-image map of a
  25,088-wide layer costs a 6 x 6 eigenproblem instead of a 25,088 x 25,088 one.
- ``randomized``: both N and F above :data:`EXACT_LIMIT`: a randomized range finder with power
  iterations (Halko, Martinsson & Tropp 2011, Algorithm 4.4) and an exact decomposition of the
  small projected matrix; seeded, so the same features give the same map.

Every large product is computed in row blocks of at most :data:`BLOCK_FLOPS` multiply-adds, and
``should_stop`` is asked between blocks, so no single step a caller cannot interrupt runs long
(about 1 s on a 2-core machine). Each component's sign is fixed so that its largest loading is
positive, whatever the route.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from interp.errors import Cancelled, InvalidInput
from interp.progress import ShouldStop

EXACT_LIMIT = 1024
"""Largest side of the eigenproblem solved exactly (LAPACK's ``syevr`` for the top components only:
about 0.3 s for 1,024 on an idle 2-core machine)."""
BLOCK_FLOPS = 5 * 10**9
"""Multiply-adds per uninterruptible block of a product (well under 1 s at 2 cores in float64)."""
ELEMENTWISE_BLOCK = 1 << 22
"""Values per block of the element-wise passes (conversion, mean, centring): 32 MB of float64."""
OVERSAMPLING = 10
"""Extra random directions of the randomized route beyond the components kept."""
POWER_ITERATIONS = 6
"""Power iterations of the randomized route (each: one product with C and one with C^T)."""


@dataclass(frozen=True)
class Pca:
    """A fitted PCA: ``project(x) = (x - mean) @ components.T``.

    Attributes:
        mean: (F,) float64; components: (K, F) float64, unit rows, largest loading positive;
        explained_variance_ratio: (K,) share of the total variance of each component.
        route: ``covariance``, ``gram`` or ``randomized`` (see the module docstring).
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    route: str = "covariance"

    def project(self, x: np.ndarray) -> np.ndarray:
        check_features(x, self.mean.shape[0])
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T


@dataclass(frozen=True)
class PcaCost:
    """What :func:`fit_pca` will use for N x F features, before it starts.

    Attributes:
        route: the route it takes; bytes: peak working memory (the float64 centred copy included);
        flops: multiply-adds of the products and the eigen-decomposition.
    """

    route: str
    bytes: int
    flops: int


def kept_components(n: int, f: int, dims: int) -> int:
    """Components a PCA to ``dims`` keeps for N points of width F (fewer when F or N - 1 is smaller)."""
    return max(1, min(dims, f, n - 1))


def pca_cost(n: int, f: int, dims: int) -> PcaCost:
    """The route, peak memory and work of :func:`fit_pca` on N x F features (no work done)."""
    data = 8 * n * f  # the float64 centred copy
    small = min(n, f)
    if small <= EXACT_LIMIT:
        route = "covariance" if f <= n else "gram"
        # the product C^T C or C C^T, then the top eigenpairs (~10 m^3) and, for gram, C^T u
        flops = n * f * small + 10 * small**3 + (n * f * small if route == "gram" else 0)
        return PcaCost(route, data + 3 * 8 * small * small, flops)
    q = kept_components(n, f, dims) + OVERSAMPLING
    flops = (2 * POWER_ITERATIONS + 3) * n * f * q + 10 * q**3
    return PcaCost("randomized", data + 8 * q * (2 * n + 2 * f), flops)


def check_features(x: np.ndarray, width: int | None = None) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[0] < 1:
        shape = getattr(x, "shape", type(x).__name__)
        raise InvalidInput(f"expected (N, F) features with N >= 1, got {shape}")
    if width is not None and x.shape[1] != width:
        raise InvalidInput(f"expected features of width {width}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidInput("features contain NaN or infinite values")


def fit_pca(x: np.ndarray, dims: int, *, should_stop: ShouldStop | None = None) -> Pca:
    """The top ``dims`` principal components of x (N, F), F >= 1 (fewer when F or N - 1 is smaller).

    Raises:
        InvalidInput: x is not a finite (N, F) array, or dims < 1.
        Cancelled: ``should_stop`` answered true between two blocks of work.
    """
    check_features(x)
    if dims < 1:
        raise InvalidInput(f"pca dims must be >= 1, got {dims}")
    n, f = x.shape
    keep = kept_components(n, f, dims)
    route = pca_cost(n, f, dims).route
    centred, mean, total = _centred(x, should_stop)
    scale = max(1, n - 1)
    total /= scale  # the trace of the covariance
    if route == "covariance":
        values, vectors = _top_eigen(_gram(centred.T, should_stop) / scale, keep)
    elif route == "gram":
        values, left = _top_eigen(_gram(centred, should_stop) / scale, keep)
        vectors = _times(centred.T, left, should_stop)  # C^T u: (F, K), norm sqrt(scale * value)
        norms = np.linalg.norm(vectors, axis=0)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
    else:
        values, vectors = _randomized(centred, keep, scale, should_stop)
    components = np.ascontiguousarray(vectors.T)
    signs = np.sign(components[np.arange(keep), np.abs(components).argmax(axis=1)])
    components *= np.where(signs == 0, 1.0, signs)[:, None]
    ratio = np.clip(values, 0, None) / total if total > 0 else np.zeros(keep)
    return Pca(mean=mean, components=components, explained_variance_ratio=ratio, route=route)


def _centred(x: np.ndarray, should_stop: ShouldStop | None) -> tuple[np.ndarray, np.ndarray, float]:
    """(x - mean as float64, mean, sum of squares of the centred values), in row blocks."""
    n, f = x.shape
    step = max(1, ELEMENTWISE_BLOCK // max(1, f))
    data = np.empty((n, f))
    total = np.zeros(f)
    for start in range(0, n, step):
        _check(should_stop, "while reading the features")
        block = data[start : start + step] = x[start : start + step]
        total += block.sum(axis=0)
    mean = total / n
    squares = 0.0
    for start in range(0, n, step):
        _check(should_stop, "while centring")
        block = data[start : start + step]
        block -= mean
        squares += float(np.einsum("ij,ij->", block, block))
    return data, mean, squares


def _check(should_stop: ShouldStop | None, where: str) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled(f"PCA cancelled {where}")


def _rows_per_block(rows: int, cost_per_row: int) -> int:
    return max(1, min(rows, BLOCK_FLOPS // max(1, cost_per_row)))


def _gram(a: np.ndarray, should_stop: ShouldStop | None) -> np.ndarray:
    """``a @ a.T`` for a (M, K), in blocks of rows of the result."""
    m, k = a.shape
    out = np.empty((m, m))
    step = _rows_per_block(m, m * k)
    for start in range(0, m, step):
        _check(should_stop, "while forming the Gram matrix")
        out[start : start + step] = a[start : start + step] @ a.T
    return out


def _times(a: np.ndarray, b: np.ndarray, should_stop: ShouldStop | None) -> np.ndarray:
    """``a @ b`` in blocks of rows of ``a``."""
    out = np.empty((a.shape[0], b.shape[1]))
    step = _rows_per_block(a.shape[0], a.shape[1] * b.shape[1])
    for start in range(0, a.shape[0], step):
        _check(should_stop, "during a product")
        out[start : start + step] = a[start : start + step] @ b
    return out


def _top_eigen(symmetric: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``keep`` largest eigenpairs, largest first (only those are computed)."""
    m = symmetric.shape[0]
    values, vectors = scipy.linalg.eigh(symmetric, subset_by_index=[m - keep, m - 1], driver="evr")  # ascending
    return values[::-1], vectors[:, ::-1]


def _orthonormal(y: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(y)
    return q


def _randomized(
    centred: np.ndarray, keep: int, scale: int, should_stop: ShouldStop | None
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``keep`` eigenpairs of the covariance by a seeded randomized range finder."""
    n, f = centred.shape
    q = min(keep + OVERSAMPLING, n, f)
    omega = np.random.default_rng(0).standard_normal((f, q))
    basis = _orthonormal(_times(centred, omega, should_stop))  # (N, q), the range of C
    transposed = centred.T
    for _ in range(POWER_ITERATIONS):
        basis = _orthonormal(_times(transposed, basis, should_stop))  # (F, q)
        basis = _orthonormal(_times(centred, basis, should_stop))  # (N, q)
    small = _times(transposed, basis, should_stop).T  # B = Q^T C: (q, F)
    _check(should_stop, "before the small decomposition")
    _, singular, right = np.linalg.svd(small, full_matrices=False)
    values = singular[:keep] ** 2 / scale
    return values, right[:keep].T
