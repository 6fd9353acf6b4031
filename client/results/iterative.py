"""Results of the streamed methods: progress, filter visualization, DeepDream, interpolation, robustness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from client.results._build import reply
from client.results.base import Result, _SavesImages, _ShortRepr, _Stamped, eps_name
from client.results.generated import generated
from client.results.models import Prediction
from protos import interp_pb2 as pb


@reply(pb.Progress)
@dataclass(frozen=True, repr=False)
class ProgressEvent(_ShortRepr):
    """One progress report of a streaming method.

    Attributes:
        step: 1-based, counted over the whole run.
        total_steps: steps the whole run will take.
        objective: the value being optimized at this step (method-specific sign).
        elapsed_s: seconds since the server started the run.
        stage: e.g. ``"octave 2/4"`` or ``"alpha 0.5"`` (may be empty).
        preview_png: the latest low-resolution preview since the previous event, or None.
        queued_position: > 0 while the call waits in the server's queue (1 = next); 0 otherwise.
        preview_step: the step ``preview_png`` shows (``step``, or an earlier step whose event the
            server coalesced); 0 without a preview.
    """

    step: int
    total_steps: int
    objective: float
    elapsed_s: float
    stage: str
    preview_png: bytes | None
    queued_position: int = 0
    preview_step: int = 0

    @property
    def queued(self) -> bool:
        return self.queued_position > 0


@reply(pb.VisualizeFilterResult)
@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class FilterVisualization(_Stamped, _SavesImages):
    """Inputs that maximize channels of a layer: ``images`` (N, H, W, C) in [0, 1], one PNG per channel."""

    layer: str
    channels: tuple[int, ...]
    images: np.ndarray | None
    pngs: tuple[bytes, ...]
    grid_png: bytes
    activations: tuple[float, ...]  # final objective per channel
    params: dict[str, Any]
    from_atlas: bool = False  # answered from the server's precomputed atlas (interp-atlas), not computed now

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("grid", self.grid_png)] + [
            (f"channel_{channel:04d}", png) for channel, png in zip(self.channels, self.pngs, strict=False)
        ]


@reply(pb.LayerGain)
@dataclass(frozen=True)
class LayerGain(Result):
    """L2 norm of a layer's activation on the input and on the dreamed image."""

    layer: str
    norm_before: float
    norm_after: float

    @property
    def ratio(self) -> float:
        return self.norm_after / self.norm_before if self.norm_before else float("inf")


class _Dream(_SavesImages):
    """What DreamResult adds to the fields of its reply: the names of its PNGs."""

    png: bytes
    input_png: bytes

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("dream", self.png), ("input", self.input_png)]


DreamResult: Any = generated(pb.DeepDreamResult.DESCRIPTOR, name="DreamResult", base=_Dream)
"""A DeepDream image (H, W, C) in [0, 1] with its ``png``, per-layer ``gains``, the ``input`` echo
and the resolved ``params``."""


@reply(pb.AlphaResult)
@dataclass(frozen=True, eq=False, repr=False)
class AlphaResult(_ShortRepr):
    """The reconstruction at one alpha: image (H, W, C) in [0, 1], relative feature error, prediction."""

    alpha: float
    image: np.ndarray | None
    png: bytes
    feature_error: float
    prediction: Prediction | None


@reply(pb.InterpolateFeaturesResult)
@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class InterpolationResult(_Stamped, _SavesImages):
    """Deep feature interpolation: one image per alpha, in request order."""

    layers: tuple[str, ...]
    results: tuple[AlphaResult, ...]
    alphas: tuple[float, ...]
    input: np.ndarray | None
    input_png: bytes
    params: dict[str, Any]

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [(f"alpha_{eps_name(r.alpha)}", r.png) for r in self.results] + [("input", self.input_png)]


@reply(pb.MethodCurve)
@dataclass(frozen=True, eq=False, repr=False)
class MethodCurve(_ShortRepr):
    """One method over the dataset: accuracy per epsilon and each image's minimal perturbation.

    ``minimal`` (N,) float32: k*/255 (fgsm/bim/pgd) or DeepFool's 8-bit norm; 0 for a clean error,
    inf where nothing was found. ``levels``: the 8-bit radius used per epsilon (L-inf attacks).
    """

    method: str
    accuracy: tuple[float, ...]
    levels: tuple[int, ...]
    minimal: np.ndarray | None
    median_minimal: float
    non_monotone: int
    runs: int
    not_found: int


class _AttackDataset(_SavesImages):
    """What AttackDatasetResult adds to the fields of its reply: ``precomputed``'s default, its PNG's name."""

    curve_png: bytes
    precomputed: bool = False

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("curve", self.curve_png)]


AttackDatasetResult: Any = generated(pb.AttackDatasetResult.DESCRIPTOR, base=_AttackDataset)
"""Robust accuracy vs epsilon over the first ``images`` of a dataset, one curve per method.

``clean_accuracy``, ``epsilons``, ``curves`` (one :class:`MethodCurve` per method), ``curve_png``,
``true_labels``, ``norm`` ("linf" or "l2": the epsilon axis), ``skipped`` (unreadable or
unconvertible images among the first ``limit``, not attacked), ``precomputed`` (answered from
a result interp-robustness stored offline), ``params``.
"""
AtlasLayer: Any = generated(pb.AtlasLayer.DESCRIPTOR)
"""A layer's stored atlas: layer, params (interp-atlas's resolved VisualizeFilter parameters), batch,
dataset, units stored, batches (each an ``AtlasBatch`` of channels; only when the call named the layer)."""
StoredRobustness: Any = generated(pb.StoredRobustness.DESCRIPTOR)
"""One interp-robustness result: result (an :class:`AttackDatasetResult`, precomputed), limit, engine."""
PrecomputedResult: Any = generated(pb.ListPrecomputedResponse.DESCRIPTOR, name="PrecomputedResult")
"""What the offline jobs stored for a model: atlas (AtlasLayer per layer), robustness (StoredRobustness), stamp."""
