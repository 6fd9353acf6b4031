"""Evaluation-only measures of an embedding map, used by benchmarks/eval_embedding.py and the
tests (the service never computes them)."""

from __future__ import annotations

import numpy as np


def neighbour_accuracy(coords: np.ndarray, labels: np.ndarray, k: int = 10, folds: int = 5, seed: int = 0) -> float:
    """k-NN classification accuracy in the map, ``folds``-fold cross-validated (the issue's quality measure)."""
    n = coords.shape[0]
    order = np.random.default_rng(seed).permutation(n)
    correct = 0
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        ids, _ = knn(coords[train], coords[test], k)
        votes = labels[train][ids]
        predicted = np.array([np.bincount(v[v >= 0], minlength=1).argmax() for v in votes])
        correct += int((predicted == labels[test]).sum())
    return correct / n


def knn(points: np.ndarray, queries: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of ``points`` (N, D) to each query (Q, D), Euclidean, in chunks of queries: ids, distances."""
    ids, dists = [], []
    p = points.astype(np.float64)
    pn = (p * p).sum(1)
    for s in range(0, queries.shape[0], chunk):
        q = queries[s : s + chunk].astype(np.float64)
        d = (q * q).sum(1)[:, None] - 2 * q @ p.T + pn[None, :]
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        dd = np.take_along_axis(d, part, axis=1)
        o = np.argsort(dd, axis=1, kind="stable")
        ids.append(np.take_along_axis(part, o, axis=1))
        dists.append(np.sqrt(np.clip(np.take_along_axis(dd, o, axis=1), 0, None)))
    return np.concatenate(ids), np.concatenate(dists)


def trust(high: np.ndarray, low: np.ndarray, sample: int = 3000, seed: int = 0) -> float:
    """scikit-learn's trustworthiness (10 neighbours) of the map ``low`` of ``high``, on a seeded sample of rows."""
    from sklearn.manifold import trustworthiness

    rows = np.random.default_rng(seed).choice(len(high), size=min(sample, len(high)), replace=False)
    return float(trustworthiness(high[rows].astype(np.float64), low[rows].astype(np.float64), n_neighbors=10))
