"""Result dataclasses returned by :class:`client.InterpClient`: numpy arrays and PNG bytes.

Every result of a computation carries the stamp of the model that produced it (``model``,
``pretrained``, ``weights_sha256``, ``request_id``, ``elapsed_ms`` server-side milliseconds) and,
where the method has parameters, ``params``: every parameter the server actually used, defaults
and seed included, so that the call can be reproduced. Arrays are decoded from the wire's raw
little-endian tensors; image arrays (inputs, adversarial, dreamed, visualized and interpolated
images) are channels last, (H, W, C) float32 in [0, 1], so any of them can be passed back as the
image of another call. PNGs are the server's bytes, ready to write. Results that hold images have
``save(dest)``: a directory receives one file per image, a ``.png`` path receives the main image
and the others beside it as ``<stem>_<name>.png``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import Message

from protos import interp_pb2 as pb
from protos.codec import from_tensor, from_tensors

__all__ = [
    "RESULTS",
    "ITEM_RESULTS",
    "WeightsInfo",
    "ModelInfo",
    "ReceptiveField",
    "LayerInfo",
    "Preprocessing",
    "ModelDescription",
    "Prediction",
    "ServerInfo",
    "ClassifyResult",
    "LayerActivation",
    "ActivationsResult",
    "KernelsResult",
    "SaliencyResult",
    "AttackOutcome",
    "AttackResult",
    "ProgressEvent",
    "FilterVisualization",
    "LayerGain",
    "DreamResult",
    "AlphaResult",
    "InterpolationResult",
    "MinimalAttackResult",
    "MethodCurve",
    "AttackDatasetResult",
    "DatasetInfo",
    "IndexBuild",
    "TopEntry",
    "ChannelTop",
    "TopActivationsResult",
    "Neighbor",
    "NeighborsResult",
    "EmbeddingResult",
    "PlacedImage",
    "PlacementResult",
]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _array(tensor: pb.Tensor) -> np.ndarray | None:
    """Decode a Tensor field; None when the server left it unset."""
    if _is_unset(tensor):
        return None
    return from_tensor(tensor)


def _is_unset(tensor: pb.Tensor) -> bool:
    return tensor.dtype == pb.Tensor.DTYPE_UNSPECIFIED and not tensor.shape and not tensor.data


def _arrays(tensors: Sequence[pb.Tensor]) -> list[np.ndarray | None]:
    """:func:`_array` of each of many tensors (of one dtype and shape: with one copy, see from_tensors)."""
    if any(_is_unset(t) for t in tensors):
        return [_array(t) for t in tensors]
    return list(from_tensors(tensors))


def _check_fillable(cls: type) -> None:
    """At import: ``cls`` is a frozen dataclass whose instances may be filled without ``__init__``.

    The generated ``__init__`` of a frozen dataclass sets each field through ``object.__setattr__``
    (2.3 us for a Prediction); filling the instance's ``__dict__`` directly gives the same object
    without a ``__post_init__`` or slots, which this checks.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or hasattr(cls, "__post_init__") or "__slots__" in cls.__dict__:
        raise TypeError(f"{cls.__name__} cannot be filled without its __init__")


def _image(tensor: pb.Tensor) -> np.ndarray | None:
    """Decode an image tensor and put its channels last: (C, H, W) -> (H, W, C), (N, C, H, W) -> (N, H, W, C).

    Channels last is what every method takes as input, so a result's image goes straight back
    into another call (``c.classify(c.dream(...).image, model=...)``).
    """
    array = _array(tensor)
    if array is None:
        return None
    # A transposed view, not a copy (a copy cost 0.3 ms per 224-px input, measured): numpy and the
    # SDK's own encoder take non-contiguous arrays.
    if array.ndim == 3:
        return array.transpose(1, 2, 0)
    if array.ndim == 4:
        return array.transpose(0, 2, 3, 1)
    return array


def _params(message: Message) -> dict[str, Any]:
    """The fields the server set in a *Params message, as plain Python values.

    Like ``MessageToDict(preserving_proto_field_name=True)`` but int64 values (seeds) stay ints
    instead of becoming JSON strings.
    """
    return {field.name: value for field, value in message.ListFields()}


def _all_scalars(message: Message) -> dict[str, Any]:
    """Every scalar field of a message, defaults included (for limits, where 0 is meaningful)."""
    return {field.name: getattr(message, field.name) for field in message.DESCRIPTOR.fields}


def _enum_name(enum: Any, value: int) -> str:
    """An enum value's name; a value this client does not know (a newer server) as its number."""
    try:
        return enum.Name(value)
    except ValueError:
        return str(value)


