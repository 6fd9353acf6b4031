"""How each `interp` command's result reads as text: aligned tables, one formatter per command
that has one, and :func:`generic_text` for any other result (its scalar fields, or a table of a
list's items)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from client.results import ModelInfo, Prediction


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


def shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + (",)" if len(shape) == 1 else ")")


def prediction_text(p: Prediction | None) -> str:
    if p is None:
        return "-"
    return f"{p.index} {p.label} (p={p.probability:.4f})" if p.label else f"{p.index} (p={p.probability:.4f})"


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "-"


def _layer_label(requested: str, path: str) -> str:
    return path if not requested or requested == path else f"{requested} ({path})"


def _weights_cell(m: ModelInfo) -> str:
    kind = m.source if m.source not in ("", "builtin") else ""  # a --model's torchvision/torchscript/export
    if not m.weights.source and not m.weights.sha256:
        return kind or "-"
    return " ".join(x for x in (kind, m.weights.source or "?", m.weights.sha256[:12]) if x)


def _reason_cell(m: Any) -> str:
    """A reason's first line: a table row stays one line (``interp layers NAME`` prints it whole)."""
    first, _, rest = m.reason.strip().partition("\n")
    return f"{first} (more: interp layers {m.name})" if rest.strip() else first


def text_models(models: Any, args: argparse.Namespace) -> str:
    rows = [
        (
            m.name,
            m.status,
            ("yes" if m.pretrained else "no") if m.ready else "-",
            shape_text(m.input_shape) if m.ready or m.num_classes else "-",  # unknown until it loads
            m.num_classes or "-",
            _weights_cell(m),
            _reason_cell(m),
        )
        for m in models
    ]
    return table(["NAME", "STATUS", "PRETRAINED", "INPUT", "CLASSES", "WEIGHTS", "REASON"], rows, "lllrrll")


def text_layers(r: Any, args: argparse.Namespace) -> str:
    d, m = r, r.model
    header = (
        f"{m.name}: {m.status}, pretrained={'yes' if m.pretrained else 'no'}, input {shape_text(m.input_shape)}, "
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
                shape_text(layer.output_shape),
                rf.size if rf else ("unknown" if layer.receptive_field_unknown else "-"),
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
        f"\npreprocessing: {p.channels} channel(s), "
        + (f"shorter side resized to {p.resize_shorter}, " if p.resize_shorter else "resized straight to the input, ")
        + f"crop {p.crop or 'none'}, mean {list(p.mean)}, std {list(p.std)}"
        + (f", {p.convention}" if p.convention else "")
    )
    if d.default_gradcam_layer:
        aliases = next((layer.aliases for layer in d.layers if layer.name == d.default_gradcam_layer), ())
        named = f" ({', '.join(aliases)})" if aliases else ""
        text += f"\ndefault grad_cam layer: {d.default_gradcam_layer}{named}"
    text += f"\nclass labels: {len(d.labels)} (interp labels {m.name})"
    return text


def text_classify(r: Any, args: argparse.Namespace) -> str:
    rows = [(i + 1, p.index, p.label, f"{p.probability:.4f}") for i, p in enumerate(r.predictions)]
    return table(["RANK", "CLASS", "LABEL", "PROBABILITY"], rows, "rrlr")


def text_info(info: Any, args: argparse.Namespace) -> str:
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


