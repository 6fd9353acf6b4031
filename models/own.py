"""Models from configuration: any torchvision classifier, TorchScript file or ``torch.export`` program.

``--model NAME=SPEC`` where SPEC is

- ``torchvision:ARCH[:WEIGHTS]``: torchvision's builder ``ARCH`` (``resnet18``), randomly built then
  loaded with WEIGHTS: a state_dict file (loaded strictly with ``weights_only=True``; its sha256
  reported), or the name of torchvision's published weights (``IMAGENET1K_V1``; default
  ``DEFAULT``), resolved like VGG16's (hub cache, weights dir, download, mirror);
- ``torchscript:PATH``: a TorchScript file (``torch.jit.save``);
- ``export:PATH``: a ``torch.export`` program (``torch.export.save``, a ``.pt2``).

The model card (``--model-card NAME=card.json``; see :class:`ModelCard`) says how images become
inputs and what the outputs mean. Loading runs one forward of a blank input at the card's shape
and refuses a model whose output is not (1, number of classes), naming the mismatch.

Every served module takes pixels in [0, 1]: it is ``Served(normalize, net)`` with the card's mean
and std, as the built-in models normalize first. The user's module paths are addressed through
aliases: ``layer3.1.conv2`` names ``net.layer3.1.conv2``. TorchScript submodules cannot carry
Python hooks, so a scripted ``Sequential`` is rebuilt as a Python ``Sequential`` of hookable leaf
wrappers (any other scripted module is one opaque layer); an exported program is unflattened
(``torch.export.unflatten``) into hookable modules.

Whatever goes wrong is the model's UNAVAILABLE reason, naming it; the other models serve.
"""

from __future__ import annotations

import difflib
import logging
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from models.card import ModelCard, OwnModelError, card_for, parse_source
from models.catalogue import LayerInfo
from models.errors import FixedInputSize, WeightsError, WeightsNotFound
from models.lenet import Normalize
from models.loaded import READY, UNAVAILABLE, LoadedModel
from models.registry import ModelSpec, Preprocessing, WeightsRecord
from models.traced import traced_catalogue
from models.weights import WeightsInfo, WeightsOptions, build_module, file_sha256, needs_download, resolve_weights

log = logging.getLogger(__name__)
NET = "net"  # the user's module inside Served; its paths are aliased without this prefix


class Served(nn.Module):
    """The served form of a user's module: (B, C, H, W) pixels in [0, 1] -> normalize -> ``net``.

    ``fixed_size`` (H, W): the only input size ``net`` takes (an exported program with static
    height and width); another size raises :class:`FixedInputSize` instead of the program's error.
    """

    def __init__(self, normalize: Normalize, net: nn.Module, name: str = "") -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net
        self.name = name
        self.fixed_size: tuple[int, int] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.fixed_size is not None and tuple(x.shape[-2:]) != self.fixed_size:
            height, width = self.fixed_size
            raise FixedInputSize(
                f"model {self.name} is an exported program that takes {height}x{width} inputs only, and this "
                f"method gives it {x.shape[-2]}x{x.shape[-1]}: a feature visualization's jitter or larger image_size "
                "(give jitter 0 and the input size), DeepDream's smaller octaves (give octaves=1); or export with "
                "dynamic height and width"
            )
        return self.net(self.normalize(x))


class ScriptLeaf(nn.Module):
    """A TorchScript submodule behind a Python module, so forward hooks can observe it."""

    def __init__(self, inner: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)


def torchvision_architectures() -> list[str]:
    """Builder names of torchvision's image classifiers."""
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _inner_spec(arch: str, weights: str, num_classes: int) -> tuple[ModelSpec, dict[str, Path]]:
    """The registry-style spec of torchvision's ``arch`` (named ``arch``) and the explicit file, if any."""
    import torchvision.models

    known = torchvision_architectures()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=5, cutoff=0.5)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise OwnModelError(
            f"unknown torchvision architecture {arch!r}{hint} (all: `torchvision.models.list_models()`)"
        )
    build = partial(torchvision.models.get_model, arch, weights=None, num_classes=num_classes)
    files: dict[str, Path] = {}
    record = WeightsRecord(origin=f"torchvision {arch}")
    if _is_path(weights):
        files[arch] = Path(weights).expanduser()
    else:
        enum = torchvision.models.get_model_weights(arch)
        try:
            published = enum[weights or "DEFAULT"]
        except KeyError:
            choices = ", ".join([member.name for member in enum] + ["DEFAULT"])
            raise OwnModelError(
                f"{arch} has no published weights {weights!r} (choices: {choices}, or a state_dict path)"
            ) from None
        record = WeightsRecord.from_url(published.url, origin=f"torchvision {arch} {published.name}")
    inner = ModelSpec(
        name=arch, task="", dataset="", description="", input_shape=(3, 1, 1), num_classes=num_classes,
        labels=(), preprocessing=_IDENTITY, build=build, weights=record,
    )  # fmt: skip
    return inner, files