def _stamp(stamp: pb.ModelStamp) -> dict[str, Any]:
    return {
        "model": stamp.model,
        "pretrained": stamp.pretrained,
        "weights_sha256": stamp.weights_sha256,
        "request_id": stamp.request_id,
        "elapsed_ms": stamp.elapsed_ms,
    }


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_part(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("._") or "image"


def _eps_name(epsilon: float) -> str:
    return f"{epsilon:g}"


def save_pngs(images: Iterable[tuple[str, bytes]], dest: str | Path, *, as_file: bool | None = None) -> list[Path]:
    """Write named PNGs to a directory, or the first to a file path and the rest beside it.

    Args:
        images: (name, png bytes) pairs, the main image first; empty byte strings are skipped.
        dest: a directory (created if needed) -> ``dest/<name>.png`` each; or a file path ->
            the main image there, the others as ``<stem>_<name>.png`` next to it.
        as_file: whether ``dest`` is a file path; None: it is when it ends in ``.png``.

    Returns:
        The paths written, in order.
    """
    items = [(file_part(name), data) for name, data in images if data]
    if not items:
        return []
    dest = Path(dest)
    if as_file is None:
        as_file = dest.suffix.lower() == ".png"
    if as_file:
        dest.parent.mkdir(parents=True, exist_ok=True)
        paths = [dest] + [dest.with_name(f"{dest.stem}_{name}.png") for name, _ in items[1:]]
    else:
        dest.mkdir(parents=True, exist_ok=True)
        paths = [dest / f"{name}.png" for name, _ in items]
    for path, (_, data) in zip(paths, items, strict=True):
        path.write_bytes(data)
    return paths


def _short(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape}, dtype={value.dtype})"
    if isinstance(value, tuple) and len(value) > 6:
        return f"({', '.join(_short(v) for v in value[:3])}, ... {len(value)} items)"
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


class _ShortRepr:
    """A ``repr`` that fits on a screen: PNG bytes as their size, arrays as shape and dtype."""

    def __repr__(self) -> str:
        parts = [f"{f.name}={_short(getattr(self, f.name))}" for f in fields(self)]  # type: ignore[arg-type]
        return f"{type(self).__name__}({', '.join(parts)})"


class _SavesImages(_ShortRepr):
    """Mixin: ``save(dest)`` writes the PNGs that ``_pngs()`` names (main image first)."""

    def _pngs(self) -> list[tuple[str, bytes]]:
        raise NotImplementedError

    def save(self, dest: str | Path, *, as_file: bool | None = None) -> list[Path]:
        """Write this result's PNGs; see :func:`save_pngs` for the naming. Returns the paths written."""
        return save_pngs(self._pngs(), dest, as_file=as_file)


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class _Stamped:
    """Which model produced a result (shared by every computed result)."""

    model: str
    pretrained: bool
    weights_sha256: str
    request_id: str
    elapsed_ms: float


# ---------------------------------------------------------------------------------------------
# Models and server
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsInfo:
    """Where a model's weights came from: source is file|weights_dir|hub_cache|download|bundled|random|''."""

    source: str
    path: str
    sha256: str
    canonical_name: str

    @classmethod
    def from_proto(cls, m: pb.WeightsInfo) -> WeightsInfo:
        return cls(source=m.source, path=m.path, sha256=m.sha256, canonical_name=m.canonical_name)


@dataclass(frozen=True)
class ModelInfo:
    """One served model. ``status`` is "READY", "LOADING" (weights downloading; ``reason`` shows the progress)
    or "UNAVAILABLE" (``reason`` says why and how to fix); a status newer than this client, its number."""

    name: str
    task: str
    input_shape: tuple[int, ...]  # (C, H, W)
    num_classes: int
    pretrained: bool
    weights: WeightsInfo
    status: str
    reason: str
    description: str
    dataset: str

    @property
    def ready(self) -> bool:
        return self.status == "READY"

    @classmethod
    def from_proto(cls, m: pb.ModelInfo) -> ModelInfo:
        return cls(
            name=m.name,
            task=m.task,
            input_shape=tuple(m.input_shape),
            num_classes=m.num_classes,
            pretrained=m.pretrained,
            weights=WeightsInfo.from_proto(m.weights),
            status=_enum_name(pb.ModelInfo.Status, m.status),
            reason=m.reason,
            description=m.description,
            dataset=m.dataset,
        )


@dataclass(frozen=True)
class ReceptiveField:
    """size r and jump j in input pixels; start: centre of the first unit's window (input pixels)."""

    size: int
    jump: int
    start: float


