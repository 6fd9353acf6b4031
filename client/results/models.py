"""Results about the server and its models: model info, layer catalogue, preprocessing, datasets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from client.results._build import reply
from client.results.base import Result
from client.results.generated import generated
from protos import interp_pb2 as pb


@reply(pb.WeightsInfo)
@dataclass(frozen=True)
class WeightsInfo(Result):
    """Where a model's weights came from: source is file|weights_dir|hub_cache|download|bundled|random|''."""

    source: str
    path: str
    sha256: str
    canonical_name: str


@reply(pb.ModelInfo)
@dataclass(frozen=True)
class ModelInfo(Result):
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
    source: str = ""  # "builtin", or a --model's kind: "torchvision", "torchscript", "export"
    class_sets: bool = False  # InterpolateFeatures takes class names (the model names a training set to sample)

    @property
    def ready(self) -> bool:
        return self.status == "READY"


@reply(pb.ReceptiveField)
@dataclass(frozen=True)
class ReceptiveField(Result):
    """size r and jump j in input pixels; start: centre of the first unit's window (input pixels)."""

    size: int
    jump: int
    start: float


@reply(pb.Layer)
@dataclass(frozen=True)
class LayerInfo(Result):
    """One entry of a model's layer catalogue."""

    name: str
    aliases: tuple[str, ...]
    type: str
    output_shape: tuple[int, ...]  # per sample: (C, H, W) or (F,)
    channels: int
    receptive_field: ReceptiveField | None  # None for non-spatial layers
    parameters: int
    has_kernels: bool
    receptive_field_unknown: bool = False  # spatial, but conv/pool arithmetic does not apply


Preprocessing: Any = generated(pb.Preprocessing.DESCRIPTOR, eq=True)
"""How the server turns an input image into the model's input (normalization happens inside the
model): channels, resize_shorter, crop, mean, std, convention."""


@reply(pb.DescribeModelResponse)
@dataclass(frozen=True)
class ModelDescription(Result):
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


@reply(pb.Prediction)
@dataclass(frozen=True)
class Prediction(Result):
    """A class with its softmax probability."""

    index: int
    label: str
    probability: float


@reply(pb.ServerInfo)
@dataclass(frozen=True)
class ServerInfo(Result):
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


@reply(pb.DatasetInfo)
@dataclass(frozen=True)
class DatasetInfo(Result):
    """A dataset the server can index: size, class names, the models whose input it already fits."""

    name: str
    size: int
    classes: tuple[str, ...]
    fits_models: tuple[str, ...]
    manifest_sha256: str
    kind: str