def text_activations(r: Any, args: argparse.Namespace) -> str:
    rows = []
    for layer in r.layers:
        mean = layer.channel_mean
        mx = layer.channel_max
        rows.append(
            (
                _layer_label(layer.requested, layer.layer),
                shape_text(layer.activation.shape)
                if layer.activation is not None
                else (f"C={mean.shape[0]}" if mean is not None else "-"),
                f"{float(mean.mean()):.4g}" if mean is not None and mean.size else "-",
                f"{float(mx.max()):.4g}" if mx is not None and mx.size else "-",
                ",".join(str(ch) for ch in layer.top_channels[:8]) + ("..." if len(layer.top_channels) > 8 else "")
                or "-",
            )
        )
    text = table(["LAYER", "SHAPE", "MEAN", "MAX", "TOP CHANNELS"], rows, "llrrl")
    if getattr(args, "output", None) is not None:
        flat = [_layer_label(layer.requested, layer.layer) for layer in r.layers if not layer.grid_png]
        if flat:  # the server draws grids of maps only
            npy = "" if getattr(args, "npy", False) else "; --npy saves their values"
            text += f"\nno grid image for {', '.join(flat)}: not a layer of maps{npy}"
    if r.prediction is not None:
        text += f"\nprediction: {prediction_text(r.prediction)}"
    return text


def text_kernels(r: Any, args: argparse.Namespace) -> str:
    shape = shape_text(r.weights.shape) if r.weights is not None else "-"
    return (
        f"layer {_layer_label(args.layer, r.layer)}: weights {shape}, bias {'yes' if r.bias is not None else 'no'}, "
        f"rendered as {'RGB patches' if r.rgb else 'per-input-channel greyscale'}"
    )


def text_saliency(r: Any, args: argparse.Namespace) -> str:
    map_text = (
        f"\nmap {shape_text(r.map.shape)}, max {float(r.map.max()):.4g}" if r.map is not None and r.map.size else ""
    )
    return f"{r.method} saliency for class {prediction_text(r.target)}" + map_text


def _class_cells(p: Prediction | None) -> tuple[str, str]:
    """PREDICTION and PROB cells of a table row."""
    return (f"{p.index} {p.label}", f"{p.probability:.4f}") if p is not None else ("-", "-")


def text_attack(r: Any, args: argparse.Namespace) -> str:
    rows = [
        (f"{o.epsilon:g}", *_class_cells(o.prediction), "yes" if o.success else "no", f"{o.linf:.4f}", f"{o.l2:.4f}")
        for o in r.outcomes
    ]
    head = f"{r.method} on {r.model}: original {prediction_text(r.original)}"
    if r.targeted:
        head += f", target {prediction_text(r.target)}"
    elif r.label is not None:
        head += f", label {prediction_text(r.label)}"
    if r.clean_misclassified:
        head += "\nthe clean image is already misclassified: success without perturbation at every eps"
    return head + "\n" + table(["EPS", "PREDICTION", "PROB", "SUCCESS", "LINF", "L2"], rows, "rlrlrr")


def text_visualize(r: Any, args: argparse.Namespace) -> str:
    rows = list(zip(r.channels, (f"{a:.4g}" for a in r.activations), strict=False))
    return f"{_layer_label(args.layer, r.layer)} on {r.model}\n" + table(["CHANNEL", "ACTIVATION"], rows, "rr")


def text_dream(r: Any, args: argparse.Namespace) -> str:
    rows = [(g.layer, f"{g.norm_before:.4g}", f"{g.norm_after:.4g}", f"{g.ratio:.2f}x") for g in r.gains]
    return table(["LAYER", "NORM BEFORE", "NORM AFTER", "GAIN"], rows, "lrrr")


def text_interpolate(r: Any, args: argparse.Namespace) -> str:
    rows = [(f"{a.alpha:g}", *_class_cells(a.prediction), f"{a.feature_error:.4f}") for a in r.results]
    return f"layers: {', '.join(r.layers)}\n" + table(["ALPHA", "PREDICTION", "PROB", "FEATURE ERROR"], rows, "rlrr")


def text_minimal_attack(r: Any, args: argparse.Namespace) -> str:
    head = f"{r.method} on {r.model}: original {prediction_text(r.original)}"
    head += f", {'target' if r.targeted else 'label'} {prediction_text(r.label)}"
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
        f"adversarial: {prediction_text(r.prediction)}, success {'yes' if r.success else 'no'}, "
        f"Linf {r.linf:.4f}, L2 {r.l2:.4f}"
    )
    return "\n".join(lines)