@dataclass(frozen=True)
class LayerInfo:
    """One entry of a model's layer catalogue."""

    name: str
    aliases: tuple[str, ...]
    type: str
    output_shape: tuple[int, ...]  # per sample: (C, H, W) or (F,)
    channels: int
    receptive_field: ReceptiveField | None  # None for non-spatial layers
    parameters: int
    has_kernels: bool

    @classmethod
    def from_proto(cls, m: pb.Layer) -> LayerInfo:
        rf = m.receptive_field
        return cls(
            name=m.name,
            aliases=tuple(m.aliases),
            type=m.type,
            output_shape=tuple(m.output_shape),
            channels=m.channels,
            receptive_field=(ReceptiveField(rf.size, rf.jump, rf.start) if m.HasField("receptive_field") else None),
            parameters=m.parameters,
            has_kernels=m.has_kernels,
        )


@dataclass(frozen=True)
class Preprocessing:
    """How the server turns an input image into the model's input (normalization happens inside the model)."""

    channels: int
    resize_shorter: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    convention: str

    @classmethod
    def from_proto(cls, m: pb.Preprocessing) -> Preprocessing:
        return cls(m.channels, m.resize_shorter, m.crop, tuple(m.mean), tuple(m.std), m.convention)


@dataclass(frozen=True)
class ModelDescription:
    """A model's info, layer catalogue, class labels and preprocessing."""

    model: ModelInfo
    layers: tuple[LayerInfo, ...]
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    default_gradcam_layer: str

    def layer(self, name: str) -> LayerInfo:
        """The catalogue entry for a module path or alias; KeyError naming the valid names otherwise."""
        for layer in self.layers:
            if name == layer.name or name in layer.aliases:
                return layer
        valid = [n for layer in self.layers for n in (layer.name, *layer.aliases)]
        raise KeyError(f"no layer {name!r} in {self.model.name}; valid: {', '.join(valid)}")

    @classmethod
    def from_proto(cls, m: pb.DescribeModelResponse) -> ModelDescription:
        return cls(
            model=ModelInfo.from_proto(m.model),
            layers=tuple(LayerInfo.from_proto(layer) for layer in m.layers),
            labels=tuple(m.labels),
            preprocessing=Preprocessing.from_proto(m.preprocessing),
            default_gradcam_layer=m.default_gradcam_layer,
        )


@dataclass(frozen=True)
class Prediction:
    """A class with its softmax probability."""

    index: int
    label: str
    probability: float

    @classmethod
    def from_proto(cls, m: pb.Prediction) -> Prediction:
        return cls(index=m.index, label=m.label, probability=m.probability)


def _prediction(parent: Message, field: str) -> Prediction | None:
    return Prediction.from_proto(getattr(parent, field)) if parent.HasField(field) else None


@dataclass(frozen=True)
class ServerInfo:
    """Server version, device, the limits in force (``limits``: field name -> value) and library versions."""

    version: str
    api_version: str
    device: str
    limits: dict[str, Any]
    libraries: dict[str, str]
    models: tuple[str, ...]
    worker_threads: int
    auth_required: bool
    tls: bool
    implemented_rpcs: tuple[str, ...]
    running_heavy: int = 0  # heavy calls computing when the server answered
    queued_heavy: int = 0  # heavy calls waiting for a slot

    @classmethod
    def from_proto(cls, m: pb.ServerInfo) -> ServerInfo:
        return cls(
            version=m.version,
            api_version=m.api_version,
            device=m.device,
            limits=_all_scalars(m.limits),
            libraries=dict(sorted(m.libraries.items())),
            models=tuple(m.models),
            worker_threads=m.worker_threads,
            auth_required=m.auth_required,
            tls=m.tls,
            implemented_rpcs=tuple(m.implemented_rpcs),
            running_heavy=m.running_heavy,
            queued_heavy=m.queued_heavy,
        )


