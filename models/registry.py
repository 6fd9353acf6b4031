"""Model registry in the torchvision/timm style: one spec per served model, looked up by name.

A spec says everything the service needs to know about a model without building it: the
architecture (``build``), where its weights come from (``weights``), how to preprocess an image
for it, its class labels, layer aliases and method defaults. Adding a model is one decorated
factory in ``models/zoo.py``; the parametrized tests pick it up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from models.errors import UnknownModel, shown

# torch.hub's convention (torch.hub.HASH_REGEX): in "vgg16-397923af.pth" the hex digits after a
# '-' and before the next '.' are a prefix of the file's sha256. Non-empty here: an empty prefix
# would accept anything.
HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")


def hash_prefix_from_name(file_name: str) -> str:
    """The sha256 prefix a file name claims (torch.hub's rule), or "" if it claims none."""
    match = HASH_IN_NAME.search(file_name)
    return match.group(1) if match else ""


@dataclass(frozen=True)
class Preprocessing:
    """How the server turns a decoded image into the model's input (pixels in [0, 1]).

    Attributes:
        channels: 3 (RGB) or 1 (grayscale).
        input_size: side of the square input, pixels.
        resize_shorter: resize the shorter side to this many pixels keeping the aspect ratio,
            then centre-crop ``crop``; 0 means resize both sides directly to ``input_size``.
        crop: side of the centre crop, pixels (0: no crop).
        mean: per-channel mean the model subtracts internally (informational; the served
            module normalizes itself).
        std: per-channel std the model divides by internally (informational).
        convention: what an input is expected to look like, in words.
    """

    channels: int
    input_size: int
    resize_shorter: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    convention: str


@dataclass(frozen=True)
class WeightsRecord:
    """Where a model's weights come from.

    Attributes:
        canonical_name: file name looked up in the weights dir and the torch hub cache
            (torchvision's, e.g. "vgg16-397923af.pth"); "" if the weights are not published.
        url: the published download source (replaced by ``--weights-url-base`` + ``canonical_name``
            when a mirror is set); "" if there is none.
        sha256_prefix: the checksum prefix carried by ``canonical_name`` (torch.hub's rule).
        bundled_metadata: JSON describing weights shipped inside the package (its "file" names
            the state_dict next to it, its "sha256" the full checksum); None if not bundled.
        origin: where the weights were made, in words (for messages and listings).
        how_to_make: extra advice when they are missing (e.g. the training command).
    """

    canonical_name: str = ""
    url: str = ""
    sha256_prefix: str = ""
    bundled_metadata: Path | None = None
    origin: str = ""
    how_to_make: str = ""

    @classmethod
    def from_url(cls, url: str, origin: str) -> WeightsRecord:
        """A record for published weights: the canonical name and checksum come from the URL."""
        name = url.rsplit("/", 1)[-1]
        return cls(canonical_name=name, url=url, sha256_prefix=hash_prefix_from_name(name), origin=origin)


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a served model except its loaded weights.

    Attributes:
        name: registry name ("vgg16").
        task: e.g. "image-classification".
        dataset: what the weights were trained on, in words.
        description: one line for listings.
        input_shape: (C, H, W) the model is served at; pixels in [0, 1].
        num_classes: length of the logits vector.
        labels: class names, index order.
        preprocessing: how an image becomes an input.
        build: returns the served architecture, randomly initialised, normalization first.
        weights: where the weights come from.
        aliases: alias -> module path (e.g. "conv3_1" -> "features.10").
        default_gradcam_layer: module path Grad-CAM uses when a request names none.
        default_dfi_layers: module paths of the deep feature interpolation features.
        training_dataset: the dataset the service can sample for this model, if any.
        source: "builtin" (registered here), or the kind of a model served from configuration:
            "torchvision", "torchscript", "export" (``models.own``).
        pretrained: what the model card states; None: whether weights came from a file.
        layers_note: why some of the model's layers cannot be addressed (compiled TorchScript),
            added to the message that refuses a layer name.
    """

    name: str
    task: str
    dataset: str
    description: str
    input_shape: tuple[int, int, int]
    num_classes: int
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    build: Callable[[], nn.Module]
    weights: WeightsRecord
    aliases: dict[str, str] = field(default_factory=dict)
    default_gradcam_layer: str = ""
    default_dfi_layers: tuple[str, ...] = ()
    training_dataset: str | None = None
    source: str = "builtin"
    pretrained: bool | None = None
    layers_note: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(fn: Callable[[], ModelSpec]) -> Callable[[], ModelSpec]:
    """Decorator: register the spec a zero-argument factory returns (called once, now).

    Raises:
        ValueError: the factory does not return a ModelSpec, its labels do not match
            ``num_classes``, or a model of that name is already registered.
    """
    spec = fn()
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"{fn.__qualname__} must return a ModelSpec, got {type(spec).__name__}")
    if len(spec.labels) != spec.num_classes:
        raise ValueError(f"model {spec.name!r}: {len(spec.labels)} labels for {spec.num_classes} classes")
    if spec.name in _REGISTRY:
        raise ValueError(
            f"model {spec.name!r} is already registered (registered: {', '.join(list_models())})"
        )
    _REGISTRY[spec.name] = spec
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec registered under ``name``.

    Raises:
        UnknownModel: no such model; the message lists the registered names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModel(f"unknown model {shown(name)}; available models: {', '.join(list_models())}") from None