def own_needs_download(source: str, card_path: Path | None, options: WeightsOptions) -> bool:
    """True when loading ``--model NAME=SOURCE`` would download torchvision's published weights."""
    try:
        kind, arch, weights = parse_source(source)
        if kind != "torchvision" or _is_path(weights):
            return False
        labels = card_for(kind, card_path).labels or ()
        inner, _files = _inner_spec(arch, weights, len(labels))
    except (OwnModelError, WeightsError):
        return False  # load_own_model reports it
    return needs_download(inner, WeightsOptions(**{**vars(options), "files": {}}))


def _torchvision_net(
    arch: str, weights: str, num_classes: int, name: str, options: WeightsOptions, progress: Progress
) -> tuple[nn.Module, WeightsInfo]:
    inner, files = _inner_spec(arch, weights, num_classes)
    build, record = inner.build, inner.weights
    pins = {arch: options.sha256[name]} if name in options.sha256 else {}
    try:
        allowed = WeightsOptions(**{**vars(options), "files": files, "sha256": pins})
        state, info = resolve_weights(inner, allowed, report=progress.report, cancel=progress.cancel)
    except WeightsNotFound as exc:
        if files:
            raise
        where = f"--weights-dir or the hub cache {options.checkpoints_dir()}"
        fetched = "downloads are off (--no-download)" if not options.download else str(exc).splitlines()[-1]
        raise WeightsNotFound(
            f"torchvision's {record.origin.removeprefix('torchvision ')} weights ({record.canonical_name}) are not in "
            f"{where}, and {fetched}; or give a state_dict: --model {name}=torchvision:{arch}:PATH"
        ) from None
    except WeightsError as exc:
        if "shape mismatches" not in str(exc):
            raise
        raise WeightsError(f"{exc}; {arch} is built with {num_classes} classes, one per label of the card") from None
    net = build_module(build)
    net.load_state_dict(state, strict=True)
    for module in net.modules():  # hooks and guided backprop see each layer's own output
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return net, info


def _is_path(weights: str) -> bool:
    return "/" in weights or "\\" in weights or weights.endswith((".pt", ".pth", ".bin")) or Path(weights).is_file()


def _file_info(path: Path) -> WeightsInfo:
    if not path.is_file():
        raise OwnModelError(f"file {str(path)!r} does not exist")
    return WeightsInfo(source="file", path=str(path), sha256=file_sha256(path), canonical_name="")


def _script_tree(module: nn.Module) -> nn.Module:
    """A scripted Sequential as a Python Sequential of hookable leaves (recursively); else one leaf."""
    if not isinstance(module, torch.jit.ScriptModule):
        raise OwnModelError(f"expected a TorchScript module, got {type(module).__name__}")
    if module.original_name == "Sequential":
        return nn.Sequential(OrderedDict((name, _script_tree(child)) for name, child in module.named_children()))
    return ScriptLeaf(module)


def _opaque_note(module: nn.Module) -> str:
    """Which TorchScript parts keep their layers to themselves: a scripted module other than an
    nn.Sequential runs its compiled forward, which Python hooks cannot enter."""
    leaves = [(path, sub) for path, sub in module.named_modules() if isinstance(sub, ScriptLeaf)]
    opaque = [path for path, leaf in leaves if list(leaf.inner.children())]
    if not opaque:
        return ""
    return (f"{', '.join(opaque)}: compiled TorchScript whose layers hooks cannot reach (only nn.Sequential "
            "containers are opened); serve it as a torch.export program to address every layer")  # fmt: skip


def _script_types(net: nn.Module) -> dict[str, str]:
    return {
        f"{NET}.{path}" if path else NET: sub.inner.original_name
        for path, sub in net.named_modules()
        if isinstance(sub, ScriptLeaf)
    }