# ---------------------------------------------------------------------------------------------
# Single-pass methods
# ---------------------------------------------------------------------------------------------


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
    def from_proto(cls, m: pb.ClassifyResponse) -> ClassifyResult:
        return cls(
            **_stamp(m.stamp),
            predictions=tuple(Prediction.from_proto(p) for p in m.predictions),
            logits=_array(m.logits),
            input=_image(m.input.tensor),
            input_png=m.input.png,
        )

    @classmethod
    def from_items(cls, items: Sequence[pb.ClassifyResponse], stamp: pb.ModelStamp) -> list[ClassifyResult]:
        """The answers of a many-image call (its items without an error) under the call's ``stamp``.

        Equal to ``from_proto`` of each item with ``stamp`` copied in, in about a third of the time
        (256 LeNet answers: about 3 ms instead of 9): no stamp copies, the logits decoded with one
        copy, and the frozen results filled without their per-field ``__init__`` (a quarter of it).
        """
        common = _stamp(stamp)
        new = object.__new__  # instances filled without __init__: see _check_fillable
        out: list[ClassifyResult] = []
        for m, logits in zip(items, _arrays([m.logits for m in items]), strict=True):
            predictions = []
            for p in m.predictions:
                prediction = new(Prediction)
                prediction.__dict__.update(index=p.index, label=p.label, probability=p.probability)
                predictions.append(prediction)
            echo, png = (_image(m.input.tensor), m.input.png) if m.HasField("input") else (None, b"")
            result = new(cls)
            result.__dict__.update(common, predictions=tuple(predictions), logits=logits, input=echo, input_png=png)
            out.append(result)
        return out


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

    @classmethod
    def from_proto(cls, m: pb.LayerActivation) -> LayerActivation:
        return cls(
            layer=m.layer,
            requested=m.requested,
            activation=_array(m.activation),
            channel_mean=_array(m.channel_mean),
            channel_max=_array(m.channel_max),
            top_channels=tuple(m.top_channels),
            grid_png=m.grid_png,
        )


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

    @classmethod
    def from_proto(cls, m: pb.ActivationsResponse) -> ActivationsResult:
        return cls(
            **_stamp(m.stamp),
            input=_image(m.input.tensor),
            input_png=m.input.png,
            layers=tuple(LayerActivation.from_proto(layer) for layer in m.layers),
            top_k=m.resolved_top_k,
            prediction=_prediction(m, "prediction"),
        )


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

    @classmethod
    def from_proto(cls, m: pb.KernelsResponse) -> KernelsResult:
        bias = _array(m.bias)
        return cls(
            **_stamp(m.stamp),
            layer=m.layer,
            weights=_array(m.weights),
            bias=bias if bias is not None and bias.size else None,
            rgb=m.rgb,
            grid_png=m.grid_png,
        )


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

    @classmethod
    def from_proto(cls, m: pb.SaliencyResponse) -> SaliencyResult:
        return cls(
            **_stamp(m.stamp),
            method=m.method,
            target=_prediction(m, "target"),
            map=_array(m.map),
            attribution=_array(m.attribution),
            heatmap_png=m.heatmap_png,
            overlay_png=m.overlay_png,
            input=_image(m.input.tensor),
            input_png=m.input.png,
            params=_params(m.resolved),
        )


@dataclass(frozen=True, eq=False, repr=False)
class AttackOutcome(_ShortRepr):
    """The attack at one epsilon; ``adversarial`` (H, W, C) is 8-bit quantized, as its PNG."""

    epsilon: float
    adversarial: np.ndarray | None
    adversarial_png: bytes
    perturbation_png: bytes  # amplified difference, grey = 0
    prediction: Prediction | None  # on the quantized adversarial image
    success: bool
    linf: float
    l2: float
    step_size: float

    @classmethod
    def from_proto(cls, m: pb.AttackOutcome) -> AttackOutcome:
        return cls(
            epsilon=m.epsilon,
            adversarial=_image(m.adversarial),
            adversarial_png=m.adversarial_png,
            perturbation_png=m.perturbation_png,
            prediction=_prediction(m, "prediction"),
            success=m.success,
            linf=m.linf,
            l2=m.l2,
            step_size=m.step_size,
        )


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
            eps = _eps_name(outcome.epsilon)
            pngs.append((f"adversarial_eps{eps}", outcome.adversarial_png))
            pngs.append((f"perturbation_eps{eps}", outcome.perturbation_png))
        return pngs + [("input", self.input_png)]

    @classmethod
    def from_proto(cls, m: pb.AttackResponse) -> AttackResult:
        return cls(
            **_stamp(m.stamp),
            method=m.method,
            original=_prediction(m, "original"),
            target=_prediction(m, "target"),
            targeted=m.targeted,
            outcomes=tuple(AttackOutcome.from_proto(o) for o in m.outcomes),
            input=_image(m.input.tensor),
            input_png=m.input.png,
            params=_params(m.resolved),
            label=_prediction(m, "label"),
            clean_misclassified=m.clean_misclassified,
        )


