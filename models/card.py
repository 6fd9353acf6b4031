"""Model cards and ``--model`` sources of models served from configuration (``models.own``).

A card is a JSON object; every key is optional and falls back to the kind's default (ImageNet's
for ``torchvision``; none for ``torchscript`` and ``export``, which need at least ``input_shape``):

    {"input_shape": [3, 64, 64],          # (C, H, W) the model is served at
     "resize_shorter": 73, "crop": 64,    # shorter side resized, then centre crop (0: plain resize)
     "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],  # normalization inside the model
     "labels": ["cat", "dog"],            # or "labels_file": "labels.txt" (one a line, beside the card)
     "default_gradcam_layer": "layer4", "default_dfi_layers": ["layer2", "layer3", "layer4"],
     "pretrained": true, "description": "...", "dataset": "...", "convention": "...",
     "training_dataset": "fashion-mnist"}  # a dataset the server can sample (class-name sets)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

KINDS = ("torchvision", "torchscript", "export")
CARD_KEYS = frozenset({
    "input_shape", "resize_shorter", "crop", "mean", "std", "labels", "labels_file", "default_gradcam_layer",
    "pretrained", "description", "dataset", "convention", "training_dataset", "default_dfi_layers",
})  # fmt: skip


class OwnModelError(ValueError):
    """A ``--model`` source, its card or its file is refused; the message says why."""


@dataclass(frozen=True)
class ModelCard:
    """What a served model expects and answers (see the module docstring for the JSON keys)."""

    input_shape: tuple[int, int, int] | None = None
    resize_shorter: int = 0
    crop: int = 0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None
    default_gradcam_layer: str = ""
    pretrained: bool | None = None
    description: str = ""
    dataset: str = ""
    convention: str = ""
    training_dataset: str = ""
    default_dfi_layers: tuple[str, ...] = ()


def parse_source(source: str) -> tuple[str, str, str]:
    """``KIND:TARGET[:WEIGHTS]`` -> (kind, target, weights); WEIGHTS only for torchvision.

    Raises:
        OwnModelError: an unknown kind or an empty target.
    """
    kind, sep, rest = source.partition(":")
    if not sep or kind not in KINDS or not rest.strip():
        raise OwnModelError(f"expected torchvision:ARCH[:WEIGHTS], torchscript:PATH or export:PATH, got {source!r}")
    if kind == "torchvision":
        arch, _, weights = rest.partition(":")
        return kind, arch.strip(), weights.strip()
    return kind, rest.strip(), ""


def imagenet_card() -> ModelCard:
    from models.imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet_labels

    return ModelCard(
        input_shape=(3, 224, 224), resize_shorter=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        labels=imagenet_labels(), dataset="ImageNet-1k",
        convention="RGB photo; shorter side resized to 256 (bilinear), centre crop 224",
    )  # fmt: skip


def card_for(kind: str, path: Path | None) -> ModelCard:
    """The card in ``path`` over the kind's defaults.

    Raises:
        OwnModelError: the file is missing or not JSON, has unknown keys, or a value of the wrong type.
    """
    default = imagenet_card() if kind == "torchvision" else ModelCard()
    if path is None:
        return default
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OwnModelError(f"model card {str(path)!r} cannot be read as JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OwnModelError(f"model card {str(path)!r} must be a JSON object")
    unknown = sorted(set(data) - CARD_KEYS)
    if unknown:
        raise OwnModelError(f"model card {str(path)!r}: unknown keys {unknown} (known: {sorted(CARD_KEYS)})")
    try:
        return _card(data, path, default)
    except (TypeError, ValueError, OSError) as exc:
        raise OwnModelError(f"model card {str(path)!r}: {exc}") from None


def _card(data: dict, path: Path, default: ModelCard) -> ModelCard:
    shape = default.input_shape
    resize, crop = default.resize_shorter, default.crop
    if "input_shape" in data:
        shape = tuple(int(v) for v in data["input_shape"])  # type: ignore[assignment]
        if len(shape) != 3 or min(shape) < 1:  # type: ignore[arg-type]
            raise ValueError(f"input_shape must be three positive integers (C, H, W), got {data['input_shape']}")
        resize, crop = 0, 0  # the defaults' resize and crop belong to the defaults' size
    labels = default.labels
    if "labels" in data and "labels_file" in data:
        raise ValueError("give labels or labels_file, not both")
    if "labels" in data:
        labels = tuple(str(label) for label in data["labels"])
    elif "labels_file" in data:
        file = (path.parent / str(data["labels_file"])).expanduser()
        labels = tuple(line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip())
    pretrained = data.get("pretrained", default.pretrained)
    if pretrained is not None and not isinstance(pretrained, bool):
        raise ValueError(f"pretrained must be true or false, got {pretrained!r}")
    return ModelCard(
        input_shape=shape,
        resize_shorter=int(data.get("resize_shorter", resize)),
        crop=int(data.get("crop", crop)),
        mean=tuple(float(v) for v in data["mean"]) if "mean" in data else default.mean,
        std=tuple(float(v) for v in data["std"]) if "std" in data else default.std,
        labels=labels,
        default_gradcam_layer=str(data.get("default_gradcam_layer", default.default_gradcam_layer)),
        pretrained=pretrained,
        description=str(data.get("description", default.description)),
        dataset=str(data.get("dataset", default.dataset)),
        convention=str(data.get("convention", default.convention)),
        training_dataset=str(data.get("training_dataset", default.training_dataset)),
        default_dfi_layers=tuple(str(name) for name in data.get("default_dfi_layers", ())),
    )
