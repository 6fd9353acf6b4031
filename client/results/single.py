"""Results of the single-pass methods: classify, activations, kernels, saliency, attacks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from client.results._build import arrays, image, reply
from client.results._build import stamp as stamp_fields
from client.results.base import _SavesImages, _ShortRepr, _Stamped, eps_name
from client.results.generated import generated
from client.results.models import Prediction
from protos import interp_pb2 as pb


@reply(pb.ClassifyResponse)
@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ClassifyResult(_Stamped, _SavesImages):
    """Top-k predictions (best first), raw logits (num_classes,) and the preprocessed input (H, W, C)."""

    predictions: tuple[Prediction, ...]
    logits: np.ndarray | None
    input: np.ndarray | None
    input_png: bytes

    @property
    def top(self) -> Prediction:
        """The best prediction."""
        return self.predictions[0]

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("input", self.input_png)]

    @classmethod
    def from_items(cls, items: Sequence[pb.ClassifyResponse], stamp: pb.ModelStamp) -> list[ClassifyResult]:
        """The answers of a many-image call (its items without an error) under the call's ``stamp``.

        Equal to ``from_proto`` of each item with ``stamp`` copied in, in about a third of the time
        (256 LeNet answers: about 3 ms instead of 9): no stamp copies, the logits decoded with one
        copy, and the frozen results filled without their per-field ``__init__`` (a quarter of it).
        """
        common = stamp_fields(stamp)
        new = object.__new__  # instances filled without __init__: see check_fillable
        out: list[ClassifyResult] = []
        for m, logits in zip(items, arrays([m.logits for m in items]), strict=True):
            predictions = []
            for p in m.predictions:
                prediction = new(Prediction)
                prediction.__dict__.update(index=p.index, label=p.label, probability=p.probability)
                predictions.append(prediction)
            echo, png = (image(m.input.tensor), m.input.png) if m.HasField("input") else (None, b"")
            result = new(cls)
            result.__dict__.update(common, predictions=tuple(predictions), logits=logits, input=echo, input_png=png)
            out.append(result)
        return out


@reply(pb.LayerActivation)
@dataclass(frozen=True, eq=False, repr=False)
class LayerActivation(_ShortRepr):
    """One layer's activation: (C, H, W) or (F,) float32 (None if tensors were not requested)."""

    layer: str  # resolved module path
    requested: str  # the name as requested (alias or path)
    activation: np.ndarray | None
    channel_mean: np.ndarray | None  # (C,)
    channel_max: np.ndarray | None  # (C,)
    top_channels: tuple[int, ...]
    grid_png: bytes


@reply(pb.ActivationsResponse)
@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ActivationsResult(_Stamped, _SavesImages):
    """Activations of several layers from one forward pass."""

    input: np.ndarray | None
    input_png: bytes
    layers: tuple[LayerActivation, ...]
    top_k: int
    prediction: Prediction | None  # set only when the forward pass reached the classifier

    def __getitem__(self, name: str) -> LayerActivation:
        """A layer's activation by the name requested or its resolved module path."""
        for layer in self.layers:
            if name in (layer.requested, layer.layer):
                return layer
        have = ", ".join(layer.requested for layer in self.layers)
        raise KeyError(f"no layer {name!r} in this result; have: {have}")

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [(layer.requested or layer.layer, layer.grid_png) for layer in self.layers] + [("input", self.input_png)]


@reply(pb.KernelsResponse)
@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class KernelsResult(_Stamped, _SavesImages):
    """A conv layer's weights (O, I, kH, kW) float32, bias (O,) or None, and the rendered grid."""

    layer: str
    weights: np.ndarray | None
    bias: np.ndarray | None
    rgb: bool  # first layer of an RGB model: kernels rendered as colour patches
    grid_png: bytes

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("kernels", self.grid_png)]

    @staticmethod
    def _fix(values: dict[str, Any]) -> dict[str, Any]:
        bias = values["bias"]  # a layer without bias sends an empty tensor
        return {**values, "bias": bias if bias is not None and bias.size else None}