# ---------------------------------------------------------------------------------------------
# Iterative methods
# ---------------------------------------------------------------------------------------------


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

    @classmethod
    def from_proto(cls, m: pb.Progress) -> ProgressEvent:
        return cls(
            step=m.step,
            total_steps=m.total_steps,
            objective=m.objective,
            elapsed_s=m.elapsed_s,
            stage=m.stage,
            preview_png=m.preview_png or None,
            queued_position=m.queued_position,
            preview_step=m.preview_step,
        )


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

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("grid", self.grid_png)] + [
            (f"channel_{channel:04d}", png) for channel, png in zip(self.channels, self.pngs, strict=False)
        ]

    @classmethod
    def from_proto(cls, m: pb.VisualizeFilterResult) -> FilterVisualization:
        return cls(
            **_stamp(m.stamp),
            layer=m.layer,
            channels=tuple(m.channels),
            images=_image(m.images),
            pngs=tuple(m.pngs),
            grid_png=m.grid_png,
            activations=tuple(m.activations),
            params=_params(m.resolved),
        )


@dataclass(frozen=True)
class LayerGain:
    """L2 norm of a layer's activation on the input and on the dreamed image."""

    layer: str
    norm_before: float
    norm_after: float

    @property
    def ratio(self) -> float:
        return self.norm_after / self.norm_before if self.norm_before else float("inf")


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class DreamResult(_Stamped, _SavesImages):
    """A DeepDream image (H, W, C) in [0, 1] with its PNG and per-layer gains."""

    image: np.ndarray | None
    png: bytes
    gains: tuple[LayerGain, ...]
    input: np.ndarray | None
    input_png: bytes
    params: dict[str, Any]

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("dream", self.png), ("input", self.input_png)]

    @classmethod
    def from_proto(cls, m: pb.DeepDreamResult) -> DreamResult:
        return cls(
            **_stamp(m.stamp),
            image=_image(m.image),
            png=m.png,
            gains=tuple(LayerGain(g.layer, g.norm_before, g.norm_after) for g in m.gains),
            input=_image(m.input.tensor),
            input_png=m.input.png,
            params=_params(m.resolved),
        )


