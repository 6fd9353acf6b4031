"""Nearest neighbours in an index's per-image features: exact distances, ties by smaller id."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from interp.dataset.index import index_batch
from interp.errors import InvalidInput

METRICS = ("cosine", "l2")


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
        return (1.0 - qn @ fn.T).clamp(0.0, 2.0).float()  # in [0, 2]; rounding gave -2e-16 for an image itself
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