def text_robustness(r: Any, args: argparse.Namespace) -> str:
    head = (
        f"{r.model} on {r.dataset}: {r.images} images{f' ({r.skipped} unreadable, skipped)' if r.skipped else ''}, "
        f"clean accuracy {r.clean_accuracy:.4f} "
        f"({'true labels' if r.true_labels else 'vs the predictions'}, {r.norm} epsilons)"
    )
    if getattr(r, "precomputed", False):
        head += "\nanswered from a result interp-robustness stored (same weights, data, parameters): not computed now"
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


def text_precomputed(r: Any, args: argparse.Namespace) -> str:
    """What interp-atlas and interp-robustness stored for a model: enough to tell two apart."""
    parts = []
    if r.atlas:
        rows = [
            (
                a.layer,
                a.dataset or "-",
                f"{a.units:,}",
                f"{a.batch:,}",
                f"{len(a.batches):,}" if a.batches else "-",
                " ".join(f"{k}={v}" for k, v in a.params.items()) or "-",
            )
            for a in r.atlas
        ]
        header = ["LAYER", "DATASET", "UNITS", "UNITS A BATCH", "BATCHES (--layer)", "VISUALIZATIONS"]
        parts.append("atlas (interp-atlas)\n" + table(header, rows, "llrrrl"))
    if r.robustness:
        stored_rows = [
            (
                ",".join(c.method for c in s.result.curves),
                ",".join(f"{e:g}" for e in s.result.epsilons),
                f"{s.limit:,}",
                s.engine,
                f"{s.result.clean_accuracy:.4f}",
                "true labels" if s.result.true_labels else "predictions",
                " ".join(f"{k}={v}" for k, v in s.result.params.items()) or "-",
            )
            for s in r.robustness
        ]
        head = "robustness (interp-robustness)\n"
        columns = ["METHODS", "EPSILONS", "IMAGES", "ENGINE", "CLEAN", "AGAINST", "PARAMETERS"]
        parts.append(head + table(columns, stored_rows, "llrlrll"))
    return "\n\n".join(parts) or "nothing precomputed for this model (interp-atlas, interp-robustness store results)"


def text_datasets(r: Any, args: argparse.Namespace) -> str:
    rows = [(d.name, d.kind, f"{d.size:,}", str(len(d.classes)), ",".join(d.fits_models) or "-") for d in r]
    return table(["DATASET", "KIND", "IMAGES", "CLASSES", "FITS MODELS"], rows, "llrrl")


def text_index(r: Any, args: argparse.Namespace) -> str:
    how = "reused" if r.reused else f"built in {r.seconds:.1f} s ({r.images_per_s:,.0f} images/s)"
    return (
        f"index {r.index_id} of {r.dataset} for {r.model}: {how}\n"
        f"{r.images:,} images indexed, {r.skipped:,} skipped; layers: {', '.join(r.layers)}"
        + ("" if r.reused else f"\npeak RSS growth {r.peak_rss_growth_mb:.0f} MB")
    )


def text_top(r: Any, args: argparse.Namespace) -> str:
    rows = [
        (
            str(ch.channel),
            str(rank + 1),
            str(e.image_id),
            e.label_name or str(e.label),
            f"{e.value:.4f}" if e.value == 0 or abs(e.value) >= 1e-3 else f"{e.value:.3e}",
            f"{e.y},{e.x}",
        )
        for ch in r.channels
        for rank, e in enumerate(ch.entries)
    ]
    head = f"{r.layer} on {r.model}, {r.dataset}" + (f" (receptive field {r.rf_size} px)" if r.spatial else "")
    if not getattr(args, "f_channels", None) and len(r.channels) == 16:
        head += "\nthe first 16 channels, as when --channel names none (a layer with more: --channel to choose)"
    notes = []
    for ch in r.channels:
        if ch.tied:
            value = ch.entries[0].value
            why = "never fires on this dataset" if value == 0 else f"gives every one of them {value:.4g}"
            notes.append(f"channel {ch.channel}: {why}; its top images tie (ordered by id) and say nothing about it")
    text = head + "\n" + table(["CHANNEL", "RANK", "IMAGE", "LABEL", "VALUE", "AT"], rows, "rrrlrl")
    return text + "".join(f"\nnote: {n}" for n in notes)


