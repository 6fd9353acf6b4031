"""`interp`: command-line client for the interp.v1 service.

    interp models
    interp layers vgg16
    interp classify lenet shirt.png --top-k 3
    interp saliency vgg16 cat.png --method smoothgrad --samples 20 -o out/cat_sal.png
    interp attack lenet shirt.png --method pgd --eps 0.03 --eps 0.1 -o out/attack
    interp dream vgg16 cat.png --layer relu4_3 --layer relu5_1:0.5 --frames out/frames -o out/dream.png

Tables for people by default; ``--json`` prints one JSON document on stdout instead (no progress
bars). Errors print ``error: <CODE>: <message>`` on stderr and exit non-zero (see EXIT STATUS).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from client.errors import InterpError
from client.results import ModelInfo, Prediction, ProgressEvent, file_part
from client.sdk import DEFAULT_TARGET, InterpClient, _fill_set
from protos import interp_pb2 as pb
from protos.interp_docs import FIELD_DOCS
from protos.methods import METHODS, Method

EXIT_OK = 0
EXIT_FAILURE = 1  # a local file could not be read or written
EXIT_USAGE = 2  # bad command line or argument (also argparse's code)
EXIT_STATUS_BASE = 10  # + the gRPC status code number
EXIT_INTERRUPTED = 130

_EPILOG = f"""\
environment:
  INTERP_SERVER   server address (default {DEFAULT_TARGET}); dns:///host:port balances round-robin
  INTERP_TOKEN    bearer token sent with every call
  INTERP_CA_FILE  PEM root certificate(s): connect with TLS

exit status:
  0 success; 1 local file error; 2 usage error; 130 interrupted;
  10 + gRPC status code for a failed call: 11 CANCELLED, 13 INVALID_ARGUMENT,
  14 DEADLINE_EXCEEDED, 15 NOT_FOUND, 18 RESOURCE_EXHAUSTED, 19 FAILED_PRECONDITION (model
  unavailable), 22 UNIMPLEMENTED, 23 INTERNAL, 24 UNAVAILABLE (no server), 26 UNAUTHENTICATED