@dataclass(frozen=True, eq=False, repr=False)
class AlphaResult(_ShortRepr):
    """The reconstruction at one alpha: image (H, W, C) in [0, 1], relative feature error, prediction."""

    alpha: float
    image: np.ndarray | None
    png: bytes
    feature_error: float
    prediction: Prediction | None

    @classmethod
    def from_proto(cls, m: pb.AlphaResult) -> AlphaResult:
        return cls(
            alpha=m.alpha,
            image=_image(m.image),
            png=m.png,
            feature_error=m.feature_error,
            prediction=_prediction(m, "prediction"),
        )


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
        return [(f"alpha_{_eps_name(r.alpha)}", r.png) for r in self.results] + [("input", self.input_png)]

    @classmethod
    def from_proto(cls, m: pb.InterpolateFeaturesResult) -> InterpolationResult:
        return cls(
            **_stamp(m.stamp),
            layers=tuple(m.layers),
            results=tuple(AlphaResult.from_proto(r) for r in m.results),
            alphas=tuple(m.alphas),
            input=_image(m.input.tensor),
            input_png=m.input.png,
            params=_params(m.resolved),
        )


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MinimalAttackResult(_Stamped, _SavesImages):
    """The smallest perturbation found: minimal eps = level/255 (fgsm/bim/pgd) or DeepFool's.

    ``adversarial`` (H, W, C) is on the 8-bit grid, as its PNG; ``success``, ``linf`` and ``l2``
    are judged on it. For fgsm/bim/pgd the attack succeeded at ``level`` and failed at
    ``level - 1`` (``level`` 0: the clean image is already misclassified w.r.t. ``label``; -1:
    nothing found up to max_epsilon). ``monotone`` is False when a larger radius that was tried
    failed (``violations``). DeepFool also reports its raw (off-grid) result as foolbox would.
    """

    method: str
    original: Prediction | None
    label: Prediction | None
    targeted: bool
    found: bool
    clean_misclassified: bool
    level: int
    epsilon: float
    runs: int
    monotone: bool
    violations: tuple[int, ...]
    adversarial: np.ndarray | None
    adversarial_png: bytes
    perturbation_png: bytes
    prediction: Prediction | None
    success: bool
    linf: float
    l2: float
    success_raw: bool
    linf_raw: float
    l2_raw: float
    rounded_outward: bool
    iterations: int
    input: np.ndarray | None
    input_png: bytes
    params: dict[str, Any]

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [
            ("adversarial", self.adversarial_png),
            ("perturbation", self.perturbation_png),
            ("input", self.input_png),
        ]

    @classmethod
    def from_proto(cls, m: pb.MinimalAttackResponse) -> MinimalAttackResult:
        return cls(
            **_stamp(m.stamp),
            method=m.method,
            original=_prediction(m, "original"),
            label=_prediction(m, "label"),
            targeted=m.targeted,
            found=m.found,
            clean_misclassified=m.clean_misclassified,
            level=m.level,
            epsilon=m.epsilon,
            runs=m.runs,
            monotone=m.monotone,
            violations=tuple(m.violations),
            adversarial=_image(m.adversarial),
            adversarial_png=m.adversarial_png,
            perturbation_png=m.perturbation_png,
            prediction=_prediction(m, "prediction"),
            success=m.success,
            linf=m.linf,
            l2=m.l2,
            success_raw=m.success_raw,
            linf_raw=m.linf_raw,
            l2_raw=m.l2_raw,
            rounded_outward=m.rounded_outward,
            iterations=m.iterations,
            input=_image(m.input.tensor),
            input_png=m.input.png,
            params=_params(m.resolved),
        )


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

    @classmethod
    def from_proto(cls, m: pb.MethodCurve) -> MethodCurve:
        return cls(
            method=m.method,
            accuracy=tuple(m.accuracy),
            levels=tuple(m.levels),
            minimal=_array(m.minimal),
            median_minimal=m.median_minimal,
            non_monotone=m.non_monotone,
            runs=m.runs,
            not_found=m.not_found,
        )


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class AttackDatasetResult(_Stamped, _SavesImages):
    """Robust accuracy vs epsilon over the first ``images`` of a dataset, one curve per method."""

    dataset: str
    images: int
    clean_accuracy: float
    epsilons: tuple[float, ...]
    curves: tuple[MethodCurve, ...]
    curve_png: bytes
    true_labels: bool
    norm: str  # "linf" or "l2": the epsilon axis
    params: dict[str, Any]
    skipped: int  # unreadable or unconvertible images among the first `limit`, not attacked

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("curve", self.curve_png)]

    @classmethod
    def from_proto(cls, m: pb.AttackDatasetResult) -> AttackDatasetResult:
        return cls(
            **_stamp(m.stamp),
            dataset=m.dataset,
            images=m.images,
            clean_accuracy=m.clean_accuracy,
            epsilons=tuple(m.epsilons),
            curves=tuple(MethodCurve.from_proto(c) for c in m.curves),
            curve_png=m.curve_png,
            true_labels=m.true_labels,
            norm=m.norm,
            params=_params(m.resolved),
            skipped=m.skipped,
        )