def text_embed(r: Any, args: argparse.Namespace) -> str:
    how = "reused from the server's cache" if r.reused else f"made in {r.seconds:.1f} s"
    head = f"{r.method} map of {r.layer} on {r.model}, {r.dataset}: {len(r.labels):,} points, {how}"
    if r.method == "tsne":
        head += f"\nKL divergence {r.kl_divergence:.4f}, {r.threads} thread(s), map {r.map_id}"
    else:
        head += f"\nexplained variance {', '.join(f'{v:.3f}' for v in r.explained_variance)}, map {r.map_id}"
    counts = np.bincount(r.labels[r.labels >= 0], minlength=len(r.classes)) if len(r.labels) else np.zeros(0)
    rows = [(r.classes[i] if i < len(r.classes) else str(i), f"{int(n):,}") for i, n in enumerate(counts) if n]
    return head + ("\n" + table(["CLASS", "POINTS"], rows, "lr") if rows else "")


def text_neighbors(r: Any, args: argparse.Namespace) -> str:
    rows = [
        (str(rank + 1), str(n.image_id), n.label_name or str(n.label), f"{n.distance:.4f}")
        for rank, n in enumerate(r.neighbors)
    ]
    head = f"nearest in {r.layer} of {r.model}, {r.dataset} ({r.metric} distance, index {r.index_id})"
    return head + "\n" + table(["RANK", "IMAGE", "LABEL", "DISTANCE"], rows, "rrlr")


def text_place(r: Any, args: argparse.Namespace) -> str:
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


def generic_text(result: Any, args: argparse.Namespace | None = None) -> str:
    """Any result without a formatter: a list as a table of its items' plain fields, one result as
    ``field  value`` lines (arrays as their shape, PNG bytes as their size, nested results counted),
    then a table of each list of nested results (``RANK`` first, in the server's order)."""
    if isinstance(result, list | tuple):
        if not result:
            return "(none)"
        names = [f.name for f in dataclasses.fields(result[0]) if _plain(getattr(result[0], f.name))]
        cells = [[str(rank), *(_cell(getattr(item, name)) for name in names)] for rank, item in enumerate(result, 1)]
        return table(["RANK", *(name.upper() for name in names)], cells)
    values = [(f.name, getattr(result, f.name)) for f in dataclasses.fields(result)]
    nested = [f"{name}:\n{generic_text(value)}" for name, value in values if _results(value)]
    stamped = hasattr(result, "request_id")  # the stamp line after the text says model, weights, time
    shown = [
        (name, _cell(value))
        for name, value in values
        if not (_results(value) or (stamped and name in _STAMP_FIELDS))
    ]
    return "\n".join([_key_values(shown), *nested])


_STAMP_FIELDS = frozenset({"model", "pretrained", "weights_sha256", "request_id", "elapsed_ms", "model_source"})
"""Said by the stamp line under the text (nested results get tables of their own)."""


def _results(value: Any) -> bool:
    return isinstance(value, tuple) and bool(value) and dataclasses.is_dataclass(value[0])


def _plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or (
        isinstance(value, tuple) and all(isinstance(v, str | int | float) for v in value)
    )


def _cell(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value):,} bytes>" if value else "-"
    if isinstance(value, np.ndarray):
        return shape_text(value.shape)
    if isinstance(value, float):
        return f"{value:.4g}"
    if _results(value):
        return f"{len(value)} {type(value[0]).__name__}"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return params_text(value)
    if value is None:
        return "-"
    return str(value)