"""

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


_HINTS = {
    "UNAVAILABLE": "is a server running at {server}? Set --server or INTERP_SERVER (TLS: --ca-file).",
    "UNAUTHENTICATED": "the server wants a token: set --token or INTERP_TOKEN.",
    "UNIMPLEMENTED": "this server does not implement that call yet (see `interp info`).",
}


class UsageError(Exception):
    """A command-line value the CLI itself rejects (exit status 2)."""


def exit_code_for(error: InterpError) -> int:
    """Exit status for a failed call: 10 + the gRPC status code number (1 if there is none)."""
    if error.code is None:
        return EXIT_FAILURE
    return EXIT_STATUS_BASE + int(error.code.value[0])


# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """An aligned plain-text table. ``align``: one of 'l'/'r' per column (default left)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = []
        for i, cell in enumerate(row):
            right = i < len(align) and align[i] == "r"
            parts.append(cell.rjust(widths[i]) if right else cell.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + (",)" if len(shape) == 1 else ")")


def _prediction(p: Prediction | None) -> str:
    if p is None:
        return "-"
    return f"{p.index} {p.label} (p={p.probability:.4f})" if p.label else f"{p.index} (p={p.probability:.4f})"


def _jsonable(value: Any) -> Any:
    """Results -> JSON: dataclasses as objects, arrays as {dtype, shape}, PNG bytes left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if isinstance(item, bytes) or (
                isinstance(item, tuple) and item and all(isinstance(x, bytes) for x in item)
            ):
                continue  # PNGs go to files, not to the JSON document
            out[field.name] = _jsonable(item)
        return out
    if isinstance(value, np.ndarray):
        return {"dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _stamp_line(result: Any) -> str:
    weights = "pretrained" if result.pretrained else "RANDOM weights (pretrained=false)"
    sha = f", sha256 {result.weights_sha256[:12]}" if result.weights_sha256 else ""
    rid = f", request {result.request_id}" if result.request_id else ""
    return f"model {result.model} ({weights}{sha}), {result.elapsed_ms:.1f} ms{rid}"


def _files_line(paths: Sequence[Path]) -> str:
    return "wrote " + ", ".join(str(p) for p in paths) if paths else "wrote no files (the server sent no images)"


class _Progress:
    """Progress callback: a tqdm bar on stderr and, with --frames, preview PNGs as frame_0001.png..."""

    def __init__(self, show_bar: bool, frames_dir: Path | None, stream: TextIO) -> None:
        self.show_bar = show_bar
        self.frames_dir = frames_dir
        self.stream = stream
        self.frames: list[Path] = []
        self._bar: Any = None

    def __call__(self, event: ProgressEvent) -> None:
        if self.show_bar:
            if self._bar is None:
                from tqdm import tqdm  # only streaming commands pay for the import

                self._bar = tqdm(total=event.total_steps or None, file=self.stream, unit="step", dynamic_ncols=True)
            if event.total_steps and self._bar.total != event.total_steps:
                self._bar.total = event.total_steps
            if event.stage:
                self._bar.set_description_str(event.stage, refresh=False)
            self._bar.set_postfix_str(f"objective={event.objective:.4g}", refresh=False)
            self._bar.update(max(0, event.step - self._bar.n))
        if self.frames_dir is not None and event.preview_png:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
            path = self.frames_dir / f"frame_{len(self.frames) + 1:04d}.png"
            path.write_bytes(event.preview_png)
            self.frames.append(path)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _frames_line(progress: _Progress) -> str:
    if progress.frames_dir is None:
        return ""
    if not progress.frames:
        return f"\nno preview frames received (set --preview-every); {progress.frames_dir} left empty"
    return f"\nwrote {len(progress.frames)} preview frames to {progress.frames_dir}/frame_NNNN.png"


# ---------------------------------------------------------------------------------------------
# Argument values
# ---------------------------------------------------------------------------------------------


def _class_target(value: str | None) -> int | str | None:
    """--target for saliency/attack: an integer is a class index, anything else a label."""
    if value is None:
        return None
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def _dream_layers(values: Sequence[str]) -> list[tuple[str, float] | str]:
    """--layer L or L:W (weight W)."""
    layers: list[tuple[str, float] | str] = []
    for value in values:
        name, sep, weight = value.rpartition(":")
        if sep and name:
            try:
                layers.append((name, float(weight)))
                continue
            except ValueError:
                raise UsageError(f"--layer {value!r}: the weight after ':' must be a number") from None
        layers.append(value)
    return layers


def _image_set(option: str, values: Sequence[str] | None) -> str | list[Path] | None:
    """--positive/--negative: image files and/or directories of images, or one class name."""
    if not values:
        return None
    paths: list[Path] = []
    missing = []
    for value in values:
        path = Path(value)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"{option} {value}: the directory holds no image files")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            missing.append(value)
    if missing:
        if len(values) == 1:
            return values[0]  # a class name, e.g. "ankle boot"
        raise UsageError(f"{option}: no such file or directory: {', '.join(missing)}")
    return paths


def _split(values: Sequence[str] | None, kind: Callable[[str], Any], option: str) -> list[Any] | None:
    """Repeated and/or comma-separated values: ``--channel 0 --channel 1,2`` -> [0, 1, 2]."""
    if not values:
        return None
    out = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                try:
                    out.append(kind(part.strip()))
                except ValueError:
                    raise UsageError(f"{option} {value!r}: expected {kind.__name__} values like 1,2,3") from None
    return out


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "-"


def _layer_label(requested: str, path: str) -> str:
    return path if not requested or requested == path else f"{requested} ({path})"


# ---------------------------------------------------------------------------------------------
# Options derived from the method table: request fields and Params fields, help from interp.proto
# ---------------------------------------------------------------------------------------------

#: Option names that differ from the field's (kept short, or singular for repeated fields).
_OPTION_NAMES = {
    "epsilons": ("--eps", "--epsilon"),
    "channels": ("--channel",),
    "layers": ("--layer",),
    "alphas": ("--alpha",),
    "image_size": ("--size", "--image-size"),
    "learning_rate": ("--lr", "--learning-rate"),
    "methods": ("--method",),
}

#: Help the CLI adds where a field's proto comment does not fit a command line.
_HELP = {
    "model": "a served model's name (see: interp models)",
    "image": "image file (PNG, JPEG, BMP, WebP, TIFF)",
    "source": "source image file",
    "layer": "layer name or alias (see: interp layers MODEL)",
    "channels": "channel index; repeat or give a list like 0,1,2",
    "epsilons": "epsilon in pixel units (0, 1]; repeat or give a list to sweep",
    "target": "class index or label (default: the predicted class; attack: untargeted)",
    "label": "the true class, index or label (default: the predicted class); a clean error counts as broken",
}

#: Request fields a command handles itself (images, oneofs), and per-command option overrides.
_SPECIAL = {"image", "source", "sets", "model"}

#: -o/--output per command: (metavar, True if a file path (else a directory), help).
_OUTPUTS = {
    "activations": ("DIR", False, "directory for LAYER.png and input.png"),
    "kernels": ("FILE", True, "PNG file to write"),
    "saliency": ("FILE", True, "overlay PNG; STEM_heatmap.png, STEM_input.png beside"),
    "attack": ("DIR", False, "directory for adversarial/perturbation PNGs per epsilon and input.png"),
    "visualize": ("FILE", True, "grid PNG; STEM_channel_NNNN.png beside"),
    "dream": ("FILE", True, "dreamed PNG; STEM_input.png beside"),
    "interpolate": ("DIR", False, "directory for alpha_A.png and input.png"),
    "minimal-attack": ("DIR", False, "directory for adversarial.png, perturbation.png and input.png"),
    "robustness": ("FILE", True, "accuracy-vs-epsilon curve PNG"),
    "top": ("DIR", False, "directory for grid.png and each entry's receptive-field crop"),
    "neighbors": ("DIR", False, "directory for grid.png, input.png and each neighbour's PNG"),
    "embed": ("FILE", True, "scatter PNG; STEM_atlas.png (the thumbnail atlas) beside"),
    "place": ("FILE", True, "the map with the placed images marked; STEM_input_NN.png beside"),
}


def _field_help(message: type[Message], name: str) -> str:
    text = _HELP.get(name) or FIELD_DOCS.get(f"{message.DESCRIPTOR.full_name}.{name}", "")
    return text.replace("%", "%%")


def _scalar_type(field: Any) -> Callable[[str], Any]:
    if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
        return int
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return float
    return str


def _add_field_option(parser: Any, message: type[Message], field: Any, method: Method, dest: str) -> None:
    name = field.name
    flags = _OPTION_NAMES.get(name, ("--" + name.replace("_", "-"),))
    help_text = _field_help(message, name)
    kwargs: dict[str, Any] = {"dest": dest, "help": help_text or None, "default": None}
    if name in method.required and dest.startswith("f_"):
        kwargs["required"] = True
    if name in method.choices:
        kwargs["choices"] = method.choices[name]
    if field.message_type is not None and field.message_type.name == "LayerWeight":
        kwargs.update(action="append", metavar="L[:W]", help="layer, optionally with a weight W; repeat for more")
    elif field.is_repeated:
        kwargs.update(action="append", metavar=name.rstrip("s").upper())
    elif field.type == FieldDescriptor.TYPE_BOOL:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif field.message_type is not None:
        kwargs["metavar"] = field.message_type.name.upper()
    else:
        kwargs.update(type=_scalar_type(field), metavar=name.upper())
    parser.add_argument(*flags, **kwargs)


def _add_method_options(parser: argparse.ArgumentParser, method: Method) -> None:
    """Positionals, request options and Params options of one RPC, from the descriptors."""
    request = method.request
    for name in method.positionals:
        if name == "image" and _takes_many(method):
            parser.add_argument(
                name,
                nargs="+",
                help="image file(s) or directories of images (PNG, JPEG, BMP, WebP, TIFF); several go in "
                "batched calls, one answer per image",
            )
            continue
        parser.add_argument(name, help=_field_help(request, name) or None)
    for field in request.DESCRIPTOR.fields:
        if field.name in method.positionals or field.name in _SPECIAL or field.name == method.params:
            continue
        if field.message_type is not None and field.message_type.name not in ("Target", "LayerWeight"):
            continue
        if field.name == "method":
            choices = method.choices.get("method", ())
            parser.add_argument(
                "--method",
                dest="f_method",
                choices=choices or None,
                default=choices[0] if choices else None,
                help=f"default {choices[0]}" if choices else None,
            )
            continue
        _add_field_option(parser, request, field, method, f"f_{field.name}")
    params = method.params_message
    if params is not None:
        group = parser.add_argument_group(f"{method.rpc} parameters (unset: the server's default, echoed back)")
        for field in params.DESCRIPTOR.fields:
            if field.name in request.DESCRIPTOR.fields_by_name:
                continue  # a request option of the same name already exists
            _add_field_option(group, params, field, method, f"p_{field.name}")


def _takes_many(method: Method) -> bool:
    """Whether a command's image positional takes several files (its request has ``images``)."""
    return "images" in method.request.DESCRIPTOR.fields_by_name and "image" in method.positionals


def image_files(arguments: Sequence[str]) -> tuple[list[Path], bool]:
    """Image files named on the command line: files as given, directories expanded to their images.

    Returns the files (a directory's in sorted name order) and whether they are several (more
    than one argument, or any directory), i.e. whether the answer is one per image.
    """
    files: list[Path] = []
    many = len(arguments) > 1
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            many = True
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"directory {argument} holds no image files ({', '.join(sorted(_IMAGE_SUFFIXES))})")
            files.extend(found)
        else:
            files.append(path)
    return files, many