# ---------------------------------------------------------------------------------------------
# Dataset-level views
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset the server can index: size, class names, the models whose input it already fits."""

    name: str
    size: int
    classes: tuple[str, ...]
    fits_models: tuple[str, ...]
    manifest_sha256: str
    kind: str

    @classmethod
    def from_proto(cls, m: pb.DatasetInfo) -> DatasetInfo:
        return cls(
            name=m.name,
            size=m.size,
            classes=tuple(m.classes),
            fits_models=tuple(m.fits_models),
            manifest_sha256=m.manifest_sha256,
            kind=m.kind,
        )


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class IndexBuild(_Stamped, _ShortRepr):
    """An index build (or reuse): which layers, how many images, how fast, how much memory."""

    dataset: str
    index_id: str
    layers: tuple[str, ...]
    images: int
    skipped: int
    reused: bool
    seconds: float
    images_per_s: float
    peak_rss_growth_mb: float
    params: dict[str, Any]

    @classmethod
    def from_proto(cls, m: pb.BuildIndexResult) -> IndexBuild:
        return cls(
            **_stamp(m.stamp),
            dataset=m.dataset,
            index_id=m.index_id,
            layers=tuple(m.layers),
            images=m.images,
            skipped=m.skipped,
            reused=m.reused,
            seconds=m.seconds,
            images_per_s=m.images_per_s,
            peak_rss_growth_mb=m.peak_rss_growth_mb,
            params=_params(m.resolved),
        )


@dataclass(frozen=True, eq=False, repr=False)
class TopEntry(_ShortRepr):
    """One top-activating image of a unit: its value and location, the receptive-field crop (H, W, C)."""

    image_id: int
    label: int
    label_name: str
    value: float
    y: int
    x: int
    box: tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive) in the preprocessed input
    padded: bool
    crop: np.ndarray | None
    crop_png: bytes
    image_png: bytes
    projection: np.ndarray | None  # (H, W, C) guided backprop of the unit over the crop, with projections=True

    @classmethod
    def from_proto(cls, m: pb.TopEntry) -> TopEntry:
        return cls(
            image_id=m.image_id,
            label=m.label,
            label_name=m.label_name,
            value=m.value,
            y=m.y,
            x=m.x,
            box=(m.box.y0, m.box.x0, m.box.y1, m.box.x1),
            padded=m.padded,
            crop=_image(m.crop),
            crop_png=m.crop_png,
            image_png=m.image_png,
            projection=_image(m.projection) if m.HasField("projection") else None,
        )


@dataclass(frozen=True, eq=False, repr=False)
class ChannelTop(_ShortRepr):
    channel: int
    entries: tuple[TopEntry, ...]


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class TopActivationsResult(_Stamped, _SavesImages):
    """Per channel, the dataset images that excite it most (Zeiler & Fergus), best first."""

    dataset: str
    layer: str
    index_id: str
    spatial: bool
    rf_size: int
    channels: tuple[ChannelTop, ...]
    grid_png: bytes

    def _pngs(self) -> list[tuple[str, bytes]]:
        out = [("grid", self.grid_png)]
        for ch in self.channels:
            for rank, e in enumerate(ch.entries):
                out.append((f"channel_{ch.channel:04d}_{rank:02d}_crop", e.crop_png))
        return out

    @classmethod
    def from_proto(cls, m: pb.TopActivationsResponse) -> TopActivationsResult:
        return cls(
            **_stamp(m.stamp),
            dataset=m.dataset,
            layer=m.layer,
            index_id=m.index_id,
            spatial=m.spatial,
            rf_size=m.rf_size,
            channels=tuple(
                ChannelTop(c.channel, tuple(TopEntry.from_proto(e) for e in c.entries)) for c in m.channels
            ),
            grid_png=m.grid_png,
        )


@dataclass(frozen=True, eq=False, repr=False)
class Neighbor(_ShortRepr):
    image_id: int
    label: int
    label_name: str
    distance: float
    image: np.ndarray | None
    png: bytes


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class NeighborsResult(_Stamped, _SavesImages):
    """The dataset images nearest to a query in one layer's features, nearest first."""

    dataset: str
    layer: str
    metric: str
    index_id: str
    neighbors: tuple[Neighbor, ...]
    grid_png: bytes
    input: np.ndarray | None
    input_png: bytes

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("grid", self.grid_png), ("input", self.input_png)] + [
            (f"neighbor_{rank:02d}_{n.image_id}", n.png) for rank, n in enumerate(self.neighbors)
        ]

    @classmethod
    def from_proto(cls, m: pb.NearestNeighborsResponse) -> NeighborsResult:
        return cls(
            **_stamp(m.stamp),
            dataset=m.dataset,
            layer=m.layer,
            metric=m.metric,
            index_id=m.index_id,
            neighbors=tuple(
                Neighbor(n.image_id, n.label, n.label_name, n.distance, _image(n.image), n.png) for n in m.neighbors
            ),
            grid_png=m.grid_png,
            input=_image(m.input.tensor),
            input_png=m.input.png,
        )


# ---------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class EmbeddingResult(_Stamped, _SavesImages):
    """A t-SNE or PCA map of one layer's features over a dataset.

    ``coordinates[i]`` is the map position of dataset image ``image_ids[i]`` with label
    ``labels[i]`` (-1: unlabelled; ``classes`` names them). ``thumbnails_png`` tiles the first
    ``thumbnail_count`` points' images (``thumbnail_size`` px) row-major in ``thumbnail_columns``
    columns. ``save(path)`` writes the scatter and ``<stem>_atlas.png``; :meth:`write_html` the
    interactive page.
    """

    dataset: str
    layer: str
    method: str
    coordinates: np.ndarray  # (N, 2) float32
    image_ids: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int32
    classes: tuple[str, ...]
    scatter_png: bytes
    atlas_png: bytes
    thumbnails_png: bytes
    thumbnail_size: int
    thumbnail_columns: int
    thumbnail_count: int
    kl_divergence: float
    explained_variance: tuple[float, ...]
    reused: bool
    map_id: str
    index_id: str
    seconds: float
    threads: int
    params: dict[str, Any]

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("scatter", self.scatter_png), ("atlas", self.atlas_png)]

    def write_html(self, path: str | Path, *, title: str = "") -> Path:
        """One self-contained HTML page (no network): scatter, legend toggles, zoom, hover thumbnails."""
        from client.embedding_html import write_html

        return write_html(self, path, title=title)

    @classmethod
    def from_proto(cls, m: pb.EmbeddingResult) -> EmbeddingResult:
        coords = _array(m.coordinates)
        return cls(
            **_stamp(m.stamp),
            dataset=m.dataset,
            layer=m.layer,
            method=m.method,
            coordinates=coords if coords is not None else np.zeros((0, 2), dtype=np.float32),
            image_ids=np.asarray(m.image_ids, dtype=np.int64),
            labels=np.asarray(m.labels, dtype=np.int32),
            classes=tuple(m.classes),
            scatter_png=m.scatter_png,
            atlas_png=m.atlas_png,
            thumbnails_png=m.thumbnails_png,
            thumbnail_size=m.thumbnail_size,
            thumbnail_columns=m.thumbnail_columns,
            thumbnail_count=m.thumbnail_count,
            kl_divergence=m.kl_divergence,
            explained_variance=tuple(m.explained_variance),
            reused=m.reused,
            map_id=m.map_id,
            index_id=m.index_id,
            seconds=m.seconds,
            threads=m.threads,
            params=_params(m.resolved),
        )


