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
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from client.errors import InterpError
from client.results import ModelInfo, Prediction, ProgressEvent, file_part
from client.sdk import DEFAULT_TARGET, InterpClient

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
    return (
        "wrote " + ", ".join(str(p) for p in paths) if paths else "wrote no files (the server sent no images)"
    )


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

                self._bar = tqdm(
                    total=event.total_steps or None, file=self.stream, unit="step", dynamic_ncols=True
                )
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


def _params(args: argparse.Namespace, names: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """SDK keyword parameters from the options that were given (unset ones keep server defaults)."""
    return {param: getattr(args, dest) for dest, param in names if getattr(args, dest, None) is not None}


# ---------------------------------------------------------------------------------------------
# Commands: each returns (human text, JSON document)
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


def cmd_layers(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    d = c.describe_model(args.model)
    m = d.model
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
        header
        + "\n"
        + table(["NAME", "ALIASES", "TYPE", "OUTPUT", "RF", "JUMP", "START", "PARAMS"], rows, "llllrrrr")
    )
    p = d.preprocessing
    text += (
        f"\npreprocessing: {p.channels} channel(s), resize shorter side {p.resize_shorter or 'direct'}, "
        f"crop {p.crop or 'none'}, mean {list(p.mean)}, std {list(p.std)}"
        + (f", {p.convention}" if p.convention else "")
    )
    if d.default_gradcam_layer:
        text += f"\ndefault grad_cam layer: {d.default_gradcam_layer}"
    return text, _jsonable(d)


def cmd_classify(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    r = c.classify(args.image, model=args.model, top_k=args.top_k)
    rows = [(i + 1, p.index, p.label, f"{p.probability:.4f}") for i, p in enumerate(r.predictions)]
    text = table(["RANK", "CLASS", "LABEL", "PROBABILITY"], rows, "rrlr") + "\n" + _stamp_line(r)
    return text, _jsonable(r)


def cmd_info(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    info = c.server_info()
    rows = [
        ("server", f"{info.version} ({info.api_version})"),
        ("address", c.target),
        ("device", info.device),
        ("workers", info.worker_threads),
        ("auth", "token required" if info.auth_required else "none"),
        ("tls", "yes" if info.tls else "no"),
        ("models", ", ".join(info.models)),
        ("rpcs", ", ".join(info.implemented_rpcs)),
    ]
    text = _key_values(rows)
    text += "\nlimits:\n" + _key_values(list(info.limits.items()), indent="  ")
    if info.libraries:
        text += "\nlibraries:\n" + _key_values(list(info.libraries.items()), indent="  ")
    return text, _jsonable(info)


def _key_values(rows: Sequence[tuple[str, Any]], indent: str = "") -> str:
    width = max((len(key) for key, _ in rows), default=0)
    return "\n".join(f"{indent}{key.ljust(width)}  {value}".rstrip() for key, value in rows)


def cmd_activations(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    r = c.activations(
        args.image, model=args.model, layers=args.layer, top_k=args.top_k, include_tensors=args.npy
    )
    out = Path(args.output)
    files = r.save(out, as_file=False)
    if args.npy:
        out.mkdir(parents=True, exist_ok=True)
        for layer in r.layers:
            if layer.activation is not None:
                path = out / f"{file_part(layer.requested or layer.layer)}.npy"
                np.save(path, layer.activation)
                files.append(path)
    rows = []
    for layer in r.layers:
        mean = layer.channel_mean
        mx = layer.channel_max
        rows.append(
            (
                layer.requested if layer.requested == layer.layer else f"{layer.requested} ({layer.layer})",
                _shape(layer.activation.shape)
                if layer.activation is not None
                else (f"C={mean.shape[0]}" if mean is not None else "-"),
                f"{float(mean.mean()):.4g}" if mean is not None and mean.size else "-",
                f"{float(mx.max()):.4g}" if mx is not None and mx.size else "-",
                ",".join(str(ch) for ch in layer.top_channels[:8])
                + ("..." if len(layer.top_channels) > 8 else "")
                or "-",
            )
        )
    text = table(["LAYER", "SHAPE", "MEAN", "MAX", "TOP CHANNELS"], rows, "llrrl")
    if r.prediction is not None:
        text += f"\nprediction: {_prediction(r.prediction)}"
    text += "\n" + _stamp_line(r) + "\n" + _files_line(files)
    return text, {**_jsonable(r), "files": _jsonable(files)}


def cmd_kernels(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    r = c.kernels(args.model, args.layer)
    files = r.save(args.output, as_file=True)
    shape = _shape(r.weights.shape) if r.weights is not None else "-"
    text = (
        f"layer {r.layer}: weights {shape}, bias {'yes' if r.bias is not None else 'no'}, "
        f"rendered as {'RGB patches' if r.rgb else 'per-input-channel greyscale'}\n"
        + _stamp_line(r)
        + "\n"
        + _files_line(files)
    )
    return text, {**_jsonable(r), "files": _jsonable(files)}


_SALIENCY_PARAMS = [
    ("layer", "layer"),
    ("samples", "samples"),
    ("noise_level", "noise_level"),
    ("steps", "steps"),
    ("seed", "seed"),
    ("batch_size", "batch_size"),
    ("clip_percentile", "clip_percentile"),
    ("colormap", "colormap"),
]


def cmd_saliency(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    r = c.saliency(
        args.image,
        model=args.model,
        method=args.method,
        target=_class_target(args.target),
        **_params(args, _SALIENCY_PARAMS),
    )
    files = r.save(args.output, as_file=True)
    if args.npy and r.map is not None:
        path = Path(args.output).with_suffix(".npy")
        np.save(path, r.map)
        files.append(path)
    map_text = (
        f"map {_shape(r.map.shape)}, max {float(r.map.max()):.4g}" if r.map is not None and r.map.size else ""
    )
    text = (
        f"{r.method} saliency for class {_prediction(r.target)}\n"
        + (map_text + "\n" if map_text else "")
        + f"params: {_params_text(r.params)}\n"
        + _stamp_line(r)
        + "\n"
        + _files_line(files)
    )
    return text, {**_jsonable(r), "files": _jsonable(files)}


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "-"


def cmd_attack(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    r = c.attack(
        args.image,
        model=args.model,
        method=args.method,
        epsilon=args.eps,
        target=_class_target(args.target),
        **_params(
            args,
            [
                ("step_size", "step_size"),
                ("steps", "steps"),
                ("random_start", "random_start"),
                ("seed", "seed"),
            ],
        ),
    )
    files = r.save(args.output, as_file=False)
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
    text = (
        head
        + "\n"
        + table(["EPS", "PREDICTION", "PROB", "SUCCESS", "LINF", "L2"], rows, "rlrlrr")
        + "\n"
        + f"params: {_params_text(r.params)}\n"
        + _stamp_line(r)
        + "\n"
        + _files_line(files)
    )
    return text, {**_jsonable(r), "files": _jsonable(files)}


def cmd_visualize(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    params = _params(
        args,
        [
            ("objective", "objective"),
            ("steps", "steps"),
            ("size", "image_size"),
            ("lr", "learning_rate"),
            ("seed", "seed"),
            ("parameterization", "parameterization"),
            ("transforms", "transforms"),
            ("preview_every", "preview_every"),
        ],
    )
    r = c.visualize_filter(args.model, args.layer, args.channel, progress=progress, **params)
    progress.close()
    files = r.save(args.output, as_file=True)
    rows = list(zip(r.channels, (f"{a:.4g}" for a in r.activations), strict=False))
    head = f"{r.layer} on {r.model}\n" + table(["CHANNEL", "ACTIVATION"], rows, "rr")
    return _streamed_outcome(r, head, files, progress)


def _streamed_outcome(r, head: str, files, progress: _Progress) -> Outcome:
    """The shared tail of the streamed commands: table, params, stamp, files written, frames."""
    text = (
        head + "\n" + f"params: {_params_text(r.params)}\n" + _stamp_line(r) + "\n" + _files_line(files)
        + _frames_line(progress)
    )
    return text, {**_jsonable(r), "files": _jsonable(files), "frames": _jsonable(progress.frames)}


def cmd_dream(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    params = _params(
        args,
        [
            ("octaves", "octaves"),
            ("octave_scale", "octave_scale"),
            ("iterations", "iterations"),
            ("step_size", "step_size"),
            ("jitter", "jitter"),
            ("seed", "seed"),
            ("preview_every", "preview_every"),
        ],
    )
    r = c.dream(args.image, model=args.model, layers=_dream_layers(args.layer), progress=progress, **params)
    progress.close()
    files = r.save(args.output, as_file=True)
    rows = [(g.layer, f"{g.norm_before:.4g}", f"{g.norm_after:.4g}", f"{g.ratio:.2f}x") for g in r.gains]
    return _streamed_outcome(r, table(["LAYER", "NORM BEFORE", "NORM AFTER", "GAIN"], rows, "lrrr"), files, progress)


def cmd_interpolate(c: InterpClient, args: argparse.Namespace, progress: _Progress) -> Outcome:
    positive = _image_set("--positive", args.positive)
    negative = _image_set("--negative", args.negative)
    if args.target is not None and (positive is not None or negative is not None):
        raise UsageError("give either --target IMAGE or --positive/--negative, not both")
    if args.target is None and (positive is None or negative is None):
        raise UsageError(
            "give --positive and --negative (images, directories or one class name each), or --target"
        )
    params = _params(
        args,
        [
            ("iterations", "iterations"),
            ("warm_iterations", "warm_iterations"),
            ("tv_weight", "tv_weight"),
            ("tv_beta", "tv_beta"),
            ("seed", "seed"),
            ("set_size", "set_size"),
            ("normalize_attribute", "normalize_attribute"),
            ("preview_every", "preview_every"),
        ],
    )
    r = c.interpolate(
        args.source,
        model=args.model,
        layers=args.layer or None,
        alphas=args.alpha or None,
        positive=positive,
        negative=negative,
        target=args.target,
        progress=progress,
        **params,
    )
    progress.close()
    files = r.save(args.output, as_file=False)
    rows = [
        (
            f"{a.alpha:g}",
            f"{a.prediction.index} {a.prediction.label}" if a.prediction else "-",
            f"{a.prediction.probability:.4f}" if a.prediction else "-",
            f"{a.feature_error:.4f}",
        )
        for a in r.results
    ]
    head = f"layers: {', '.join(r.layers)}\n" + table(["ALPHA", "PREDICTION", "PROB", "FEATURE ERROR"], rows, "rlrr")
    return _streamed_outcome(r, head, files, progress)


# ---------------------------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------------------------


def _add_connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Global options; on subcommands they default to SUPPRESS so either position works."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        default=default(os.environ.get("INTERP_SERVER") or DEFAULT_TARGET),
        help="host:port or dns:///host:port (env INTERP_SERVER; default %(default)s)"
        if not suppress
        else argparse.SUPPRESS,
    )
    group.add_argument(
        "--token",
        default=default(os.environ.get("INTERP_TOKEN") or None),
        help="bearer token (env INTERP_TOKEN)" if not suppress else argparse.SUPPRESS,
    )
    group.add_argument(
        "--ca-file",
        default=default(os.environ.get("INTERP_CA_FILE") or None),
        help="PEM root certificate(s); connect with TLS (env INTERP_CA_FILE)"
        if not suppress
        else argparse.SUPPRESS,
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="connect with TLS using the system's root certificates" if not suppress else argparse.SUPPRESS,
    )
    group.add_argument(
        "--tls-server-name",
        default=default(None),
        help="certificate name to expect when it differs from the server host"
        if not suppress
        else argparse.SUPPRESS,
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=default(None),
        help="deadline per call in seconds (default: 60 for quick calls, none for streaming ones)"
        if not suppress
        else argparse.SUPPRESS,
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document on stdout (no progress bar)" if not suppress else argparse.SUPPRESS,
    )
    group.add_argument(
        "--no-progress",
        action="store_true",
        default=default(False),
        help="no progress bar for streaming commands" if not suppress else argparse.SUPPRESS,
    )


def build_parser() -> argparse.ArgumentParser:
    """The `interp` argument parser (environment defaults are read when it is built)."""
    parser = argparse.ArgumentParser(
        prog="interp",
        description="Client for the cnn-interp gRPC service: look inside CNNs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_connection_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[..., Outcome], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    add("models", cmd_models, "list models: status, pretrained, input shape, classes, weights")

    p = add("layers", cmd_layers, "a model's layer catalogue: shapes, receptive fields, parameters")
    p.add_argument("model")

    p = add("classify", cmd_classify, "top-k predictions for an image")
    p.add_argument("model")
    p.add_argument("image", help="image file (PNG, JPEG, BMP, WebP, TIFF)")
    p.add_argument("--top-k", type=int, help="number of predictions (server default 5)")

    add("info", cmd_info, "server version, device, limits, libraries")

    p = add("activations", cmd_activations, "activation maps of one or more layers (one forward pass)")
    p.add_argument("model")
    p.add_argument("image")
    p.add_argument("--layer", action="append", required=True, help="layer name or alias; repeat for more")
    p.add_argument("--top-k", type=int, help="rank channels by mean activation and render the top K")
    p.add_argument("--npy", action="store_true", help="also save each activation tensor as LAYER.npy")
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="directory for LAYER.png and input.png"
    )

    p = add("kernels", cmd_kernels, "a conv layer's trained kernels as an image grid")
    p.add_argument("model")
    p.add_argument("layer")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="PNG file to write")

    p = add("saliency", cmd_saliency, "saliency map for a class (overlay + heatmap)")
    p.add_argument("model")
    p.add_argument("image")
    p.add_argument(
        "--method",
        default="gradient",
        help="gradient | gradient_x_input | smoothgrad | integrated_gradients | guided_backprop | grad_cam "
        "(default %(default)s)",
    )
    p.add_argument("--target", help="class index or label to explain (default: the predicted class)")
    p.add_argument("--layer", help="grad_cam layer (default: the last conv)")
    p.add_argument("--samples", type=int, help="smoothgrad noise samples")
    p.add_argument("--noise-level", type=float, help="smoothgrad sigma relative to the input range")
    p.add_argument("--steps", type=int, help="integrated_gradients path steps")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int, help="samples per forward pass (memory bound)")
    p.add_argument("--clip-percentile", type=float)
    p.add_argument("--colormap", help="OpenCV colormap name, e.g. jet, inferno")
    p.add_argument("--npy", action="store_true", help="also save the map as FILE with .npy suffix")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="overlay PNG; STEM_heatmap.png, STEM_input.png beside",
    )

    p = add("attack", cmd_attack, "FGSM / BIM / PGD adversarial examples, one or several epsilons")
    p.add_argument("model")
    p.add_argument("image")
    p.add_argument("--method", default="fgsm", help="fgsm | bim | pgd (default %(default)s)")
    p.add_argument(
        "--eps",
        type=float,
        action="append",
        required=True,
        help="epsilon in pixel units (0, 1]; repeat to sweep",
    )
    p.add_argument("--target", help="class index or label: targeted attack (default: untargeted)")
    p.add_argument("--steps", type=int, help="bim/pgd iterations")
    p.add_argument("--step-size", type=float, help="bim/pgd step alpha in pixel units")
    p.add_argument(
        "--random-start", action=argparse.BooleanOptionalAction, default=None, help="pgd random start"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("-o", "--output", required=True, metavar="DIR")

    p = add("visualize", cmd_visualize, "inputs that maximize channels of a layer (streamed)")
    p.add_argument("model")
    p.add_argument("layer")
    p.add_argument(
        "--channel", type=int, action="append", required=True, help="channel index; repeat for more"
    )
    p.add_argument("--objective", help="channel (mean) | neuron (centre unit)")
    p.add_argument("--steps", type=int)
    p.add_argument("--size", type=int, help="image side in pixels")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--parameterization", help="fourier | pixel")
    p.add_argument("--transforms", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--preview-every", type=int, help="steps between previews (0: none)")
    p.add_argument("--frames", type=Path, metavar="DIR", help="save previews as DIR/frame_0001.png ...")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="grid PNG; STEM_channel_NNNN.png beside"
    )

    p = add("dream", cmd_dream, "DeepDream an image (streamed)")
    p.add_argument("model")
    p.add_argument("image")
    p.add_argument(
        "--layer",
        action="append",
        required=True,
        metavar="L[:W]",
        help="layer, optionally with weight; repeat",
    )
    p.add_argument("--octaves", type=int)
    p.add_argument("--octave-scale", type=float)
    p.add_argument("--iterations", type=int, help="per octave")
    p.add_argument("--step-size", type=float)
    p.add_argument("--jitter", type=int, help="max roll in pixels")
    p.add_argument("--seed", type=int)
    p.add_argument("--preview-every", type=int, help="steps between previews (0: none)")
    p.add_argument("--frames", type=Path, metavar="DIR", help="save previews as DIR/frame_0001.png ...")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="dreamed PNG; STEM_input.png beside")

    p = add("interpolate", cmd_interpolate, "deep feature interpolation along an attribute (streamed)")
    p.add_argument("model")
    p.add_argument("source", help="source image")
    p.add_argument(
        "--positive", nargs="+", action="extend", metavar="X", help="images/directories, or one class name"
    )
    p.add_argument(
        "--negative", nargs="+", action="extend", metavar="X", help="images/directories, or one class name"
    )
    p.add_argument(
        "--target", metavar="IMAGE", help="interpolate towards this image instead of attribute sets"
    )
    p.add_argument("--layer", action="append", help="feature layer; repeat (default per model)")
    p.add_argument("--alpha", type=float, action="append", help="interpolation strength; repeat")
    p.add_argument("--iterations", type=int, help="L-BFGS iterations for the first alpha")
    p.add_argument("--warm-iterations", type=int, help="for each next alpha")
    p.add_argument("--tv-weight", type=float)
    p.add_argument("--tv-beta", type=float)
    p.add_argument("--seed", type=int, help="for drawing class sets")
    p.add_argument("--set-size", type=int, help="images per class set")
    p.add_argument("--normalize-attribute", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--preview-every", type=int, help="steps between previews (0: none)")
    p.add_argument("--frames", type=Path, metavar="DIR", help="save previews as DIR/frame_0001.png ...")
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="directory for alpha_A.png and input.png"
    )
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