def _torchscript_net(path: Path) -> tuple[nn.Module, WeightsInfo]:
    info = _file_info(path)
    try:
        scripted = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # any unreadable file: say what it is not
        if _pickled_module(path):
            raise OwnModelError(
                f"{str(path)!r} was written by torch.save (a whole module or a state_dict), not TorchScript: "
                "save torch.jit.script(net) or a torch.export program, or give a torchvision architecture's "
                "state_dict as torchvision:ARCH:PATH"
            ) from None
        raise OwnModelError(
            f"{str(path)!r} is not a TorchScript file ({type(exc).__name__}: {_torch_message(exc)})"
        ) from None
    return _script_tree(scripted), info


def _export_net(path: Path) -> tuple[nn.Module, WeightsInfo, dict[str, str]]:
    """The program unflattened into modules, and their original types (``net.features.0`` ->
    ``Conv2d``) from the graph's module stacks, since unflattened modules are all InterpreterModules."""
    info = _file_info(path)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # any unreadable file: say what it is not
        raise OwnModelError(
            f"{str(path)!r} is not a torch.export program ({type(exc).__name__}: {_torch_message(exc)})"
        ) from None
    types: dict[str, str] = {}
    for node in program.graph.nodes:
        for module_path, kind in (node.meta.get("nn_module_stack") or {}).values():
            name = kind if isinstance(kind, str) else kind.__qualname__
            types[f"{NET}.{module_path}" if module_path else NET] = name.rsplit(".", 1)[-1]
    return torch.export.unflatten(program), info, types


def _torch_message(exc: BaseException) -> str:
    """The line of an exception that says what went wrong: the first, except for TorchScript's
    interpreter, which opens with "The following operation failed" and ends with the cause."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()] or [""]
    line = lines[-1] if lines[0].startswith("The following operation failed") else lines[0]
    return line.removeprefix("RuntimeError: ")[:300]


def _pickled_module(path: Path) -> bool:
    """Whether ``path`` is a ``torch.save`` archive (a whole module or a state_dict), not TorchScript."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/data.pkl") for n in names) and not any(n.endswith("/constants.pkl") for n in names)


_IDENTITY = Preprocessing(channels=3, input_size=1, resize_shorter=0, crop=0, mean=(0.0,), std=(1.0,), convention="")


@dataclass(frozen=True)
class Progress:
    """A download's progress reports (``"downloading, N % (...)"``) and its cancel event."""

    report: Callable[[str], None] | None = None
    cancel: threading.Event | None = None


def load_own_model(
    name: str,
    source: str,
    card_path: Path | None,
    options: WeightsOptions,
    device: str = "cpu",
    progress: Progress | None = None,
) -> LoadedModel:
    """Build, load and check the model ``--model NAME=SOURCE`` (card ``card_path``); never raises.

    Returns:
        READY with the served module and its catalogue, or UNAVAILABLE with the reason (naming the
        model) and an empty catalogue.
    """
    try:
        kind, target, weights = parse_source(source)
        card = card_for(kind, card_path)
        return _load(name, kind, target, weights, card, options, device, progress or Progress())
    except (OwnModelError, WeightsError) as exc:
        missing = isinstance(exc, WeightsNotFound)
        log.error("model %s (--model %s=%s): UNAVAILABLE: %s", name, name, source, exc)
        reason = f"model {name} ({source}): {'' if missing else 'refused: '}{exc}"
    except Exception as exc:  # the user's module did what no check foresaw: it alone stays out
        log.exception("model %s (--model %s=%s): UNAVAILABLE", name, name, source)
        reason = f"model {name} ({source}): refused: {type(exc).__name__}: {_torch_message(exc)}"
    return LoadedModel(placeholder_spec(name, source), UNAVAILABLE, reason, None, _NONE, [])


_NONE = WeightsInfo(source="", path="", sha256="", canonical_name="")


def placeholder_spec(name: str, source: str) -> ModelSpec:
    """The spec a model has until it loads (or when it cannot): its name, source and kind."""
    return ModelSpec(
        name=name, task="image-classification", dataset="", description=f"--model {name}={source}",
        input_shape=(3, 1, 1), num_classes=0, labels=(), preprocessing=_IDENTITY, build=nn.Identity,
        weights=WeightsRecord(), source=source.partition(":")[0],
    )  # fmt: skip


