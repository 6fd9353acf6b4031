"""PCA by the route its sizes call for: every route against an SVD oracle, cancellation between blocks."""

from __future__ import annotations

import numpy as np
import pytest

from interp import pca as pca_module
from interp.errors import Cancelled
from interp.pca import fit_pca, pca_cost


def _oracle(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Components (unit rows, up to sign) and explained variance ratios from numpy's full SVD."""
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[:k], (s**2 / (s**2).sum())[:k]


def _decaying(n: int, f: int, seed: int = 0) -> np.ndarray:
    """Data whose spectrum decays geometrically (as real features' does): a well-separated top."""
    rng = np.random.default_rng(seed)
    rank = min(n, f)
    left = np.linalg.qr(rng.standard_normal((n, rank)))[0]
    right = np.linalg.qr(rng.standard_normal((f, rank)))[0]
    return (left * 0.7 ** np.arange(rank)) @ right.T * 100 + rng.standard_normal(f)


def _agree(pca: pca_module.Pca, x: np.ndarray, k: int, tol: float) -> None:
    components, ratios = _oracle(x, k)
    for ours, theirs in zip(pca.components, components, strict=True):
        assert abs(abs(float(ours @ theirs)) - 1.0) < tol
    np.testing.assert_allclose(pca.explained_variance_ratio, ratios, rtol=tol)
    largest = np.abs(pca.components).argmax(axis=1)
    assert (pca.components[np.arange(k), largest] > 0).all()


def test_wide_features_take_the_gram_route_and_equal_the_svd() -> None:
    x = _decaying(6, 9216)  # a 6-image map of AlexNet's flatten layer
    pca = fit_pca(x, 2)
    assert pca.route == "gram" and pca.components.shape == (2, 9216)
    _agree(pca, x, 2, 1e-9)
    np.testing.assert_allclose(pca.project(x), (x - x.mean(0)) @ pca.components.T, rtol=1e-12)


def test_tall_features_take_the_covariance_route() -> None:
    x = _decaying(300, 40)
    pca = fit_pca(x, 5)
    assert pca.route == "covariance"
    _agree(pca, x, 5, 1e-9)


def test_large_on_both_sides_takes_the_randomized_route_within_1e_4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pca_module, "EXACT_LIMIT", 64)
    x = _decaying(400, 500)
    pca = fit_pca(x, 5)
    assert pca.route == "randomized"
    _agree(pca, x, 5, 1e-4)
    assert np.array_equal(fit_pca(x, 5).components, pca.components)  # seeded: the same map twice


@pytest.mark.parametrize(("n", "f", "exact"), [(6, 9216, 1), (300, 40, 1), (400, 500, 0)])
def test_work_is_cut_into_blocks_and_each_block_asks_whether_to_stop(
    monkeypatch: pytest.MonkeyPatch, n: int, f: int, exact: int
) -> None:
    monkeypatch.setattr(pca_module, "BLOCK_FLOPS", 10**5)
    if not exact:
        monkeypatch.setattr(pca_module, "EXACT_LIMIT", 64)
    x = _decaying(n, f)
    asked = []
    fit_pca(x, 5, should_stop=lambda: bool(asked.append(1)))
    # at least one question per block of the largest product (each block at most 1e5 multiply-adds)
    inner = min(n, f) if exact else 5 + pca_module.OVERSAMPLING
    assert len(asked) >= n * f * inner // 10**5
    for stop_at in (1, len(asked) // 2, len(asked)):
        calls: list[int] = []

        def stop(stop_at: int = stop_at, calls: list[int] = calls) -> bool:
            calls.append(1)
            return len(calls) >= stop_at

        with pytest.raises(Cancelled, match="PCA cancelled"):
            fit_pca(x, 5, should_stop=stop)
        assert len(calls) == stop_at  # nothing ran after the answer


def test_cost_is_known_before_any_work() -> None:
    alexnet = pca_cost(6, 9216, 2)
    assert alexnet.route == "gram" and alexnet.bytes < 10**6 and alexnet.flops < 10**7
    vgg = pca_cost(64, 25088, 50)
    assert vgg.route == "gram" and vgg.bytes < 20 * 10**6
    many = pca_cost(50_000, 25088, 50)
    assert many.route == "randomized" and many.bytes > 8 * 50_000 * 25088
    cov = pca_cost(10_000, 84, 50)
    assert cov.route == "covariance" and cov.flops < 10**8