def _request_values(method: Method, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Request field values and Params values from parsed options (unset ones left out)."""
    values: dict[str, Any] = {}
    for name in method.positionals:
        values[name] = getattr(args, name)
    for field in method.request.DESCRIPTOR.fields:
        value = getattr(args, f"f_{field.name}", None)
        if value is None:
            continue
        if field.message_type is not None and field.message_type.name == "Target":  # target, label
            value = _class_target(value)
        elif field.message_type is not None and field.message_type.name == "LayerWeight":
            value = _dream_layers(value)
        elif field.is_repeated and field.message_type is None:
            value = _split(value, _scalar_type(field), "--" + field.name)
        values[field.name] = value
    params: dict[str, Any] = {}
    message = method.params_message
    if message is not None:
        for field in message.DESCRIPTOR.fields:
            value = getattr(args, f"p_{field.name}", None)
            if value is not None:
                params[field.name] = value
    return values, params


# ---------------------------------------------------------------------------------------------
# Commands: the call is generic; what is per command is how its result reads as text
# ---------------------------------------------------------------------------------------------

Outcome = tuple[str, dict[str, Any]]


def _weights_cell(m: ModelInfo) -> str:
    if not m.weights.source and not m.weights.sha256:
        return "-"
    return " ".join(x for x in (m.weights.source or "?", m.weights.sha256[:12]) if x)


def cmd_models(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    models = c.list_models()
    rows = [
        (
            m.name,
            m.status,
            ("yes" if m.pretrained else "no") if m.ready else "-",
            _shape(m.input_shape),
            m.num_classes,
            _weights_cell(m),
            m.reason,
        )
        for m in models
    ]
    text = table(["NAME", "STATUS", "PRETRAINED", "INPUT", "CLASSES", "WEIGHTS", "REASON"], rows, "lllrrll")
    return text, {"models": _jsonable(models)}


def cmd_labels(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    labels = c.labels(args.model)
    return table(["CLASS", "LABEL"], list(enumerate(labels)), "rl"), {"model": args.model, "labels": list(labels)}


def _text_layers(r: Any, args: argparse.Namespace) -> str:
    d, m = r, r.model
    header = (
        f"{m.name}: {m.status}, pretrained={'yes' if m.pretrained else 'no'}, input {_shape(m.input_shape)}, "
        f"{m.num_classes} classes, weights {_weights_cell(m)}"
    )
    if m.reason:
        header += f"\nreason: {m.reason}"
    rows = []
    for layer in d.layers:
        rf = layer.receptive_field
        rows.append(
            (
                layer.name,
                ",".join(layer.aliases) or "-",
                layer.type,
                _shape(layer.output_shape),
                rf.size if rf else "-",
                rf.jump if rf else "-",
                f"{rf.start:g}" if rf else "-",
                f"{layer.parameters:,}",
            )
        )
    text = (
        header + "\n" + table(["NAME", "ALIASES", "TYPE", "OUTPUT", "RF", "JUMP", "START", "PARAMS"], rows, "llllrrrr")
    )
    p = d.preprocessing
    text += (
        f"\npreprocessing: {p.channels} channel(s), resize shorter side {p.resize_shorter or 'direct'}, "
        f"crop {p.crop or 'none'}, mean {list(p.mean)}, std {list(p.std)}"
        + (f", {p.convention}" if p.convention else "")
    )
    if d.default_gradcam_layer:
        text += f"\ndefault grad_cam layer: {d.default_gradcam_layer}"
    text += f"\nclass labels: {len(d.labels)} (interp labels {m.name})"
    return text


def _text_classify(r: Any, args: argparse.Namespace) -> str:
    rows = [(i + 1, p.index, p.label, f"{p.probability:.4f}") for i, p in enumerate(r.predictions)]
    return table(["RANK", "CLASS", "LABEL", "PROBABILITY"], rows, "rrlr")


def _text_info(info: Any, args: argparse.Namespace) -> str:
    rows = [
        ("server", f"{info.version} ({info.api_version})"),
        ("address", args.server),
        ("device", info.device),
        ("workers", info.worker_threads),
        ("auth", "token required" if info.auth_required else "none"),
        ("tls", "yes" if info.tls else "no"),
        ("models", ", ".join(info.models)),
        ("rpcs", ", ".join(info.implemented_rpcs)),
        ("heavy work", f"{info.running_heavy} running, {info.queued_heavy} queued"),
    ]
    text = _key_values(rows)
    text += "\nlimits:\n" + _key_values(list(info.limits.items()), indent="  ")
    if info.libraries:
        text += "\nlibraries:\n" + _key_values(list(info.libraries.items()), indent="  ")
    return text


def _key_values(rows: Sequence[tuple[str, Any]], indent: str = "") -> str:
    width = max((len(key) for key, _ in rows), default=0)
    return "\n".join(f"{indent}{key.ljust(width)}  {value}".rstrip() for key, value in rows)


def _text_activations(r: Any, args: argparse.Namespace) -> str:
    rows = []
    for layer in r.layers:
        mean = layer.channel_mean
        mx = layer.channel_max
        rows.append(
            (
                _layer_label(layer.requested, layer.layer),
                _shape(layer.activation.shape)
                if layer.activation is not None
                else (f"C={mean.shape[0]}" if mean is not None else "-"),
                f"{float(mean.mean()):.4g}" if mean is not None and mean.size else "-",
                f"{float(mx.max()):.4g}" if mx is not None and mx.size else "-",
                ",".join(str(ch) for ch in layer.top_channels[:8]) + ("..." if len(layer.top_channels) > 8 else "")
                or "-",
            )
        )
    text = table(["LAYER", "SHAPE", "MEAN", "MAX", "TOP CHANNELS"], rows, "llrrl")
    if r.prediction is not None:
        text += f"\nprediction: {_prediction(r.prediction)}"
    return text


def _text_kernels(r: Any, args: argparse.Namespace) -> str:
    shape = _shape(r.weights.shape) if r.weights is not None else "-"
    return (
        f"layer {_layer_label(args.layer, r.layer)}: weights {shape}, bias {'yes' if r.bias is not None else 'no'}, "
        f"rendered as {'RGB patches' if r.rgb else 'per-input-channel greyscale'}"
    )


def _text_saliency(r: Any, args: argparse.Namespace) -> str:
    map_text = f"\nmap {_shape(r.map.shape)}, max {float(r.map.max()):.4g}" if r.map is not None and r.map.size else ""
    return f"{r.method} saliency for class {_prediction(r.target)}" + map_text


def _text_attack(r: Any, args: argparse.Namespace) -> str:
    rows = [
        (
            f"{o.epsilon:g}",
            f"{o.prediction.index} {o.prediction.label}" if o.prediction else "-",
            f"{o.prediction.probability:.4f}" if o.prediction else "-",
            "yes" if o.success else "no",
            f"{o.linf:.4f}",
            f"{o.l2:.4f}",
        )
        for o in r.outcomes
    ]
    head = f"{r.method} on {r.model}: original {_prediction(r.original)}"
    if r.targeted:
        head += f", target {_prediction(r.target)}"
    return head + "\n" + table(["EPS", "PREDICTION", "PROB", "SUCCESS", "LINF", "L2"], rows, "rlrlrr")


def _text_visualize(r: Any, args: argparse.Namespace) -> str:
    rows = list(zip(r.channels, (f"{a:.4g}" for a in r.activations), strict=False))
    return f"{_layer_label(args.layer, r.layer)} on {r.model}\n" + table(["CHANNEL", "ACTIVATION"], rows, "rr")


def _text_dream(r: Any, args: argparse.Namespace) -> str:
    rows = [(g.layer, f"{g.norm_before:.4g}", f"{g.norm_after:.4g}", f"{g.ratio:.2f}x") for g in r.gains]
    return table(["LAYER", "NORM BEFORE", "NORM AFTER", "GAIN"], rows, "lrrr")


def _text_interpolate(r: Any, args: argparse.Namespace) -> str:
    rows = [
        (
            f"{a.alpha:g}",
            f"{a.prediction.index} {a.prediction.label}" if a.prediction else "-",
            f"{a.prediction.probability:.4f}" if a.prediction else "-",
            f"{a.feature_error:.4f}",
        )
        for a in r.results
    ]
    return f"layers: {', '.join(r.layers)}\n" + table(["ALPHA", "PREDICTION", "PROB", "FEATURE ERROR"], rows, "rlrr")


def _text_minimal_attack(r: Any, args: argparse.Namespace) -> str:
    head = f"{r.method} on {r.model}: original {_prediction(r.original)}"
    head += f", {'target' if r.targeted else 'label'} {_prediction(r.label)}"
    if r.clean_misclassified:
        return head + "\nthe clean image is already misclassified: success without perturbation"
    if not r.found:
        searched = f" up to eps {r.params.get('max_epsilon', 1.0):g}" if r.level == -1 and r.runs else ""
        return head + f"\nno successful perturbation found{searched}"
    lines = [head]
    if r.method.startswith("deepfool"):
        lines.append(
            f"deepfool: {r.iterations} iterations; before 8-bit rounding: success {'yes' if r.success_raw else 'no'}, "
            f"Linf {r.linf_raw:.4f}, L2 {r.l2_raw:.4f}"
            + ("; rounded away from the image (nearest rounding lost the success)" if r.rounded_outward else "")
        )
    else:
        lines.append(
            f"minimal eps {r.level}/255 = {r.epsilon:.4f}: success at {r.level}/255, failure at {r.level - 1}/255 "
            f"({r.runs} attack runs)"
        )
        if not r.monotone:
            lines.append(f"not monotone: larger radii failed too: {', '.join(f'{k}/255' for k in r.violations)}")
    lines.append(
        f"adversarial: {_prediction(r.prediction)}, success {'yes' if r.success else 'no'}, "
        f"Linf {r.linf:.4f}, L2 {r.l2:.4f}"
    )
    return "\n".join(lines)


def _text_robustness(r: Any, args: argparse.Namespace) -> str:
    head = (
        f"{r.model} on {r.dataset}: {r.images} images{f' ({r.skipped} unreadable, skipped)' if r.skipped else ''}, "
        f"clean accuracy {r.clean_accuracy:.4f} "
        f"({'true labels' if r.true_labels else 'vs the predictions'}, {r.norm} epsilons)"
    )
    header = ["METHOD", *(f"EPS {e:g}" for e in r.epsilons), "MEDIAN MIN", "NON-MONOTONE", "RUNS"]
    rows = [
        (
            c.method,
            *(f"{a:.4f}" for a in c.accuracy),
            f"{c.median_minimal:.4f}",
            c.non_monotone,
            c.runs,
        )
        for c in r.curves
    ]
    return head + "\n" + table(header, rows, "l" + "r" * (len(header) - 1))


def _text_datasets(r: Any, args: argparse.Namespace) -> str:
    rows = [(d.name, d.kind, f"{d.size:,}", str(len(d.classes)), ",".join(d.fits_models) or "-") for d in r]
    return table(["DATASET", "KIND", "IMAGES", "CLASSES", "FITS MODELS"], rows, "llrrl")


def _text_index(r: Any, args: argparse.Namespace) -> str:
    how = "reused" if r.reused else f"built in {r.seconds:.1f} s ({r.images_per_s:,.0f} images/s)"
    return (
        f"index {r.index_id} of {r.dataset} for {r.model}: {how}\n"
        f"{r.images:,} images indexed, {r.skipped:,} skipped; layers: {', '.join(r.layers)}"
        + ("" if r.reused else f"\npeak RSS growth {r.peak_rss_growth_mb:.0f} MB")
    )


def _text_top(r: Any, args: argparse.Namespace) -> str:
    rows = [
        (
            str(ch.channel),
            str(rank + 1),
            str(e.image_id),
            e.label_name or str(e.label),
            f"{e.value:.4g}",
            f"{e.y},{e.x}",
        )
        for ch in r.channels
        for rank, e in enumerate(ch.entries)
    ]
    head = f"{r.layer} on {r.model}, {r.dataset}" + (f" (receptive field {r.rf_size} px)" if r.spatial else "")
    return head + "\n" + table(["CHANNEL", "RANK", "IMAGE", "LABEL", "VALUE", "AT"], rows, "rrrlrl")


def _text_neighbors(r: Any, args: argparse.Namespace) -> str:
    rows = [
        (str(i + 1), str(n.image_id), n.label_name or str(n.label), f"{n.distance:.4g}")
        for i, n in enumerate(r.neighbors)
    ]
    return f"{r.layer} on {r.model}, {r.dataset}, {r.metric}\n" + table(
        ["RANK", "IMAGE", "LABEL", "DISTANCE"], rows, "rrlr"
    )


def _text_embed(r: Any, args: argparse.Namespace) -> str:
    how = "reused from the server's cache" if r.reused else f"made in {r.seconds:.1f} s"
    head = f"{r.method} map of {r.layer} on {r.model}, {r.dataset}: {len(r.labels):,} points, {how}"
    if r.method == "tsne":
        head += f"\nKL divergence {r.kl_divergence:.4f}, {r.threads} thread(s), map {r.map_id}"
    else:
        head += f"\nexplained variance {', '.join(f'{v:.3f}' for v in r.explained_variance)}, map {r.map_id}"
    counts = np.bincount(r.labels[r.labels >= 0], minlength=len(r.classes)) if len(r.labels) else np.zeros(0)
    rows = [(r.classes[i] if i < len(r.classes) else str(i), f"{int(n):,}") for i, n in enumerate(counts) if n]
    return head + ("\n" + table(["CLASS", "POINTS"], rows, "lr") if rows else "")


def _text_place(r: Any, args: argparse.Namespace) -> str:
    rows = [
        (
            str(i),
            f"{p.x:.3f}",
            f"{p.y:.3f}",
            p.label_name or str(p.label),
            " ".join(str(v) for v in p.neighbor_ids[:3]),
        )
        for i, p in enumerate(r.placed)
    ]
    head = f"placed on the {r.method} map {r.map_id} of {r.layer} on {r.model}, {r.dataset}"
    return head + "\n" + table(["IMAGE", "X", "Y", "AMONG", "NEAREST IDS"], rows, "rrrll")


_TEXT: dict[str, Callable[[Any, argparse.Namespace], str]] = {
    "layers": _text_layers,
    "info": _text_info,
    "classify": _text_classify,
    "activations": _text_activations,
    "kernels": _text_kernels,
    "saliency": _text_saliency,
    "attack": _text_attack,
    "visualize": _text_visualize,
    "dream": _text_dream,
    "interpolate": _text_interpolate,
    "minimal-attack": _text_minimal_attack,
    "robustness": _text_robustness,
    "datasets": _text_datasets,
    "index": _text_index,
    "top": _text_top,
    "neighbors": _text_neighbors,
    "embed": _text_embed,
    "place": _text_place,
}


def _prepare_interpolate(args: argparse.Namespace, values: dict[str, Any]) -> None:
    positive = _image_set("--positive", args.positive)
    negative = _image_set("--negative", args.negative)
    if args.target_image is not None and (positive is not None or negative is not None):
        raise UsageError("give either --target IMAGE or --positive/--negative, not both")
    if args.target_image is None and (positive is None or negative is None):
        raise UsageError("give --positive and --negative (images, directories or one class name each), or --target")
    if args.target_image is not None:
        values["target"] = args.target_image
    else:
        sets = pb.AttributeSets()
        _fill_set(sets, "positive", positive)  # type: ignore[arg-type]
        _fill_set(sets, "negative", negative)  # type: ignore[arg-type]
        values["sets"] = sets


def run_method(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    """Any command of the method table: request from the options, the call, files, text."""
    method: Method = args.method_spec
    values, params = _request_values(method, args)
    if method.command == "activations" and "include_tensors" not in values:
        values["include_tensors"] = bool(args.npy)  # tensors travel only when they are saved
    if method.command == "interpolate":
        _prepare_interpolate(args, values)
    if _takes_many(method):
        images, many = image_files(values.pop("image"))
        if many:
            return _run_many(c, method, args, images, values, params)
        values["image"] = images[0]
    if method.command == "place":
        values["images"] = list(args.place_images)
    if method.streamed:
        with c.call_stream(method.rpc, values, params=params) as stream:
            result: Any = None
            for item in stream:
                if isinstance(item, ProgressEvent):
                    progress(item)
                else:
                    result = item
        progress.close()
        if result is None:
            raise UsageError("the server ended the stream without a result")
    else:
        result = c.call(method.rpc, values, params=params)
    files: list[Path] = []
    output = _OUTPUTS.get(method.command)
    if output is not None:
        files = result.save(args.output, as_file=output[1])
    files += _extra_files(method.command, result, args)
    text = _TEXT[method.command](result, args)
    params_echo = getattr(result, "params", None)
    if params_echo is not None and method.params is not None:
        text += f"\nparams: {_params_text(params_echo)}"
    if hasattr(result, "request_id"):
        text += "\n" + _stamp_line(result)
    document = _jsonable(result)
    if output is not None:
        text += "\n" + _files_line(files)
        document = {**document, "files": _jsonable(files)}
    if method.streamed:
        text += _frames_line(progress)
        document["frames"] = _jsonable(progress.frames)
    return text, document


class ItemsFailed(Exception):
    """Some images of a several-image command failed (each reported in the output)."""

    def __init__(self, text: str, document: dict[str, Any], status: int) -> None:
        super().__init__(text)
        self.text, self.document, self.status = text, document, status


def _run_many(
    c: InterpClient,
    method: Method,
    args: argparse.Namespace,
    files: list[Path],
    values: dict[str, Any],
    params: dict[str, Any],
) -> Outcome:
    """Several images: batched calls (the SDK chunks them), one section of output per image.

    With -o each image's files go to OUTPUT/<file stem>/ (OUTPUT is then a directory). An image
    that fails is reported in its section; the exit status is then that of the first failure.
    """
    results = c.call_many(method.rpc, files, values, params=params)
    output = _OUTPUTS.get(method.command)
    sections, documents, status = [], [], EXIT_OK
    stems = _unique_stems(files)
    for path, stem, result in zip(files, stems, results, strict=True):
        if isinstance(result, InterpError):
            sections.append(f"== {path}\nerror: {result.code_name}: {result.message}")
            documents.append({"image": str(path), "error": {"code": result.code_name, "message": result.message}})
            status = status or exit_code_for(result)
            continue
        written: list[Path] = []
        if output is not None:
            folder = Path(args.output) / stem
            if getattr(args, "npy", False):
                folder.mkdir(parents=True, exist_ok=True)  # the .npy files go there even without PNGs
            written = result.save(folder, as_file=False)
            # --npy beside them: the saliency map as map.npy, activations as LAYER.npy
            single = folder / "map.png" if method.command == "saliency" else folder
            written += _extra_files(method.command, result, argparse.Namespace(**{**vars(args), "output": single}))
        text = _TEXT[method.command](result, args)
        if output is not None:
            text += "\n" + _files_line(written)
        sections.append(f"== {path}\n{text}")
        document = {"image": str(path), **_jsonable(result)}
        if output is not None:
            document["files"] = _jsonable(written)
        documents.append(document)
    first = next((r for r in results if not isinstance(r, InterpError)), None)
    footer = ""
    if first is not None:
        params_echo = getattr(first, "params", None)
        if params_echo is not None and method.params is not None:
            footer += f"\nparams: {_params_text(params_echo)}"
        failed = sum(isinstance(r, InterpError) for r in results)
        footer += f"\n{len(files)} images, {failed} failed; " + _stamp_line(first)
    text = "\n".join(sections) + footer
    document = {"results": documents}
    if status != EXIT_OK:
        raise ItemsFailed(text, document, status)
    return text, document


def _unique_stems(files: Sequence[Path]) -> list[str]:
    """A distinct directory name per image file: its stem, numbered when two files share one."""
    seen: dict[str, int] = {}
    stems = []
    for path in files:
        stem = file_part(path.stem)
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def _extra_files(command: str, result: Any, args: argparse.Namespace) -> list[Path]:
    """--npy: activation tensors as LAYER.npy; the saliency map beside the overlay. embed --html: the page."""
    if command == "embed" and getattr(args, "html", None) is not None:
        return [result.write_html(args.html)]
    if not getattr(args, "npy", False):
        return []
    files = []
    if command == "activations":
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        for layer in result.layers:
            if layer.activation is not None:
                path = out / f"{file_part(layer.requested or layer.layer)}.npy"
                np.save(path, layer.activation)
                files.append(path)
    elif command == "saliency" and result.map is not None:
        path = Path(args.output).with_suffix(".npy")
        np.save(path, result.map)
        files.append(path)
    return files


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


def _add_connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Global options; on subcommands they default to SUPPRESS so either position works."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    def shown(text: str) -> str:
        return argparse.SUPPRESS if suppress else text

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        default=default(os.environ.get("INTERP_SERVER") or DEFAULT_TARGET),
        help=shown("host:port or dns:///host:port (env INTERP_SERVER; default %(default)s)"),
    )
    group.add_argument(
        "--token",
        default=default(os.environ.get("INTERP_TOKEN") or None),
        help=shown("bearer token (env INTERP_TOKEN)"),
    )
    group.add_argument(
        "--ca-file",
        default=default(os.environ.get("INTERP_CA_FILE") or None),
        help=shown("PEM root certificate(s); connect with TLS (env INTERP_CA_FILE)"),
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help=shown("connect with TLS using the system's root certificates"),
    )
    group.add_argument(
        "--tls-server-name",
        default=default(None),
        help=shown("certificate name to expect when it differs from the server host"),
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=default(None),
        help=shown("deadline per call in seconds (default: 60 for quick calls, none for streaming ones)"),
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help=shown("print one JSON document on stdout (no progress bar)"),
    )
    group.add_argument(
        "--no-progress",
        action="store_true",
        default=default(False),
        help=shown("no progress bar for streaming commands"),
    )


def build_parser() -> argparse.ArgumentParser:
    """The `interp` argument parser: one subcommand per method of the table (options from its fields)."""
    parser = argparse.ArgumentParser(
        prog="interp",
        description="Client for the cnn-interp gRPC service: look inside CNNs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('cnn-interp')}")
    _add_connection_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for method in METHODS:
        if not method.command:
            continue
        p = sub.add_parser(method.command, parents=[common], help=method.help, description=method.help)
        if method.command == "models":
            p.set_defaults(handler=cmd_models)
            continue
        p.set_defaults(handler=run_method, method_spec=method)
        _add_method_options(p, method)
        if method.command == "interpolate":
            p.add_argument(
                "--positive", nargs="+", action="extend", metavar="X", help="images/directories, or one class name"
            )
            p.add_argument(
                "--negative", nargs="+", action="extend", metavar="X", help="images/directories, or one class name"
            )
            p.add_argument(
                "--target",
                dest="target_image",
                metavar="IMAGE",
                help="interpolate towards this image instead of attribute sets",
            )
        if method.command == "embed":
            p.add_argument(
                "--html", type=Path, metavar="FILE", help="also write the interactive page (self-contained HTML)"
            )
        if method.command == "place":
            p.add_argument(
                "--image", dest="place_images", action="append", required=True, metavar="IMAGE",
                help="image file to place; repeat for more",
            )  # fmt: skip
        if method.command in ("activations", "saliency"):
            what = "each activation tensor as LAYER.npy" if method.command == "activations" else "the map as FILE.npy"
            p.add_argument("--npy", action="store_true", help=f"also save {what}")
        if method.streamed:
            p.add_argument("--frames", type=Path, metavar="DIR", help="save previews as DIR/frame_0001.png ...")
        output = _OUTPUTS.get(method.command)
        if output is not None:
            p.add_argument("-o", "--output", required=True, metavar=output[0], help=output[2])
        if method.command == "layers":
            labels = sub.add_parser("labels", parents=[common], help="a model's class labels in index order")
            labels.add_argument("model")
            labels.set_defaults(handler=cmd_labels)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (see the EXIT STATUS section of ``interp --help``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    stdout, stderr = sys.stdout, sys.stderr
    progress = _Progress(
        show_bar=not (args.json or args.no_progress), frames_dir=getattr(args, "frames", None), stream=stderr
    )
    try:
        with InterpClient(
            args.server,
            timeout=args.timeout if args.timeout is not None else 60.0,
            stream_timeout=args.timeout,
            token=args.token or None,
            ca_file=args.ca_file or None,
            tls=args.tls,
            server_name=args.tls_server_name or None,
        ) as c:
            text, document = args.handler(c, args, progress)
    except ItemsFailed as failed:  # several images, some failed: every answer printed, then the status
        stdout.write((json.dumps(failed.document, indent=2) if args.json else failed.text.rstrip("\n")) + "\n")
        return failed.status
    except InterpError as error:
        progress.close()
        status = _fail(error.code_name, error.message, exit_code_for(error), args.json, error.request_id)
        hint = _HINTS.get(error.code_name)
        if hint:
            print("hint: " + hint.format(server=args.server), file=sys.stderr)
        return status
    except (UsageError, ValueError) as error:
        progress.close()
        return _fail("USAGE", str(error), EXIT_USAGE, args.json)
    except OSError as error:
        progress.close()
        return _fail("IO", str(error), EXIT_FAILURE, args.json)
    except KeyboardInterrupt:
        progress.close()
        return _fail("INTERRUPTED", "interrupted", EXIT_INTERRUPTED, args.json)
    if args.json:
        stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        stdout.write(text.rstrip("\n") + "\n")
    stdout.flush()
    return EXIT_OK


def _fail(code: str, message: str, status: int, as_json: bool, request_id: str | None = None) -> int:
    if code in ("USAGE", "IO", "INTERRUPTED"):
        print(f"error: {message}", file=sys.stderr)
    else:
        print(f"error: {code}: {message}", file=sys.stderr)
    if as_json:
        error = {"code": code, "message": message, "exit_status": status}
        if request_id:
            error["request_id"] = request_id
        sys.stdout.write(json.dumps({"error": error}, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