def _load(
    name: str,
    kind: str,
    target: str,
    weights: str,
    card: ModelCard,
    options: WeightsOptions,
    device: str,
    progress: Progress,
) -> LoadedModel:
    type_names: dict[str, str] = {}
    if kind == "torchvision":
        if card.input_shape is None or card.labels is None:
            raise OwnModelError("internal: torchvision card without input shape or labels")
        net, info = _torchvision_net(target, weights, len(card.labels), name, options, progress)
    elif kind == "torchscript":
        net, info = _torchscript_net(Path(target).expanduser())
        type_names = _script_types(net)
    else:
        net, info, type_names = _export_net(Path(target).expanduser())
    if card.input_shape is None:
        raise OwnModelError(f"a {kind} model needs a card (--model-card {name}=card.json) giving input_shape")
    channels = card.input_shape[0]
    mean = card.mean or (0.0,) * channels
    std = card.std or (1.0,) * channels
    if len(mean) != channels or len(std) != channels:
        raise OwnModelError(f"card: mean {mean} and std {std} need {channels} values (input_shape {card.input_shape})")
    module = Served(Normalize(mean, std), net, name).eval().requires_grad_(False)
    aliases = {path: f"{NET}.{path}" for path, _ in net.named_modules() if path}
    layers, output = _catalogue(module, card.input_shape, aliases, type_names)
    if kind == "export" and not _takes_other_sizes(module, card.input_shape):
        module.fixed_size = (card.input_shape[1], card.input_shape[2])
    if not isinstance(output, Tensor):
        what = type(output).__name__ + (f" of {len(output)}" if isinstance(output, tuple | list) else "")
        raise OwnModelError(f"the model returns a {what}, not one tensor of logits (1, classes): serve a module "
                            "whose forward returns the logits alone (e.g. a wrapper returning out[0])")  # fmt: skip
    if output.dim() != 2 or output.shape[0] != 1:
        raise OwnModelError(f"a blank input {tuple(card.input_shape)} gives output shape {tuple(output.shape)}, "
                            "not (1, classes)")  # fmt: skip
    _check_batches(module, card.input_shape, kind)
    classes = int(output.shape[1])
    labels = card.labels if card.labels is not None else tuple(str(i) for i in range(classes))
    if classes != len(labels):
        raise OwnModelError(f"the card has {len(labels)} classes (labels) but the model outputs {classes}")
    spec = _spec(name, kind, target, weights, card, labels, aliases, layers, _opaque_note(module))
    module.to(device)
    pretrained = spec.pretrained if spec.pretrained is not None else info.pretrained
    log.info("%s: READY, %s model from %s (sha256 %s, pretrained=%s)", name, kind, info.path or info.source,
             info.sha256[:12], pretrained)  # fmt: skip
    return LoadedModel(spec, READY, "", module, info, layers)


RECTIFIERS = ("ReLU", "ReLU6")


def _gradcam_layer(layers: list[LayerInfo]) -> str:
    """The last convolution's rectified maps (the ReLU after it: conv, [batch norm,] ReLU), as the
    Grad-CAM authors' relu5_3; else the last convolution, else the last spatial layer; "" if none
    (Grad-CAM then asks for a layer). A pre-activation map sums to below zero everywhere more often,
    and Grad-CAM's ReLU then leaves nothing."""
    convs = [i for i, layer in enumerate(layers) if layer.has_kernels or layer.type == "Conv2d"]  # or scripted
    if convs:
        last = layers[convs[-1]]
        for after in layers[convs[-1] + 1 : convs[-1] + 3]:
            if after.output_shape != last.output_shape:
                break
            if after.type in RECTIFIERS:
                return after.name
        return last.name
    spatial = [layer.name for layer in layers if len(layer.output_shape) == 3]
    return spatial[-1] if spatial else ""


def _dfi_layers(card: ModelCard, aliases: Mapping[str, str], layers: list[LayerInfo]) -> tuple[str, ...]:
    """The card's deep feature interpolation layers (module paths); else the last layer of each of
    the three deepest spatial resolutions (one layer per scale, as VGG's relu3_1..relu5_1)."""
    if card.default_dfi_layers:
        paths = {layer.name for layer in layers}
        resolved = tuple(aliases.get(name, name) for name in card.default_dfi_layers)
        unknown = [name for name, path in zip(card.default_dfi_layers, resolved, strict=True) if path not in paths]
        if unknown:
            raise OwnModelError(f"the card's default_dfi_layers {unknown} are not layers of the model")
        return resolved
    last_of: dict[tuple[int, ...], str] = {}
    for layer in layers[1:]:  # after the normalization
        if len(layer.output_shape) == 3:
            last_of.pop(layer.output_shape[1:], None)
            last_of[layer.output_shape[1:]] = layer.name
    return tuple(last_of.values())[-3:]