@reply(pb.SaliencyResponse)
@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class SaliencyResult(_Stamped, _SavesImages):
    """A saliency map (H, W) at input resolution, the raw attribution, and heatmap/overlay PNGs."""

    method: str
    target: Prediction | None  # the class explained, with its probability
    map: np.ndarray | None
    attribution: np.ndarray | None  # (C, H, W); grad_cam: (1, h, w)
    heatmap_png: bytes
    overlay_png: bytes
    input: np.ndarray | None
    input_png: bytes
    params: dict[str, Any]

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("overlay", self.overlay_png), ("heatmap", self.heatmap_png), ("input", self.input_png)]


AttackOutcome: Any = generated(pb.AttackOutcome.DESCRIPTOR)
"""The attack at one epsilon: epsilon, adversarial (H, W, C, 8-bit quantized, as its PNG),
adversarial_png, perturbation_png (amplified difference, grey = 0), prediction (on the quantized
adversarial image), success, linf, l2, step_size."""


@reply(pb.AttackResponse)
@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class AttackResult(_Stamped, _SavesImages):
    """An FGSM/BIM/PGD attack: the clean prediction and one outcome per epsilon, in request order."""

    method: str
    original: Prediction | None
    target: Prediction | None  # targeted attacks: the goal class
    targeted: bool
    outcomes: tuple[AttackOutcome, ...]
    input: np.ndarray | None
    input_png: bytes
    params: dict[str, Any]
    label: Prediction | None = None  # the true class given with label=
    clean_misclassified: bool = False  # label given and the clean prediction differs: success, no perturbation

    def _pngs(self) -> list[tuple[str, bytes]]:
        pngs: list[tuple[str, bytes]] = []
        for outcome in self.outcomes:
            eps = eps_name(outcome.epsilon)
            pngs.append((f"adversarial_eps{eps}", outcome.adversarial_png))
            pngs.append((f"perturbation_eps{eps}", outcome.perturbation_png))
        return pngs + [("input", self.input_png)]


class _MinimalAttack(_SavesImages):
    """What MinimalAttackResult adds to the fields of its reply: the names of its PNGs."""

    # the fields are made from the reply's descriptor; those the methods read are named for typing

    adversarial_png: bytes
    perturbation_png: bytes
    input_png: bytes

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [
            ("adversarial", self.adversarial_png),
            ("perturbation", self.perturbation_png),
            ("input", self.input_png),
        ]


MinimalAttackResult: Any = generated(
    pb.MinimalAttackResponse.DESCRIPTOR, name="MinimalAttackResult", base=_MinimalAttack
)
"""The smallest perturbation found: minimal eps = level/255 (fgsm/bim/pgd) or DeepFool's.

``adversarial`` (H, W, C) is on the 8-bit grid, as its PNG; ``success``, ``linf`` and ``l2``
are judged on it. For fgsm/bim/pgd the attack succeeded at ``level`` and failed at
``level - 1`` (``level`` 0: the clean image is already misclassified w.r.t. ``label``; -1:
nothing found up to max_epsilon). ``monotone`` is False when a larger radius that was tried
failed (``violations``). DeepFool also reports its raw (off-grid) result as foolbox would
(``success_raw``, ``linf_raw``, ``l2_raw``, ``rounded_outward``, ``iterations``). A field of the
other kind of method keeps the wire's default and means nothing: those five are False/0 for
fgsm/bim/pgd, and ``level`` (-1), ``epsilon`` (0), ``monotone`` and ``violations`` for DeepFool,
whose size is ``linf``/``l2``. Every field
of MinimalAttackResponse, the stamp flattened and the resolved parameters as ``params``.
"""


def check_fillable(cls: type) -> None:
    """At import: ``cls`` is a frozen dataclass whose instances may be filled without ``__init__``.

    The generated ``__init__`` of a frozen dataclass sets each field through ``object.__setattr__``
    (2.3 us for a Prediction); filling the instance's ``__dict__`` directly gives the same object
    without a ``__post_init__`` or slots, which this checks.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or hasattr(cls, "__post_init__") or "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__} cannot be filled without its __init__")


for _cls in (Prediction, ClassifyResult):  # what from_items fills without __init__
    check_fillable(_cls)