@dataclass(frozen=True, eq=False, repr=False)
class PlacedImage(_ShortRepr):
    """Where one image falls on a map, and the nearest map points (dataset ids, labels, distances)."""

    x: float
    y: float
    neighbor_ids: tuple[int, ...]
    neighbor_labels: tuple[int, ...]
    neighbor_distances: tuple[float, ...]
    label: int  # the most common label among the neighbours (-1: none)
    label_name: str
    input: np.ndarray | None
    input_png: bytes


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class PlacementResult(_Stamped, _SavesImages):
    """Images placed on a cached Embedding map, in request order; ``scatter_png`` marks them."""

    dataset: str
    layer: str
    method: str
    map_id: str
    placed: tuple[PlacedImage, ...]
    scatter_png: bytes
    params: dict[str, Any]

    def _pngs(self) -> list[tuple[str, bytes]]:
        return [("scatter", self.scatter_png)] + [(f"input_{i:02d}", p.input_png) for i, p in enumerate(self.placed)]

    @classmethod
    def from_proto(cls, m: pb.PlaceImagesResponse) -> PlacementResult:
        return cls(
            **_stamp(m.stamp),
            dataset=m.dataset,
            layer=m.layer,
            method=m.method,
            map_id=m.map_id,
            placed=tuple(
                PlacedImage(
                    x=p.x,
                    y=p.y,
                    neighbor_ids=tuple(p.neighbor_ids),
                    neighbor_labels=tuple(p.neighbor_labels),
                    neighbor_distances=tuple(p.neighbor_distances),
                    label=p.label,
                    label_name=p.label_name,
                    input=_image(p.input.tensor),
                    input_png=p.input.png,
                )
                for p in m.placed
            ),
            scatter_png=m.scatter_png,
            params=_params(m.resolved),
        )


#: For a many-image RPC, what builds the results of many answers at once (``from_items``), used by
#: the SDK; the others of the many-image RPCs build each answer with RESULTS and the call's stamp.
ITEM_RESULTS: dict[str, Callable[[Sequence[Any], pb.ModelStamp], list[Any]]] = {
    "Classify": ClassifyResult.from_items,
}
for _cls in (Prediction, ClassifyResult):  # what from_items fills without __init__
    _check_fillable(_cls)

#: The result class of each RPC (``from_proto`` builds it from the reply), used by the SDK.
RESULTS: dict[str, Callable[[Any], Any]] = {
    "DescribeModel": ModelDescription.from_proto,
    "GetServerInfo": ServerInfo.from_proto,
    "Classify": ClassifyResult.from_proto,
    "Activations": ActivationsResult.from_proto,
    "Kernels": KernelsResult.from_proto,
    "Saliency": SaliencyResult.from_proto,
    "Attack": AttackResult.from_proto,
    "VisualizeFilter": FilterVisualization.from_proto,
    "DeepDream": DreamResult.from_proto,
    "InterpolateFeatures": InterpolationResult.from_proto,
    "MinimalAttack": MinimalAttackResult.from_proto,
    "AttackDataset": AttackDatasetResult.from_proto,
    "BuildIndex": IndexBuild.from_proto,
    "TopActivations": TopActivationsResult.from_proto,
    "NearestNeighbors": NeighborsResult.from_proto,
    "ListDatasets": lambda m: tuple(DatasetInfo.from_proto(d) for d in m.datasets),
    "Embedding": EmbeddingResult.from_proto,
    "PlaceImages": PlacementResult.from_proto,
}