def _check_batches(module: nn.Module, input_shape: tuple[int, int, int], kind: str) -> None:
    """Refuse a model that takes one image at a time: methods run batches (samples, steps, images)."""
    try:
        with torch.no_grad():
            module(torch.zeros(2, *input_shape))
    except Exception as exc:  # the program's own shape guard, whatever it raises
        fix = {
            "export": "export it with a dynamic batch, from an example of 2 images: torch.export.export(net, "
            "(torch.zeros(2, C, H, W),), dynamic_shapes=({0: torch.export.Dim('batch')},))",
            "torchscript": "script a forward that takes any batch size (no hard-coded 1 in view/reshape)",
        }.get(kind, "check the forward takes any batch size")
        raise OwnModelError(
            f"a batch of 2 blank inputs does not fit the model ({type(exc).__name__}: {_torch_message(exc)}); "
            f"the methods run batches (SmoothGrad samples, integrated-gradient steps, many images): {fix}"
        ) from None


def _takes_other_sizes(module: nn.Module, input_shape: tuple[int, int, int]) -> bool:
    """Whether a forward at one pixel more each way runs (an exported program may fix H and W)."""
    channels, height, width = input_shape
    try:
        with torch.no_grad():
            module(torch.zeros(1, channels, height + 1, width + 1))
    except Exception:  # the program's own shape guard, whatever it raises
        return False
    return True


def _catalogue(
    module: nn.Module, input_shape: tuple[int, int, int], aliases: dict[str, str], type_names: Mapping[str, str]
) -> tuple[list[LayerInfo], Tensor]:
    try:
        return traced_catalogue(module, input_shape, aliases, type_names)
    except Exception as exc:  # the user's forward: whatever it raises means the card's shape does not fit
        raise OwnModelError(
            f"a blank input of the card's input_shape {tuple(input_shape)} does not fit the model "
            f"({type(exc).__name__}: {_torch_message(exc)})"
        ) from None


def _spec(
    name: str,
    kind: str,
    target: str,
    weights: str,
    card: ModelCard,
    labels: tuple[str, ...],
    aliases: dict[str, str],
    layers: list[LayerInfo],
    layers_note: str,
) -> ModelSpec:
    assert_shape = card.input_shape
    if assert_shape is None:
        raise OwnModelError("internal: card without input shape")
    channels, size = assert_shape[0], assert_shape[1]
    gradcam = card.default_gradcam_layer
    if gradcam:
        resolved = aliases.get(gradcam, gradcam)
        if resolved not in {layer.name for layer in layers}:
            raise OwnModelError(f"the card's default_gradcam_layer {gradcam!r} is not a layer of the model")
        gradcam = resolved
    else:
        gradcam = _gradcam_layer(layers[1:])  # after the normalization: never a map of the input
    source = f"{kind}:{target}" + (f":{weights}" if weights else "")
    return ModelSpec(
        name=name,
        task="image-classification",
        dataset=card.dataset,
        description=card.description or f"{kind} model ({source})",
        input_shape=assert_shape,
        num_classes=len(labels),
        labels=labels,
        preprocessing=Preprocessing(
            channels=channels,
            input_size=size,
            resize_shorter=card.resize_shorter,
            crop=card.crop,
            mean=card.mean or (0.0,) * channels,
            std=card.std or (1.0,) * channels,
            convention=card.convention or ("RGB" if channels == 3 else "grayscale") + f", {size}x{size} input",
        ),
        build=nn.Identity,  # never rebuilt: the hub holds the loaded module
        weights=WeightsRecord(origin=source),
        aliases=aliases,
        default_gradcam_layer=gradcam,
        default_dfi_layers=_dfi_layers(card, aliases, layers),
        training_dataset=card.training_dataset or None,
        source=kind,
        pretrained=card.pretrained,
        layers_note=layers_note,
    )


__all__ = ["ScriptLeaf", "Served", "load_own_model", "torchvision_architectures"]
